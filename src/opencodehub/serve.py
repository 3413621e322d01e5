"""Process roles: the app server (with the SSH server beside it in embedded mode)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import socket
import subprocess
import sys
from collections.abc import Coroutine
from types import ModuleType
from typing import Any, TypeVar

import uvicorn

from opencodehub.config import Settings
from opencodehub.core import lazy
from opencodehub.core.logging import configure_logging, get_logger
from opencodehub.db.engine import Database

log = get_logger("opencodehub.serve")

T = TypeVar("T")

# libgit2 keeps recently read objects of each open repository, up to 256 MiB in all by default:
# walking the history of a 100,000-commit repository after a push (the commit index, the
# last-commit listing) filled it and kept it. Commits and trees are cheap to re-read from the
# packs, so a small cache costs little time and bounds the server's resident size.
GIT_OBJECT_CACHE_BYTES = 32 * 1024 * 1024
# glibc creates up to 8 malloc arenas per core for the threads of the thread pool; memory freed
# in one is reused only by threads that land on it, so a burst of blocking work (a large push's
# indexing) leaves the arenas' peaks resident. Two arenas keep the contention low enough.
MALLOC_ARENAS = 2
M_ARENA_MAX = -8
# No route speaks WebSocket (live logs are server-sent events), so uvicorn need not load a
# WebSocket library (about 1 MB) to offer the upgrade.
WEBSOCKETS = "none"
# How often freed heap pages are handed back to the kernel (malloc_trim), off the event loop.
TRIM_INTERVAL_SECONDS = 30.0


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only (musl has none)
    except (OSError, AttributeError):
        return None
    return libc


def _bound_git_object_cache(pygit2: ModuleType) -> None:
    pygit2.settings.cache_max_size(GIT_OBJECT_CACHE_BYTES)


def tune_memory() -> None:
    """Bound libgit2's object cache and glibc's arena count; call before any thread starts."""
    lazy.when_loaded("pygit2", _bound_git_object_cache)
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def release_memory() -> None:
    """Free unreachable repositories, then hand freed heap pages back to the kernel.

    A `pygit2.Repository` sits in a reference cycle with its own helpers (`branches`,
    `references`, ...), so dropping the last reference does not free it: it lives, with its
    mapped packs and its object cache, until the cyclic garbage collector runs, which after a
    few requests can be a long time. libgit2 reports the bytes its live caches hold; when there
    are any, a collection frees the repositories nobody uses any more. glibc keeps freed pages
    of its heaps resident after a burst (concurrent clones, a large push's indexing) unless
    asked to trim."""
    import gc

    if lazy.is_loaded("pygit2"):
        import pygit2

        if pygit2.settings.cached_memory[0] > 0:
            gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def freeze_startup_objects() -> None:
    """Move everything start-up made into the collector's permanent generation.

    The app's modules, routes, schemas and ORM mappings are a few hundred thousand objects that
    live as long as the process. Left in the oldest generation, every full collection walks them
    all, holding the GIL for a noticeable fraction of a second: a request that arrives then
    waits (a p99 spike). Frozen, they are never walked again. The young generations are
    collected first, so the frozen set holds no fresh garbage; a full collection would find
    next to nothing more (0-15 unreachable objects after building the app, measured) and cost
    0.12-0.18 s of start-up on a slow machine, walking the very objects being frozen."""
    import gc

    gc.collect(1)
    gc.freeze()


async def trim_memory_forever(interval: float = TRIM_INTERVAL_SECONDS) -> None:
    """`release_memory()` every `interval` seconds, off the event loop."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(release_memory)
        except Exception:
            log.exception("releasing memory failed")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop when it is installed, as uvicorn's own runner (and so every
    `OCH_WORKERS` > 1 process) does, else on asyncio's loop. uvloop's transports write and
    read sockets in C: the single-process server answers about a fifth more requests per
    second on it."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _announce(settings: Settings) -> None:
    url = settings.effective_base_url
    lines = [
        "",
        f"  OpenCodeHub is running at {url}",
        f"  data: {settings.data_dir}   database: {settings.masked()['database_url']}",
    ]
    if settings.ssh_enabled:
        lines.append(f"  git over SSH on port {settings.ssh_port}")
    lines += [
        f"  Create the first admin: open {url}/signup (the first account becomes site admin),",
        "  or run: opencodehub admin create-user NAME --email E --password P --admin",
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def start_migration(settings: Settings) -> subprocess.Popen[bytes]:
    """`opencodehub migrate` in a process of its own, started before the app is built.

    Alembic and the migration scripts (about 10 MB) never enter the serving process, and the
    schema is brought up to date on the second core while this one imports and builds the app
    (which touches no table until it serves)."""
    env = {
        **os.environ,
        "OCH_DATABASE_URL": settings.effective_database_url,
        "OCH_DATA_DIR": str(settings.data_dir),
    }
    return subprocess.Popen([sys.executable, "-m", "opencodehub", "migrate"], env=env)


def finish_migration(migration: subprocess.Popen[bytes]) -> None:
    if migration.wait() != 0:
        raise SystemExit("opencodehub serve: the database could not be migrated (see above)")


def http_config(app: Any, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
        timeout_keep_alive=30,
        ws=WEBSOCKETS,
    )


async def run_server(settings: Settings, *, migrate: bool = True) -> None:
    from opencodehub.app import create_app

    configure_logging(settings.log_level, settings.log_format)
    tune_memory()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.effective_database_url)
    migration = start_migration(settings) if migrate else None
    app = create_app(settings, database)
    if migration is not None:
        await asyncio.to_thread(finish_migration, migration)
    release_memory()  # what importing and building the app left behind
    freeze_startup_objects()
    server = uvicorn.Server(http_config(app, settings))
    tasks = [asyncio.create_task(server.serve(), name="http")]
    trimmer = asyncio.create_task(trim_memory_forever(), name="malloc-trim")
    ssh_server = None
    if settings.ssh_enabled:
        from opencodehub.git.ssh_listener import SSHListener

        ssh_server = SSHListener(settings, database)
        await ssh_server.start()
    _announce(settings)
    try:
        await asyncio.gather(*tasks)
    finally:
        trimmer.cancel()
        if ssh_server is not None:
            ssh_server.close()
            await ssh_server.wait_closed()


