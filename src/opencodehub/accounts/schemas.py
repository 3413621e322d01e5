"""Pydantic models of the accounts REST API, in GitHub's REST v3 shapes.

Outputs are built from the ORM rows with an `ApiUrls` that makes every `url` field absolute
(`{base}/api/v3/...`); inputs ignore unknown fields, as GitHub does.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from opencodehub.accounts.models import OrgRole, Permission, SSHKey, Team, User
from opencodehub.core.time import isoformat

API_PREFIX = "/api/v3"


def node_id(kind: str, record_id: int) -> str:
    """GitHub's (legacy) global node id: base64 of `0{len(kind)}:{kind}{id}`."""
    return base64.b64encode(f"0{len(kind)}:{kind}{record_id}".encode()).decode("ascii")


@dataclass(frozen=True)
class ApiUrls:
    """Absolute URLs for API resources and the matching web pages."""

    base_url: str

    @property
    def api(self) -> str:
        return f"{self.base_url}{API_PREFIX}"

    def user(self, login: str) -> str:
        return f"{self.api}/users/{quote(login)}"

    def org(self, login: str) -> str:
        return f"{self.api}/orgs/{quote(login)}"

    def html(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def avatar(self, account: User) -> str:
        return f"{self.base_url}/avatars/u/{account.id}"


# Permissions and roles as GitHub names them ----------------------------------------------------

# GitHub's team `permission` words for our permission levels.
TEAM_PERMISSION_NAMES: dict[Permission, str] = {
    Permission.READ: "pull",
    Permission.TRIAGE: "triage",
    Permission.WRITE: "push",
    Permission.MAINTAIN: "maintain",
    Permission.ADMIN: "admin",
}
PERMISSION_FROM_NAME = {name: permission for permission, name in TEAM_PERMISSION_NAMES.items()}
# GitHub calls an organization owner's role "admin".
ORG_ROLE_NAMES: dict[OrgRole, str] = {OrgRole.OWNER: "admin", OrgRole.MEMBER: "member"}
ORG_ROLE_FROM_NAME = {name: role for role, name in ORG_ROLE_NAMES.items()}


class _Out(BaseModel):
    """Output models: datetimes in GitHub's `2011-01-26T19:01:12Z` form."""

    @field_serializer("*", when_used="json")
    def _timestamps(self, value: object) -> object:
        if isinstance(value, datetime):
            return isoformat(value)
        return value


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


# Users -----------------------------------------------------------------------------------------


class SimpleUser(_Out):
    login: str
    id: int
    node_id: str
    avatar_url: str
    gravatar_id: str = ""
    url: str
    html_url: str
    followers_url: str
    following_url: str
    gists_url: str
    starred_url: str
    subscriptions_url: str
    organizations_url: str
    repos_url: str
    events_url: str
    received_events_url: str
    type: Literal["User", "Organization"]
    user_view_type: str = "public"
    site_admin: bool

    @classmethod
    def of(cls, account: User, urls: ApiUrls) -> SimpleUser:
        return cls(**_simple_user_fields(account, urls))


def _simple_user_fields(account: User, urls: ApiUrls) -> dict[str, object]:
    url = urls.user(account.username)
    return {
        "login": account.username,
        "id": account.id,
        "node_id": node_id("Organization" if account.is_organization else "User", account.id),
        "avatar_url": urls.avatar(account),
        "url": url,
        "html_url": urls.html(account.username),
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": "Organization" if account.is_organization else "User",
        "site_admin": account.is_site_admin,
    }


class PublicUser(SimpleUser):
    name: str | None
    company: str | None
    blog: str
    location: str | None
    email: str | None
    hireable: bool | None = None
    bio: str | None
    twitter_username: str | None = None
    public_repos: int
    public_gists: int = 0
    followers: int = 0
    following: int = 0
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of_account(cls, account: User, urls: ApiUrls, *, public_repos: int) -> PublicUser:
        return cls(**_public_user_fields(account, urls, public_repos))


def _public_user_fields(account: User, urls: ApiUrls, public_repos: int) -> dict[str, object]:
    return {
        **_simple_user_fields(account, urls),
        "name": account.full_name or None,
        "company": account.company or None,
        "blog": account.website,
        "location": account.location or None,
        "email": account.public_email or None,
        "bio": account.bio or None,
        "public_repos": public_repos,
        "created_at": account.created_at,
        "updated_at": account.updated_at,
    }


class Plan(BaseModel):
    name: str = "free"
    space: int = 976562499
    collaborators: int = 0
    private_repos: int = 10000


class PrivateUser(PublicUser):
    private_gists: int = 0
    total_private_repos: int
    owned_private_repos: int
    disk_usage: int = 0
    collaborators: int = 0
    two_factor_authentication: bool
    plan: Plan = Field(default_factory=Plan)

    @classmethod
    def of_self(
        cls,
        user: User,
        urls: ApiUrls,
        *,
        public_repos: int,
        private_repos: int,
        two_factor: bool,
    ) -> PrivateUser:
        """The signed-in user's own profile; `two_factor` is whether signing in asks for a
        second factor (an authenticator app or a security key)."""
        return cls(
            **_public_user_fields(user, urls, public_repos),
            total_private_repos=private_repos,
            owned_private_repos=private_repos,
            two_factor_authentication=two_factor,
        )


class UserUpdate(_In):
    """PATCH /user. Fields GitHub has but OpenCodeHub does not store (hireable,
    twitter_username) are accepted and ignored, as unknown fields are."""

    name: str | None = None
    email: str | None = None
    blog: str | None = None
    company: str | None = None
    location: str | None = None
    bio: str | None = None


# Keys ------------------------------------------------------------------------------------------


class PublicKeyOut(_Out):
    id: int
    key: str
    url: str
    title: str
    created_at: datetime
    verified: bool = True
    read_only: bool
    last_used: datetime | None = None

    @classmethod
    def of(cls, key: SSHKey, urls: ApiUrls) -> PublicKeyOut:
        return cls(
            id=key.id,
            key=key.public_key,
            url=f"{urls.api}/user/keys/{key.id}",
            title=key.title,
            created_at=key.created_at,
            read_only=key.read_only,
            last_used=key.last_used_at,
        )


class KeySimple(BaseModel):
    """GET /users/{username}/keys: only what anyone may see."""

    id: int
    key: str


class KeyCreate(_In):
    title: str = ""
    key: str = Field(min_length=1)


# Organizations ---------------------------------------------------------------------------------


class OrganizationSimple(_Out):
    login: str
    id: int
    node_id: str
    url: str
    repos_url: str
    events_url: str
    hooks_url: str
    issues_url: str
    members_url: str
    public_members_url: str
    avatar_url: str
    description: str | None

    @classmethod
    def of(cls, org: User, urls: ApiUrls) -> OrganizationSimple:
        return cls(**_org_simple_fields(org, urls))


def _org_simple_fields(org: User, urls: ApiUrls) -> dict[str, object]:
    url = urls.org(org.username)
    return {
        "login": org.username,
        "id": org.id,
        "node_id": node_id("Organization", org.id),
        "url": url,
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events",
        "hooks_url": f"{url}/hooks",
        "issues_url": f"{url}/issues",
        "members_url": f"{url}/members{{/member}}",
        "public_members_url": f"{url}/public_members{{/member}}",
        "avatar_url": urls.avatar(org),
        "description": org.bio or None,
    }


class OrganizationFull(OrganizationSimple):
    name: str | None
    company: str | None
    blog: str
    location: str | None
    email: str | None
    twitter_username: str | None = None
    is_verified: bool = False
    has_organization_projects: bool = False
    has_repository_projects: bool = False
    public_repos: int
    public_gists: int = 0
    followers: int = 0
    following: int = 0
    html_url: str
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = None
    type: Literal["Organization"] = "Organization"

    @classmethod
    def of_org(cls, org: User, urls: ApiUrls, *, public_repos: int) -> OrganizationFull:
        return cls(
            **_org_simple_fields(org, urls),
            name=org.full_name or None,
            company=org.company or None,
            blog=org.website,
            location=org.location or None,
            email=org.public_email or None,
            public_repos=public_repos,
            html_url=urls.html(org.username),
            created_at=org.created_at,
            updated_at=org.updated_at,
        )


class OrgMembershipOut(_Out):
    url: str
    state: Literal["active", "pending"] = "active"
    role: Literal["admin", "member"]
    organization_url: str
    organization: OrganizationSimple
    user: SimpleUser

    @classmethod
    def of(cls, org: User, user: User, role: OrgRole, urls: ApiUrls) -> OrgMembershipOut:
        return cls(
            url=f"{urls.org(org.username)}/memberships/{quote(user.username)}",
            role=ORG_ROLE_NAMES[role],  # type: ignore[arg-type]
            organization_url=urls.org(org.username),
            organization=OrganizationSimple.of(org, urls),
            user=SimpleUser.of(user, urls),
        )


class OrgMembershipPut(_In):
    role: Literal["admin", "member"] = "member"


class AdminOrganizationCreate(_In):
    """GitHub Enterprise Server's `POST /admin/organizations`."""

    login: str = Field(min_length=1)
    admin: str = Field(min_length=1)
    profile_name: str = ""


# Teams -----------------------------------------------------------------------------------------


class TeamSimple(_Out):
    id: int
    node_id: str
    url: str
    html_url: str
    name: str
    slug: str
    description: str | None
    privacy: Literal["closed", "secret"]
    notification_setting: str = "notifications_enabled"
    permission: str
    members_url: str
    repositories_url: str
    parent: None = None

    @classmethod
    def of(cls, team: Team, org: User, urls: ApiUrls) -> TeamSimple:
        return cls(**_team_fields(team, org, urls))


def _team_fields(team: Team, org: User, urls: ApiUrls) -> dict[str, object]:
    url = f"{urls.org(org.username)}/teams/{team.slug}"
    return {
        "id": team.id,
        "node_id": node_id("Team", team.id),
        "url": url,
        "html_url": urls.html(f"orgs/{org.username}/teams/{team.slug}"),
        "name": team.name,
        "slug": team.slug,
        "description": team.description or None,
        "privacy": team.privacy,
        "permission": TEAM_PERMISSION_NAMES[team.permission],
        "members_url": f"{url}/members{{/member}}",
        "repositories_url": f"{url}/repos",
    }


class TeamFull(TeamSimple):
    members_count: int
    repos_count: int
    created_at: datetime
    updated_at: datetime
    organization: OrganizationFull

    @classmethod
    def of_team(
        cls,
        team: Team,
        org: User,
        urls: ApiUrls,
        *,
        members_count: int,
        repos_count: int,
        org_public_repos: int,
    ) -> TeamFull:
        return cls(
            **_team_fields(team, org, urls),
            members_count=members_count,
            repos_count=repos_count,
            created_at=team.created_at,
            updated_at=team.updated_at,
            organization=OrganizationFull.of_org(org, urls, public_repos=org_public_repos),
        )


class TeamCreate(_In):
    name: str = Field(min_length=1)
    description: str = ""
    privacy: Literal["closed", "secret"] = "closed"
    # GitHub accepts only the two legacy words here; finer levels are set per repository.
    permission: Literal["pull", "push"] = "pull"
    maintainers: list[str] = Field(default_factory=list, max_length=100)
    repo_names: list[str] = Field(default_factory=list)
    parent_team_id: int | None = None


class TeamMembershipOut(BaseModel):
    url: str
    role: Literal["member", "maintainer"]
    state: Literal["active", "pending"] = "active"


class TeamMembershipPut(_In):
    role: Literal["member", "maintainer"] = "member"
