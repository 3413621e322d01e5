"""The server process: its event loop and its migration."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from opencodehub import serve
from opencodehub.config import Settings
from opencodehub.db import migrate as migrations
from opencodehub.db.engine import Database
from tests.conftest import free_port, wait_for


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_server_runs_on_uvloop_when_installed() -> None:
    assert serve.run_event_loop(_loop_module()).startswith("uvloop")


def test_without_uvloop_the_server_runs_on_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert serve.run_event_loop(_loop_module()).startswith("asyncio")


def test_the_migration_runs_in_a_process_of_its_own(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)
    settings.data_dir.mkdir()
    migration = serve.start_migration(settings)
    serve.finish_migration(migration)
    database = Database(settings.effective_database_url)
    try:
        assert migrations.is_up_to_date(database)
    finally:
        database.dispose()


def test_a_failed_migration_stops_the_server(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url="postgresql://nobody@127.0.0.1:1/unreachable",  # nothing listens on port 1
        _env_file=None,
    )
    migration = serve.start_migration(settings)
    with pytest.raises(SystemExit, match="could not be migrated"):
        serve.finish_migration(migration)


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _ssh_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            return connection.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def test_several_workers_are_forked_from_one_built_app_and_replaced_when_one_dies(
    tmp_path: Path,
) -> None:
    http_port, ssh_port = free_port(), free_port()
    env = {
        **os.environ,
        "OCH_DATA_DIR": str(tmp_path / "data"),
        "OCH_HTTP_PORT": str(http_port),
        "OCH_SSH_PORT": str(ssh_port),
        "OCH_WORKERS": "2",
    }
    env.pop("OCH_DATABASE_URL", None)
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "opencodehub", "serve"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_for(lambda: _ready(url) and len(_children(server.pid)) == 3, "three workers", 60)
        # Two HTTP workers and the SSH server, all forked from the parent: no new interpreter
        # started them (its command line would differ), so none imported the app again.
        first, *_ = children = _children(server.pid)
        command = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert all(Path(f"/proc/{child}/cmdline").read_bytes() == command for child in children)
        # The SSH server makes its host keys on its first start.
        wait_for(lambda: _ssh_answers(ssh_port), "the SSH server", 60)
        assert {httpx.get(url + "/healthz", timeout=5).status_code for _ in range(20)} == {200}

        os.kill(first, signal.SIGKILL)
        wait_for(
            lambda: first not in _children(server.pid) and len(_children(server.pid)) == 3,
            "a replacement worker",
        )
        assert _ready(url)

        server.send_signal(signal.SIGTERM)
        server.wait(timeout=40)
        output = log.read_text()
        assert server.returncode == 0, output
        assert "worker exited; forking another" in output
        assert not any(Path(f"/proc/{child}").exists() for child in children[1:])
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)  # the workers too, whatever happened above
            server.wait()
