"""Pydantic models of the repository REST API, in GitHub's REST v3 shapes.

Other domains embed a repository in their own JSON with `FullRepository.of(...)` (or the
`repository_json(repo, settings, permission)` shortcut), so a repository looks the same
everywhere: in its own endpoint, in a push event, in an issue or a pull request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_serializer
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import AccountKind, Permission, SSHKey, User
from opencodehub.accounts.schemas import ApiUrls, SimpleUser, node_id
from opencodehub.config import Settings
from opencodehub.core.time import isoformat
from opencodehub.repos import templates
from opencodehub.repos.models import Repository, Visibility

# GitHub's words for a permission in `PUT .../collaborators/{username}` and team grants.
PERMISSION_FROM_NAME: dict[str, Permission] = {
    "pull": Permission.READ,
    "read": Permission.READ,
    "triage": Permission.TRIAGE,
    "push": Permission.WRITE,
    "write": Permission.WRITE,
    "maintain": Permission.MAINTAIN,
    "admin": Permission.ADMIN,
}
# The legacy `permission` field of `.../permission` knows only admin, write, read and none.
LEGACY_PERMISSION_NAME: dict[Permission, str] = {
    Permission.READ: "read",
    Permission.TRIAGE: "read",
    Permission.WRITE: "write",
    Permission.MAINTAIN: "write",
    Permission.ADMIN: "admin",
}
# The invitation's `permissions` word.
INVITATION_PERMISSION_NAME: dict[Permission, str] = {
    Permission.READ: "read",
    Permission.TRIAGE: "triage",
    Permission.WRITE: "write",
    Permission.MAINTAIN: "maintain",
    Permission.ADMIN: "admin",
}


def urls_for(settings: Settings) -> ApiUrls:
    return ApiUrls(settings.effective_base_url)


class _Out(BaseModel):
    """Output models: datetimes in GitHub's `2011-01-26T19:01:12Z` form."""

    @field_serializer("*", when_used="json")
    def _timestamps(self, value: object) -> object:
        if isinstance(value, datetime):
            return isoformat(value)
        return value


class _In(BaseModel):
    """Input models ignore unknown fields, as GitHub does."""

    model_config = ConfigDict(extra="ignore")


# Repositories ----------------------------------------------------------------------------------


class RepositoryPermissions(BaseModel):
    admin: bool
    maintain: bool
    push: bool
    triage: bool
    pull: bool

    @classmethod
    def of(cls, permission: Permission) -> RepositoryPermissions:
        return cls(
            admin=permission >= Permission.ADMIN,
            maintain=permission >= Permission.MAINTAIN,
            push=permission >= Permission.WRITE,
            triage=permission >= Permission.TRIAGE,
            pull=permission >= Permission.READ,
        )


class LicenseSimple(BaseModel):
    key: str
    name: str
    spdx_id: str
    url: str | None
    node_id: str


