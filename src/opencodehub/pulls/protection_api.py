"""REST API for branch protection, in GitHub's shape.

`GET/PUT/DELETE /repos/{owner}/{repo}/branches/{branch}/protection` manage the rule whose
pattern is exactly the branch's name (wildcard rules are managed in the repository's settings
page, as GitHub's REST API also only addresses branches). Admin permission is required.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from opencodehub.accounts.models import Permission
from opencodehub.accounts.schemas import SimpleUser, TeamSimple
from opencodehub.config import Settings
from opencodehub.core.errors import NotFound
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.pulls import protection
from opencodehub.repos import browse, service, store
from opencodehub.repos.api import redirect_moved_repository
from opencodehub.repos.models import ProtectedBranch, Repository
from opencodehub.repos.schemas import urls_for

router = APIRouter(tags=["branches"], dependencies=[Depends(redirect_moved_repository)])

PROTECTION = "/repos/{owner}/{repo}/branches/{branch:path}/protection"
BranchName = Annotated[str, Path(max_length=browse.MAX_REF_LENGTH)]


class StatusChecksIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    strict: bool = False
    contexts: list[str] = Field(default_factory=list, max_length=100)
    checks: list[dict[str, Any]] | None = Field(default=None, max_length=100)


class ReviewsIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    dismiss_stale_reviews: bool = False
    require_code_owner_reviews: bool = False
    required_approving_review_count: int = 1


class RestrictionsIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    users: list[str] = Field(default_factory=list, max_length=100)
    teams: list[str] = Field(default_factory=list, max_length=100)
    apps: list[str] = Field(default_factory=list, max_length=100)


class ProtectionIn(BaseModel):
    """GitHub requires these four keys (each may be null)."""

    model_config = ConfigDict(extra="ignore")

    required_status_checks: StatusChecksIn | None
    enforce_admins: bool | None
    required_pull_request_reviews: ReviewsIn | None
    restrictions: RestrictionsIn | None
    allow_force_pushes: bool | None = None
    allow_deletions: bool | None = None


def _repository(session: Session, actor: Any, owner: str, repo: str) -> Repository:
    return service.get_for(session, actor, owner, repo, Permission.ADMIN)


def _require_branch(settings: Settings, repository: Repository, branch: str) -> None:
    git_repo = store.open_repository(settings, repository.id)
    browse.get_branch(git_repo, branch)  # 404 "Branch not found"


def _rule(session: Session, repository: Repository, branch: str) -> ProtectedBranch:
    rule = protection.get_rule(session, repository, branch)
    if rule is None:
        raise NotFound("Branch not protected")
    return rule


def protection_json(
    session: Session, settings: Settings, repository: Repository, branch: str, rule: ProtectedBranch
) -> dict[str, Any]:
    urls = urls_for(settings)
    url = f"{urls.api}/repos/{repository.full_name}/branches/{quote(branch, safe='')}/protection"
    data: dict[str, Any] = {"url": url}
    if rule.require_status_checks:
        contexts = rule.context_list
        data["required_status_checks"] = {
            "url": f"{url}/required_status_checks",
            "strict": rule.strict_status_checks,
            "contexts": contexts,
            "contexts_url": f"{url}/required_status_checks/contexts",
            "checks": [{"context": context, "app_id": None} for context in contexts],
        }
    if rule.require_pull_request:
        data["required_pull_request_reviews"] = {
            "url": f"{url}/required_pull_request_reviews",
            "dismiss_stale_reviews": rule.dismiss_stale_reviews,
            "require_code_owner_reviews": rule.require_code_owner_reviews,
            "required_approving_review_count": rule.required_approving_review_count,
            "require_last_push_approval": False,
        }
    data["required_signatures"] = {"url": f"{url}/required_signatures", "enabled": False}
    data["enforce_admins"] = {"url": f"{url}/enforce_admins", "enabled": rule.enforce_admins}
    if rule.restrict_pushes:
        users, teams = protection.allowance_names(session, rule)
        data["restrictions"] = {
            "url": f"{url}/restrictions",
            "users_url": f"{url}/restrictions/users",
            "teams_url": f"{url}/restrictions/teams",
            "apps_url": f"{url}/restrictions/apps",
            "users": [SimpleUser.of(u, urls).model_dump(mode="json") for u in users],
            "teams": [
                TeamSimple.of(t, repository.owner, urls).model_dump(mode="json") for t in teams
            ],
            "apps": [],
        }
    data["required_linear_history"] = {"enabled": False}
    data["allow_force_pushes"] = {"enabled": rule.allow_force_pushes}
    data["allow_deletions"] = {"enabled": rule.allow_deletions}
    data["block_creations"] = {"enabled": False}
    data["required_conversation_resolution"] = {"enabled": False}
    data["lock_branch"] = {"enabled": False}
    data["allow_fork_syncing"] = {"enabled": False}
    return data


@router.get(PROTECTION)
def get_protection(
    owner: str,
    repo: str,
    branch: BranchName,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> dict[str, Any]:
    repository = _repository(session, actor, owner, repo)
    _require_branch(settings, repository, branch)
    return protection_json(
        session, settings, repository, branch, _rule(session, repository, branch)
    )


@router.put(PROTECTION)
def put_protection(
    owner: str,
    repo: str,
    branch: BranchName,
    body: ProtectionIn,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> dict[str, Any]:
    repository = _repository(session, actor, owner, repo)
    _require_branch(settings, repository, branch)
    checks = body.required_status_checks
    reviews = body.required_pull_request_reviews
    restrictions = body.restrictions
    contexts = list(checks.contexts) if checks else []
    if checks and checks.checks:
        contexts += [str(c.get("context", "")) for c in checks.checks if c.get("context")]
    values = protection.RuleSettings(
        require_pull_request=reviews is not None,
        required_approving_review_count=reviews.required_approving_review_count if reviews else 0,
        dismiss_stale_reviews=bool(reviews and reviews.dismiss_stale_reviews),
        require_code_owner_reviews=bool(reviews and reviews.require_code_owner_reviews),
        require_status_checks=checks is not None,
        strict_status_checks=bool(checks and checks.strict),
        required_contexts=contexts,
        enforce_admins=bool(body.enforce_admins),
        restrict_pushes=restrictions is not None,
        push_users=restrictions.users if restrictions else (),
        push_teams=restrictions.teams if restrictions else (),
        allow_force_pushes=bool(body.allow_force_pushes),
        allow_deletions=bool(body.allow_deletions),
    )
    rule = protection.save_rule(session, actor, repository, branch, values)
    return protection_json(session, settings, repository, branch, rule)


@router.delete(PROTECTION, status_code=204)
def delete_protection(
    owner: str,
    repo: str,
    branch: BranchName,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    repository = _repository(session, actor, owner, repo)
    _require_branch(settings, repository, branch)
    protection.delete_rule(session, actor, repository, _rule(session, repository, branch))
    return Response(status_code=204)
