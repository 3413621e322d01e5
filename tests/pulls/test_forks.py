"""Forks in the service: objects borrowed through alternates, kept whole when the parent goes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.pulls.conftest import commit_on
from tests.repos.git_helpers import commit_files, create_repo

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.core.errors import ValidationFailed
from opencodehub.core.pagination import Page
from opencodehub.db.engine import Database
from opencodehub.repos import forks, store
from opencodehub.repos import service as repos
from opencodehub.repos.models import Repository


def test_fork_borrows_objects_and_survives_its_parent(
    db: Database, settings: Settings, make_user: Callable[..., User]
) -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    parent = create_repo(db, settings, alice, "project")
    first = commit_files(settings, parent, {"a.txt": b"a\n"})
    commit_on(settings, parent, {"b.txt": b"b\n"}, branch="dev")
    with db.session() as session:
        actor = Actor(user=session.get(User, bob.id), method="password")
        source = session.get(Repository, parent.id)
        fork = forks.fork_repository(session, settings, actor, source)
        assert fork.fork_parent_id == parent.id and fork.name == "project"
        assert forks.fork_repository(session, settings, actor, source).id == fork.id
        fork_id = fork.id
        with pytest.raises(ValidationFailed):
            forks.fork_repository(
                session, settings, Actor(user=session.get(User, alice.id)), source
            )
        listed, total = forks.list_forks(session, actor, source, Page())
        assert [item.id for item in listed] == [fork_id] and total == 1
    with db.session() as session:
        carol_actor = Actor(user=session.get(User, carol.id), method="password")
        grandchild = forks.fork_repository(
            session, settings, carol_actor, session.get(Repository, fork_id), name="copy"
        )
        grandchild_id = grandchild.id
        assert forks.network_root(session, grandchild).id == parent.id
    fork_git = store.open_repository(settings, fork_id)
    assert str(fork_git.references["refs/heads/main"].target) == first
    assert sorted(fork_git.branches.local) == ["dev", "main"]
    # Only borrowed: the fork has no objects of its own.
    assert not any((store.repository_path(settings, fork_id) / "objects" / "pack").glob("*.pack"))
    assert forks.borrows_from(settings, fork_id)

    with db.session() as session:
        owner = Actor(user=session.get(User, alice.id), method="password")
        repos.delete_repository(session, settings, owner, session.get(Repository, parent.id))
    assert not store.repository_path(settings, parent.id).exists()
    assert not forks.borrows_from(settings, fork_id)
    for repository_id in (fork_id, grandchild_id):
        git = store.open_repository(settings, repository_id)
        commit = git.get(str(git.references["refs/heads/dev"].target))
        assert commit.tree["b.txt"].data == b"b\n"
    with db.session() as session:
        assert session.get(Repository, fork_id).fork_parent_id is None
