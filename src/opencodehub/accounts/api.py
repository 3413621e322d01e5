"""REST routes for users, keys, organizations and teams, in GitHub's shapes.

Routes parse, authorize through `repos.authz.authorize()`, call `accounts.service` and render the
`schemas` models. Lists take GitHub's `page`/`per_page` and answer with a `Link` header.

Where OpenCodeHub differs from GitHub:
- `GET /orgs/{org}/members` lists every member to every caller: there is no "public member"
  flag, and an organization's membership is not treated as secret.
- Team memberships are managed by organization owners (GitHub also lets team maintainers).
- `POST /orgs/{org}/teams` refuses `repo_names` and `parent_team_id` (no nested teams yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Path, Query, Request, Response
from sqlalchemy import bindparam, case, exists, func, or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import OrgRole, Team, User
from opencodehub.accounts.schemas import (
    ORG_ROLE_FROM_NAME,
    PERMISSION_FROM_NAME,
    AdminOrganizationCreate,
    ApiUrls,
    KeyCreate,
    KeySimple,
    OrganizationFull,
    OrganizationSimple,
    OrgMembershipOut,
    OrgMembershipPut,
    PrivateUser,
    PublicKeyOut,
    PublicUser,
    SimpleUser,
    TeamCreate,
    TeamFull,
    TeamMembershipOut,
    TeamMembershipPut,
    TeamSimple,
    UserUpdate,
)
from opencodehub.accounts.security.models import TotpDevice, WebAuthnCredential
from opencodehub.core.errors import Forbidden, NotFound, ValidationFailed
from opencodehub.core.pagination import Page, link_header
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, CurrentUser, SessionDep, SettingsDep
from opencodehub.repos.authz import authorize, org_role
from opencodehub.repos.models import Repository, TeamRepository, Visibility

router = APIRouter()

T = TypeVar("T")


# Rate limit and token scopes -------------------------------------------------------------------


async def enforce_rate_limit(
    request: Request, response: Response, actor: CurrentActor, settings: SettingsDep
) -> None:
    """GitHub's core rate limit: per user when authenticated, per IP otherwise. Also tells a
    token's caller which scopes it has (`X-OAuth-Scopes`), as GitHub does on every response."""
    limiter = request.app.state.rate_limiter
    if actor.user is not None:
        key, limit = f"user:{actor.user.id}", settings.rate_limit_authenticated
        who = f"user ID {actor.user.id}"
    else:
        client = request.client.host if request.client else "unknown"
        key, limit = f"ip:{client}", settings.rate_limit_anonymous
        who = client
    if limiter.in_process:
        window = limiter.hit(key, limit, 3600)
    else:
        window = await run_in_threadpool(limiter.hit, key, limit, 3600)
    request.state.rate_limit = window
    scope_headers = _token_scope_headers(actor)
    response.headers.update(scope_headers)
    # For the error handlers: an error response carries the scope headers too when they merge
    # `request.state.api_headers` into theirs.
    request.state.api_headers = scope_headers
    if not window.allowed:
        raise Forbidden(f"API rate limit exceeded for {who}.", headers=scope_headers)


def _token_scope_headers(actor: Actor) -> dict[str, str]:
    if actor.method == "oauth":
        from opencodehub.accounts.oauthapps.service import scopes_header

        return {"X-OAuth-Scopes": scopes_header(actor)}
    if actor.method != "token" or actor.token_id is None:
        return {}
    return {"X-OAuth-Scopes": ", ".join(actor.token_scopes)}


def accepts_scopes(*scopes: str, required: bool = True) -> Any:
    """Announce which token scopes the route accepts (`X-Accepted-OAuth-Scopes`) and, when
    `required`, refuse a token that has none of them. Passwords and sessions are not narrowed."""
    announced = ", ".join(scopes)

    async def dependency(request: Request, response: Response, actor: CurrentActor) -> None:
        response.headers["X-Accepted-OAuth-Scopes"] = announced
        request.state.api_headers = {
            **getattr(request.state, "api_headers", {}),
            "X-Accepted-OAuth-Scopes": announced,
        }
        if not required or actor.scopes is None or actor.user is None:
            return
        if not any(actor.has_scope(scope) for scope in scopes):
            raise Forbidden(
                f"This endpoint requires one of these token scopes: {announced}.",
                headers={
                    **getattr(request.state, "api_headers", {}),
                    "X-Accepted-OAuth-Scopes": announced,
                },
            )

    return Depends(dependency)


