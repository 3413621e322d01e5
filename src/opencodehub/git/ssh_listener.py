"""The SSH port of `opencodehub serve`: bound at start, served by asyncssh from the first client on.

A server nobody reaches over SSH need not hold asyncssh, its cryptography and the host keys (about
15 MB resident, an eighth of an idle app server). The port is bound when the server starts, so
clients and port checks find it open at once; the first connection loads the SSH server
(`git/ssh.py`) and hands it the listening sockets. Connections that arrive while it loads wait
in the listen backlog and are served as soon as it is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
from typing import TYPE_CHECKING, Any

from opencodehub.config import Settings
from opencodehub.core.logging import get_logger
from opencodehub.db.engine import Database

if TYPE_CHECKING:
    import asyncssh

log = get_logger("opencodehub.git.ssh")

BACKLOG = 100


def bind_listening_sockets(host: str, port: int) -> list[socket.socket]:
    """One listening, non-blocking socket per address `host` resolves to (as asyncio binds)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # Each family gets its own socket, as asyncio's create_server does.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class SSHListener:
    """Listens on settings.ssh_host:settings.ssh_port and starts the SSH server on demand."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self._sockets: list[socket.socket] = []
        self._acceptors: list[asyncssh.SSHAcceptor] = []
        self._loading: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loaded(self) -> bool:
        return bool(self._acceptors)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sockets = bind_listening_sockets(self.settings.ssh_host, self.settings.ssh_port)
        self._watch()
        log.info("ssh port open", host=self.settings.ssh_host, port=self.settings.ssh_port)

    def _watch(self) -> None:
        assert self._loop is not None
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._on_first_connection)

    def _unwatch(self) -> None:
        assert self._loop is not None
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())

    def _on_first_connection(self) -> None:
        if self._loading is not None:
            return
        self._unwatch()
        self._loading = asyncio.create_task(self._load(), name="ssh-server-load")

    async def _load(self) -> None:
        try:
            # Importing asyncssh and reading (or generating) the host keys take a moment of
            # CPU; off the loop, HTTP requests are not held up by them.
            ssh: Any = await asyncio.to_thread(importlib.import_module, "opencodehub.git.ssh")
            for sock in self._sockets:
                self._acceptors.append(
                    await ssh.start_ssh_server(self.settings, self.database, sock=sock)
                )
        except Exception:
            log.exception("the ssh server could not start; refusing the waiting connection")
            self._refuse_pending()
            self._loading = None
            if not self._closed.is_set():
                self._watch()

    def _refuse_pending(self) -> None:
        """Close what waits in the backlog, so a client that cannot be served learns it now."""
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                while True:
                    connection, _address = sock.accept()
                    connection.close()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        if self._loop is None:
            return
        if self._loading is None:
            self._unwatch()
        for acceptor in self._acceptors:
            acceptor.close()
        for sock in self._sockets:
            sock.close()  # idempotent: those an acceptor served are closed already

    async def wait_closed(self) -> None:
        await self._closed.wait()
        if self._loading is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loading
        for acceptor in self._acceptors:
            await acceptor.wait_closed()
