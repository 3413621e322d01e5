"""The executor interface the job engine drives, and the factory from a runner label value."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

OutputCallback = Callable[[str], None]


class ExecutorError(Exception):
    """The executor could not set up, run or tear down (not a failing step)."""


@dataclass
class ExecutorOptions:
    """Runner-wide settings for executors (from the runner's configuration)."""

    allow_network: bool = True
    cpus: float | None = None
    memory: str | None = None  # docker syntax: "2g", "512m"
    pids_limit: int = 4096
    tmpfs_size: str = "1g"
    docker_host: str | None = None
    # `volumes:` entries naming a path of the runner's host (`/srv/x:/data`) expose the host's
    # files to jobs: refused unless the runner's admin allows them.
    allow_host_mounts: bool = False
    # A container image for `host`-less labels when a job has no `container:`.
    default_image: str | None = None
    # Images built for Dockerfile actions kept after a job (the most recently used); older
    # ones not in use are removed.
    action_images_keep: int = 20
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobEnvironment:
    """What an executor needs to prepare one job.

    ``workdir`` is the job's directory on the runner's host; it holds ``workspace/`` (the
    checkout), ``temp/`` (RUNNER_TEMP, the GITHUB_* command files), ``tool_cache/`` and
    ``actions/`` (fetched actions). Executors make it visible to the job's processes and
    report where through :meth:`Executor.path`.
    """

    workdir: Path
    workspace: Path | None = None  # when the checkout lives outside workdir (local runs)
    job_key: str = "job"
    job_id: int = 0
    container: dict[str, Any] | None = (
        None  # the job's evaluated `container:` (image, env, options…)
    )
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: OutputCallback = lambda line: None


@runtime_checkable
class Executor(Protocol):
    name: str
    os_name: str  # RUNNER_OS: Linux
    arch: str  # RUNNER_ARCH: X64, ARM64

    def start(self, env: JobEnvironment) -> None:
        """Prepare the job's environment (containers, networks, services)."""

    def path(self, host_path: Path) -> str:
        """Where ``host_path`` (inside the job's workdir) is seen by the job's processes."""

    def which(self, program: str, env: dict[str, str]) -> str | None:
        """The program's path inside the job's environment, or None."""

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
        """Run to completion, feeding each output line (stdout and stderr merged) to ``on_output``.

        Returns the exit code; -1 when killed on cancel, -2 when killed on timeout.
        """

    def stop(self) -> None:
        """Remove everything the job created; safe to call twice and after a failed start."""


EXIT_CANCELLED = -1
EXIT_TIMEOUT = -2


def build_executor(label_value: str, options: ExecutorOptions | None = None) -> Executor:
    """``host``, ``bwrap`` or ``docker://IMAGE`` (``docker`` alone: the job's ``container:``)."""
    options = options or ExecutorOptions()
    value = label_value.strip()
    if value == "host":
        from opencodehub.runner.executors.host import HostExecutor

        return HostExecutor(options)
    if value == "bwrap":
        from opencodehub.runner.executors.bwrap import BwrapExecutor

        return BwrapExecutor(options)
    if value == "docker" or value.startswith("docker://"):
        from opencodehub.runner.executors.docker import DockerExecutor

        image = value[len("docker://") :] if value.startswith("docker://") else None
        return DockerExecutor(options, image=image or options.default_image)
    raise ExecutorError(f"unknown executor {label_value!r}: expected host, bwrap or docker://IMAGE")


def pump_process(
    proc: subprocess.Popen[bytes],
    on_output: OutputCallback,
    cancel: threading.Event,
    timeout: float | None,
    kill: Callable[[], None],
) -> int:
    """Stream a process's merged output line by line, killing it on cancel or timeout.

    The step ends when its main process exits, as on GitHub: background children may keep
    running (and holding the pipe) until the job ends; their later output is dropped.
    """
    import time

    assert proc.stdout is not None
    stream = proc.stdout
    forwarding = threading.Event()
    forwarding.set()

    def read() -> None:
        pending = b""
        while True:
            chunk = stream.read1(65536)  # type: ignore[attr-defined]
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                if forwarding.is_set():
                    on_output(raw.rstrip(b"\r").decode("utf-8", "replace"))
        if pending and forwarding.is_set():
            on_output(pending.rstrip(b"\r").decode("utf-8", "replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # `Popen.wait(timeout)` polls with sleeps of up to 50 ms; a thread blocked in waitpid wakes
    # the step the moment the process exits, and cancel/timeout are checked in between.
    exited = threading.Event()
    exit_code: list[int] = []

    def wait() -> None:
        exit_code.append(proc.wait())
        exited.set()

    threading.Thread(target=wait, daemon=True).start()
    deadline = None if timeout is None else time.monotonic() + timeout
    reason = 0
    while True:
        if exited.wait(0.1):
            code = exit_code[0]
            break
        if cancel.is_set():
            reason = EXIT_CANCELLED
        elif deadline is not None and time.monotonic() >= deadline:
            reason = EXIT_TIMEOUT
        if reason:
            kill()
            code = proc.wait()
            break
    # Output written just before exit is still in the pipe: drain it, but a background child
    # holding the pipe open must not hold the step.
    reader.join(2.0 if not reason else 0.5)
    forwarding.clear()
    return reason or code


def kill_process_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
