"""The repository domain's background jobs: maintenance after pushes, the LFS upload sweep."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.core.background import WorkerContext, registered_jobs
from opencodehub.core.events import EventBus
from opencodehub.db.engine import Database
from opencodehub.repos import jobs, lastcommit, store
from opencodehub.storage.local import TEMP_DIR, LocalStorage
from tests.repos.git_helpers import commit_files, create_repo


async def _until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def _bitmap_written(path: Path) -> bool:
    pack = path / "objects" / "pack"
    return (pack / "multi-pack-index").is_file() and any(pack.glob("multi-pack-index-*.bitmap"))


def _commit_graph_written(path: Path) -> bool:
    info = path / "objects" / "info"
    return (info / "commit-graphs" / "commit-graph-chain").is_file() or (
        info / "commit-graph"
    ).is_file()


# Debouncing (no database) -----------------------------------------------------------------------


def test_debouncer_runs_once_per_burst_and_again_after_a_poke_during_a_run() -> None:
    async def scenario() -> list[tuple[int, int]]:
        runs: list[tuple[int, int]] = []
        release = asyncio.Event()

        async def action(key: int) -> None:
            runs.append((key, len(runs)))
            if len(runs) == 3:
                await release.wait()

        debouncer = jobs.Debouncer(action, delay=0.01)
        for _ in range(5):
            debouncer.poke(1)
        debouncer.poke(2)
        await _until(lambda: debouncer.idle)
        assert sorted(key for key, _ in runs) == [1, 2]

        debouncer.poke(1)  # the third run blocks until released
        await _until(lambda: len(runs) == 3)
        debouncer.poke(1)
        debouncer.poke(1)  # both during the run: one more run after it, not two
        await asyncio.sleep(0.05)
        assert len(runs) == 3
        release.set()
        await _until(lambda: debouncer.idle and len(runs) == 4)
        return runs

    runs = asyncio.run(scenario())
    assert [key for key, _ in runs] in ([1, 2, 1, 1], [2, 1, 1, 1])


def test_jobs_are_registered() -> None:
    names = registered_jobs()
    assert "repository-maintenance" in names
    assert "lfs-upload-sweep" in names


# Maintenance after a push ----------------------------------------------------------------------


def test_push_event_repacks_writes_commit_graph_and_warms_the_home_listing(
    db: Database, settings: Settings, make_user: Callable[..., User]
) -> None:
    lastcommit.clear_memory_cache()
    alice = make_user("alice")
    repo = create_repo(db, settings, alice, auto_init=True)
    commit_files(settings, repo, {"src/a.py": b"a = 1\n"}, message="Add a")
    tip = commit_files(settings, repo, {"docs/b.md": b"# b\n"}, message="Add b")
    other = create_repo(db, settings, alice, "empty")
    path = store.repository_path(settings, repo.id)
    assert not _commit_graph_written(path) and not _bitmap_written(path)

    async def scenario() -> None:
        events = EventBus()
        context = WorkerContext(settings, db, events)
        task = asyncio.create_task(jobs.repository_maintenance_job(context, delay=0.01))
        try:
            await asyncio.sleep(0)  # let the job subscribe
            for _ in range(3):
                events.publish("push", {"repository_id": repo.id, "updates": []})
            events.publish("push", {"repository_id": other.id, "updates": []})
            events.publish("push", {"repository_id": "not an id"})
            await _until(
                lambda: (
                    lastcommit.cached(settings, repo.id, tip, "") is not None
                    and _commit_graph_written(path)
                )
            )
        finally:
            task.cancel()
            events.close()

    asyncio.run(scenario())
    assert _bitmap_written(path)
    loose = [child.name for child in (path / "objects").iterdir()]
    assert sorted(loose) == ["info", "pack"]  # the loose objects were rolled into a pack
    counted = subprocess.run(
        ["git", f"--git-dir={path}", "rev-list", "--objects", "--all", "--use-bitmap-index"],
        env=store.git_environment(settings, path),
        capture_output=True,
        check=True,
    )
    assert len(counted.stdout.splitlines()) >= 8  # 3 commits, their trees and blobs
    listing = lastcommit.cached(settings, repo.id, tip, "")
    assert listing is not None
    assert set(listing.entries) == {"README.md", "src", "docs"}
    assert listing.entries["docs"] == tip
    # The empty repository was skipped without error.
    assert not _commit_graph_written(store.repository_path(settings, other.id))


def test_maintenance_of_a_deleted_repository_is_a_no_op(
    db: Database, settings: Settings, make_user: Callable[..., User]
) -> None:
    context = WorkerContext(settings, db, EventBus())
    asyncio.run(jobs.maintain_repository(context, 987654))


def test_commit_graph_failure_is_reported_not_raised(settings: Settings, tmp_path: Path) -> None:
    not_a_repo = tmp_path / "nothing.git"
    not_a_repo.mkdir()
    assert asyncio.run(jobs.write_commit_graph(settings, not_a_repo)) is False


# Abandoned LFS uploads --------------------------------------------------------------------------


def _age(path: Path, hours: float) -> None:
    when = time.time() - hours * 3600
    os.utime(path, (when, when))


def test_sweep_removes_only_abandoned_uploads(settings: Settings) -> None:
    root = settings.data_dir / "storage"
    storage = LocalStorage(root)
    oid = "a" * 64
    storage.put(f"lfs/tmp/7/{oid}", [b"old staged"])
    storage.put(f"lfs/tmp/7/{'b' * 64}", [b"fresh staged"])
    storage.put(f"lfs/{oid[:2]}/{oid[2:4]}/{oid}", [b"a real object"])
    _age(root / "lfs" / "tmp" / "7" / oid, 2)
    _age(root / "lfs" / oid[:2] / oid[2:4] / oid, 5)  # old, but a stored object: kept
    temp = root / TEMP_DIR
    temp.mkdir(exist_ok=True)
    (temp / "put-old").write_bytes(b"interrupted")
    (temp / "put-new").write_bytes(b"being written")
    _age(temp / "put-old", 1.5)

    assert jobs.sweep_lfs_uploads(settings) == 2
    assert not (root / "lfs" / "tmp" / "7" / oid).exists()
    assert (root / "lfs" / "tmp" / "7" / ("b" * 64)).exists()
    assert (root / "lfs" / oid[:2] / oid[2:4] / oid).exists()
    assert not (temp / "put-old").exists()
    assert (temp / "put-new").exists()
    # An hour later the rest goes too.
    later = datetime.now(UTC) + timedelta(hours=2)
    assert jobs.sweep_lfs_uploads(settings, now=later) == 2
    assert jobs.sweep_lfs_uploads(settings, now=later) == 0


def test_forks_borrowing_objects_are_not_repacked(settings: Settings, tmp_path: Path) -> None:
    parent = tmp_path / "parent.git"
    fork = tmp_path / "fork.git"
    env = store.git_environment(settings)
    subprocess.run(["git", "init", "-q", "--bare", str(parent)], env=env, check=True)
    subprocess.run(
        ["git", "clone", "-q", "--bare", "--shared", str(parent), str(fork)], env=env, check=True
    )
    assert asyncio.run(jobs.repack_with_bitmaps(settings, fork)) is False
    assert not (fork / "objects" / "pack" / "multi-pack-index").exists()
