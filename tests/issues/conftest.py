"""Fixtures for the issues tests: a repository with its owner, and actors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import service as repos
from opencodehub.repos.models import Repository, Visibility
from tests.repos.git_helpers import create_repo


@dataclass
class RepoWorld:
    owner: User
    repo: Repository


def actor(user: User | None) -> Actor:
    return Actor(user=user, method="password") if user is not None else Actor.anonymous()


@pytest.fixture
def world(db: Database, settings: Settings, make_user: Callable[..., User]) -> RepoWorld:
    owner = make_user("owner")
    repo = create_repo(db, settings, owner, "project")
    return RepoWorld(owner, repo)


def add_collaborator(
    db: Database, repo: Repository, owner: User, user: User, permission: Permission
) -> None:
    with db.session() as session:
        target = session.get(Repository, repo.id)
        member = session.get(User, user.id)
        owner_row = session.get(User, owner.id)
        assert target is not None and member is not None and owner_row is not None
        repos.add_collaborator(session, actor(owner_row), target, member, permission)


def private_repo(db: Database, settings: Settings, owner: User, name: str) -> Repository:
    return create_repo(db, settings, owner, name, visibility=Visibility.PRIVATE)
