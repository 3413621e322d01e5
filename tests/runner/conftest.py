"""Fixtures for the job engine: a recording reporter, job specs, and a Podman test image."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from opencodehub.runner.engine import run_job
from opencodehub.runner.executors.base import ExecutorOptions, build_executor
from opencodehub.runner.jobspec import JobContexts, JobResult, JobSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache" / "runner-tests"
JOBS = CACHE / "jobs"
TEST_IMAGE = "och-test:latest"
SERVICE_IMAGE = "och-test-service:latest"


@dataclass
class RecordingReporter:
    events: list[tuple[Any, ...]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    annotations: list[tuple[str, str, str | None, int | None]] = field(default_factory=list)

    def step_started(self, index: int, name: str) -> None:
        self.events.append(("start", index, name))

    def log(self, index: int | None, line: str) -> None:
        self.lines.append(line)
        self.events.append(("log", index, line))

    def step_finished(self, index: int, name: str, outcome: str, conclusion: str) -> None:
        self.events.append(("finish", index, name, outcome, conclusion))

    def annotation(self, level: str, message: str, file: str | None, line: int | None) -> None:
        self.annotations.append((level, message, file, line))

    def step_lines(self, index: int) -> list[str]:
        return [e[2] for e in self.events if e[0] == "log" and e[1] == index]


def make_spec(job_yaml: str, **overrides: Any) -> JobSpec:
    job = yaml.safe_load(job_yaml)
    contexts = overrides.pop("contexts", {})
    values: dict[str, Any] = {
        "job_id": 7,
        "run_id": 42,
        "run_number": 3,
        "run_attempt": 1,
        "workflow_name": "CI",
        "workflow_path": ".github/workflows/ci.yml",
        "job_key": "build",
        "job_name": "build",
        "job": job,
        "repository": "alice/project",
        "sha": "a" * 40,
        "ref": "refs/heads/main",
        "event_name": "push",
        "event_payload": {"ref": "refs/heads/main"},
        "server_url": "",
        "api_url": "",
        "actor": "alice",
        "contexts": JobContexts(**contexts),
    }
    values.update(overrides)
    return JobSpec(**values)


@dataclass
class Ran:
    result: JobResult
    reporter: RecordingReporter
    workdir: Path

    @property
    def outcomes(self) -> list[tuple[str, str]]:
        return [(s.outcome, s.conclusion) for s in self.result.steps]

    @property
    def text(self) -> str:
        return "\n".join(self.reporter.lines)


def run(
    job_yaml: str,
    tmp_path: Path,
    executor: str = "host",
    cancel: threading.Event | None = None,
    options: ExecutorOptions | None = None,
    **overrides: Any,
) -> Ran:
    reporter = RecordingReporter()
    workdir = tmp_path / "job"
    if executor == "bwrap":
        # The sandbox user must be able to reach the job directory (pytest's are private).
        JOBS.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(dir=JOBS))
        workdir.chmod(0o755)
        _made.append(workdir)
    result = run_job(
        make_spec(job_yaml, **overrides),
        build_executor(executor, options),
        reporter,
        cancel or threading.Event(),
        workdir,
    )
    return Ran(result, reporter, workdir)


_made: list[Path] = []


@pytest.fixture(autouse=True, scope="session")
def _remove_job_dirs() -> Iterator[None]:
    yield
    for path in _made:
        shutil.rmtree(path, ignore_errors=True)


# ---- Podman ----------------------------------------------------------------------------------


def _build_rootfs(rootfs: Path) -> None:
    busybox = Path("/bin/busybox")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "tmp", "root", "etc", "proc", "sys", "dev"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    subprocess.run(
        ["chroot", str(rootfs), "/bin/busybox", "--install", "-s"], check=True, capture_output=True
    )
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")


def _image_tar() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    tar_path = CACHE / "och-test-rootfs.tar"
    if not tar_path.exists():
        rootfs = CACHE / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        _build_rootfs(rootfs)
        tmp = tar_path.with_suffix(".tmp")
        with tarfile.open(tmp, "w") as tar:
            tar.add(rootfs, arcname=".")
        tmp.rename(tar_path)
        shutil.rmtree(rootfs, ignore_errors=True)
    return tar_path


@pytest.fixture(scope="session")
def podman_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Podman service with a Docker-compatible socket and the busybox test image."""
    podman = shutil.which("podman")
    if not podman or not Path("/bin/busybox").exists():
        pytest.fail(
            "podman and busybox-static are required: apt-get install -y podman runc busybox-static"
        )
    base = tmp_path_factory.mktemp("podman")
    conf = base / "containers.conf"
    conf.write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    socket = base / "podman.sock"
    proc = subprocess.Popen(
        [podman, "system", "service", "--time=0", f"unix://{socket}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("podman system service did not start")
            time.sleep(0.1)
        have = subprocess.run([podman, "image", "exists", TEST_IMAGE], env=env, capture_output=True)
        if have.returncode != 0:
            with _image_tar().open("rb") as fh:
                subprocess.run(
                    [podman, "import", "-", TEST_IMAGE], stdin=fh, env=env, check=True,
                    capture_output=True,
                )  # fmt: skip
        yield f"unix://{socket}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()
