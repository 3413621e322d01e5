"""The process roles' event loop."""

from __future__ import annotations

import asyncio

import pytest

from opencodehub import serve


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_server_runs_on_uvloop_when_installed() -> None:
    assert serve.run_event_loop(_loop_module()).startswith("uvloop")


def test_without_uvloop_the_server_runs_on_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert serve.run_event_loop(_loop_module()).startswith("asyncio")
