"""What the browser tests share: Chromium (Debian's, driven by Playwright), a SQLite database of
the test module's own, screenshots, and the console line a page meant to fail logs.

A browser test module imports `database_url` and `database` from here: they override the
engine-parametrized fixtures of tests/conftest.py, so the module runs once, on SQLite (the flows
it drives run on every engine in the TestClient tests), with one database for the module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Playwright

from opencodehub.db.engine import Database
from tests.conftest import OUTPUT_DIR, database_with_tables

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = OUTPUT_DIR / "screenshots"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield f"sqlite:///{tmp_path_factory.mktemp('browser') / 'och.db'}"


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    with database_with_tables(database_url) as db:
        yield db


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def take_expected(problems: list[str], status: int) -> None:
    """Drop the one console line Chromium logs for a page we meant to answer with `status`
    (a form shown again with its errors, the 404 page); anything else stays a problem."""
    expected = f"the server responded with a status of {status}"
    matching = [problem for problem in problems if expected in problem]
    assert len(matching) == 1, problems
    problems.remove(matching[0])
