"""Fixtures for the job engine: a recording reporter, job specs, and a Podman test image."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from opencodehub.runner.engine import run_job
from opencodehub.runner.executors.base import ExecutorOptions, build_executor
from opencodehub.runner.jobspec import JobContexts, JobResult, JobSpec
from tests.runner.podman import (
    CACHE,
    SERVICE_IMAGE,
    TEST_IMAGE,
    podman_service,
)

__all__ = ["JOBS", "SERVICE_IMAGE", "TEST_IMAGE", "RecordingReporter", "make_spec", "run"]

JOBS = CACHE / "jobs"


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


@pytest.fixture(scope="session")
def podman_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Podman service with a Docker-compatible socket and the busybox test images."""
    with podman_service(tmp_path_factory.mktemp("podman")) as url:
        yield url
