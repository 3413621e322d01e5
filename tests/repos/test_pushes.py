"""Push policy (pre-receive) and push bookkeeping (post-receive)."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable

import pygit2
import pytest
from sqlalchemy import func, select

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.core.errors import Forbidden
from opencodehub.core.events import EventBus
from opencodehub.db.engine import Database
from opencodehub.repos import pushes, store
from opencodehub.repos.models import CommitRecord, ProtectedBranch, PushRecord, Repository
from opencodehub.repos.pushes import RefUpdate
from tests.git.gitutil import create_repo, git_env

ZERO = "0" * 40


class Builder:
    """Makes commits straight into the server's repository."""

    def __init__(self, git_repo: pygit2.Repository) -> None:
        self.git_repo = git_repo
        self.clock = 1_700_000_000

    def commit(self, parents: list[str], message: str, ref: str | None = None) -> str:
        self.clock += 60
        author = pygit2.Signature("Ann Author", "ann@example.com", self.clock, 0)
        blob = self.git_repo.create_blob(message.encode())
        builder = self.git_repo.TreeBuilder()
        builder.insert("file.txt", blob, pygit2.GIT_FILEMODE_BLOB)
        sha = self.git_repo.create_commit(
            ref, author, author, f"{message}\n\nbody", builder.write(), parents
        )
        return str(sha)

    def chain(self, parent: str | None, count: int, label: str) -> list[str]:
        shas: list[str] = []
        for index in range(count):
            parents = [shas[-1]] if shas else ([parent] if parent else [])
            shas.append(self.commit(parents, f"{label} {index}"))
        return shas


@pytest.fixture
def setup(db: Database, settings: Settings, make_user: Callable[..., User]):
    alice = make_user("alice")
    repo = create_repo(db, settings, alice, "pushy")
    git_repo = store.open_repository(settings, repo.id)
    return repo, alice, git_repo, Builder(git_repo)


def _set_ref(git_repo: pygit2.Repository, ref: str, sha: str) -> None:
    git_repo.references.create(ref, sha, force=True)


# check_push --------------------------------------------------------------------------------------


def test_check_push_protected_branches(db: Database, setup) -> None:
    repo, alice, git_repo, build = setup
    base = build.chain(None, 2, "base")
    ahead = build.commit([base[-1]], "ahead")
    rewritten = build.commit([base[0]], "rewritten")
    with db.session() as session:
        session.add_all(
            [
                ProtectedBranch(repository_id=repo.id, pattern="main"),
                ProtectedBranch(repository_id=repo.id, pattern="release/*"),
                ProtectedBranch(
                    repository_id=repo.id,
                    pattern="loose",
                    allow_force_pushes=True,
                    allow_deletions=True,
                ),
            ]
        )
    with db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        actor = Actor(user=session.get(User, alice.id), method="password")

        def check(*updates: RefUpdate) -> None:
            pushes.check_push(session, record, actor, list(updates), git_repo=git_repo)

        check(RefUpdate("refs/heads/main", base[-1], ahead))  # fast-forward
        check(RefUpdate("refs/heads/release/1.0", ZERO, base[-1]))  # creation
        check(RefUpdate("refs/heads/feature", base[-1], rewritten))  # unprotected force
        check(RefUpdate("refs/heads/feature", base[-1], ZERO))  # unprotected deletion
        check(
            RefUpdate("refs/heads/loose", base[-1], rewritten),
            RefUpdate("refs/heads/loose", base[-1], ZERO),
        )
        check(RefUpdate("refs/tags/v1", base[-1], rewritten))  # tags are not branches
        check(RefUpdate("refs/heads/main", base[-1], base[-1]))

        with pytest.raises(Forbidden, match="cannot force-push"):
            check(RefUpdate("refs/heads/main", base[-1], rewritten))
        with pytest.raises(Forbidden, match="refs/heads/release/2"):
            check(RefUpdate("refs/heads/release/2", base[-1], base[0]))  # rewinding is a force
        with pytest.raises(Forbidden, match="cannot delete a protected branch"):
            check(RefUpdate("refs/heads/release/1.0", base[-1], ZERO))
        with pytest.raises(Forbidden, match="default branch"):
            check(RefUpdate("refs/heads/main", base[-1], ZERO))
        with pytest.raises(Forbidden, match="managed by the server"):
            check(RefUpdate("refs/pull/1/head", ZERO, base[-1]))
        # A commit the repository cannot see is never taken for a fast-forward.
        with pytest.raises(Forbidden, match="cannot force-push"):
            check(RefUpdate("refs/heads/main", base[-1], "1" * 40))
        # Case matters in patterns, as in branch names.
        check(RefUpdate("refs/heads/MAIN", base[-1], rewritten))


