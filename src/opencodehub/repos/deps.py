"""FastAPI dependencies for routes under `/repos/{owner}/{repo}/...` and the web pages under
`/{owner}/{repo}/...`.

`RepoFor(action)` resolves the repository from the path and authorizes the caller through
`repos.authz` (via `service.get_for`): 404 when it does not exist or the caller may not see it,
403 when the caller may see it but not do `action`. Routes declare it after the caller's
dependencies (`CurrentActor`, `CurrentUser`), so an anonymous write is still answered 401 first.

The web pages have their own flavour: `WebRepoFor(action)` also answers 404 for an owner name
that is a reserved word (a site path such as `/settings/...` is never a repository), and
`RepoPageFor(action)` gives the `RepoView` a page renders from (the repository, its git data and
whether the visitor may write). Their errors are the HTML error pages, as every error outside the
API is. Page routes declare them after `WebUser` and `CsrfProtected`, so an anonymous visitor is
sent to sign in, and a forged form refused, before the repository is looked up.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any
from urllib.parse import quote

import pygit2
from fastapi import Depends
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission
from opencodehub.accounts.names import RESERVED_USERNAMES
from opencodehub.config import Settings
from opencodehub.core.errors import NotFound
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.repos import service, store
from opencodehub.repos.authz import can
from opencodehub.repos.models import Repository


def _action_name(action: Permission | str) -> str:
    return str(getattr(action, "value", action))


@cache
def RepoFor(action: Permission | str = Permission.READ) -> Any:
    """`Depends(...)` giving the repository named by the `owner` and `repo` path parameters, if
    the caller may do `action` on it. One dependency object per action, so FastAPI's
    per-request cache resolves it once even when a route and its helpers both ask."""

    def repository_for(
        owner: str, repo: str, session: SessionDep, actor: CurrentActor
    ) -> Repository:
        return service.get_for(session, actor, owner, repo, action)

    repository_for.__name__ = f"repository_for_{_action_name(action)}"
    return Depends(repository_for)


RepoRead = Annotated[Repository, RepoFor(Permission.READ)]
RepoWrite = Annotated[Repository, RepoFor(Permission.WRITE)]
RepoAdmin = Annotated[Repository, RepoFor(Permission.ADMIN)]


# Web pages -------------------------------------------------------------------------------------


@dataclass
class RepoView:
    """The repository a page is about, the visitor's rights, and its git data."""

    repository: Repository
    git: pygit2.Repository
    can_write: bool

    @property
    def base(self) -> str:
        return f"/{quote(self.repository.owner.username)}/{quote(self.repository.name)}"


def page_repository(
    session: Session,
    actor: Actor,
    owner: str,
    repo: str,
    action: Permission | str = Permission.READ,
) -> Repository:
    """The repository a page at `/{owner}/{repo}/...` is about, if the visitor may do `action`
    on it; 404 otherwise, and for an owner name that is reserved for the site's own paths."""
    if owner.lower() in RESERVED_USERNAMES:
        raise NotFound()
    return service.get_for(session, actor, owner, repo, action)


def load_view(
    session: Session,
    settings: Settings,
    actor: Actor,
    owner: str,
    repo: str,
    action: Permission | str = Permission.READ,
) -> RepoView:
    """`page_repository`, opened for a page: its git data and whether the visitor may write
    (an archived repository is read-only for everyone)."""
    return view_of(session, settings, actor, page_repository(session, actor, owner, repo, action))


def view_of(session: Session, settings: Settings, actor: Actor, repository: Repository) -> RepoView:
    return RepoView(
        repository,
        store.open_repository(settings, repository.id),
        can(session, actor, repository, Permission.WRITE) and not repository.is_archived,
    )


@cache
def WebRepoFor(action: Permission | str = Permission.READ) -> Any:
    """`Depends(...)` giving the repository of a web page, as `page_repository` finds it."""

    def page_repository_for(
        owner: str, repo: str, session: SessionDep, actor: CurrentActor
    ) -> Repository:
        return page_repository(session, actor, owner, repo, action)

    page_repository_for.__name__ = f"page_repository_for_{_action_name(action)}"
    return Depends(page_repository_for)


@cache
def RepoPageFor(action: Permission | str = Permission.READ) -> Any:
    """`Depends(...)` giving the `RepoView` of a web page whose visitor may do `action`."""

    # The dependency is the default, not in the annotation: annotations are strings here, read
    # from the module's globals, where `action` does not exist.
    def repository_page_for(
        session: SessionDep,
        settings: SettingsDep,
        actor: CurrentActor,
        repository: Repository = WebRepoFor(action),
    ) -> RepoView:
        return view_of(session, settings, actor, repository)

    repository_page_for.__name__ = f"repository_page_for_{_action_name(action)}"
    return Depends(repository_page_for)


WebRepoRead = Annotated[Repository, WebRepoFor(Permission.READ)]
RepoPageRead = Annotated[RepoView, RepoPageFor(Permission.READ)]
RepoPageAdmin = Annotated[RepoView, RepoPageFor(Permission.ADMIN)]
