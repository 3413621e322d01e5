"""The runner agent: long-polls a server for jobs and runs them with the engine.

Threads: one polls (only while a slot is free), one sends heartbeats for every running job
(and learns of cancellations from the answers), one per running job, and one per job that
batches its log lines and step states (sent every ~100 ms or 100 lines, retried with the same
indices until acknowledged, so a retry never duplicates a line). A short job costs three round
trips: the claim (which brings the job), its step's start, and its completion (which brings the
last lines). SIGTERM stops polling and lets running jobs
finish; past the grace period they are handed back to the server.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from opencodehub.runner.config import RunnerConfig, parse_label
from opencodehub.runner.jobspec import JobResult
from opencodehub.runner.protocol import (
    MAX_STEP_UPDATES,
    PREFIX,
    JobAssignment,
    LogAck,
    RegisterRequest,
    RegisterResponse,
)

LOG_FLUSH_SECONDS = 0.1
LOG_FLUSH_LINES = 100
LOG_BATCH_MAX = 1000
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
DEFAULT_HEARTBEAT = 5.0
VERSION = "1"


class RunnerError(Exception):
    pass


class NotHeld(RunnerError):
    """The server says this runner no longer holds the job (cancelled by the reaper)."""


def register(
    url: str, token: str, name: str, labels: list[str], *, timeout: float = 30.0
) -> RunnerConfig:
    """Register with a server; the returned config holds the runner's secret."""
    names = [parse_label(label)[0] for label in labels]
    body = RegisterRequest(token=token, name=name, labels=names, version=VERSION)
    response = httpx.post(
        f"{url.rstrip('/')}{PREFIX}/register", json=body.model_dump(), timeout=timeout
    )
    if response.status_code != 201:
        raise RunnerError(f"registration failed ({response.status_code}): {_message(response)}")
    answer = RegisterResponse.model_validate(response.json())
    return RunnerConfig(
        url=url.rstrip("/"), id=answer.id, name=answer.name, secret=answer.secret, labels=labels
    )


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text[:200]


