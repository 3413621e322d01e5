"""Shared fixtures.

Every test that touches the database runs once per engine: SQLite, PostgreSQL and MariaDB (pick
with `OCH_TEST_DATABASES=sqlite,postgresql,mysql`). Each engine gets a database of its own, created
for the run and dropped after it; tables are emptied between tests.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.app import create_app
from opencodehub.config import Settings
from opencodehub.core import ratelimit
from opencodehub.db.base import Base
from opencodehub.db.engine import Database
from opencodehub.db.models import Base as _all_models  # noqa: F401 - completes the metadata


def _share_route_analysis() -> None:
    """Most tests build an app of their own (settings and database differ per test), and FastAPI
    spends about half a second of each `create_app` analysing the same endpoint signatures
    again. The analysis depends only on (path, endpoint, router dependencies), so the suite
    computes it once per process. Apps still get their own routes, state and middleware."""
    from fastapi import routing

    build = getattr(routing, "_build_dependant_with_parameterless_dependencies", None)
    if build is None or getattr(build, "_och_shared", False):
        return  # another FastAPI layout: every app does its own analysis, as in production
    cache: dict[tuple[object, ...], tuple[object, list[object], bool]] = {}

    def shared(*, path: str, call: Callable[..., object], dependencies: list) -> tuple:
        if any(getattr(dep, "max_concurrency", None) is not None for dep in dependencies):
            return build(path=path, call=call, dependencies=dependencies)
        key = (
            path,
            call,
            tuple((dep.dependency, dep.use_cache, dep.scope) for dep in dependencies),
        )
        if key not in cache:
            cache[key] = build(path=path, call=call, dependencies=dependencies)
        dependant, body_params, embed = cache[key]
        return dependant, list(body_params), embed

    shared._och_shared = True  # type: ignore[attr-defined]
    routing._build_dependant_with_parameterless_dependencies = shared


_share_route_analysis()

ENGINES = [
    name.strip()
    for name in os.environ.get("OCH_TEST_DATABASES", "sqlite,postgresql,mysql").split(",")
    if name.strip()
]
SERVER_URLS = {
    "postgresql": os.environ.get("OCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432"),
    "mysql": os.environ.get("OCH_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306"),
}
OUTPUT_DIR = Path(os.environ.get("OCH_TEST_OUTPUT", Path(__file__).parent.parent / "test-output"))
# The suite runs in parallel processes (pytest-xdist's gw0, gw1, …): tests that empty a Redis
# database get one of their own per process, counting down from 15.
WORKER_NUMBER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_TEST_URL = f"redis://127.0.0.1:6379/{15 - WORKER_NUMBER % 15}"


def _create_server_database(engine_name: str) -> tuple[str, Callable[[], None]]:
    name = f"och_test_{uuid.uuid4().hex[:12]}"
    server = SERVER_URLS[engine_name]
    admin_db = "postgres" if engine_name == "postgresql" else "mysql"
    admin = Database(f"{server}/{admin_db}", poolclass=sa.pool.NullPool)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine_name == "postgresql":
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        else:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")

    def drop() -> None:
        with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if engine_name == "postgresql":
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()

    return f"{server}/{name}", drop


@pytest.fixture(scope="session", params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A fresh, empty database on one engine, for the whole run."""
    engine_name = request.param
    if engine_name == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "och.db"
        yield f"sqlite:///{path}"
        return
    url, drop = _create_server_database(engine_name)
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing() -> Iterator[None]:
    """argon2id at production cost takes tens of milliseconds per hash, and the suite creates
    thousands of accounts. The algorithm stays; only its cost drops. Tests of rehashing build
    their own hashers."""
    from argon2 import PasswordHasher

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    saved = accounts.password_hasher, accounts._DUMMY_HASH
    accounts.password_hasher = cheap
    accounts._DUMMY_HASH = cheap.hash("dummy-password")
    yield
    accounts.password_hasher, accounts._DUMMY_HASH = saved


@pytest.fixture(params=ENGINES)
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database with no tables, for tests of migrations and the CLI."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    url, drop = _create_server_database(request.param)
    try:
        yield url
    finally:
        drop()


@contextmanager
def database_with_tables(url: str) -> Iterator[Database]:
    """The database at `url` with every table made, disposed after the block."""
    db = Database(url)
    Base.metadata.create_all(db.engine)
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture(scope="session")
def database(database_url: str) -> Iterator[Database]:
    with database_with_tables(database_url) as db:
        yield db


def _empty_tables(db: Database) -> None:
    with db.engine.begin() as conn:
        if db.dialect == "mysql":
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        if db.dialect == "mysql":
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")


@pytest.fixture
def db(database: Database) -> Iterator[Database]:
    """The engine's database, emptied after the test."""
    try:
        yield database
    finally:
        _empty_tables(database)


@pytest.fixture
def session(db: Database) -> Iterator[sa.orm.Session]:
    with db.session() as s:
        yield s


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def settings(db: Database, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=db.url,
        secret_key="test-secret-key-0123456789abcdef",
        ssh_enabled=False,
        http_port=free_port(),
        ssh_port=free_port(),
        _env_file=None,
    )


@pytest.fixture
def app(settings: Settings, db: Database):
    return create_app(settings, db)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


class _StoppedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def rate_limit_windows_hold_still(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rate limiter's windows are fixed, aligned to multiples of their length. A test that
    records failures and expects the lock-out would see its count split in two if a window
    boundary fell inside it (five sign-in attempts on a busy machine once straddled a
    five-minute boundary), so in tests the limiter's clock stays at the test's start."""
    monkeypatch.setattr(ratelimit, "time", _StoppedClock(time.time()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    condition: Callable[[], object],
    what: str = "condition",
    timeout: float = 10,
    poll: float = 0.05,
) -> None:
    """Poll `condition` until it is true; fail naming `what` once `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


@dataclass
class LiveServer:
    url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread


@pytest.fixture
def live_server(settings: Settings, db: Database) -> Iterator[LiveServer]:
    """The app on a real TCP port, for real clients (git, Chromium)."""
    app = create_app(settings, db)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.http_port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("live server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{settings.http_port}", settings, server, thread)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# Factories -------------------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"


@pytest.fixture
def make_user(db: Database) -> Callable[..., User]:
    def make(username: str = "alice", *, admin: bool = False, email: str | None = None) -> User:
        with db.session() as s:
            return accounts.create_user(
                s,
                username,
                email or f"{username.lower()}@example.com",
                PASSWORD,
                is_site_admin=admin,
                email_verified=True,
            )

    return make


@pytest.fixture
def make_token(db: Database) -> Callable[..., str]:
    def make(user: User, scopes: list[str] | None = None, expires_days: int | None = None) -> str:
        with db.session() as s:
            owner = s.get(User, user.id)
            assert owner is not None
            _, plaintext = accounts.create_token(
                s, owner, "test", scopes if scopes is not None else ["repo", "user"], expires_days
            )
            return plaintext

    return make


def auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}
