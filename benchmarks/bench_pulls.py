"""Pull request benchmarks on a large repository (see genrepo.py):

* the mergeability check (an in-memory three-way merge) and the merge itself (each method) of a
  pull request changing 500 files;
* the "Files changed" page of a pull request changing 1,000 files: the first page rendered by
  the server, and each htmx page after it (p50 / p95 over the runs).

The repository is the cached genrepo history (100,000 commits by default; `--small` uses the
2,000-commit one), shared into a throw-away data directory with `git clone --bare --shared`.

    python benchmarks/bench_pulls.py [--small] [--runs 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pygit2
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from genrepo import RepoSpec, generate

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.app import create_app
from opencodehub.config import Settings
from opencodehub.db.base import Base
from opencodehub.db.engine import Database
from opencodehub.db.models import Base as _models  # noqa: F401
from opencodehub.pulls import merge, service
from opencodehub.repos import service as repos
from opencodehub.repos import store


def _branch_changing(git: pygit2.Repository, base: pygit2.Commit, name: str, count: int) -> str:
    """A branch off `base` changing `count` existing files (one line appended to each)."""
    paths: list[str] = []

    def collect(tree: pygit2.Tree, prefix: str) -> None:
        for entry in tree:
            if len(paths) >= count:
                return
            path = f"{prefix}{entry.name}"
            if entry.type_str == "tree":
                collect(git.get(entry.id), path + "/")
            elif entry.filemode == pygit2.GIT_FILEMODE_BLOB:
                paths.append(path)

    collect(base.tree, "")
    index = pygit2.Index()
    index.read_tree(base.tree)
    for path in paths:
        blob = git.get(index[path].id)
        data = blob.data + f"\nchanged on {name}\n".encode()
        index.add(pygit2.IndexEntry(path, git.create_blob(data), pygit2.GIT_FILEMODE_BLOB))
    tree = index.write_tree(git)
    signature = pygit2.Signature("Bench", "bench@example.com", 1_700_000_000, 0)
    oid = git.create_commit(f"refs/heads/{name}", signature, signature, name, tree, [base.id])
    return str(oid)


def _stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered) * 1000:8.1f} ms   p95 {p95 * 1000:8.1f} ms   "
        f"(n={len(ordered)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="the 2,000-commit repository")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    spec = RepoSpec(commits=2_000, files=1_000) if args.small else RepoSpec()
    generated = generate(spec)
    work = Path(tempfile.mkdtemp(prefix="och-bench-pulls-"))
    try:
        settings = Settings(
            data_dir=work / "data",
            database_url=f"sqlite:///{work / 'och.db'}",
            secret_key="bench-secret-key-0123456789abcdef",
            ssh_enabled=False,
            run_background_jobs=False,
            _env_file=None,
        )
        database = Database(settings.effective_database_url)
        Base.metadata.create_all(database.engine)
        with database.session() as session:
            user = accounts.create_user(
                session, "alice", "alice@example.com", "correct horse battery", email_verified=True
            )
            actor = Actor(user=user, method="password")
            repository = repos.create_repository(session, settings, actor, user, "big")
            repository_id = repository.id
            user_id = user.id

        def actor_in(session: object) -> Actor:
            return Actor(user=session.get(User, user_id), method="password")  # type: ignore[attr-defined]

        path = store.repository_path(settings, repository_id)
        shutil.rmtree(path)
        subprocess.run(
            ["git", "clone", "-q", "--bare", "--shared", str(generated.path), str(path)],
            check=True,
        )
        git = pygit2.Repository(str(path))
        head = git.get(generated.head)
        assert isinstance(head, pygit2.Commit)
        git.references.create("refs/heads/main", head.id, force=True)
        git.set_head("refs/heads/main")
        print(f"repository: {spec.commits:,} commits, {spec.files:,} files ({generated.path.name})")

        feature = _branch_changing(git, head.parents[0], "feature-500", 500)
        with database.session() as session:
            actor = actor_in(session)
            repository = repos.get_by_id_for(session, actor, repository_id)
            repository.is_empty = False
            pull = service.create_pull(
                session, settings, actor, repository, title="500", head="feature-500", base="main"
            )
            number = pull.number
        print(f"pull request #{number}: {pull.changed_files} files changed")

        samples: list[float] = []
        for _ in range(args.runs):
            started = time.perf_counter()
            check = merge.check_mergeable(git, str(head.id), feature)
            samples.append(time.perf_counter() - started)
        assert check.mergeable
        print(f"mergeability check (500 files):      {_stats(samples)}")

        signature = pygit2.Signature("Alice", "alice@example.com")
        for method in ("merge", "squash", "rebase"):
            samples = []
            for _ in range(args.runs):
                started = time.perf_counter()
                if method == "merge":
                    merge.create_merge_commit(git, str(head.id), feature, "m", signature, signature)
                elif method == "squash":
                    merge.create_squash_commit(
                        git, str(head.id), feature, "s", signature, signature
                    )
                else:
                    merge.rebase_commits(git, str(head.id), feature, signature)
                samples.append(time.perf_counter() - started)
            print(f"{method:6} commit (500 files):          {_stats(samples)}")

        samples = []
        for _ in range(max(3, args.runs // 3)):
            with database.session() as session:
                actor = actor_in(session)
                repository = repos.get_by_id_for(session, actor, repository_id)
                pull = service.get_pull(session, repository, number)
                git.references.create("refs/heads/main", head.id, force=True)
                started = time.perf_counter()
                nested = session.begin_nested()
                service.merge_pull(session, settings, actor, repository, pull, method="merge")
                samples.append(time.perf_counter() - started)
                nested.rollback()
                session.rollback()
            git.references.create("refs/heads/main", head.id, force=True)
        print(f"full merge_pull (checks, records, CAS): {_stats(samples)}")

        _branch_changing(git, head.parents[0], "feature-1000", 1000)
        with database.session() as session:
            actor = actor_in(session)
            repository = repos.get_by_id_for(session, actor, repository_id)
            pull = service.create_pull(
                session, settings, actor, repository, title="1000", head="feature-1000", base="main"
            )
            big = pull.number
        app = create_app(settings, database)
        with TestClient(app) as client:
            # One untimed round: template compilation and cold caches are not the page's cost.
            client.get(f"/alice/big/pull/{big}/files")
            client.get(f"/alice/big/pull/{big}/files/page?start=500")
            first: list[float] = []
            pages: list[float] = []
            for _ in range(args.runs):
                started = time.perf_counter()
                response = client.get(f"/alice/big/pull/{big}/files")
                first.append(time.perf_counter() - started)
                assert response.status_code == 200
                started = time.perf_counter()
                response = client.get(f"/alice/big/pull/{big}/files/page?start=500")
                pages.append(time.perf_counter() - started)
                assert response.status_code == 200
            print(f"files page, first 50 of 1,000 files: {_stats(first)}")
            print(f"files page, one htmx page of 50:      {_stats(pages)}")
        database.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
