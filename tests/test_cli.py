"""The `opencodehub` command line, run in-process against a fresh database on each engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opencodehub import config
from opencodehub.cli import app

runner = CliRunner()


@pytest.fixture
def cli_env(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    env = {
        "OCH_DATA_DIR": str(tmp_path / "data"),
        "OCH_DATABASE_URL": fresh_database_url,
        "OCH_SECRET_KEY": "cli-secret-value",
        "OCH_CONFIG_FILE": str(tmp_path / "absent.toml"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config.get_settings.cache_clear()
    yield env
    config.get_settings.cache_clear()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_help_lists_every_role() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    roles = ("serve", "ssh", "worker", "runner", "actions", "migrate", "admin", "config", "doctor")
    for command in roles:
        assert command in result.output


def test_migrate_then_create_user_and_token(cli_env: dict[str, str]) -> None:
    assert invoke("migrate").exit_code == 0
    created = invoke(
        "admin",
        "create-user",
        "root-admin",
        "--email",
        "root@example.com",
        "--password",
        "s3cret-password",
        "--admin",
    )
    assert created.exit_code == 0, created.output
    token = invoke("admin", "create-token", "root-admin", "--scopes", "repo,read:user")
    assert token.exit_code == 0
    # Only the token on stdout, so scripts can capture it.
    assert token.stdout.strip().startswith("och_")
    assert len(token.stdout.strip().splitlines()) == 1
    listing = invoke("admin", "list-users")
    assert "root-admin" in listing.output and "yes" in listing.output


@pytest.mark.parametrize(
    ("name", "email", "password", "message"),
    [
        ("../etc", "a@example.com", "long-enough-pw", "login"),
        ("admin", "a@example.com", "long-enough-pw", "reserved"),
        ("ok-name", "not-an-email", "long-enough-pw", "email"),
        ("ok-name", "a@example.com", "short", "password"),
        ("x" * 40, "a@example.com", "long-enough-pw", "login"),
    ],
)
def test_create_user_rejects_bad_input(
    cli_env: dict[str, str], name: str, email: str, password: str, message: str
) -> None:
    invoke("migrate")
    result = runner.invoke(
        app, ["admin", "create-user", name, "--email", email, "--password", password]
    )
    assert result.exit_code == 1
    assert message in result.output


def test_create_user_twice_with_other_case_fails(cli_env: dict[str, str]) -> None:
    invoke("migrate")
    assert (
        invoke(
            "admin",
            "create-user",
            "Dup",
            "--email",
            "d1@example.com",
            "--password",
            "long-enough-pw",
        ).exit_code
        == 0
    )
    again = runner.invoke(
        app,
        [
            "admin",
            "create-user",
            "dup",
            "--email",
            "d2@example.com",
            "--password",
            "long-enough-pw",
        ],
    )
    assert again.exit_code == 1
    assert "already taken" in again.output


def test_create_token_for_unknown_user_fails(cli_env: dict[str, str]) -> None:
    invoke("migrate")
    result = runner.invoke(app, ["admin", "create-token", "nobody"])
    assert result.exit_code == 1
    assert result.stdout.strip() == "" or "och_" not in result.stdout


def test_create_token_rejects_unknown_scope(cli_env: dict[str, str]) -> None:
    invoke("migrate")
    invoke(
        "admin", "create-user", "tok", "--email", "t@example.com", "--password", "pw-long-enough"
    )
    result = runner.invoke(app, ["admin", "create-token", "tok", "--scopes", "repo,root"])
    assert result.exit_code == 1
    assert "unknown scope" in result.output


def test_config_show_masks_secrets(cli_env: dict[str, str], monkeypatch) -> None:
    monkeypatch.setenv("OCH_STORAGE_S3_SECRET_KEY", "very-secret-s3")
    config.get_settings.cache_clear()
    result = invoke("config", "show", "--json")
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert shown["secret_key"] == "********"
    assert shown["storage_s3_secret_key"] == "********"
    assert "cli-secret-value" not in result.stdout and "very-secret-s3" not in result.stdout
    assert shown["http_port"] == 4321 and shown["ssh_port"] == 2222


def test_config_show_masks_database_password(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OCH_DATABASE_URL", "postgresql://och:hunter2@db.example:5432/och")
    monkeypatch.setenv("OCH_DATA_DIR", str(tmp_path))
    config.get_settings.cache_clear()
    try:
        result = invoke("config", "show", "--json")
    finally:
        config.get_settings.cache_clear()
    assert "hunter2" not in result.stdout
    assert (
        json.loads(result.stdout)["database_url"] == "postgresql://och:********@db.example:5432/och"
    )


def test_settings_read_toml_file(tmp_path: Path, monkeypatch) -> None:
    toml = tmp_path / "opencodehub.toml"
    toml.write_text("http_port = 5555\nallow_signup = false\n")
    monkeypatch.setenv("OCH_CONFIG_FILE", str(toml))
    monkeypatch.setenv("OCH_SSH_PORT", "2300")
    settings = config.Settings()
    assert settings.http_port == 5555
    assert settings.allow_signup is False
    assert settings.ssh_port == 2300


def test_environment_overrides_toml(tmp_path: Path, monkeypatch) -> None:
    toml = tmp_path / "opencodehub.toml"
    toml.write_text("http_port = 5555\n")
    monkeypatch.setenv("OCH_CONFIG_FILE", str(toml))
    monkeypatch.setenv("OCH_HTTP_PORT", "6000")
    assert config.Settings().http_port == 6000


def test_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = config.Settings(data_dir=tmp_path / "d1")
    first = settings.secret
    config._secret_cache.clear()
    assert config.Settings(data_dir=tmp_path / "d1").secret == first
    assert (tmp_path / "d1" / "secret.key").stat().st_mode & 0o777 == 0o600
    assert config.Settings(data_dir=tmp_path / "d2").secret != first


def test_doctor_reports_each_dependency(cli_env: dict[str, str]) -> None:
    invoke("migrate")
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    for name in ("git", "database", "redis", "storage", "repositories"):
        assert name in result.output


def test_doctor_fails_before_migrations(cli_env: dict[str, str]) -> None:
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert "opencodehub migrate" in result.output


def test_doctor_reports_unreachable_redis(cli_env: dict[str, str], monkeypatch) -> None:
    invoke("migrate")
    monkeypatch.setenv("OCH_REDIS_URL", "redis://127.0.0.1:1/0")
    config.get_settings.cache_clear()
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert "redis" in result.output


def test_worker_refuses_unknown_jobs() -> None:
    result = runner.invoke(app, ["worker", "--job", "no-such-job"])
    assert result.exit_code == 1
    assert "unknown background jobs: no-such-job" in result.output


def test_every_domain_registers_its_background_jobs() -> None:
    from opencodehub.core.background import registered_jobs

    modules = {job.__module__ for job in registered_jobs().values()}
    assert {
        "opencodehub.repos.jobs",
        "opencodehub.issues.jobs",
        "opencodehub.notifications.jobs",
        "opencodehub.pulls.jobs",
        "opencodehub.pulls.review_jobs",
        "opencodehub.actions.jobs",
    } <= modules
