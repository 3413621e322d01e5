"""`opencodehub admin runner-token`: tokens from the operator's command line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from opencodehub.actions import admin_cli, runners
from opencodehub.actions.models import RunnerScope
from tests.actions.conftest import Project


def test_runner_token_for_a_repository_registers_a_repository_runner(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_cli, "get_settings", lambda: project.settings)
    cli = CliRunner()
    result = cli.invoke(admin_cli.app, ["--repo", "octo/demo"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    with project.db.session() as session:
        runner, _ = runners.register_runner(session, token, "cli", ["x"])
        assert (runner.scope, runner.repository_id) == (RunnerScope.REPOSITORY, project.repo.id)
    missing = cli.invoke(admin_cli.app, ["--repo", "octo/nope"])
    assert missing.exit_code == 1
    instance = cli.invoke(admin_cli.app, [])
    with project.db.session() as session:
        runner, _ = runners.register_runner(session, instance.stdout.strip(), "all", [])
        assert runner.scope == RunnerScope.INSTANCE
