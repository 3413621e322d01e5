"""The runner agent's pieces that need no server: log batching with acknowledged indices, its
retries, and the credentials file."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from opencodehub.runner.agent import NotHeld, Reporter, RunnerError
from opencodehub.runner.config import RunnerConfig, parse_label


class FakeServer:
    """Stands in for the server's log endpoint: keeps lines by index, acknowledges the
    contiguous count, fails the calls it is told to fail."""

    def __init__(self, fail_first: int = 0, lose_job_after: int | None = None) -> None:
        self.lines: dict[int, str] = {}
        self.batches: list[tuple[int, int]] = []
        # (status, step index, lines held when the state arrived), in arrival order.
        self.states: list[tuple[str, int, int]] = []
        self.calls: list[str] = []
        self.fail_first = fail_first
        self.lose_job_after = lose_job_after
        self.lock = threading.Lock()

    def post(self, path: str, body: dict[str, Any] | None = None, **_: Any) -> httpx.Response:
        with self.lock:
            self.calls.append(path)
            if self.lose_job_after is not None and len(self.calls) > self.lose_job_after:
                raise NotHeld("The runner does not hold this job.")
            if path.endswith("/logs"):
                assert body is not None
                self.batches.append((body["start"], len(body["lines"])))
                if self.fail_first:
                    self.fail_first -= 1
                    # The server stored the batch, but the answer was lost on the way back.
                    for offset, line in enumerate(body["lines"]):
                        self.lines.setdefault(body["start"] + offset, line["text"])
                    raise RunnerError("timed out")
                for offset, line in enumerate(body["lines"]):
                    self.lines.setdefault(body["start"] + offset, line["text"])
                count = 0
                while count in self.lines:
                    count += 1
                for state in body.get("steps", []):
                    self.states.append((state["status"], state["index"], len(self.lines)))
                return httpx.Response(200, json={"next_index": count})
            return httpx.Response(204)


def test_log_lines_are_batched_and_retried_with_the_same_indices() -> None:
    server = FakeServer(fail_first=1)
    reporter = Reporter(server, job_id=5)  # type: ignore[arg-type]
    for n in range(250):
        reporter.log(0, f"line {n}")
    reporter.step_finished(0, "Build", "success", "success")
    reporter.log(1, "after")
    reporter.close()
    assert server.lines == {n: f"line {n}" for n in range(250)} | {250: "after"}
    # The failed first batch was sent again from the same index, never renumbered.
    assert server.batches[0][0] == server.batches[1][0] == 0
    # The step's end rode in a log batch, recorded once its 250 lines were held.
    assert server.states == [("completed", 0, server.states[0][2])]
    assert server.states[0][2] >= 250
    assert all(call.endswith("/logs") for call in server.calls)
    assert max(size for _, size in server.batches) <= 1000


def test_a_step_start_is_acknowledged_before_it_returns_and_carries_pending_lines() -> None:
    """The reaper re-queues a job only when no step started: the start must be on the server
    before the step runs, and it costs one request with the set-up lines before it."""
    server = SlowServer()
    reporter = Reporter(server, job_id=9)  # type: ignore[arg-type]
    reporter.log(None, "set up")
    reporter.step_started(0, "Run make")
    assert server.states == [("in_progress", 0, 1)]
    assert server.lines == {0: "set up"}
    assert server.calls == ["/jobs/9/logs"]
    reporter.log(0, "built")
    reporter.step_finished(0, "Run make", "success", "success")
    tail = reporter.finish()
    # The last line goes with the completion; the step's end is in the job's result.
    assert tail == {"start": 1, "lines": [{"step": 0, "text": "built"}]}
    assert reporter.requests == len(server.calls)


def test_finish_hands_back_at_most_one_batch() -> None:
    server = FakeServer(fail_first=1)
    reporter = Reporter(server, job_id=10)  # type: ignore[arg-type]
    for n in range(2500):
        reporter.log(0, f"line {n}")
    tail = reporter.finish()
    assert tail is not None
    assert len(tail["lines"]) <= 1000
    assert tail["start"] + len(tail["lines"]) == 2500
    assert set(server.lines) == set(range(tail["start"]))


def test_lines_flush_within_a_tick_without_filling_a_batch() -> None:
    server = FakeServer()
    reporter = Reporter(server, job_id=6)  # type: ignore[arg-type]
    reporter.log(None, "one line")
    deadline = time.monotonic() + 10
    while not server.lines:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert server.lines == {0: "one line"}
    reporter.close()


def test_a_job_taken_away_stops_the_reporter() -> None:
    server = FakeServer(lose_job_after=1)
    reporter = Reporter(server, job_id=7)  # type: ignore[arg-type]
    reporter.step_started(0, "a")
    reporter.step_started(1, "b")
    reporter.log(1, "x")
    reporter.close()
    assert reporter.lost


def test_credentials_file_is_private_and_labels_pick_executors(tmp_path: Path) -> None:
    config = RunnerConfig(
        url="http://h",
        id=3,
        name="n",
        secret="ochr_x",
        labels=["ubuntu-latest:docker://node:20", "sandbox:bwrap", "plain"],
    )
    path = tmp_path / "deep" / "runner.json"
    config.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert RunnerConfig.load(path) == config
    assert config.label_names() == ["ubuntu-latest", "sandbox", "plain"]
    assert config.executor_for(["sandbox"]) == "bwrap"
    assert config.executor_for(["Ubuntu-Latest"]) == "docker://node:20"
    assert config.executor_for(["plain"]) == "host"
    assert parse_label(" GPU : host ") == ("gpu", "host")


def test_register_reports_the_servers_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    from opencodehub.runner import agent

    def refuse(url: str, **kwargs: Any) -> httpx.Response:
        assert url == "http://server/-/runner/v1/register"
        assert kwargs["json"]["labels"] == ["ubuntu-latest"]
        return httpx.Response(401, json={"message": "The registration token is invalid"})

    monkeypatch.setattr(agent.httpx, "post", refuse)
    with pytest.raises(RunnerError, match=r"401.*invalid"):
        agent.register("http://server/", "bad", "n", ["ubuntu-latest:host"])


class SlowServer(FakeServer):
    """Answers after a network's round trip, so flushes from several threads overlap."""

    def post(self, path: str, body: dict[str, Any] | None = None, **_: Any) -> httpx.Response:
        time.sleep(0.01)
        return super().post(path, body)


def test_concurrent_flushes_never_send_a_line_twice() -> None:
    """Steps flush their lines while the timer flushes too: one batch is in flight at a time,
    so every batch starts where the server's acknowledgement ended."""
    server = SlowServer()
    reporter = Reporter(server, job_id=8)  # type: ignore[arg-type]

    def steps(offset: int) -> None:
        for n in range(40):
            reporter.log(offset, f"{offset}-{n}")
            reporter.step_finished(offset, f"step {offset}", "success", "success")

    workers = [threading.Thread(target=steps, args=(index,)) for index in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    reporter.close()
    assert len(server.lines) == 120
    sent = sorted(server.batches)
    for (start, size), (following, _) in itertools.pairwise(sent):
        assert start + size == following, f"overlapping batches: {sent}"