class FullRepository(_Out):
    """GitHub's full repository object. `permissions` is there only for a signed-in caller."""

    id: int
    node_id: str
    name: str
    full_name: str
    private: bool
    owner: SimpleUser
    html_url: str
    description: str | None
    fork: bool
    url: str
    archive_url: str
    assignees_url: str
    blobs_url: str
    branches_url: str
    collaborators_url: str
    comments_url: str
    commits_url: str
    compare_url: str
    contents_url: str
    contributors_url: str
    deployments_url: str
    downloads_url: str
    events_url: str
    forks_url: str
    git_commits_url: str
    git_refs_url: str
    git_tags_url: str
    git_url: str
    issue_comment_url: str
    issue_events_url: str
    issues_url: str
    keys_url: str
    labels_url: str
    languages_url: str
    merges_url: str
    milestones_url: str
    notifications_url: str
    pulls_url: str
    releases_url: str
    ssh_url: str
    stargazers_url: str
    statuses_url: str
    subscribers_url: str
    subscription_url: str
    tags_url: str
    teams_url: str
    trees_url: str
    clone_url: str
    mirror_url: str | None = None
    hooks_url: str
    svn_url: str
    homepage: str | None
    language: str | None = None
    forks_count: int = 0
    forks: int = 0
    stargazers_count: int = 0
    watchers_count: int = 0
    watchers: int = 0
    size: int
    default_branch: str
    open_issues_count: int = 0
    open_issues: int = 0
    is_template: bool = False
    topics: list[str]
    has_issues: bool = True
    has_projects: bool = False
    has_wiki: bool = False
    has_pages: bool = False
    has_downloads: bool = True
    has_discussions: bool = False
    archived: bool
    disabled: bool = False
    visibility: Literal["public", "private", "internal"]
    pushed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    permissions: RepositoryPermissions | None = None
    allow_rebase_merge: bool = True
    allow_squash_merge: bool = True
    allow_merge_commit: bool = True
    allow_auto_merge: bool = False
    delete_branch_on_merge: bool = False
    allow_forking: bool = True
    web_commit_signoff_required: bool = False
    license: LicenseSimple | None = None
    organization: SimpleUser | None = None
    subscribers_count: int = 0
    network_count: int = 0

    @classmethod
    def of(
        cls, repo: Repository, settings: Settings, permission: Permission | None
    ) -> FullRepository:
        urls = urls_for(settings)
        owner = repo.owner
        api = f"{urls.api}/repos/{quote(owner.username)}/{quote(repo.name)}"
        html = urls.html(f"{quote(owner.username)}/{quote(repo.name)}")
        host = settings.ssh_clone_host
        owner_json = SimpleUser.of(owner, urls)
        return cls(
            id=repo.id,
            node_id=node_id("Repository", repo.id),
            name=repo.name,
            full_name=repo.full_name,
            private=repo.visibility != Visibility.PUBLIC,
            owner=owner_json,
            html_url=html,
            description=repo.description or None,
            fork=repo.fork_parent_id is not None,
            url=api,
            archive_url=f"{api}/{{archive_format}}{{/ref}}",
            assignees_url=f"{api}/assignees{{/user}}",
            blobs_url=f"{api}/git/blobs{{/sha}}",
            branches_url=f"{api}/branches{{/branch}}",
            collaborators_url=f"{api}/collaborators{{/collaborator}}",
            comments_url=f"{api}/comments{{/number}}",
            commits_url=f"{api}/commits{{/sha}}",
            compare_url=f"{api}/compare/{{base}}...{{head}}",
            contents_url=f"{api}/contents/{{+path}}",
            contributors_url=f"{api}/contributors",
            deployments_url=f"{api}/deployments",
            downloads_url=f"{api}/downloads",
            events_url=f"{api}/events",
            forks_url=f"{api}/forks",
            git_commits_url=f"{api}/git/commits{{/sha}}",
            git_refs_url=f"{api}/git/refs{{/sha}}",
            git_tags_url=f"{api}/git/tags{{/sha}}",
            # There is no git:// daemon; GitHub's field is kept, pointing at the HTTP URL.
            git_url=f"{html}.git",
            issue_comment_url=f"{api}/issues/comments{{/number}}",
            issue_events_url=f"{api}/issues/events{{/number}}",
            issues_url=f"{api}/issues{{/number}}",
            keys_url=f"{api}/keys{{/key_id}}",
            labels_url=f"{api}/labels{{/name}}",
            languages_url=f"{api}/languages",
            merges_url=f"{api}/merges",
            milestones_url=f"{api}/milestones{{/number}}",
            notifications_url=f"{api}/notifications{{?since,all,participating}}",
            pulls_url=f"{api}/pulls{{/number}}",
            releases_url=f"{api}/releases{{/id}}",
            ssh_url=f"ssh://git@{host}:{settings.ssh_port}/{owner.username}/{repo.name}.git",
            stargazers_url=f"{api}/stargazers",
            statuses_url=f"{api}/statuses/{{sha}}",
            subscribers_url=f"{api}/subscribers",
            subscription_url=f"{api}/subscription",
            tags_url=f"{api}/tags",
            teams_url=f"{api}/teams",
            trees_url=f"{api}/git/trees{{/sha}}",
            clone_url=f"{html}.git",
            hooks_url=f"{api}/hooks",
            svn_url=html,
            homepage=repo.homepage or None,
            size=repo.size_kb,
            default_branch=repo.default_branch,
            topics=repo.topic_list,
            archived=repo.is_archived,
            visibility=repo.visibility.value,
            pushed_at=repo.pushed_at,
            created_at=repo.created_at,
            updated_at=repo.updated_at,
            permissions=RepositoryPermissions.of(permission) if permission else None,
            organization=owner_json if owner.kind == AccountKind.ORGANIZATION else None,
        )


