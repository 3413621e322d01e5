"""Process roles: the app server (with the SSH server beside it in embedded mode)."""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from opencodehub.config import Settings
from opencodehub.core.logging import configure_logging, get_logger
from opencodehub.db.engine import Database

log = get_logger("opencodehub.serve")


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


async def run_server(settings: Settings, *, migrate: bool = True) -> None:
    from opencodehub.app import create_app
    from opencodehub.db import migrate as migrations

    configure_logging(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.effective_database_url)
    if migrate:
        await asyncio.to_thread(migrations.upgrade, database)
    app = create_app(settings, database)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    tasks = [asyncio.create_task(server.serve(), name="http")]
    ssh_server = None
    if settings.ssh_enabled:
        from opencodehub.git.ssh import start_ssh_server

        ssh_server = await start_ssh_server(settings, database)
    _announce(settings)
    try:
        await asyncio.gather(*tasks)
    finally:
        if ssh_server is not None:
            ssh_server.close()
            await ssh_server.wait_closed()


async def run_ssh_only(settings: Settings) -> None:
    from opencodehub.git.ssh import start_ssh_server

    configure_logging(settings.log_level, settings.log_format)
    database = Database(settings.effective_database_url)
    server = await start_ssh_server(settings, database)
    log.info("ssh server listening", port=settings.ssh_port)
    await server.wait_closed()


def run_multiprocess(settings: Settings, *, migrate: bool = True) -> None:
    """`OCH_WORKERS` > 1: uvicorn's supervisor runs that many app processes on one socket, and
    the SSH server runs in a child process of its own (`opencodehub ssh`)."""
    import os
    import subprocess

    from opencodehub.db import migrate as migrations

    configure_logging(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate:
        database = Database(settings.effective_database_url)
        migrations.upgrade(database)
        database.dispose()
    # Workers build their app from the environment, so command-line overrides travel there.
    os.environ.update(
        {
            "OCH_HTTP_HOST": settings.http_host,
            "OCH_HTTP_PORT": str(settings.http_port),
            "OCH_DATA_DIR": str(settings.data_dir),
        }
    )
    ssh_child = None
    if settings.ssh_enabled:
        ssh_child = subprocess.Popen([sys.executable, "-m", "opencodehub", "ssh"])
    _announce(settings)
    try:
        uvicorn.run(
            "opencodehub.app:create_app",
            factory=True,
            host=settings.http_host,
            port=settings.http_port,
            workers=settings.workers,
            log_config=None,
            access_log=False,
            proxy_headers=True,
            server_header=False,
            timeout_keep_alive=30,
        )
    finally:
        if ssh_child is not None:
            ssh_child.terminate()
            ssh_child.wait(timeout=10)