# Helpers ---------------------------------------------------------------------------------------


async def _urls(settings: SettingsDep) -> ApiUrls:
    return ApiUrls(settings.effective_base_url)


UrlsDep = Annotated[ApiUrls, Depends(_urls)]
PageParam = Annotated[int | None, Query(ge=0, le=100_000)]
# Ids are BIGINT: anything larger would overflow the column type on PostgreSQL and MariaDB.
RecordId = Annotated[int, Path(ge=1, le=2**63 - 1)]
PerPageParam = Annotated[int | None, Query(ge=0, le=1000)]


def paginate(
    request: Request,
    response: Response,
    urls: ApiUrls,
    items: Sequence[T],
    page: int | None,
    per_page: int | None,
) -> list[T]:
    """One page of `items`, and the `Link` header pointing at the others."""
    current = Page.of(page, per_page)
    chosen = list(items[current.offset : current.offset + current.limit])
    has_next = current.offset + current.limit < len(items)
    params = {
        name: value
        for name, value in request.query_params.items()
        if name not in ("page", "per_page")
    }
    link = link_header(f"{urls.base_url}{request.url.path}", params, current, len(items), has_next)
    if link:
        response.headers["Link"] = link
    return chosen


def _count_repos(session: Session, owner: User, visibility: Visibility) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Repository)
            .where(Repository.owner_id == owner.id, Repository.visibility == visibility)
        )
        or 0
    )


def _account_or_404(session: Session, actor: Actor, name: str) -> User:
    account = accounts.get_account(session, name)
    if account is None:
        raise NotFound()
    authorize(session, actor, account, "read")
    return account


def _user_or_404(session: Session, actor: Actor, name: str) -> User:
    account = _account_or_404(session, actor, name)
    if account.is_organization:
        raise NotFound()
    return account


def _org_or_404(session: Session, actor: Actor, name: str) -> User:
    org = accounts.get_organization(session, name)
    if org is None:
        raise NotFound()
    authorize(session, actor, org, "read")
    return org


def _require_org_member(session: Session, actor: Actor, org: User) -> None:
    """Members-only organization data. The organization itself is public, so a non-member is
    told 403 (as GitHub does) rather than 404: nothing about its existence leaks."""
    try:
        authorize(session, actor, org, "member")
    except NotFound:
        raise Forbidden(f"You must be a member of {org.username} to see this.") from None


def _can_see_team(session: Session, actor: Actor, org: User, team: Team) -> bool:
    """Closed teams are visible to every member; secret ones to owners and their own members."""
    if team.privacy != "secret" or actor.is_site_admin:
        return True
    if org_role(session, org, actor.user) == OrgRole.OWNER:
        return True
    return actor.user is not None and (
        accounts.get_team_membership(session, team, actor.user) is not None
    )


def _team_or_404(session: Session, actor: Actor, org: User, slug: str) -> Team:
    _require_org_member(session, actor, org)
    team = accounts.get_team(session, org, slug)
    if team is None or not _can_see_team(session, actor, org, team):
        raise NotFound()
    return team


def _team_full(session: Session, team: Team, org: User, urls: ApiUrls) -> TeamFull:
    repos_count = (
        session.scalar(
            select(func.count())
            .select_from(TeamRepository)
            .where(TeamRepository.team_id == team.id)
        )
        or 0
    )
    return TeamFull.of_team(
        team,
        org,
        urls,
        members_count=accounts.count_team_members(session, team),
        repos_count=repos_count,
        org_public_repos=_count_repos(session, org, Visibility.PUBLIC),
    )


def _public_profile(session: Session, account: User, urls: ApiUrls) -> PublicUser:
    return PublicUser.of_account(
        account, urls, public_repos=_count_repos(session, account, Visibility.PUBLIC)
    )