class Client:
    """The protocol over HTTP; retries transport errors and 5xx answers with backoff."""

    def __init__(self, config: RunnerConfig, stopping: threading.Event | None = None) -> None:
        self._http = httpx.Client(
            base_url=f"{config.url}{PREFIX}",
            headers={"Authorization": f"Bearer {config.secret}"},
            timeout=httpx.Timeout(30.0, read=90.0),
        )
        self._give_up = stopping

    def post(
        self, path: str, body: dict[str, Any] | None = None, *, retries: int = len(RETRY_DELAYS)
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.post(path, json=body or {})
            except httpx.TransportError as exc:
                error: Exception = exc
            else:
                if response.status_code == 401:
                    raise RunnerError("the server refused the runner's credentials (401)")
                if (
                    response.status_code == 404
                    and path.startswith("/jobs/")
                    and path != "/jobs/request"
                ):
                    raise NotHeld(_message(response))
                if response.status_code < 500:
                    if response.status_code >= 400:
                        raise RunnerError(f"{path}: {response.status_code} {_message(response)}")
                    return response
                error = RunnerError(f"{path}: {response.status_code}")
            if attempt >= retries:
                raise RunnerError(str(error)) from error
            time.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            attempt += 1

    def close(self) -> None:
        self._http.close()


class Reporter:
    """The engine's JobReporter, sending to the server. Log lines are numbered from 0 and kept
    until the server acknowledges them; step states ride in the same requests (`steps` of a
    log batch), so a step costs one round trip (its start) and the last lines go with the
    job's completion (`finish`)."""

    def __init__(self, client: Client, job_id: int) -> None:
        self._client = client
        self._job_id = job_id
        self._lock = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._acked = 0  # index of _pending[0]
        self._next = 0
        # Step states not yet acknowledged, in order; each follows every line pending with it.
        self._states: list[dict[str, Any]] = []
        self._closed = False
        # One batch in flight at a time: a step's start and the timer would otherwise both
        # post the same lines, and the server would append (and discard) them twice.
        self._sending = threading.Lock()
        self.lost = False
        self.requests = 0
        self._thread = threading.Thread(
            target=self._flush_loop, name=f"och-logs-{job_id}", daemon=True
        )
        self._thread.start()

    # JobReporter ---------------------------------------------------------------------------

    def step_started(self, index: int, name: str) -> None:
        # Sent before the step runs, and acknowledged: a job whose step started is never
        # queued again (the reaper fails it instead), so it must not run twice. The lines and
        # states pending go in the same request.
        with self._lock:
            self._states.append({"index": index, "name": name, "status": "in_progress"})
        self.flush()

    def step_finished(self, index: int, name: str, outcome: str, conclusion: str) -> None:
        # No round trip of its own: the next batch (within a tick), the next step's start or
        # the job's completion carries it.
        with self._lock:
            self._states.append(
                {
                    "index": index,
                    "name": name,
                    "status": "completed",
                    "conclusion": conclusion,
                    "outcome": outcome,
                }
            )
            self._lock.notify_all()

    def log(self, index: int | None, line: str) -> None:
        with self._lock:
            self._pending.append({"step": index, "text": line[: 64 * 1024]})
            self._next += 1
            if len(self._pending) >= LOG_FLUSH_LINES:
                self._lock.notify_all()

    def annotation(self, level: str, message: str, file: str | None, line: int | None) -> None:
        if level not in ("notice", "warning", "error"):
            level = "notice"
        self._post(
            f"/jobs/{self._job_id}/annotations",
            {"level": level, "message": message[: 64 * 1024], "file": file or "", "line": line},
        )

    # Sending -------------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> None:
        if self.lost:
            return
        try:
            self.requests += 1
            self._client.post(path, body)
        except NotHeld:
            self.lost = True
        except RunnerError:
            pass  # an annotation lost for good; the job's result does not depend on it

    def _flush_loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                if len(self._pending) < LOG_FLUSH_LINES:
                    self._lock.wait(LOG_FLUSH_SECONDS)
                if self._closed:
                    return
            self._send_batch()

    def _send_batch(self) -> bool:
        with self._sending:
            return self._send_batch_locked()

    def _send_batch_locked(self) -> bool:
        with self._lock:
            batch = self._pending[:LOG_BATCH_MAX]
            start = self._acked
            # States follow the lines pending when they were reported: they go with the batch
            # that holds the last of those lines.
            states = self._states[:MAX_STEP_UPDATES] if len(self._pending) <= LOG_BATCH_MAX else []
        if (not batch and not states) or self.lost:
            if self.lost:
                with self._lock:
                    self._pending.clear()
                    self._states.clear()
            return True
        body: dict[str, Any] = {"start": start, "lines": batch}
        if states:
            body["steps"] = states
        try:
            self.requests += 1
            response = self._client.post(f"/jobs/{self._job_id}/logs", body)
        except NotHeld:
            self.lost = True
            return False
        except RunnerError:
            time.sleep(0.5)
            return False
        ack = LogAck.model_validate(response.json()).next_index
        with self._lock:
            # Drop what the server holds; should it hold less (lost lines), resend from there.
            drop = max(0, min(ack - self._acked, len(self._pending)))
            del self._pending[:drop]
            self._acked += drop
            del self._states[: len(states)]
        return True

    def flush(self, deadline: float = 30.0) -> None:
        """Send every pending line and state (several batches if need be)."""
        end = time.monotonic() + deadline
        while time.monotonic() < end and not self.lost:
            with self._lock:
                if not self._pending and not self._states:
                    return
            self._send_batch()

    def _stop_timer(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout=5)

    def finish(self, deadline: float = 30.0) -> dict[str, Any] | None:
        """Stop sending on a timer and hand back the last lines (at most one batch) for the
        completion request; None when the server holds every line. Pending step states are
        dropped: the job's result carries every step's final state."""
        self._stop_timer()
        end = time.monotonic() + deadline
        while time.monotonic() < end and not self.lost:
            with self._lock:
                if len(self._pending) <= LOG_BATCH_MAX:
                    break
            self._send_batch()
        with self._lock:
            self._states.clear()
            if not self._pending or self.lost:
                return None
            return {"start": self._acked, "lines": list(self._pending)}

    def close(self) -> None:
        """Send everything still pending, then stop."""
        self._stop_timer()
        self.flush()


RunJob = Callable[..., JobResult]


class Agent:
    def __init__(
        self,
        config: RunnerConfig,
        *,
        capacity: int = 1,
        workdir: Path | None = None,
        poll_wait: float = 20.0,
        grace: float = 300.0,
        executor_options: Any = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.capacity = max(1, capacity)
        self.workdir = workdir
        self.poll_wait = poll_wait
        self.grace = grace
        self.executor_options = executor_options
        self._log = log
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        self._jobs: dict[int, tuple[threading.Thread, threading.Event]] = {}
        self._heartbeat_interval = DEFAULT_HEARTBEAT
        self.client = Client(config)
        self.completed = 0

    # Lifecycle -----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._log(f"signal {signum}: finishing running jobs, taking no new ones")
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def stop(self) -> None:
        self.stopping.set()
        with self._slot_free:
            self._slot_free.notify_all()

    def run(self) -> None:
        """Poll and run jobs until stopped; then wait for running jobs (up to the grace)."""
        heartbeats = threading.Thread(
            target=self._heartbeat_loop, name="och-heartbeat", daemon=True
        )
        heartbeats.start()
        poller = threading.Thread(target=self._poll_loop, name="och-poll", daemon=True)
        poller.start()
        self.stopping.wait()
        self._drain()
        self.client.close()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.grace
        while True:
            with self._lock:
                running = dict(self._jobs)
            if not running:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        for job_id, (_thread, cancel) in running.items():
            self._log(f"job {job_id}: grace period over, handing it back")
            with contextlib.suppress(RunnerError):
                self.client.post(f"/jobs/{job_id}/release", retries=2)
            cancel.set()
        for thread, _cancel in running.values():
            thread.join(timeout=30)

    # Polling -------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self.stopping.is_set():
            with self._slot_free:
                while len(self._jobs) >= self.capacity and not self.stopping.is_set():
                    self._slot_free.wait(1.0)
            if self.stopping.is_set():
                return
            try:
                response = self.client.post(
                    "/jobs/request", {"wait_seconds": self.poll_wait}, retries=0
                )
            except RunnerError as exc:
                if "401" in str(exc):
                    self._log(str(exc))
                    self.stop()
                    return
                self.stopping.wait(2.0)
                continue
            if response.status_code == 204:
                continue
            assignment = JobAssignment.model_validate(response.json())
            if self.stopping.is_set():
                with contextlib.suppress(RunnerError):
                    self.client.post(f"/jobs/{assignment.spec.job_id}/release", retries=2)
                return
            self._start(assignment)

    def _start(self, assignment: JobAssignment) -> None:
        self._heartbeat_interval = assignment.heartbeat_interval or DEFAULT_HEARTBEAT
        cancel = threading.Event()
        job_id = assignment.spec.job_id
        thread = threading.Thread(
            target=self._run_job, args=(assignment, cancel), name=f"och-job-{job_id}", daemon=True
        )
        with self._lock:
            self._jobs[job_id] = (thread, cancel)
        thread.start()

    # Heartbeats ----------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while True:
            with self._lock:
                job_ids = list(self._jobs)
            if self.stopping.is_set() and not job_ids:
                return
            try:
                answer = self.client.post("/heartbeat", {"job_ids": job_ids}, retries=1).json()
            except RunnerError:
                answer = {}
            for job_id in [*answer.get("cancel", []), *answer.get("unknown", [])]:
                with self._lock:
                    entry = self._jobs.get(job_id)
                if entry is not None:
                    entry[1].set()
            time.sleep(min(self._heartbeat_interval, 5.0) if job_ids else 2.0)

    # Running one job -----------------------------------------------------------------------

    def _run_job(self, assignment: JobAssignment, cancel: threading.Event) -> None:
        from opencodehub.runner.engine import run_job
        from opencodehub.runner.executors import ExecutorError, build_executor

        spec = assignment.spec
        job_id = spec.job_id
        reporter = Reporter(self.client, job_id)
        root = Path(tempfile.mkdtemp(prefix=f"och-job-{job_id}-", dir=self.workdir))
        executor_name = self.config.executor_for(assignment.labels)
        self._log(f"job {job_id}: {spec.repository} {spec.job_name} on {executor_name}")
        try:
            try:
                executor = build_executor(executor_name, self.executor_options)
                result = run_job(spec, executor, reporter, cancel, root)
            except ExecutorError as exc:
                reporter.log(None, f"##[error]The runner could not prepare the job: {exc}")
                result = JobResult(result="failure")
            except Exception as exc:  # the job fails; the runner keeps serving others
                reporter.log(None, f"##[error]The runner failed: {type(exc).__name__}: {exc}")
                result = JobResult(result="failure")
            tail = reporter.finish()
            if not reporter.lost:
                body: dict[str, Any] = {"result": result.model_dump(mode="json")}
                if tail is not None:
                    body["logs"] = tail
                try:
                    self.client.post(f"/jobs/{job_id}/complete", body)
                except RunnerError as exc:
                    self._log(f"job {job_id}: the result could not be sent: {exc}")
            self._log(f"job {job_id}: {result.result}")
        finally:
            # The slot is free once the server has the result: poll for the next job first,
            # then remove this one's files.
            with self._slot_free:
                self._jobs.pop(job_id, None)
                self.completed += 1
                self._slot_free.notify_all()
            shutil.rmtree(root, ignore_errors=True)