async def run_ssh_only(settings: Settings) -> None:
    from opencodehub.git.ssh import start_ssh_server

    configure_logging(settings.log_level, settings.log_format)
    tune_memory()
    database = Database(settings.effective_database_url)
    server = await start_ssh_server(settings, database)
    log.info("ssh server listening", port=settings.ssh_port)
    trimmer = asyncio.create_task(trim_memory_forever(), name="malloc-trim")
    try:
        await server.wait_closed()
    finally:
        trimmer.cancel()


def run_multiprocess(settings: Settings, *, migrate: bool = True) -> None:
    """`OCH_WORKERS` > 1: the app is imported, built and frozen once, then that many HTTP
    workers and the SSH server are forked from it (`supervisor.py`), all serving one socket."""
    from opencodehub.app import create_app
    from opencodehub.supervisor import Role, Supervisor

    configure_logging(settings.log_level, settings.log_format)
    tune_memory()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.effective_database_url)
    migration = start_migration(settings) if migrate else None
    app = create_app(settings, database)
    if migration is not None:
        finish_migration(migration)
    config = http_config(app, settings)
    listener = config.bind_socket()

    def serve_http() -> int:
        # Connections the parent may have opened are its own; the child opens its own.
        database.engine.dispose(close=False)
        run_event_loop(_serve_on(config, listener))
        return 0

    def serve_ssh() -> int:
        run_event_loop(run_ssh_only(settings))
        return 0

    roles = [Role("http", serve_http, settings.workers)]
    if settings.ssh_enabled:
        roles.append(Role("ssh", serve_ssh))
    release_memory()
    freeze_startup_objects()
    _announce(settings)
    try:
        Supervisor(roles).run()
    finally:
        listener.close()


async def _serve_on(config: uvicorn.Config, listener: socket.socket) -> None:
    trimmer = asyncio.create_task(trim_memory_forever(), name="malloc-trim")
    try:
        await uvicorn.Server(config).serve(sockets=[listener])
    finally:
        trimmer.cancel()
