"""Run a job's processes directly on the runner's host, each step in its own process group."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opencodehub.runner.executors.base import (
    ExecutorOptions,
    JobEnvironment,
    OutputCallback,
    pump_process,
)


def runner_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "X64", "amd64": "X64", "aarch64": "ARM64", "arm64": "ARM64"}.get(
        machine, "X86" if machine in ("i386", "i686") else machine.upper()
    )


class HostExecutor:
    name = "host"
    os_name = "Linux"

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        self.options = options or ExecutorOptions()
        self.arch = runner_arch()
        self._groups: set[int] = set()
        self._lock = threading.Lock()

    def start(self, env: JobEnvironment) -> None:
        self.workdir = env.workdir
        if env.container:
            env.log("This runner runs jobs on the host; the job's 'container' is ignored.")

    def path(self, host_path: Path) -> str:
        return str(host_path)

    def which(self, program: str, env: dict[str, str]) -> str | None:
        return shutil.which(program, path=env.get("PATH", os.environ.get("PATH")))

    def command(self, argv: Sequence[str], env: dict[str, str], cwd: str) -> list[str]:
        return list(argv)

    def preexec(self) -> Callable[[], None] | None:
        return None

    def popen_user(self) -> dict[str, Any]:
        return {}

    def run(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: str,
        on_output: OutputCallback,
        cancel: threading.Event,
        timeout: float | None = None,
    ) -> int:
        try:
            proc = subprocess.Popen(
                self.command(argv, env, cwd),
                env=env,
                cwd=cwd if self.name == "host" else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self.preexec(),
            )
        except OSError as exc:
            on_output(f"##[error]cannot start {argv[0]}: {exc.strerror or exc}")
            return 127
        with self._lock:
            self._groups.add(proc.pid)

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

        return pump_process(proc, on_output, cancel, timeout, kill)

    def stop(self) -> None:
        # Background processes a step left behind end with the job.
        with self._lock:
            groups, self._groups = self._groups, set()
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


def limit_resources(max_procs: int | None, max_file_bytes: int | None) -> Callable[[], None]:
    def apply() -> None:
        if max_procs:
            resource.setrlimit(resource.RLIMIT_NPROC, (max_procs, max_procs))
        if max_file_bytes:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return apply