# One query for both counts of GET /user (the hottest authenticated route), built once.
# Whether signing in asks for a second factor (a confirmed authenticator app or a security key,
# as `security.service.has_two_factor` decides), asked in the same statement as the counts: one
# round trip for `GET /user`, the API's busiest read.
_HAS_SECOND_FACTOR = or_(
    exists().where(
        TotpDevice.user_id == bindparam("owner_id"), TotpDevice.confirmed_at.is_not(None)
    ),
    exists().where(WebAuthnCredential.user_id == bindparam("owner_id")),
)
_PRIVATE_PROFILE_FACTS = select(
    func.count(case((Repository.visibility == Visibility.PUBLIC, 1))),
    func.count(case((Repository.visibility == Visibility.PRIVATE, 1))),
    _HAS_SECOND_FACTOR,
).where(Repository.owner_id == bindparam("owner_id"))


def _private_profile(session: Session, user: User, urls: ApiUrls) -> PrivateUser:
    public_repos, private_repos, two_factor = session.execute(
        _PRIVATE_PROFILE_FACTS, {"owner_id": user.id}
    ).one()
    return PrivateUser.of_self(
        user,
        urls,
        public_repos=public_repos or 0,
        private_repos=private_repos or 0,
        two_factor=bool(two_factor),
    )


def _simple_users(users: Sequence[User], urls: ApiUrls) -> list[SimpleUser]:
    return [SimpleUser.of(user, urls) for user in users]


# Users -----------------------------------------------------------------------------------------


@router.get("/user", response_model=PrivateUser, response_model_exclude_none=False)
def get_authenticated_user(session: SessionDep, user: CurrentUser, urls: UrlsDep) -> PrivateUser:
    return _private_profile(session, user, urls)


@router.patch("/user", response_model=PrivateUser)
def update_authenticated_user(
    body: UserUpdate,
    session: SessionDep,
    actor: CurrentActor,
    user: CurrentUser,
    urls: UrlsDep,
    _scopes: None = accepts_scopes("user", required=False),
) -> PrivateUser:
    authorize(session, actor, user, "admin")
    accounts.update_profile(
        session,
        user,
        full_name=body.name,
        bio=body.bio,
        company=body.company,
        location=body.location,
        website=body.blog,
        public_email=body.email,
    )
    return _private_profile(session, user, urls)


@router.get("/users/{username}", response_model=PublicUser)
def get_user(username: str, session: SessionDep, actor: CurrentActor, urls: UrlsDep) -> PublicUser:
    return _public_profile(session, _account_or_404(session, actor, username), urls)


# SSH keys --------------------------------------------------------------------------------------

_KEY_READ_SCOPES = ("admin:public_key", "write:public_key", "read:public_key")


@router.get("/user/keys", response_model=list[PublicKeyOut])
def list_my_keys(
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    urls: UrlsDep,
    page: PageParam = None,
    per_page: PerPageParam = None,
    _scopes: None = accepts_scopes(*_KEY_READ_SCOPES),
) -> list[PublicKeyOut]:
    keys = paginate(request, response, urls, accounts.list_ssh_keys(session, user), page, per_page)
    return [PublicKeyOut.of(key, urls) for key in keys]


@router.post("/user/keys", response_model=PublicKeyOut, status_code=201)
def create_my_key(
    body: KeyCreate,
    session: SessionDep,
    user: CurrentUser,
    urls: UrlsDep,
    _scopes: None = accepts_scopes("admin:public_key", "write:public_key"),
) -> PublicKeyOut:
    return PublicKeyOut.of(accounts.add_ssh_key(session, user, body.title, body.key), urls)


@router.get("/user/keys/{key_id}", response_model=PublicKeyOut)
def get_my_key(
    key_id: RecordId,
    session: SessionDep,
    user: CurrentUser,
    urls: UrlsDep,
    _scopes: None = accepts_scopes(*_KEY_READ_SCOPES),
) -> PublicKeyOut:
    return PublicKeyOut.of(accounts.get_ssh_key(session, user, key_id), urls)


