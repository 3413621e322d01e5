"""A git child process driven from the event loop, spawned cheaply.

`asyncio.create_subprocess_exec` under uvloop (what uvicorn runs on) forks the whole server
process, which costs ~20 ms per spawn once the app's modules are loaded; `subprocess.Popen`
uses vfork and costs well under a millisecond. git's smart HTTP spawns once per request, so the
transports start git with Popen and attach its pipes to the running loop instead. Exit is
awaited through a pidfd (no thread, no SIGCHLD handler of ours), with a thread as fallback on
kernels without pidfd.

Our ends of git's pipes belong to the event loop's transports alone, and are closed when the
process finishes: a descriptor closed twice in a threaded server closes whatever another
thread was given that number in between (`_loop_pipe` says how uvloop would do that).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import subprocess
import weakref
from collections.abc import AsyncIterator, Sequence

CHUNK = 64 * 1024
STDERR_TAIL = 4096
PIPE_SIZE = 1024 * 1024
# Pack-generating git processes (upload-pack, upload-archive) running at once per server
# process; more clients wait for a slot. Each one holds a few MB of its own plus its share of
# the mapped packs, and on a machine with a few cores fifty at once finish no sooner than
# sixteen: the bound keeps fifty concurrent clones of a 50 MB repository within the memory
# of sixteen, as a web server with sixteen CGI workers in front of git http-backend does.
MAX_PACK_PROCESSES = 16


class ProcessLimiter:
    """At most `limit` holders of `slot()` at once in each event loop (tests run several)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self._semaphores: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore
        ] = weakref.WeakKeyDictionary()

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self.limit)
        return semaphore

    async def acquire(self) -> None:
        await self._semaphore().acquire()
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)

    def release(self) -> None:
        self.in_use -= 1
        self._semaphore().release()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


PACK_PROCESSES = ProcessLimiter(MAX_PACK_PROCESSES)


class _WriterProtocol(asyncio.streams.FlowControlMixin):
    """Flow control for git's stdin: `drain()` waits while the pipe is full."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        super().connection_lost(exc)

    async def drain(self) -> None:
        await self._drain_helper()


def _loop_pipe(loop: asyncio.AbstractEventLoop, fd: int, mode: str) -> io.FileIO:
    """Our end of a pipe to git, as the file object `connect_*_pipe` takes, for a transport
    that becomes the end's only owner.

    The standard loop's pipe transports close the file object when they end, so it must close
    the descriptor. uvloop's instead have libuv close the descriptor and then close the file
    object as well: a second close(2) of a number that another thread may have been given in
    between (a database connection, a new pipe), which then fails on EBADF, or worse, reads
    another file. So under uvloop the file object must leave the descriptor alone.
    """
    return io.FileIO(fd, mode, closefd=not type(loop).__module__.startswith("uvloop"))


class GitProcess:
    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        stdin: tuple[asyncio.WriteTransport, _WriterProtocol] | None,
        transports: list[asyncio.BaseTransport],
    ) -> None:
        self.popen = popen
        self._transports = transports
        self.stdout = stdout
        self._stderr = stderr
        self._stdin = stdin
        self.stderr_tail = b""
        # stderr is drained all along, so git never stalls on a full stderr pipe.
        self._stderr_task = asyncio.create_task(self._drain_stderr())

    @classmethod
    async def start(
        cls, argv: Sequence[str], env: dict[str, str], *, stdin: bool, limit: int = 4 * CHUNK
    ) -> GitProcess:
        loop = asyncio.get_running_loop()
        # Our ends of git's pipes, made here rather than by Popen: the event loop must be their
        # only owner (see `_loop_pipe`). os.pipe() ends are close-on-exec, so git inherits only
        # what Popen puts on its 0, 1 and 2.
        ours: list[int] = []
        theirs: list[int] = []
        try:
            for _ in range(3 if stdin else 2):
                read_end, write_end = os.pipe()
                ours.append(read_end)
                theirs.append(write_end)
            if stdin:
                # git reads stdin from the read end; we keep the write end.
                ours[2], theirs[2] = theirs[2], ours[2]
            popen = subprocess.Popen(
                list(argv),
                stdin=theirs[2] if stdin else subprocess.DEVNULL,
                stdout=theirs[0],
                stderr=theirs[1],
                env=env,
                close_fds=True,
            )
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        transports: list[asyncio.BaseTransport] = []
        handed = 0  # ends given to the loop: from then on, closing them is the loop's job
        try:
            # A larger pipe lets git run further ahead of the client between our reads: fewer
            # wake-ups on both sides of a pack stream.
            with contextlib.suppress(OSError, AttributeError):
                fcntl.fcntl(ours[0], fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            stdout = asyncio.StreamReader(limit=limit)
            handed += 1
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(stdout), _loop_pipe(loop, ours[0], "rb")
            )
            transports.append(transport)
            stderr = asyncio.StreamReader(limit=limit)
            handed += 1
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(stderr), _loop_pipe(loop, ours[1], "rb")
            )
            transports.append(transport)
            writer = None
            if stdin:
                handed += 1
                write_transport, protocol = await loop.connect_write_pipe(
                    _WriterProtocol, _loop_pipe(loop, ours[2], "wb")
                )
                transports.append(write_transport)
                writer = (write_transport, protocol)
        except BaseException:
            popen.kill()
            popen.wait()
            for transport in transports:
                transport.close()
            for fd in ours[handed:]:
                os.close(fd)
            raise
        return cls(popen, stdout, stderr, writer, transports)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    async def write(self, data: bytes) -> None:
        """Write to git's stdin; BrokenPipeError once git stopped reading."""
        if self._stdin is None:
            raise BrokenPipeError("stdin is not a pipe")
        transport, protocol = self._stdin
        if transport.is_closing() or protocol.lost:
            raise BrokenPipeError("git closed its input")
        transport.write(data)
        try:
            await protocol.drain()
        except ConnectionResetError as exc:
            raise BrokenPipeError("git closed its input") from exc

    def close_stdin(self) -> None:
        if self._stdin is not None and not self._stdin[0].is_closing():
            self._stdin[0].close()

    async def _drain_stderr(self) -> None:
        while chunk := await self._stderr.read(CHUNK):
            self.stderr_tail = (self.stderr_tail + chunk)[-STDERR_TAIL:]

    async def wait(self) -> int:
        if self.popen.returncode is not None:
            return self.popen.returncode
        try:
            pidfd = os.pidfd_open(self.popen.pid)
        except (AttributeError, OSError):
            return await asyncio.to_thread(self.popen.wait)
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return self.popen.wait()

    def kill(self) -> None:
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()

    async def finish(self, *, kill: bool, timeout: float = 60) -> int:
        """Wait for git to exit, or kill it first when the exchange ended early."""
        if kill:
            self.kill()
        self.close_stdin()
        try:
            returncode = await asyncio.wait_for(self.wait(), timeout)
            await asyncio.wait_for(self._stderr_task, 5)
        except (TimeoutError, asyncio.CancelledError):
            self.kill()
            self._stderr_task.cancel()
            # Reap the child: it has been killed, so this returns at once.
            await asyncio.to_thread(self.popen.wait)
            raise
        finally:
            self.close()
        return returncode

    def close(self) -> None:
        """End our side of git's pipes now, rather than when the transports are collected:
        a transport left to the garbage collector is closed on whatever thread collects it."""
        for transport in self._transports:
            transport.close()
