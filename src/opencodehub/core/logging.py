"""Structured logs: one line per event, `key=value` on a console, JSON for log shippers.

`get_logger(name).info("event", key=value)` writes one line to standard output. Values bound
with `bound_context(request_id=...)` ride in a context variable, so every line logged while a
request is served (on the event loop or in a thread it hands work to) names that request.

A few dozen lines of our own instead of a logging framework: the server imports this at start,
and the frameworks we tried pulled a console-rendering library and its syntax highlighter
(about 9 MB of the idle process) into every process for features no line here uses.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}

_NOTHING_BOUND: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar(
    "opencodehub_log_context", default=_NOTHING_BOUND
)
# Lines come from the event loop and from worker threads; one lock keeps each line whole.
_write_lock = threading.Lock()


class _Output:
    level: int = logging.INFO
    as_json: bool = False
    stream: TextIO | None = None  # None: whatever sys.stdout is when a line is written


_output = _Output()


def configure_logging(level: str | int = "INFO", fmt: str = "console") -> None:
    """Set the threshold and the format of this process's lines (and of the stdlib's loggers)."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level: {level!r}")
    _output.level = numeric
    _output.as_json = fmt == "json"
    logging.basicConfig(level=numeric, format="%(message)s")


def set_stream(stream: TextIO | None) -> None:
    """Write lines to `stream` (None: the current `sys.stdout`)."""
    _output.stream = stream


@contextmanager
def bound_context(**values: Any) -> Iterator[None]:
    """Add `values` to every line logged inside the block (in this task or thread)."""
    token = _context.set({**_context.get(), **values})
    try:
        yield
    finally:
        _context.reset(token)


def render(level: int, event: str, fields: Mapping[str, Any], *, as_json: bool) -> str:
    timestamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    level_name = _LEVEL_NAMES.get(level, str(level))
    if as_json:
        record = {"event": event, **fields, "level": level_name, "timestamp": timestamp}
        return json.dumps(record, default=str, ensure_ascii=False)
    pairs = " ".join(f"{key}={_console_value(value)}" for key, value in fields.items())
    line = f"{timestamp} [{level_name:<8}] {event}"
    return f"{line}  {pairs}" if pairs else line


def _console_value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    # A value with spaces, quotes or line breaks is quoted so the line stays one parseable line.
    if isinstance(value, str) and (not text or any(c in text for c in " \"'=\n\r\t")):
        return json.dumps(text, ensure_ascii=False)
    return text


class Logger:
    """The logger every module gets from `get_logger`; cheap to create, nothing per instance."""

    __slots__ = ("name",)

    def __init__(self, name: str | None) -> None:
        self.name = name

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error line carrying the traceback of the exception being handled."""
        self._log(logging.ERROR, event, {**fields, "exception": traceback.format_exc()})

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if level < _output.level:
            return
        context = _context.get()
        merged = {**context, **fields} if context else fields
        if "exception" in merged and not _output.as_json:
            trace = merged.pop("exception")
            line = render(level, event, merged, as_json=False) + "\n" + trace.rstrip("\n")
        else:
            line = render(level, event, merged, as_json=_output.as_json)
        stream = _output.stream or sys.stdout
        with _write_lock:
            stream.write(line + "\n")
            stream.flush()


def get_logger(name: str | None = None) -> Logger:
    return Logger(name)