@router.delete("/user/keys/{key_id}", status_code=204)
def delete_my_key(
    key_id: RecordId,
    session: SessionDep,
    user: CurrentUser,
    _scopes: None = accepts_scopes("admin:public_key"),
) -> Response:
    accounts.delete_ssh_key(session, user, key_id)
    return Response(status_code=204)


@router.get("/users/{username}/keys", response_model=list[KeySimple])
def list_user_keys(
    username: str,
    request: Request,
    response: Response,
    session: SessionDep,
    actor: CurrentActor,
    urls: UrlsDep,
    page: PageParam = None,
    per_page: PerPageParam = None,
) -> list[KeySimple]:
    account = _account_or_404(session, actor, username)
    keys = [] if account.is_organization else accounts.list_ssh_keys(session, account)
    chosen = paginate(request, response, urls, keys, page, per_page)
    return [KeySimple(id=key.id, key=key.public_key) for key in chosen]


# Organizations ---------------------------------------------------------------------------------


@router.get("/orgs/{org}", response_model=OrganizationFull)
def get_org(org: str, session: SessionDep, actor: CurrentActor, urls: UrlsDep) -> OrganizationFull:
    record = _org_or_404(session, actor, org)
    return OrganizationFull.of_org(
        record, urls, public_repos=_count_repos(session, record, Visibility.PUBLIC)
    )


@router.get("/user/orgs", response_model=list[OrganizationSimple])
def list_my_orgs(
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    urls: UrlsDep,
    page: PageParam = None,
    per_page: PerPageParam = None,
    _scopes: None = accepts_scopes("user", "read:org"),
) -> list[OrganizationSimple]:
    orgs = paginate(request, response, urls, accounts.list_user_orgs(session, user), page, per_page)
    return [OrganizationSimple.of(org, urls) for org in orgs]


@router.get("/users/{username}/orgs", response_model=list[OrganizationSimple])
def list_user_orgs(
    username: str,
    request: Request,
    response: Response,
    session: SessionDep,
    actor: CurrentActor,
    urls: UrlsDep,
    page: PageParam = None,
    per_page: PerPageParam = None,
) -> list[OrganizationSimple]:
    user = _user_or_404(session, actor, username)
    orgs = paginate(request, response, urls, accounts.list_user_orgs(session, user), page, per_page)
    return [OrganizationSimple.of(org, urls) for org in orgs]


@router.post("/admin/organizations", response_model=OrganizationSimple, status_code=201)
def admin_create_org(
    body: AdminOrganizationCreate,
    session: SessionDep,
    actor: CurrentActor,
    user: CurrentUser,
    urls: UrlsDep,
    _scopes: None = accepts_scopes("admin:org"),
) -> OrganizationSimple:
    """GitHub Enterprise Server's organization creation, for site administrators."""
    if not actor.is_site_admin:
        raise Forbidden("Must be a site administrator.")
    admin = accounts.get_user(session, body.admin)
    if admin is None or not admin.is_active:
        raise ValidationFailed.invalid("Organization", "admin", "is not an existing user")
    org = accounts.create_organization(session, admin, body.login, full_name=body.profile_name)
    return OrganizationSimple.of(org, urls)


@router.get("/orgs/{org}/members", response_model=list[SimpleUser])
def list_org_members(
    org: str,
    request: Request,
    response: Response,
    session: SessionDep,
    actor: CurrentActor,
    urls: UrlsDep,
    role: Literal["all", "admin", "member"] = "all",
    page: PageParam = None,
    per_page: PerPageParam = None,
) -> list[SimpleUser]:
    record = _org_or_404(session, actor, org)
    members = accounts.list_org_members(
        session, record, None if role == "all" else ORG_ROLE_FROM_NAME[role]
    )
    return _simple_users(paginate(request, response, urls, members, page, per_page), urls)


@router.get("/orgs/{org}/members/{username}", status_code=204)
def check_org_member(org: str, username: str, session: SessionDep, actor: CurrentActor) -> Response:
    """204 when the user is a member, 404 when not (GitHub's membership check)."""
    record = _org_or_404(session, actor, org)
    user = accounts.get_user(session, username)
    if user is None or accounts.get_org_membership(session, record, user) is None:
        raise NotFound()
    return Response(status_code=204)