def repository_json(
    repo: Repository, settings: Settings, permission: Permission | None
) -> dict[str, object]:
    """The repository as GitHub's JSON; `permission` is the caller's (None: anonymous)."""
    return FullRepository.of(repo, settings, permission).model_dump(mode="json", exclude_none=False)


def _merge_and_fork_fields(session: Session, repo: Repository) -> dict[str, object]:
    # Imported here: pulls and forks import the repository services, which import this module.
    from opencodehub.pulls import service as pulls
    from opencodehub.repos import forks

    merge = pulls.merge_settings(session, repo)
    count = forks.forks_count(session, repo)
    return {
        "allow_merge_commit": merge.allow_merge_commit,
        "allow_squash_merge": merge.allow_squash_merge,
        "allow_rebase_merge": merge.allow_rebase_merge,
        "allow_auto_merge": merge.allow_auto_merge,
        "delete_branch_on_merge": merge.delete_branch_on_merge,
        "forks_count": count,
        "forks": count,
    }


def _caller_permission(session: Session, actor: Actor, repo: Repository) -> Permission | None:
    from opencodehub.repos import service

    # GitHub shows `permissions` to signed-in callers only.
    return service.permission_of(session, actor, repo) if actor.user is not None else None


def full_repository(
    session: Session, settings: Settings, actor: Actor, repo: Repository
) -> FullRepository:
    """The repository as the caller sees it, with its merge settings and fork count."""
    base = FullRepository.of(repo, settings, _caller_permission(session, actor, repo))
    return base.model_copy(update=_merge_and_fork_fields(session, repo))


def full_repository_json(
    session: Session, settings: Settings, actor: Actor, repo: Repository
) -> dict[str, object]:
    """GitHub's single-repository JSON: `full_repository` plus, for a fork, `parent` and
    `source` (each only when the caller may read it)."""
    from opencodehub.repos import forks, service

    data = full_repository(session, settings, actor, repo).model_dump(mode="json")
    parent = forks.parent_of(session, repo)
    if parent is not None and service.permission_of(session, actor, parent) is not None:
        data["parent"] = full_repository(session, settings, actor, parent).model_dump(mode="json")
        source = forks.network_root(session, repo)
        if service.permission_of(session, actor, source) is not None:
            data["source"] = full_repository(session, settings, actor, source).model_dump(
                mode="json"
            )
    return data


class RepositoryCreate(_In):
    """POST /user/repos and /orgs/{org}/repos. GitHub's other options (has_issues, team_id,
    allow_* ...) are accepted and ignored."""

    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=10_000)
    homepage: str | None = Field(default=None, max_length=10_000)
    private: bool = False
    visibility: Literal["public", "private", "internal"] | None = None
    auto_init: bool = False
    gitignore_template: str | None = Field(default=None, max_length=100)
    license_template: str | None = Field(default=None, max_length=100)
    # GitHub ignores it on create; OpenCodeHub honours it when it is a valid branch name.
    default_branch: str | None = Field(default=None, max_length=255)

    def chosen_visibility(self) -> Visibility:
        if self.visibility is not None:
            return Visibility(self.visibility)
        return Visibility.PRIVATE if self.private else Visibility.PUBLIC


class RepositoryUpdate(_In):
    """PATCH /repos/{owner}/{repo}: only the fields sent are changed."""

    name: str | None = Field(default=None, max_length=10_000)
    description: str | None = Field(default=None, max_length=10_000)
    homepage: str | None = Field(default=None, max_length=10_000)
    private: bool | None = None
    visibility: Literal["public", "private", "internal"] | None = None
    default_branch: str | None = Field(default=None, max_length=10_000)
    archived: bool | None = None
    topics: list[str] | None = Field(default=None, max_length=1000)
    allow_merge_commit: bool | None = None
    allow_squash_merge: bool | None = None
    allow_rebase_merge: bool | None = None
    allow_auto_merge: bool | None = None
    delete_branch_on_merge: bool | None = None

    def merge_settings(self) -> dict[str, bool]:
        """The merge settings sent (null counts as not sent)."""
        names = (
            "allow_merge_commit",
            "allow_squash_merge",
            "allow_rebase_merge",
            "allow_auto_merge",
            "delete_branch_on_merge",
        )
        return {name: value for name in names if (value := getattr(self, name)) is not None}

    def chosen_visibility(self) -> Visibility | None:
        if self.visibility is not None:
            return Visibility(self.visibility)
        if self.private is not None:
            return Visibility.PRIVATE if self.private else Visibility.PUBLIC
        return None


