"""Structured log lines: JSON or key=value, the request id on every line of a request."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from opencodehub.core import logging as och_logging


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    och_logging.set_stream(buffer)
    yield buffer
    och_logging.set_stream(None)
    och_logging.configure_logging("WARNING", "console")


def _records(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_lines_carry_event_fields_level_and_bound_context(lines: io.StringIO) -> None:
    och_logging.configure_logging("INFO", "json")
    log = och_logging.get_logger("test")
    with och_logging.bound_context(request_id="r-1"):
        log.info("pushed", repo="alice/app", refs=2)
    log.warning("outside")
    first, second = _records(lines)
    assert first["event"] == "pushed"
    assert first["repo"] == "alice/app" and first["refs"] == 2
    assert first["request_id"] == "r-1" and first["level"] == "info"
    assert str(first["timestamp"]).endswith("Z")
    assert "request_id" not in second and second["level"] == "warning"


def test_lines_below_the_threshold_are_dropped(lines: io.StringIO) -> None:
    och_logging.configure_logging("WARNING", "json")
    log = och_logging.get_logger()
    log.debug("noise")
    log.info("noise")
    log.error("kept")
    assert [record["event"] for record in _records(lines)] == ["kept"]


def test_console_lines_quote_values_that_would_break_the_line(lines: io.StringIO) -> None:
    och_logging.configure_logging("INFO", "console")
    och_logging.get_logger().info("hook", path="/a b", user="alice", note='x="1"\nnext', n=3)
    (line,) = lines.getvalue().splitlines()
    assert "[info    ] hook" in line
    assert 'path="/a b"' in line and "user=alice" in line and "n=3" in line
    assert 'note="x=\\"1\\"\\nnext"' in line


def test_exception_lines_carry_the_traceback(lines: io.StringIO) -> None:
    och_logging.configure_logging("INFO", "json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        och_logging.get_logger().exception("failed", job="reap")
    (record,) = _records(lines)
    assert record["level"] == "error" and record["job"] == "reap"
    assert "RuntimeError: boom" in str(record["exception"])


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        och_logging.configure_logging("LOUD")


def test_every_request_is_logged_with_its_request_id(
    client: TestClient, lines: io.StringIO
) -> None:
    och_logging.configure_logging("INFO", "json")
    client.get("/readyz", headers={"X-Request-Id": "abc-123"})
    requests = [record for record in _records(lines) if record["event"] == "request"]
    assert requests, lines.getvalue()
    assert requests[-1]["request_id"] == "abc-123"
    assert requests[-1]["path"] == "/readyz" and requests[-1]["status"] == 200
