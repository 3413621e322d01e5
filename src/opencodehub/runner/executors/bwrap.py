"""Run a job's processes in a bubblewrap sandbox.

The host's file system is visible read-only; only the job's directory (and the workspace) is
writable, /tmp is a private size-limited tmpfs, and the job gets its own PID, IPC and UTS
namespaces (and network namespace unless the runner allows network). A runner running as root
runs each job as an unprivileged user of its own (the kernel never applies the process limit
to root), so a fork bomb stops at the job's process limit.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opencodehub.runner.executors.base import ExecutorError, ExecutorOptions, JobEnvironment
from opencodehub.runner.executors.host import HostExecutor

MAX_FILE_BYTES = 4 * 1024**3


def _parse_size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().rstrip("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _chown_tree(root: Path, uid: int) -> None:
    if not root.exists():
        return
    os.chown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            with contextlib.suppress(OSError):
                os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


def _require_traversable(path: Path) -> None:
    for parent in path.resolve().parents:
        if not os.stat(parent).st_mode & 0o001:
            raise ExecutorError(
                f"the job directory's parent {parent} is not searchable by other users; "
                "the bubblewrap executor runs jobs as an unprivileged user (chmod o+x it)"
            )


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count


class BwrapExecutor(HostExecutor):
    name = "bwrap"

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        super().__init__(options)
        self.bwrap = shutil.which("bwrap")

    def start(self, env: JobEnvironment) -> None:
        if not self.bwrap:
            raise ExecutorError("bubblewrap ('bwrap') is not installed on this runner")
        self.workdir = env.workdir
        self.workspace = env.workspace or env.workdir / "workspace"
        if env.container:
            env.log("This runner runs jobs in a bubblewrap sandbox; 'container' is ignored.")
        self.uid: int | None = None
        if os.geteuid() == 0:
            self.uid = int(self.options.extra.get("sandbox_uid_base", 200000)) + env.job_id % 50000
            _require_traversable(self.workdir)
            _chown_tree(self.workdir, self.uid)
            if not self.workspace.resolve().is_relative_to(self.workdir.resolve()):
                env.log(
                    "The workspace is outside the job directory: the sandboxed job may not be "
                    "able to write to it."
                )
        # RLIMIT_NPROC counts every process of the user: leave room for what runs already.
        self.nproc = _processes_of(self.uid if self.uid is not None else os.getuid())
        self.nproc += self.options.pids_limit

    def command(self, argv: Sequence[str], env: dict[str, str], cwd: str) -> list[str]:
        assert self.bwrap
        cmd = [
            self.bwrap,
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--size", str(_parse_size(self.options.tmpfs_size)), "--tmpfs", "/tmp",  # noqa: S108
            "--bind", str(self.workdir), str(self.workdir),
        ]  # fmt: skip
        if not self.workspace.resolve().is_relative_to(self.workdir.resolve()):
            cmd += ["--bind", str(self.workspace), str(self.workspace)]
        cmd += ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        cmd += ["--hostname", "runner"]
        uid = getattr(self, "uid", None)
        if uid is not None:
            cmd += ["--uid", str(uid), "--gid", str(uid)]
        if not self.options.allow_network:
            cmd.append("--unshare-net")
        cmd += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--chdir", cwd, "--"]
        if uid is not None:
            # bwrap must start as the job's user so its namespaces map to it.
            setpriv = shutil.which("setpriv") or "setpriv"
            user = [setpriv, "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--"]
            return [*user, *cmd, *argv]
        return [*cmd, *argv]

    def run(self, argv: Sequence[str], **kwargs: Any) -> int:  # type: ignore[override]
        if getattr(self, "uid", None) is not None:
            # Files the engine wrote since (scripts, GITHUB_* files) must be the job user's.
            for name in ("temp", "tool_cache", "home"):
                _chown_tree(self.workdir / name, self.uid)  # type: ignore[arg-type]
        return super().run(argv, **kwargs)

    def preexec(self) -> Callable[[], None] | None:
        nproc = getattr(self, "nproc", self.options.pids_limit)

        def apply() -> None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))

        return apply
