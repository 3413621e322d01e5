"""`opencodehub doctor`: checks that each dependency of this installation answers."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from opencodehub.config import Settings

MIN_GIT_VERSION = (2, 30)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_git(settings: Settings) -> Check:
    binary = shutil.which(settings.git_binary)
    if binary is None:
        return Check("git", False, f"{settings.git_binary!r} not found on PATH")
    try:
        output = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("git", False, f"cannot run {binary}: {exc}")
    match = re.search(r"(\d+)\.(\d+)", output)
    version = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if version < MIN_GIT_VERSION:
        wanted = ".".join(map(str, MIN_GIT_VERSION))
        return Check("git", False, f"{output} (OpenCodeHub needs {wanted} or newer)")
    return Check("git", True, output)


def check_database(settings: Settings) -> Check:
    from opencodehub.db import migrate as migrations
    from opencodehub.db.engine import Database

    database = Database(settings.effective_database_url)
    try:
        database.ping()
        current = migrations.current_revisions(database)
        head = migrations.head_revisions(database)
    except Exception as exc:  # any driver error is the finding itself
        return Check("database", False, f"{database.dialect}: {str(exc).splitlines()[0][:200]}")
    finally:
        database.dispose()
    if current != head:
        return Check(
            "database",
            False,
            f"{database.dialect}: schema at {sorted(current) or 'nothing'}, head is "
            f"{sorted(head)}: run `opencodehub migrate`",
        )
    return Check("database", True, f"{database.dialect}, schema at head")


def check_redis(settings: Settings) -> Check:
    if not settings.redis_url:
        return Check("redis", True, "not configured: embedded queue, cache and limits")
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=3)
    try:
        info = client.info("server")
    except redis.RedisError as exc:
        return Check("redis", False, str(exc)[:200])
    finally:
        client.close()
    return Check("redis", True, f"redis {info.get('redis_version', '?')}")


def check_storage(settings: Settings) -> Check:
    """Write, read back and delete a probe object through the configured adapter."""
    from opencodehub.storage import StorageError, build_storage

    key = f"doctor/probe-{secrets.token_hex(8)}"
    payload = b"opencodehub doctor probe\n"
    try:
        storage = build_storage(settings)
    except StorageError as exc:
        return Check("storage", False, f"{settings.storage_backend}: {exc}")
    where = storage.describe()
    try:
        storage.put(key, iter([payload]), size=len(payload), content_type="text/plain")
        with storage.get(key) as stream:
            read_back = stream.read()
        storage.delete(key)
        if storage.exists(key):
            return Check("storage", False, f"{where}: the probe object survived its deletion")
    except Exception as exc:  # any backend error is the finding itself
        return Check("storage", False, f"{where}: {str(exc).splitlines()[0][:200]}")
    finally:
        storage.close()
    if read_back != payload:
        return Check("storage", False, f"{where}: the probe object read back differently")
    return Check("storage", True, f"{where} (write, read, delete)")


def check_data_dir(settings: Settings) -> Check:
    repos = settings.repos_dir
    try:
        repos.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=repos, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("repositories", False, f"{repos} is not writable: {exc}")
    return Check("repositories", True, str(repos))


def run_checks(settings: Settings) -> list[Check]:
    return [
        check_git(settings),
        check_database(settings),
        check_redis(settings),
        check_storage(settings),
        check_data_dir(settings),
    ]