def _membership_target(session: Session, org: User, username: str) -> User:
    user = accounts.get_user(session, username)
    if user is None:
        raise NotFound()
    return user


@router.get("/orgs/{org}/memberships/{username}", response_model=OrgMembershipOut)
def get_org_membership(
    org: str,
    username: str,
    session: SessionDep,
    actor: CurrentActor,
    user: CurrentUser,
    urls: UrlsDep,
    _scopes: None = accepts_scopes("read:org", "write:org", "admin:org", "repo"),
) -> OrgMembershipOut:
    record = _org_or_404(session, actor, org)
    target = _membership_target(session, record, username)
    if target.id != user.id:
        _require_org_member(session, actor, record)
    membership = accounts.get_org_membership(session, record, target)
    if membership is None:
        raise NotFound()
    return OrgMembershipOut.of(record, target, membership.role, urls)


@router.put("/orgs/{org}/memberships/{username}", response_model=OrgMembershipOut)
def put_org_membership(
    org: str,
    username: str,
    session: SessionDep,
    actor: CurrentActor,
    urls: UrlsDep,
    body: OrgMembershipPut | None = None,
    _scopes: None = accepts_scopes("admin:org", required=False),
) -> OrgMembershipOut:
    record = _org_or_404(session, actor, org)
    authorize(session, actor, record, "admin")
    target = _membership_target(session, record, username)
    role = ORG_ROLE_FROM_NAME[(body or OrgMembershipPut()).role]
    membership = accounts.put_org_membership(session, record, target, role)
    return OrgMembershipOut.of(record, target, membership.role, urls)


@router.delete("/orgs/{org}/memberships/{username}", status_code=204)
def delete_org_membership(
    org: str,
    username: str,
    session: SessionDep,
    actor: CurrentActor,
    _scopes: None = accepts_scopes("admin:org", required=False),
) -> Response:
    record = _org_or_404(session, actor, org)
    authorize(session, actor, record, "admin")
    accounts.remove_org_member(session, record, _membership_target(session, record, username))
    return Response(status_code=204)


# Teams -----------------------------------------------------------------------------------------

_ORG_READ_SCOPES = ("read:org", "write:org", "admin:org")


@router.get("/orgs/{org}/teams", response_model=list[TeamSimple])
def list_teams(
    org: str,
    request: Request,
    response: Response,
    session: SessionDep,
    actor: CurrentActor,
    urls: UrlsDep,
    page: PageParam = None,
    per_page: PerPageParam = None,
    _scopes: None = accepts_scopes(*_ORG_READ_SCOPES),
) -> list[TeamSimple]:
    record = _org_or_404(session, actor, org)
    _require_org_member(session, actor, record)
    visible = [
        team
        for team in accounts.list_teams(session, record)
        if _can_see_team(session, actor, record, team)
    ]
    teams = paginate(request, response, urls, visible, page, per_page)
    return [TeamSimple.of(team, record, urls) for team in teams]


@router.post("/orgs/{org}/teams", response_model=TeamFull, status_code=201)
def create_team(
    org: str,
    body: TeamCreate,
    session: SessionDep,
    actor: CurrentActor,
    user: CurrentUser,
    urls: UrlsDep,
    _scopes: None = accepts_scopes("admin:org", required=False),
) -> TeamFull:
    record = _org_or_404(session, actor, org)
    authorize(session, actor, record, "admin")
    if body.repo_names:
        raise ValidationFailed.invalid(
            "Team", "repo_names", "is not supported; add repositories to the team afterwards"
        )
    if body.parent_team_id is not None:
        raise ValidationFailed.invalid("Team", "parent_team_id", "nested teams are not supported")
    maintainers = []
    for login in dict.fromkeys(body.maintainers):
        maintainer = accounts.get_user(session, login)
        if maintainer is None:
            raise ValidationFailed.invalid("Team", "maintainers", f"'{login[:39]}' is not a user")
        maintainers.append(maintainer)
    team = accounts.create_team(
        session,
        record,
        body.name,
        description=body.description,
        permission=PERMISSION_FROM_NAME[body.permission],
        privacy=body.privacy,
    )
    # As on GitHub, the creator maintains the new team (when they belong to the organization).
    if accounts.get_org_membership(session, record, user) is not None:
        maintainers.insert(0, user)
    for maintainer in dict.fromkeys(maintainers):
        accounts.add_team_member(session, team, maintainer, role="maintainer")
    return _team_full(session, team, record, urls)


