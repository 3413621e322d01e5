"""A pre-forking supervisor: the parent builds what every child shares, then forks the children.

`opencodehub serve` with `OCH_WORKERS` > 1 imports and builds the app once and forks its HTTP
workers (and the SSH server) from that parent. Each child serves as soon as it is forked,
instead of importing and building the app again while its siblings do the same on the same
cores, and the children share the parent's memory pages until they write to them. A child that
dies is forked again from the same parent (a replacement serves at once too); SIGTERM or SIGINT
stops them all, gracefully, within `STOP_TIMEOUT_SECONDS`.

Forking is only safe before any thread starts: a child gets a copy of the parent's memory but
only the forking thread, so a lock another thread held would stay locked in the child for
ever. `Supervisor.run` refuses to fork a process that runs threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

from opencodehub.core.logging import get_logger

log = get_logger("opencodehub.supervisor")

# A child that dies sooner than this after its fork is forked again only after this pause, so
# one that cannot start (its database unreachable, say) does not spin a core.
RESTART_PAUSE_SECONDS = 1.0
# Children still running this long after a stop was asked for are killed.
STOP_TIMEOUT_SECONDS = 30.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stop_with_parent(parent_pid: int) -> None:
    """Have the kernel send this child SIGTERM when the supervisor dies, however it dies (a
    SIGKILL runs no handler): otherwise its workers would live on as orphans holding the port."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the supervisor died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass(frozen=True)
class Role:
    """What `count` children do: `run` is called in each child, and returns its exit status."""

    name: str
    run: Callable[[], int]
    count: int = 1


@dataclass
class _Child:
    role: Role
    forked_at: float


class Supervisor:
    def __init__(self, roles: list[Role]) -> None:
        self.roles = roles
        self.parent_pid = os.getpid()
        self.children: dict[int, _Child] = {}
        self.stopping = False

    def run(self) -> int:
        """Fork every role's children, fork again any that dies, and return 0 once a stop
        signal has ended them all."""
        if threading.active_count() > 1:
            names = ", ".join(thread.name for thread in threading.enumerate())
            raise RuntimeError(f"cannot fork workers from a process running threads: {names}")
        handlers = {number: signal.signal(number, self._stop) for number in STOP_SIGNALS}
        alarm = signal.signal(signal.SIGALRM, self._kill_all)
        try:
            for role in self.roles:
                for _ in range(role.count):
                    self._fork(role)
            while self.children:
                try:
                    pid, status = os.wait()
                except ChildProcessError:
                    break
                self._reaped(pid, status)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, alarm)
            for number, handler in handlers.items():
                signal.signal(number, handler)
        return 0

    def _fork(self, role: Role) -> None:
        # Stop signals wait until the child has put its own handlers in place: the parent's
        # handler, run in a child, would signal the child's siblings.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._become_child(role)
            self.children[pid] = _Child(role, time.monotonic())
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        log.info("worker started", role=role.name, pid=pid)

    def _become_child(self, role: Role) -> NoReturn:
        status = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            _stop_with_parent(self.parent_pid)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            status = role.run()
        except KeyboardInterrupt:
            status = 0
        except BaseException:
            log.exception("worker failed", role=role.name)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

    def _reaped(self, pid: int, status: int) -> None:
        child = self.children.pop(pid, None)
        if child is None:
            return
        code = os.waitstatus_to_exitcode(status)
        if self.stopping:
            log.info("worker stopped", role=child.role.name, pid=pid, status=code)
            return
        log.warning("worker exited; forking another", role=child.role.name, pid=pid, status=code)
        if time.monotonic() - child.forked_at < RESTART_PAUSE_SECONDS:
            time.sleep(RESTART_PAUSE_SECONDS)
        if not self.stopping:
            self._fork(child.role)

    def _stop(self, number: int, frame: FrameType | None) -> None:
        if self.stopping:
            # A second Ctrl-C (or SIGTERM) does not wait for the graceful stop.
            self._kill_all(number, frame)
            return
        self.stopping = True
        log.info("stopping workers", signal=signal.Signals(number).name)
        self._signal_all(signal.SIGTERM)
        signal.alarm(int(STOP_TIMEOUT_SECONDS))

    def _kill_all(self, number: int, frame: FrameType | None) -> None:
        self._signal_all(signal.SIGKILL)

    def _signal_all(self, number: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)
