"""Who is calling: the principal behind a request, an SSH session or a hook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from opencodehub.accounts.models import User

AuthMethod = Literal[
    "anonymous",
    "password",
    "token",
    "oauth",
    "session",
    "ssh_key",
    "deploy_key",
    "system",
    "jwt",
    "job_token",
]

# GitHub's classic scopes and what each one implies.
SCOPE_IMPLIES: dict[str, frozenset[str]] = {
    "repo": frozenset({"repo:status", "repo_deployment", "public_repo", "repo:invite"}),
    "user": frozenset({"read:user", "user:email", "user:follow"}),
    "admin:org": frozenset({"write:org", "read:org"}),
    "write:org": frozenset({"read:org"}),
    "admin:public_key": frozenset({"write:public_key", "read:public_key"}),
    "write:public_key": frozenset({"read:public_key"}),
    "admin:repo_hook": frozenset({"write:repo_hook", "read:repo_hook"}),
    "write:repo_hook": frozenset({"read:repo_hook"}),
    "admin:gpg_key": frozenset({"write:gpg_key", "read:gpg_key"}),
    "write:gpg_key": frozenset({"read:gpg_key"}),
    "write:packages": frozenset({"read:packages"}),
    "workflow": frozenset(),
    "delete_repo": frozenset(),
    "gist": frozenset(),
    "notifications": frozenset(),
    "admin:enterprise": frozenset(),
}
KNOWN_SCOPES = frozenset(SCOPE_IMPLIES) | frozenset().union(*SCOPE_IMPLIES.values())


def expand_scopes(scopes: frozenset[str] | set[str] | list[str]) -> frozenset[str]:
    expanded = set(scopes)
    changed = True
    while changed:
        changed = False
        for scope in list(expanded):
            extra = SCOPE_IMPLIES.get(scope, frozenset()) - expanded
            if extra:
                expanded |= extra
                changed = True
    return frozenset(expanded)


@dataclass(frozen=True)
class Actor:
    """`user` is None for anonymous callers and for deploy keys.

    `scopes` is None when the caller proved the account itself (password, session, SSH key):
    then nothing is narrowed. A token narrows to its expanded scopes.
    """

    user: User | None
    method: AuthMethod = "anonymous"
    scopes: frozenset[str] | None = None
    deploy_key_repository_id: int | None = None
    deploy_key_read_only: bool = True
    token_id: int | None = None
    # The scopes a personal access token was granted, as granted (for `X-OAuth-Scopes`).
    token_scopes: tuple[str, ...] = ()
    # A CI job token (GITHUB_TOKEN) reaches only its job's repository, with the workflow's
    # `permissions` as (scope, "read" | "write") pairs; see actions/tokens.py.
    job_repository_id: int | None = None
    job_permissions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def anonymous(cls) -> Actor:
        return cls(user=None)

    @property
    def is_anonymous(self) -> bool:
        return (
            self.user is None
            and self.deploy_key_repository_id is None
            and self.job_repository_id is None
        )

    def job_permission(self, scope: str) -> str:
        """A job token's level for a `permissions` scope: "write", "read" or "none"."""
        return dict(self.job_permissions).get(scope, "none")

    @property
    def is_site_admin(self) -> bool:
        return bool(self.user and self.user.is_site_admin and self.user.is_active)

    @property
    def user_id(self) -> int | None:
        return self.user.id if self.user else None

    def has_scope(self, scope: str) -> bool:
        if self.scopes is None:
            return self.user is not None
        return scope in self.scopes
