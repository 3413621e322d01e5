"""FastAPI dependencies for routes under `/repos/{owner}/{repo}/...`.

`RepoFor(action)` resolves the repository from the path and authorizes the caller through
`repos.authz` (via `service.get_for`): 404 when it does not exist or the caller may not see it,
403 when the caller may see it but not do `action`. Routes declare it after the caller's
dependencies (`CurrentActor`, `CurrentUser`), so an anonymous write is still answered 401 first.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from fastapi import Depends

from opencodehub.accounts.models import Permission
from opencodehub.deps import CurrentActor, SessionDep
from opencodehub.repos import service
from opencodehub.repos.models import Repository


@cache
def RepoFor(action: Permission | str = Permission.READ) -> Any:
    """`Depends(...)` giving the repository named by the `owner` and `repo` path parameters, if
    the caller may do `action` on it. One dependency object per action, so FastAPI's
    per-request cache resolves it once even when a route and its helpers both ask."""

    def repository_for(
        owner: str, repo: str, session: SessionDep, actor: CurrentActor
    ) -> Repository:
        return service.get_for(session, actor, owner, repo, action)

    repository_for.__name__ = f"repository_for_{getattr(action, 'value', action)}"
    return Depends(repository_for)


RepoRead = Annotated[Repository, RepoFor(Permission.READ)]
RepoWrite = Annotated[Repository, RepoFor(Permission.WRITE)]
RepoAdmin = Annotated[Repository, RepoFor(Permission.ADMIN)]
