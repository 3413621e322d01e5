"""git child processes driven from the event loop (git/process.py)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop

from opencodehub.git.process import GitProcess

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def _run(loop_name: str, main: Callable[[], object]) -> object:
    loop = LOOPS[loop_name]()
    try:
        return loop.run_until_complete(main())  # type: ignore[arg-type]
    finally:
        loop.close()


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_git_process_streams_its_output_and_exit_status(loop_name: str) -> None:
    async def main() -> tuple[bytes, int, bytes]:
        git = await GitProcess.start(
            ["git", "hash-object", "--stdin"], dict(os.environ), stdin=True
        )
        await git.write(b"hello\n")
        git.close_stdin()
        out = await git.stdout.read()
        return out, await git.finish(kill=False), git.stderr_tail

    out, status, stderr = _run(loop_name, main)  # type: ignore[misc]
    assert (out, status, stderr) == (b"ce013625030ba8dba906f756967f9e9ca394464a\n", 0, b"")


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_each_pipe_is_closed_once_even_while_other_threads_open_files(
    loop_name: str, tmp_path: Path
) -> None:
    """A pipe closed twice closes whatever another thread was given that number in between (a
    database connection, a new pipe): the loop must be the one owner of our ends. A thread
    keeps opening a file and checking its descriptor is still its own while git processes come
    and go on the loop."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    expected = probe.stat().st_ino
    stop = threading.Event()
    stolen: list[str] = []

    def hold_descriptors() -> None:
        while not stop.is_set():
            fds = [os.open(probe, os.O_RDONLY) for _ in range(8)]
            for fd in fds:
                try:
                    if os.fstat(fd).st_ino != expected:
                        stolen.append(f"descriptor {fd} became another file")
                except OSError as exc:
                    stolen.append(f"descriptor {fd}: {exc}")
            for fd in fds:
                try:
                    os.close(fd)
                except OSError as exc:
                    stolen.append(f"closing {fd}: {exc}")

    async def main() -> None:
        for _ in range(150):
            git = await GitProcess.start(["git", "--version"], dict(os.environ), stdin=True)
            assert (await git.stdout.read()).startswith(b"git version")
            assert await git.finish(kill=False) == 0

    holder = threading.Thread(target=hold_descriptors)
    holder.start()
    try:
        _run(loop_name, main)
    finally:
        stop.set()
        holder.join()
    assert stolen == []
