"""Engine and session factory for SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


def normalize_url(url: str) -> str:
    """Pick the driver OpenCodeHub ships for a bare scheme (`postgresql://`, `mysql://`)."""
    parsed = make_url(url)
    if parsed.drivername in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    if parsed.drivername.startswith("mysql") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin_before_savepoint(connection: Any, _name: str) -> None:
    """Python's sqlite3 opens a transaction only before its first INSERT/UPDATE/DELETE (reads
    before a write stay outside one, so they never hold a snapshot a writer would conflict
    with). A SAVEPOINT issued before any write therefore started SQLite's transaction itself,
    and its RELEASE committed it: rolling the session back afterwards undid nothing the
    savepoint wrote. Begin the real transaction first, as the other engines do."""
    dbapi_connection = connection.connection.dbapi_connection
    # isolation_level None is autocommit (asked for explicitly): no transaction to begin.
    if dbapi_connection.isolation_level is not None and not dbapi_connection.in_transaction:
        dbapi_connection.execute("BEGIN")


# FastAPI runs sync routes and dependencies on AnyIO's worker threads. A request holds its
# connection from its first query to its commit, across the awaits between its thread hops; if
# more requests held connections than the pool has, the threads of the next ones would block on
# the pool while the holders wait for a thread to finish on — a deadlock until the pool times
# out. So at most REQUEST_SESSIONS requests hold a session at once (`deps.get_session` waits for
# a slot on the event loop, where waiting costs nothing), and the pool has room for all of them
# plus the short, thread-bound uses outside requests (git transports, middleware, jobs).
WORKER_THREADS = 40
REQUEST_SESSIONS = WORKER_THREADS
POOL_SIZE = 10
POOL_MAX_OVERFLOW = REQUEST_SESSIONS + 10 - POOL_SIZE


def _size_pool(kwargs: dict[str, Any], *, keep_all: bool = False) -> None:
    if "poolclass" in kwargs:
        return
    if keep_all:
        # A SQLite connection is an open file, not a server process: keep every one, since an
        # overflow connection is closed on return and the next busy moment reopens it (and
        # runs the pragmas again) on every request.
        kwargs.setdefault("pool_size", POOL_SIZE + POOL_MAX_OVERFLOW)
        kwargs.setdefault("max_overflow", 0)
        return
    kwargs.setdefault("pool_size", POOL_SIZE)
    kwargs.setdefault("max_overflow", POOL_MAX_OVERFLOW)


def build_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            _size_pool(kwargs, keep_all=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "savepoint", _sqlite_begin_before_savepoint)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_recycle", 1800)
    _size_pool(kwargs)
    return create_engine(url, **kwargs)


class Database:
    """One engine and its session factory; each process role holds one."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = normalize_url(url)
        self.engine = build_engine(self.url, **engine_kwargs)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends cleanly, rolled back otherwise."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()
