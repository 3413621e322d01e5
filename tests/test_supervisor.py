"""The pre-forking supervisor: children forked, replaced when they die, stopped on a signal.

Forking the test runner itself would copy its threads' state, so each test that forks runs a
small supervisor script in a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opencodehub.supervisor import Role, Supervisor
from tests.conftest import wait_for

SCRIPT = """
import os, sys, time
from pathlib import Path

from opencodehub import supervisor
from opencodehub.supervisor import Role, Supervisor
from tests.conftest import wait_for

supervisor.RESTART_PAUSE_SECONDS = 0.3
out = Path(sys.argv[1])


def record(name):
    with open(out / name, "a") as file:
        file.write(f"{os.getpid()}\\n")


def steady():
    record("steady")
    while True:
        time.sleep(1)


def failing():
    record("failing")
    return 3


roles = [Role("steady", steady, count=2)]
if "--with-failing" in sys.argv:
    roles.append(Role("failing", failing))
print("exit", Supervisor(roles).run(), flush=True)
"""


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "X"


@pytest.fixture
def run_supervisor(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*flags: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(tmp_path), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
    for pid in _lines(tmp_path / "steady"):
        if _alive(int(pid)):
            os.kill(int(pid), signal.SIGKILL)


def test_a_child_that_dies_is_forked_again_and_a_stop_ends_them_all(
    tmp_path: Path, run_supervisor: Callable[..., subprocess.Popen[str]]
) -> None:
    process = run_supervisor()
    wait_for(lambda: len(_lines(tmp_path / "steady")) == 2)
    first, second = (int(pid) for pid in _lines(tmp_path / "steady"))

    os.kill(first, signal.SIGKILL)
    wait_for(lambda: len(_lines(tmp_path / "steady")) == 3)
    replacement = int(_lines(tmp_path / "steady")[2])
    assert replacement not in (first, second)
    assert _alive(second) and _alive(replacement)

    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    assert stdout.splitlines()[-1] == "exit 0"
    assert not _alive(second) and not _alive(replacement)


def test_a_child_that_cannot_start_is_retried_after_a_pause(
    tmp_path: Path, run_supervisor: Callable[..., subprocess.Popen[str]]
) -> None:
    process = run_supervisor("--with-failing")
    wait_for(lambda: len(_lines(tmp_path / "steady")) == 2)
    time.sleep(1.5)
    attempts = len(_lines(tmp_path / "failing"))
    # One attempt at once, then one per 0.3 s pause at most: a failing child does not spin.
    assert 2 <= attempts <= 7, attempts
    assert len(_lines(tmp_path / "steady")) == 2  # its siblings were left alone

    process.send_signal(signal.SIGINT)
    process.communicate(timeout=15)
    assert process.returncode == 0


def test_the_children_stop_when_the_supervisor_is_killed(
    tmp_path: Path, run_supervisor: Callable[..., subprocess.Popen[str]]
) -> None:
    process = run_supervisor()
    wait_for(lambda: len(_lines(tmp_path / "steady")) == 2)
    children = [int(pid) for pid in _lines(tmp_path / "steady")]

    process.kill()  # SIGKILL: no handler of the supervisor's runs
    process.wait()
    wait_for(lambda: not any(_alive(pid) for pid in children), "the orphaned children to stop")


def test_it_refuses_to_fork_a_process_that_runs_threads() -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait, name="busy-helper")
    thread.start()
    try:
        with pytest.raises(RuntimeError, match="busy-helper"):
            Supervisor([Role("never", lambda: 0)]).run()
    finally:
        release.set()
        thread.join()