@router.get("/orgs/{org}/teams/{team_slug}", response_model=TeamFull)
def get_team(
    org: str,
    team_slug: str,
    session: SessionDep,
    actor: CurrentActor,
    urls: UrlsDep,
    _scopes: None = accepts_scopes(*_ORG_READ_SCOPES),
) -> TeamFull:
    record = _org_or_404(session, actor, org)
    team = _team_or_404(session, actor, record, team_slug)
    return _team_full(session, team, record, urls)


@router.get("/orgs/{org}/teams/{team_slug}/members", response_model=list[SimpleUser])
def list_team_members(
    org: str,
    team_slug: str,
    request: Request,
    response: Response,
    session: SessionDep,
    actor: CurrentActor,
    urls: UrlsDep,
    role: Literal["all", "member", "maintainer"] = "all",
    page: PageParam = None,
    per_page: PerPageParam = None,
    _scopes: None = accepts_scopes(*_ORG_READ_SCOPES),
) -> list[SimpleUser]:
    record = _org_or_404(session, actor, org)
    team = _team_or_404(session, actor, record, team_slug)
    members = accounts.list_team_members(session, team, None if role == "all" else role)
    return _simple_users(paginate(request, response, urls, members, page, per_page), urls)


def _team_membership_out(org: User, team: Team, user: User, role: str, urls: ApiUrls) -> Any:
    return TeamMembershipOut(
        url=f"{urls.org(org.username)}/teams/{team.slug}/memberships/{user.username}",
        role=role,  # type: ignore[arg-type]
    )


@router.get(
    "/orgs/{org}/teams/{team_slug}/memberships/{username}", response_model=TeamMembershipOut
)
def get_team_membership(
    org: str,
    team_slug: str,
    username: str,
    session: SessionDep,
    actor: CurrentActor,
    urls: UrlsDep,
    _scopes: None = accepts_scopes(*_ORG_READ_SCOPES),
) -> TeamMembershipOut:
    record = _org_or_404(session, actor, org)
    team = _team_or_404(session, actor, record, team_slug)
    target = _membership_target(session, record, username)
    member = accounts.get_team_membership(session, team, target)
    if member is None:
        raise NotFound()
    return _team_membership_out(record, team, target, member.role, urls)


@router.put(
    "/orgs/{org}/teams/{team_slug}/memberships/{username}", response_model=TeamMembershipOut
)
def put_team_membership(
    org: str,
    team_slug: str,
    username: str,
    session: SessionDep,
    actor: CurrentActor,
    urls: UrlsDep,
    body: TeamMembershipPut | None = None,
    _scopes: None = accepts_scopes("admin:org", required=False),
) -> TeamMembershipOut:
    record = _org_or_404(session, actor, org)
    team = _team_or_404(session, actor, record, team_slug)
    authorize(session, actor, record, "admin")
    target = _membership_target(session, record, username)
    member = accounts.add_team_member(session, team, target, (body or TeamMembershipPut()).role)
    return _team_membership_out(record, team, target, member.role, urls)


@router.delete("/orgs/{org}/teams/{team_slug}/memberships/{username}", status_code=204)
def delete_team_membership(
    org: str,
    team_slug: str,
    username: str,
    session: SessionDep,
    actor: CurrentActor,
    _scopes: None = accepts_scopes("admin:org", required=False),
) -> Response:
    record = _org_or_404(session, actor, org)
    team = _team_or_404(session, actor, record, team_slug)
    authorize(session, actor, record, "admin")
    accounts.remove_team_member(session, team, _membership_target(session, record, username))
    return Response(status_code=204)