def test_check_push_archived(db: Database, setup) -> None:
    repo, _alice, git_repo, build = setup
    sha = build.commit([], "one")
    with db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        record.is_archived = True
        with pytest.raises(Forbidden, match="archived"):
            pushes.check_push(
                session, record, None, [RefUpdate("refs/heads/x", ZERO, sha)], git_repo=git_repo
            )


def test_quarantined_objects_are_seen_through_open_pushed_objects(
    db: Database, settings: Settings, setup, tmp_path
) -> None:
    repo, _alice, git_repo, build = setup
    base = build.commit([], "base", "refs/heads/main")
    with db.session() as session:
        session.add(ProtectedBranch(repository_id=repo.id, pattern="main"))
    repo_path = store.repository_path(settings, repo.id)
    quarantine = repo_path / "objects" / "tmp_objdir-incoming-test"
    quarantine.mkdir()
    env = git_env(tmp_path / "home")
    env.update(
        GIT_DIR=str(repo_path),
        GIT_OBJECT_DIRECTORY=str(quarantine),
        GIT_ALTERNATE_OBJECT_DIRECTORIES=str(repo_path / "objects"),
    )
    tree = subprocess.run(
        ["git", "rev-parse", f"{base}^{{tree}}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    pushed = subprocess.run(
        ["git", "commit-tree", tree, "-p", base, "-m", "quarantined"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    update = RefUpdate("refs/heads/main", base, pushed)
    with db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        # Without the quarantine the new commit is invisible, so nothing proves a fast-forward.
        with pytest.raises(Forbidden):
            pushes.check_push(session, record, None, [update], git_repo=git_repo)
        seeing = pushes.open_pushed_objects(settings, repo.id, str(quarantine))
        pushes.check_push(session, record, None, [update], git_repo=seeing)

    for outside in (str(tmp_path), str(repo_path / "objects"), str(quarantine) + "/../../..", "/"):
        with pytest.raises(ValueError):
            pushes.open_pushed_objects(settings, repo.id, outside)
    assert os.path.isdir(quarantine)


# record_push -------------------------------------------------------------------------------------


def _rows(db: Database, repo: Repository) -> list[CommitRecord]:
    with db.session() as session:
        return list(
            session.scalars(select(CommitRecord).where(CommitRecord.repository_id == repo.id))
        )


def _record(db: Database, settings: Settings, repo: Repository, pusher: User | None, updates, **kw):
    with db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        return pushes.record_push(session, settings, record, pusher, updates, **kw)


def test_record_push_indexes_only_new_commits(db: Database, settings: Settings, setup) -> None:
    repo, alice, git_repo, build = setup
    main = build.chain(None, 5, "main")
    _set_ref(git_repo, "refs/heads/main", main[-1])
    result = _record(db, settings, repo, alice, [RefUpdate("refs/heads/main", ZERO, main[-1])])
    assert result.commits_indexed == 5
    rows = _rows(db, repo)
    assert {row.sha for row in rows} == set(main)
    sample = next(row for row in rows if row.sha == main[0])
    assert (sample.author_name, sample.author_email, sample.summary) == (
        "Ann Author",
        "ann@example.com",
        "main 0",
    )
    assert sample.authored_at.timestamp() == 1_700_000_060

    topic = build.chain(main[2], 3, "topic")
    _set_ref(git_repo, "refs/heads/topic", topic[-1])
    more = build.chain(main[-1], 2, "more")
    _set_ref(git_repo, "refs/heads/main", more[-1])
    result = _record(
        db,
        settings,
        repo,
        alice,
        [
            RefUpdate("refs/heads/topic", ZERO, topic[-1]),
            RefUpdate("refs/heads/main", main[-1], more[-1]),
        ],
    )
    assert result.commits_indexed == 5
    assert len(_rows(db, repo)) == 10

    # Two branches created at the same new commit: its history is indexed once, not hidden.
    shared = build.chain(main[-1], 2, "shared")
    _set_ref(git_repo, "refs/heads/a", shared[-1])
    _set_ref(git_repo, "refs/heads/b", shared[-1])
    result = _record(
        db,
        settings,
        repo,
        alice,
        [RefUpdate("refs/heads/a", ZERO, shared[-1]), RefUpdate("refs/heads/b", ZERO, shared[-1])],
    )
    assert result.commits_indexed == 2

    # A force push and a tag: recorded, forced flagged, tags never indexed on their own.
    rewritten = build.commit([main[0]], "rewritten")
    _set_ref(git_repo, "refs/heads/topic", rewritten)
    tagged = build.commit([], "only tagged")
    _set_ref(git_repo, "refs/tags/v1", tagged)
    _record(
        db,
        settings,
        repo,
        None,
        [
            RefUpdate("refs/heads/topic", topic[-1], rewritten),
            RefUpdate("refs/tags/v1", ZERO, tagged),
        ],
    )
    shas = {row.sha for row in _rows(db, repo)}
    assert rewritten in shas and tagged not in shas
    with db.session() as session:
        forced = session.scalar(select(PushRecord.forced).where(PushRecord.new_sha == rewritten))
        assert forced is True
        assert (
            session.scalar(select(PushRecord.pusher_id).where(PushRecord.new_sha == tagged)) is None
        )


def test_record_push_continues_a_capped_index(
    db: Database, settings: Settings, setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, alice, git_repo, build = setup
    monkeypatch.setattr(pushes, "COMMIT_INDEX_PUSH_LIMIT", 7)
    monkeypatch.setattr(pushes, "COMMIT_INDEX_BATCH", 3)
    monkeypatch.setattr(pushes, "COMMIT_INDEX_CHUNK", 6)
    history = build.chain(None, 25, "import")
    _set_ref(git_repo, "refs/heads/main", history[-1])
    result = _record(db, settings, repo, alice, [RefUpdate("refs/heads/main", ZERO, history[-1])])
    assert result.commits_indexed == 7
    assert result.pending_index is not None
    # The newest commits are the ones indexed first.
    assert {row.sha for row in _rows(db, repo)} == set(history[-7:])
    assert pushes.continue_commit_index(db, settings, result.pending_index) == 18
    assert {row.sha for row in _rows(db, repo)} == set(history)
    # Running it again (a retry) inserts nothing twice.
    assert pushes.continue_commit_index(db, settings, result.pending_index) == 0


class _RowCounter:
    """Counts index rows built and rows handed to the database, and the most ever held."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built = 0
        self.inserted = 0
        self.held = 0
        self.largest_insert = 0
        row, insert = pushes._commit_row, pushes._insert_batch

        def counting_row(repository_id: int, commit: pygit2.Commit) -> dict[str, object]:
            self.built += 1
            self.held = max(self.held, self.built - self.inserted)
            return row(repository_id, commit)

        def counting_insert(session, repository_id: int, rows: list[dict[str, object]]) -> int:
            self.inserted += len(rows)
            self.largest_insert = max(self.largest_insert, len(rows))
            return insert(session, repository_id, rows)

        monkeypatch.setattr(pushes, "_commit_row", counting_row)
        monkeypatch.setattr(pushes, "_insert_batch", counting_insert)


def test_commit_index_holds_one_batch_at_a_time(
    db: Database, settings: Settings, setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, alice, git_repo, build = setup
    monkeypatch.setattr(pushes, "COMMIT_INDEX_PUSH_LIMIT", 7)
    monkeypatch.setattr(pushes, "COMMIT_INDEX_BATCH", 3)
    monkeypatch.setattr(pushes, "COMMIT_INDEX_CHUNK", 6)
    history = build.chain(None, 26, "import")
    _set_ref(git_repo, "refs/heads/main", history[-1])
    counter = _RowCounter(monkeypatch)
    result = _record(db, settings, repo, alice, [RefUpdate("refs/heads/main", ZERO, history[-1])])
    # The push's own share stops at the cap, mid-batch, and says the walk goes on.
    assert result.commits_indexed == 7
    assert result.pending_index is not None
    assert counter.held <= 3
    assert counter.largest_insert <= 3

    sessions: list[int] = []
    opened = db.session

    def counting_session():
        sessions.append(1)
        return opened()

    monkeypatch.setattr(db, "session", counting_session)
    counter = _RowCounter(monkeypatch)
    assert pushes.continue_commit_index(db, settings, result.pending_index) == 19
    # 26 commits walked again in batches of 3 (never more held), two batches per transaction.
    assert counter.built == 26
    assert counter.held <= 3
    assert counter.largest_insert <= 3
    assert len(sessions) == 5
    assert {row.sha for row in _rows(db, repo)} == set(history)


def test_commit_index_cap_on_a_batch_boundary(
    db: Database, settings: Settings, setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _alice, git_repo, build = setup
    monkeypatch.setattr(pushes, "COMMIT_INDEX_BATCH", 3)
    history = build.chain(None, 6, "exact")
    _set_ref(git_repo, "refs/heads/main", history[-1])
    with db.session() as session:
        # As many commits as the cap: complete. One more than the cap: not.
        assert pushes.index_commits(
            session, settings, git_repo, repo.id, [history[-1]], [], limit=6
        ) == (6, True)
    with db.session() as session:
        assert pushes.index_commits(
            session, settings, git_repo, repo.id, [history[-1]], [], limit=0
        ) == (0, False)
    assert {row.sha for row in _rows(db, repo)} == set(history)


def test_record_push_indexes_exactly_the_new_commits_among_many_branches(
    db: Database, settings: Settings, setup
) -> None:
    repo, alice, git_repo, build = setup
    trunk = build.chain(None, 40, "trunk")
    _set_ref(git_repo, "refs/heads/main", trunk[-1])
    created = [RefUpdate("refs/heads/main", ZERO, trunk[-1])]
    for index in range(0, 40, 2):
        tip = build.commit([trunk[index]], f"side {index}")
        _set_ref(git_repo, f"refs/heads/side/{index}", tip)
        created.append(RefUpdate(f"refs/heads/side/{index}", ZERO, tip))
    assert _record(db, settings, repo, alice, created).commits_indexed == 60

    # main moves by two commits, one merging an old side branch; a new branch starts on top.
    merged = str(git_repo.references["refs/heads/side/10"].target)
    first = build.commit([trunk[-1], merged], "merge side 10")
    second = build.commit([first], "after the merge")
    ahead = build.commit([second], "ahead")
    _set_ref(git_repo, "refs/heads/main", second)
    _set_ref(git_repo, "refs/heads/ahead", ahead)
    result = _record(
        db,
        settings,
        repo,
        alice,
        [
            RefUpdate("refs/heads/main", trunk[-1], second),
            RefUpdate("refs/heads/ahead", ZERO, ahead),
        ],
    )
    assert result.commits_indexed == 3 and result.pending_index is None
    shas = [row.sha for row in _rows(db, repo)]
    assert len(shas) == len(set(shas)) == 63
    assert {first, second, ahead} <= set(shas)


def test_record_push_updates_the_repository(db: Database, settings: Settings, setup) -> None:
    repo, alice, git_repo, build = setup
    sha = build.commit([], "first")
    _set_ref(git_repo, "refs/heads/develop", sha)
    _set_ref(git_repo, "refs/heads/zeta", sha)
    _record(
        db,
        settings,
        repo,
        alice,
        [RefUpdate("refs/heads/zeta", ZERO, sha), RefUpdate("refs/heads/develop", ZERO, sha)],
    )
    with db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        assert record.default_branch == "zeta"  # the first pushed, as on GitHub
        assert record.is_empty is False
        assert record.pushed_at is not None
        assert record.size_kb == store.disk_usage_kb(settings, repo.id)
    assert store.open_repository(settings, repo.id).head.name == "refs/heads/zeta"

    # Once the repository has history, a push never moves the default branch.
    other = build.commit([sha], "second")
    _set_ref(git_repo, "refs/heads/main", other)
    _record(db, settings, repo, alice, [RefUpdate("refs/heads/main", ZERO, other)])
    with db.session() as session:
        assert session.get(Repository, repo.id).default_branch == "zeta"  # type: ignore[union-attr]

    # Deleting every branch makes the repository empty again.
    for name in ("develop", "zeta", "main"):
        git_repo.references.delete(f"refs/heads/{name}")
    _record(
        db,
        settings,
        repo,
        alice,
        [RefUpdate(f"refs/heads/{n}", sha, ZERO) for n in ("develop", "zeta", "main")],
    )
    with db.session() as session:
        assert session.get(Repository, repo.id).is_empty is True  # type: ignore[union-attr]


def test_push_event_is_published_after_commit_only(db: Database, settings: Settings, setup) -> None:
    repo, alice, git_repo, build = setup
    bus = EventBus()
    seen: list[dict] = []
    arrived = threading.Event()
    bus.subscribe("push", lambda payload: (seen.append(payload), arrived.set()))
    sha = build.commit([], "first")
    _set_ref(git_repo, "refs/heads/main", sha)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        pushes.record_push(
            session, settings, record, alice, [RefUpdate("refs/heads/main", ZERO, sha)], events=bus
        )
        raise Abort
    assert bus.flush()
    assert seen == []
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(PushRecord)) == 0

    _record(db, settings, repo, alice, [RefUpdate("refs/heads/main", ZERO, sha)], events=bus)
    assert arrived.wait(5)
    assert seen[0]["repository"] == "alice/pushy"
    assert seen[0]["pusher_id"] == alice.id
    assert seen[0]["commits_indexed"] == 1
    assert seen[0]["updates"][0]["after"] == sha
    bus.close()


def test_ref_update_properties() -> None:
    create = RefUpdate("refs/heads/a/b", ZERO, "1" * 40)
    assert create.is_create and not create.is_delete and create.branch == "a/b"
    delete = RefUpdate("refs/tags/v1", "1" * 40, "0" * 64)
    assert delete.is_delete and delete.branch is None


def test_branch_list_protected_flag_follows_githubs_patterns() -> None:
    from opencodehub.repos.browse import is_protected

    assert is_protected("release/1.0", ["release/*"])
    assert not is_protected("release/1.0/fix", ["release/*"])
    assert is_protected("release/1.0/fix", ["release/**"])
    assert is_protected("main", ["dev", "main"]) and not is_protected("mainline", ["main"])
    assert is_protected("v1", ["v[0-9]"]) and not is_protected("va", ["v[0-9]"])
