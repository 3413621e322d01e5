"""Server-side hooks: provisioning, tokens, and the internal channel they call."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pygit2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.git import commands, hooks
from opencodehub.repos import store
from opencodehub.repos.models import ProtectedBranch, PushRecord
from tests.git.gitutil import create_repo

ZERO = "0" * 40


def _payload(updates: list[tuple[str, str, str]], **extra: object) -> dict[str, object]:
    return {
        "updates": [{"old_sha": o, "new_sha": n, "ref": r} for o, n, r in updates],
        **extra,
    }


# Tokens ----------------------------------------------------------------------------------------


def test_token_round_trip_and_binding(settings: Settings) -> None:
    token = hooks.issue_hook_token(settings, 42, 7)
    grant = hooks.verify_hook_token(settings, token)
    assert (grant.repository_id, grant.pusher_id) == (42, 7)
    anonymous_pusher = hooks.verify_hook_token(settings, hooks.issue_hook_token(settings, 42, None))
    assert anonymous_pusher.pusher_id is None

    repository, pusher, expires, signature = token.split(".")
    for forged in (
        f"43.{pusher}.{expires}.{signature}",  # another repository
        f"{repository}.8.{expires}.{signature}",  # another pusher
        f"{repository}.{pusher}.{int(expires) + 3600}.{signature}",  # a longer life
        f"{repository}.{pusher}.{expires}.{signature[:-2]}AA",
        f"{repository}.{pusher}.{expires}",
        "",
        "x" * 300,
        "-1.7.99999999999.abc",
        f"{repository}.{pusher}.{expires}.{signature}.extra",
    ):
        with pytest.raises(ValueError):
            hooks.verify_hook_token(settings, forged)


def test_token_expires_and_depends_on_the_secret(settings: Settings) -> None:
    old = hooks.issue_hook_token(settings, 1, 1, now=time.time() - hooks.TOKEN_TTL_SECONDS - 5)
    with pytest.raises(ValueError, match="expired"):
        hooks.verify_hook_token(settings, old)
    other = settings.model_copy(update={"secret_key": type(settings.secret_key)("another")})
    with pytest.raises(ValueError, match="signature"):
        hooks.verify_hook_token(other, hooks.issue_hook_token(settings, 1, 1))


# Provisioning ----------------------------------------------------------------------------------


def test_hooks_are_provisioned_idempotently(settings: Settings) -> None:
    directory = hooks.ensure_hooks(settings)
    assert directory == settings.data_dir / "hooks"
    for name in hooks.HOOK_NAMES:
        script = directory / name
        assert os.access(script, os.X_OK)
        assert script.read_text().startswith("#!")
    mtime = (directory / "pre-receive").stat().st_mtime_ns
    hooks.ensure_hooks(settings)
    assert (directory / "pre-receive").stat().st_mtime_ns == mtime
    # A tampered or deleted hook is restored.
    (directory / "pre-receive").write_text("#!/bin/sh\nexit 0\n")
    (directory / "post-receive").unlink()
    hooks._provisioned.clear()
    hooks.ensure_hooks(settings)
    assert "opencodehub" in (directory / "pre-receive").read_text()
    assert (directory / "post-receive").exists()
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]


def test_hook_without_server_environment_refuses(settings: Settings) -> None:
    script = hooks.ensure_hooks(settings) / "pre-receive"
    result = subprocess.run(
        [str(script)],
        input=f"{ZERO} {'1' * 40} refs/heads/main\n".encode(),
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 1
    assert b"only accepts pushes through the server" in result.stderr


def test_service_argv_and_env(
    settings: Settings, db: Database, make_user: Callable[..., User]
) -> None:
    repo = create_repo(db, settings, make_user("alice"), "cmd")
    path = store.repository_path(settings, repo.id)
    argv = commands.service_argv(
        settings, "git-upload-pack", path, stateless_rpc=True, advertise_refs=True
    )
    assert argv == [
        "git",
        "-c",
        f"core.hooksPath={settings.data_dir / 'hooks'}",
        "upload-pack",
        "--stateless-rpc",
        "--advertise-refs",
        "--strict",
        str(path),
    ]
    assert commands.service_argv(settings, "git-receive-pack", path, stateless_rpc=False)[-2:] == [
        "receive-pack",
        str(path),
    ]
    assert commands.service_argv(settings, "git-upload-archive", path, stateless_rpc=False)[
        -2:
    ] == [
        "upload-archive",
        str(path),
    ]
    for bad in ("git-upload-archive", "--upload-pack=sh", "git-shell", ""):
        with pytest.raises(ValueError):
            commands.service_argv(settings, bad, path, stateless_rpc=True)
    from opencodehub.accounts.actor import Actor

    with db.session() as session:
        repository = session.get(type(repo), repo.id)
        actor = Actor(user=session.get(User, repo.owner_id), method="password")
        env = commands.service_env(
            settings, repository, actor, git_protocol="version=2", transport="ssh"
        )
        bad = commands.service_env(
            settings, repository, actor, git_protocol="version=2\nx", transport="http"
        )
    assert env["GIT_PROTOCOL"] == "version=2"
    assert "GIT_PROTOCOL" not in bad
    assert env["OCH_TRANSPORT"] == "ssh"
    assert env["OCH_REPOSITORY_ID"] == str(repo.id)
    assert env["OCH_INTERNAL_URL"] == settings.effective_internal_url
    grant = hooks.verify_hook_token(settings, env["OCH_HOOK_TOKEN"])
    assert (grant.repository_id, grant.pusher_id) == (repo.id, repo.owner_id)
    assert env["GIT_CONFIG_NOSYSTEM"] == "1"


# The internal channel --------------------------------------------------------------------------


@pytest.fixture
def seeded(db: Database, settings: Settings, make_user: Callable[..., User]):
    alice = make_user("alice")
    repo = create_repo(db, settings, alice, "hooked", auto_init=True)
    git_repo = store.open_repository(settings, repo.id)
    head = str(git_repo.head.target)
    return repo, alice, git_repo, head


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer nonsense",
        "Basic YWxpY2U6cGFzcw==",
        "token abc",
        "Bearer 1.1.1.x",
    ],
)
def test_internal_channel_refuses_without_a_valid_token(
    client: TestClient, seeded, authorization: str | None
) -> None:
    _repo, _alice, _git_repo, head = seeded
    headers = {"Authorization": authorization} if authorization is not None else {}
    for hook in ("pre-receive", "post-receive"):
        response = client.post(
            f"/internal/git/hooks/{hook}",
            json=_payload([(head, ZERO, "refs/heads/main")]),
            headers=headers,
        )
        assert response.status_code == 401
        assert response.json() == {"ok": False, "message": "invalid or expired hook token"}


def test_internal_channel_refuses_expired_and_foreign_tokens(
    client: TestClient, settings: Settings, db: Database, seeded
) -> None:
    repo, alice, _git_repo, head = seeded
    expired = hooks.issue_hook_token(settings, repo.id, alice.id, now=time.time() - 10**6)
    other = settings.model_copy(update={"secret_key": type(settings.secret_key)("not-the-key")})
    foreign = hooks.issue_hook_token(other, repo.id, alice.id)
    for token in (expired, foreign):
        response = client.post(
            "/internal/git/hooks/post-receive",
            json=_payload([(head, ZERO, "refs/heads/main")]),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401
    with db.session() as session:
        assert session.scalars(select(PushRecord)).all() == []
    # A token for a repository that does not exist decides nothing either.
    ghost = hooks.issue_hook_token(settings, repo.id + 1000, alice.id)
    response = client.post(
        "/internal/git/hooks/pre-receive",
        json=_payload([]),
        headers={"Authorization": f"Bearer {ghost}"},
    )
    assert response.status_code == 404


def test_internal_channel_validates_the_request(
    client: TestClient, settings: Settings, seeded
) -> None:
    repo, alice, _git_repo, head = seeded
    auth = {"Authorization": f"Bearer {hooks.issue_hook_token(settings, repo.id, alice.id)}"}
    bad_bodies: list[object] = [
        "not json",
        {"updates": [{"old_sha": "xyz", "new_sha": head, "ref": "refs/heads/main"}]},
        {"updates": [{"old_sha": head, "new_sha": head, "ref": "refs/heads/ma\x00in"}]},
        {"updates": [{"old_sha": head, "new_sha": head, "ref": "HEAD"}]},
        {"updates": [{"old_sha": head, "new_sha": head, "ref": "refs/heads/a..b"}]},
        {"updates": "nope"},
    ]
    for body in bad_bodies:
        kwargs = {"content": body} if isinstance(body, str) else {"json": body}
        response = client.post("/internal/git/hooks/pre-receive", headers=auth, **kwargs)
        assert response.status_code == 400, body
        assert response.json()["ok"] is False
    # The quarantine must be the repository's own.
    for path in ("/tmp", str(store.repository_path(settings, repo.id) / "objects"), "../../etc"):
        response = client.post(
            "/internal/git/hooks/pre-receive",
            headers=auth,
            json=_payload([(head, ZERO, "refs/heads/feature")], quarantine_path=path),
        )
        assert response.status_code == 400
    assert (
        client.post("/internal/git/hooks/update", headers=auth, json=_payload([])).status_code
        == 422
    )


def test_pre_receive_decides_with_the_policy(
    client: TestClient, settings: Settings, db: Database, seeded
) -> None:
    repo, alice, git_repo, head = seeded
    with db.session() as session:
        session.add(ProtectedBranch(repository_id=repo.id, pattern="main"))
    signature = pygit2.Signature("T", "t@example.com")
    tree = git_repo[head].peel(pygit2.Commit).tree.id
    unrelated = str(git_repo.create_commit(None, signature, signature, "rewrite", tree, []))
    auth = {"Authorization": f"Bearer {hooks.issue_hook_token(settings, repo.id, alice.id)}"}

    forced = client.post(
        "/internal/git/hooks/pre-receive",
        headers=auth,
        json=_payload([(head, unrelated, "refs/heads/main")]),
    )
    assert forced.status_code == 403
    assert forced.json() == {
        "ok": False,
        "message": "Protected branch update failed for refs/heads/main: "
        "cannot force-push to a protected branch.",
    }
    allowed = client.post(
        "/internal/git/hooks/pre-receive",
        headers=auth,
        json=_payload([(ZERO, unrelated, "refs/heads/other")]),
    )
    assert allowed.json() == {"ok": True, "message": ""}


def test_post_receive_records_the_push(
    client: TestClient, settings: Settings, db: Database, seeded
) -> None:
    repo, alice, git_repo, head = seeded
    git_repo.references.create("refs/heads/feature", head)
    auth = {"Authorization": f"Bearer {hooks.issue_hook_token(settings, repo.id, alice.id)}"}
    response = client.post(
        "/internal/git/hooks/post-receive",
        headers=auth,
        json=_payload([(ZERO, head, "refs/heads/feature")], push_options=["ci.skip"]),
    )
    assert response.json() == {"ok": True, "message": ""}
    with db.session() as session:
        records = session.scalars(select(PushRecord)).all()
        assert [(r.ref, r.pusher_id, r.new_sha) for r in records] == [
            ("refs/heads/feature", alice.id, head)
        ]


def test_hook_script_reports_an_unreachable_server(settings: Settings, tmp_path: Path) -> None:
    script = hooks.ensure_hooks(settings) / "pre-receive"
    env = {
        "PATH": os.environ["PATH"],
        "OCH_HOOK_TOKEN": hooks.issue_hook_token(settings, 1, 1),
        "OCH_INTERNAL_URL": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [str(script)], input=b"", env=env, capture_output=True, check=False, timeout=30
    )
    assert result.returncode == 1
    assert b"could not be reached" in result.stderr
    env["OCH_INTERNAL_URL"] = "file:///etc/passwd"
    result = subprocess.run(
        [str(script)], input=b"", env=env, capture_output=True, check=False, timeout=30
    )
    assert result.returncode == 1
    assert b"must be http" in result.stderr


def test_app_start_provisions_the_hooks(client: TestClient, settings: Settings) -> None:
    client.get("/healthz")
    for name in hooks.HOOK_NAMES:
        assert os.access(settings.data_dir / "hooks" / name, os.X_OK)


def _hook_module() -> ModuleType:
    path = Path(hooks.__file__).parent / "hooks" / "hook.py"
    spec = importlib.util.spec_from_file_location("och_hook_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hook_script_parses_internal_urls_and_answers() -> None:
    hook = _hook_module()
    assert hook.split_url("http://127.0.0.1:8000") == ("http", "127.0.0.1", 8000, "")
    assert hook.split_url("https://och.example/prefix/") == ("https", "och.example", 443, "/prefix")
    assert hook.split_url("http://[::1]:9/x") == ("http", "::1", 9, "/x")
    for bad in ("file:///etc/passwd", "http://", "http://user@host", "http://h:port", "h:80"):
        with pytest.raises(hook.HookError):
            hook.split_url(bad)
    assert hook.read_chunked(b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n") == b"hello world"
    # Only the standard library's small modules: no urllib, http.client or ssl for http URLs.
    assert "urllib" not in hook.__dict__ and "ssl" not in hook.__dict__