class TransferRequest(_In):
    new_owner: str = Field(min_length=1, max_length=100)
    new_name: str | None = Field(default=None, max_length=10_000)
    team_ids: list[int] = Field(default_factory=list)


class Topics(BaseModel):
    names: list[str] = Field(max_length=1000)


# Collaborators ---------------------------------------------------------------------------------


class CollaboratorPermissions(BaseModel):
    pull: bool
    triage: bool
    push: bool
    maintain: bool
    admin: bool


class CollaboratorOut(SimpleUser):
    permissions: CollaboratorPermissions
    role_name: str

    @classmethod
    def of_user(cls, user: User, permission: Permission, urls: ApiUrls) -> CollaboratorOut:
        flags = RepositoryPermissions.of(permission)
        return cls(
            **SimpleUser.of(user, urls).model_dump(),
            permissions=CollaboratorPermissions(**flags.model_dump()),
            role_name=permission.value,
        )


class CollaboratorPut(_In):
    permission: str = Field(default="push", max_length=100)


class CollaboratorPermission(BaseModel):
    permission: Literal["admin", "write", "read", "none"]
    role_name: str
    user: CollaboratorOut | None


class RepositoryInvitation(_Out):
    """What `PUT .../collaborators/{username}` answers with 201. GitHub sends an invitation the
    user must accept; OpenCodeHub adds the collaborator at once, so the invitation it returns is
    already accepted (`id` is the collaborator record's) and has no page of its own."""

    id: int
    node_id: str
    repository: FullRepository
    invitee: SimpleUser
    inviter: SimpleUser
    permissions: Literal["read", "triage", "write", "maintain", "admin"]
    created_at: datetime
    expired: bool = False
    url: str
    html_url: str


# Deploy keys -----------------------------------------------------------------------------------


class DeployKey(_Out):
    id: int
    key: str
    url: str
    title: str
    verified: bool = True
    created_at: datetime
    read_only: bool
    added_by: str | None = None
    last_used: datetime | None = None
    enabled: bool = True

    @classmethod
    def of(cls, key: SSHKey, repo: Repository, urls: ApiUrls) -> DeployKey:
        api = f"{urls.api}/repos/{quote(repo.owner.username)}/{quote(repo.name)}"
        return cls(
            id=key.id,
            key=key.public_key,
            url=f"{api}/keys/{key.id}",
            title=key.title,
            created_at=key.created_at,
            read_only=key.read_only,
            last_used=key.last_used_at,
        )


class DeployKeyCreate(_In):
    title: str = Field(default="", max_length=10_000)
    key: str = Field(min_length=1, max_length=20_000)
    # GitHub: "If true, the key will only be able to read ... Otherwise ... read and write."
    read_only: bool = False


# Templates -------------------------------------------------------------------------------------


class GitignoreTemplate(BaseModel):
    name: str
    source: str


class License(LicenseSimple):
    html_url: str
    description: str
    implementation: str
    permissions: list[str]
    conditions: list[str]
    limitations: list[str]
    body: str
    featured: bool


def license_simple(template: templates.LicenseTemplate, urls: ApiUrls) -> LicenseSimple:
    return LicenseSimple(
        key=template.key,
        name=template.name,
        spdx_id=template.spdx_id,
        url=f"{urls.api}/licenses/{template.key}",
        node_id=node_id("License", _license_number(template.key)),
    )


def license_full(template: templates.LicenseTemplate, urls: ApiUrls) -> License:
    return License(
        **license_simple(template, urls).model_dump(),
        html_url=f"https://choosealicense.com/licenses/{template.key}/",
        description=template.description,
        implementation=template.implementation,
        permissions=list(template.permissions),
        conditions=list(template.conditions),
        limitations=list(template.limitations),
        body=template.body,
        featured=template.featured,
    )


def _license_number(key: str) -> int:
    # A stable small number per license, for its node id.
    return sorted(templates.LICENSES).index(key) + 1
