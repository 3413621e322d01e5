"""The SSH port of `opencodehub serve`: open at start, asyncssh loaded by the first client.

Real `ssh-keyscan` connections against the listener; the module-loading check runs in a fresh
interpreter, where nothing else has imported asyncssh yet.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.git import ssh as ssh_module
from opencodehub.git.ssh import host_keys_dir
from opencodehub.git.ssh_listener import SSHListener
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def listener_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'listener.db'}",
        secret_key="test-secret-key-0123456789abcdef",
        ssh_host="127.0.0.1",
        ssh_port=free_port(),
        _env_file=None,
    )


async def keyscan(port: int) -> set[str]:
    process = await asyncio.create_subprocess_exec(
        *("ssh-keyscan", "-T", "20", "-p", str(port), "-t", "ed25519", "127.0.0.1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    stdout, _ = await process.communicate()
    return {" ".join(line.split()[1:3]) for line in stdout.decode().splitlines() if line}


def public_host_key(settings: Settings) -> str:
    text = (host_keys_dir(settings) / "ssh_host_ed25519_key.pub").read_text()
    return " ".join(text.split()[:2])


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_asyncssh_loads_with_the_first_connection(tmp_path: Path) -> None:
    settings = listener_settings(tmp_path)
    script = textwrap.dedent(
        f"""
        import asyncio, json, socket, sys
        from pathlib import Path
        from opencodehub.config import Settings
        from opencodehub.db.engine import Database
        from opencodehub.git.ssh_listener import SSHListener

        async def main():
            settings = Settings(
                data_dir=Path({str(settings.data_dir)!r}),
                database_url={settings.database_url!r},
                secret_key="test-secret-key-0123456789abcdef",
                ssh_host="127.0.0.1",
                ssh_port={settings.ssh_port},
                _env_file=None,
            )
            listener = SSHListener(settings, Database(settings.database_url))
            await listener.start()
            report = {{"idle": "asyncssh" in sys.modules, "loaded_idle": listener.loaded}}
            with socket.create_connection(("127.0.0.1", settings.ssh_port), timeout=5):
                pass  # a port check connects and leaves: it loads the server, nothing breaks
            scan = await asyncio.create_subprocess_exec(
                "ssh-keyscan", "-T", "20", "-p", str(settings.ssh_port), "-t", "ed25519",
                "127.0.0.1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await scan.communicate()
            report["scanned"] = out.decode()
            report["after"] = "asyncssh" in sys.modules
            report["loaded_after"] = listener.loaded
            listener.close()
            await listener.wait_closed()
            print(json.dumps(report))

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["idle"] is False and report["loaded_idle"] is False
    assert report["after"] is True and report["loaded_after"] is True
    scanned = {" ".join(line.split()[1:3]) for line in report["scanned"].splitlines() if line}
    assert scanned == {public_host_key(settings)}
    assert port_is_free(settings.ssh_port)


def test_connections_waiting_while_it_loads_are_all_served(tmp_path: Path) -> None:
    settings = listener_settings(tmp_path)

    async def scenario() -> list[set[str]]:
        listener = SSHListener(settings, Database(settings.database_url))
        await listener.start()
        try:
            # Several clients arrive before the server is up (the first generates the keys).
            return await asyncio.gather(*(keyscan(settings.ssh_port) for _ in range(4)))
        finally:
            listener.close()
            await listener.wait_closed()

    scans = asyncio.run(scenario())
    assert scans == [{public_host_key(settings)}] * 4
    assert port_is_free(settings.ssh_port)


def test_a_failed_load_refuses_the_waiting_client_and_the_next_one_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = listener_settings(tmp_path)
    real = ssh_module.load_or_create_host_keys
    calls = 0

    def fail_once(settings: Settings) -> list[object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise PermissionError("host key directory not readable")
        return real(settings)

    monkeypatch.setattr(ssh_module, "load_or_create_host_keys", fail_once)

    async def scenario() -> tuple[set[str], set[str], bool]:
        listener = SSHListener(settings, Database(settings.database_url))
        await listener.start()
        try:
            first = await keyscan(settings.ssh_port)
            loaded_after_failure = listener.loaded
            second = await keyscan(settings.ssh_port)
            return first, second, loaded_after_failure
        finally:
            listener.close()
            await listener.wait_closed()

    first, second, loaded_after_failure = asyncio.run(scenario())
    assert first == set()  # closed at once, not left hanging
    assert loaded_after_failure is False
    assert second == {public_host_key(settings)}
    assert calls == 2


def test_closing_before_any_connection_frees_the_port(tmp_path: Path) -> None:
    settings = listener_settings(tmp_path)

    async def scenario() -> None:
        listener = SSHListener(settings, Database(settings.database_url))
        await listener.start()
        assert not port_is_free(settings.ssh_port)
        listener.close()
        await listener.wait_closed()

    asyncio.run(scenario())
    assert port_is_free(settings.ssh_port)
    assert not host_keys_dir(settings).exists()  # nothing loaded, nothing generated


def test_the_ssh_role_starts_its_server_at_once(tmp_path: Path) -> None:
    """`opencodehub ssh` exists to serve SSH: it binds and loads the server eagerly."""
    settings = listener_settings(tmp_path)

    async def scenario() -> tuple[bool, set[str]]:
        acceptor = await ssh_module.start_ssh_server(settings, Database(settings.database_url))
        try:
            generated = (host_keys_dir(settings) / "ssh_host_ed25519_key").exists()
            return generated, await keyscan(settings.ssh_port)
        finally:
            acceptor.close()
            await acceptor.wait_closed()

    generated, scanned = asyncio.run(scenario())
    assert generated
    assert scanned == {public_host_key(settings)}
