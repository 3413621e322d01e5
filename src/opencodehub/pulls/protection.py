"""Branch protection: the rules, and the one place that decides whether a branch may move.

`check_ref_update` is called for every way a ref changes — `git push` over HTTP and SSH (through
`repos.pushes.check_push`, which the pre-receive hook reaches), the contents API and the web
editor (which call `check_push` before their compare-and-swap), suggestions applied from a
review, and merges — so no path bypasses a rule. `check_merge` adds what only a pull request can
satisfy: approvals, code owners, required statuses on the head, being up to date with the base.

Patterns follow GitHub's `File.fnmatch` with `FNM_PATHNAME`: `*` and `?` stop at `/`, `**`
crosses directories, `[...]` is a character class. When several rules match a branch, a rule
naming the branch exactly wins; otherwise the oldest matching rule applies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import pygit2
from sqlalchemy import select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, Team, TeamMember, User
from opencodehub.core.errors import FieldError, Forbidden, ValidationFailed
from opencodehub.repos import statuses
from opencodehub.repos.authz import authorize, repository_permission
from opencodehub.repos.models import ProtectedBranch, ProtectedBranchAllowance, Repository

if TYPE_CHECKING:
    from opencodehub.config import Settings

BRANCH_PREFIX = "refs/heads/"
VIAS = ("push", "web", "api", "merge", "suggestion")
MAX_PATTERN_LENGTH = 255
MAX_REQUIRED_REVIEWS = 6  # GitHub's upper bound
CODEOWNERS_LOCATIONS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
MAX_CODEOWNERS_BYTES = 3 * 1024 * 1024  # GitHub ignores larger files

Pusher = Actor | User | None


# Patterns --------------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(ch))
                i += 1
                continue
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            body = body.replace("\\", "\\\\").replace("^", "\\^")
            out.append(f"[{'^/' if negate else ''}{body}]" if negate else f"[{body}]")
            i = end + 1
        elif ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out) + r"\Z")


def pattern_matches(pattern: str, branch: str) -> bool:
    try:
        return _pattern_regex(pattern).match(branch) is not None
    except re.error:
        return pattern == branch


def is_wildcard(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[]")


def validate_pattern(pattern: str) -> str:
    pattern = (pattern or "").strip()
    if (
        not pattern
        or len(pattern) > MAX_PATTERN_LENGTH
        or any(ord(ch) < 0x20 or ch == "\x7f" for ch in pattern)
    ):
        raise ValidationFailed.invalid("ProtectedBranch", "pattern", "is not a valid pattern")
    return pattern


# Rules -----------------------------------------------------------------------------------------


def rules_of(session: Session, repository: Repository) -> list[ProtectedBranch]:
    return list(
        session.scalars(
            select(ProtectedBranch)
            .where(ProtectedBranch.repository_id == repository.id)
            .order_by(ProtectedBranch.id)
        )
    )


def pick_rule(rules: Sequence[ProtectedBranch], branch: str) -> ProtectedBranch | None:
    """The rule that governs `branch`: an exact name first, then the oldest matching pattern."""
    for rule in rules:
        if not is_wildcard(rule.pattern) and rule.pattern == branch:
            return rule
    for rule in rules:
        if is_wildcard(rule.pattern) and pattern_matches(rule.pattern, branch):
            return rule
    return None


def rule_for(session: Session, repository: Repository, branch: str) -> ProtectedBranch | None:
    return pick_rule(rules_of(session, repository), branch)


def get_rule(session: Session, repository: Repository, pattern: str) -> ProtectedBranch | None:
    return session.scalar(
        select(ProtectedBranch).where(
            ProtectedBranch.repository_id == repository.id, ProtectedBranch.pattern == pattern
        )
    )


def get_rule_by_id(
    session: Session, repository: Repository, rule_id: int
) -> ProtectedBranch | None:
    rule = session.get(ProtectedBranch, rule_id)
    return rule if rule is not None and rule.repository_id == repository.id else None


@dataclass
class RuleSettings:
    """Everything a rule says, as the API and the settings form give it."""

    require_pull_request: bool = False
    required_approving_review_count: int = 0
    dismiss_stale_reviews: bool = False
    require_code_owner_reviews: bool = False
    require_status_checks: bool = False
    strict_status_checks: bool = False
    required_contexts: Sequence[str] = ()
    enforce_admins: bool = False
    restrict_pushes: bool = False
    push_users: Sequence[str] = ()
    push_teams: Sequence[str] = ()  # team slugs of the owning organization
    allow_force_pushes: bool = False
    allow_deletions: bool = False


def _resolve_allowances(
    session: Session, repository: Repository, users: Iterable[str], teams: Iterable[str]
) -> list[ProtectedBranchAllowance]:
    from opencodehub.accounts import service as accounts

    found: list[ProtectedBranchAllowance] = []
    errors: list[FieldError] = []
    for name in dict.fromkeys(u.strip().lstrip("@") for u in users if u.strip()):
        user = accounts.get_user(session, name) if len(name) <= 39 else None
        if user is None or user.is_organization:
            errors.append(FieldError("ProtectedBranch", "users", "invalid", f"no user {name}"))
        else:
            found.append(ProtectedBranchAllowance(user_id=user.id))
    for slug in dict.fromkeys(t.strip() for t in teams if t.strip()):
        team = None
        if repository.owner.is_organization and len(slug) <= 255:
            team = session.scalar(
                select(Team).where(Team.org_id == repository.owner_id, Team.slug == slug.lower())
            )
        if team is None:
            errors.append(FieldError("ProtectedBranch", "teams", "invalid", f"no team {slug}"))
        else:
            found.append(ProtectedBranchAllowance(team_id=team.id))
    if errors:
        raise ValidationFailed(errors)
    return found


def save_rule(
    session: Session,
    actor: Actor,
    repository: Repository,
    pattern: str,
    values: RuleSettings,
    *,
    rule: ProtectedBranch | None = None,
) -> ProtectedBranch:
    """Create the rule for `pattern`, or replace what an existing one (`rule`, or the one with
    this pattern) says. Admin permission required."""
    authorize(session, actor, repository, Permission.ADMIN)
    pattern = validate_pattern(pattern)
    count = values.required_approving_review_count
    if not 0 <= count <= MAX_REQUIRED_REVIEWS:
        raise ValidationFailed.invalid(
            "ProtectedBranch",
            "required_approving_review_count",
            f"must be between 0 and {MAX_REQUIRED_REVIEWS}",
        )
    contexts = [c.strip() for c in values.required_contexts if c and c.strip()]
    if any(len(c) > statuses.MAX_CONTEXT_LENGTH or "\n" in c for c in contexts):
        raise ValidationFailed.invalid("ProtectedBranch", "contexts", "is not a valid context")
    allowances = _resolve_allowances(session, repository, values.push_users, values.push_teams)
    existing = get_rule(session, repository, pattern)
    if rule is None:
        rule = existing
    elif existing is not None and existing.id != rule.id:
        raise ValidationFailed.exists("ProtectedBranch", "pattern", "a rule for it exists")
    if rule is None:
        rule = ProtectedBranch(repository_id=repository.id, pattern=pattern)
        session.add(rule)
    rule.pattern = pattern
    rule.require_pull_request = values.require_pull_request
    rule.required_approving_review_count = count if values.require_pull_request else 0
    rule.dismiss_stale_reviews = values.dismiss_stale_reviews and values.require_pull_request
    rule.require_code_owner_reviews = (
        values.require_code_owner_reviews and values.require_pull_request
    )
    rule.require_status_checks = values.require_status_checks
    rule.strict_status_checks = values.strict_status_checks and values.require_status_checks
    rule.required_contexts = "\n".join(dict.fromkeys(contexts))
    rule.enforce_admins = values.enforce_admins
    rule.restrict_pushes = values.restrict_pushes
    rule.allowances = allowances if values.restrict_pushes else []
    rule.allow_force_pushes = values.allow_force_pushes
    rule.allow_deletions = values.allow_deletions
    session.flush()
    return rule


def delete_rule(
    session: Session, actor: Actor, repository: Repository, rule: ProtectedBranch
) -> None:
    authorize(session, actor, repository, Permission.ADMIN)
    session.delete(rule)
    session.flush()


def allowance_names(session: Session, rule: ProtectedBranch) -> tuple[list[User], list[Team]]:
    user_ids = [a.user_id for a in rule.allowances if a.user_id is not None]
    team_ids = [a.team_id for a in rule.allowances if a.team_id is not None]
    users = list(session.scalars(select(User).where(User.id.in_(user_ids)))) if user_ids else []
    teams = list(session.scalars(select(Team).where(Team.id.in_(team_ids)))) if team_ids else []
    return users, teams


# Who is acting ---------------------------------------------------------------------------------


def as_actor(pusher: Pusher) -> Actor:
    if isinstance(pusher, Actor):
        return pusher
    if isinstance(pusher, User):
        return Actor(user=pusher, method="system")
    return Actor.anonymous()


def _is_admin(session: Session, actor: Actor, repository: Repository) -> bool:
    return repository_permission(session, actor, repository) == Permission.ADMIN


def _bypasses(
    session: Session, actor: Actor, repository: Repository, rule: ProtectedBranch
) -> bool:
    return not rule.enforce_admins and _is_admin(session, actor, repository)


def may_push(session: Session, actor: Actor, rule: ProtectedBranch) -> bool:
    """Whether the actor is on the rule's push allow list (users, or members of its teams)."""
    if actor.user is None:
        return False
    user_id = actor.user.id
    if any(a.user_id == user_id for a in rule.allowances):
        return True
    team_ids = [a.team_id for a in rule.allowances if a.team_id is not None]
    if not team_ids:
        return False
    return (
        session.scalar(
            select(TeamMember.id).where(
                TeamMember.team_id.in_(team_ids), TeamMember.user_id == user_id
            )
        )
        is not None
    )


# The check -------------------------------------------------------------------------------------


def _is_zero(sha: str) -> bool:
    return not sha.strip("0")


def _is_fast_forward(git_repo: pygit2.Repository, old_sha: str, new_sha: str) -> bool:
    if old_sha == new_sha:
        return True
    try:
        return git_repo.descendant_of(new_sha, old_sha)
    except (KeyError, ValueError, pygit2.GitError):
        return False


def _refused(ref: str, reason: str) -> Forbidden:
    return Forbidden(f"Protected branch update failed for {ref}: {reason}")


def _status_problem(
    session: Session, repository: Repository, sha: str, contexts: Sequence[str]
) -> str | None:
    problems = statuses.missing_or_failing(session, repository, sha, contexts)
    if not problems:
        return None
    context, state = problems[0]
    if state is None:
        return f'Required status check "{context}" is expected.'
    return f'Required status check "{context}" is {state.value}.'


def check_ref_update(
    session: Session,
    repository: Repository,
    actor: Pusher,
    ref: str,
    old_sha: str,
    new_sha: str,
    *,
    via: str,
    git_repo: pygit2.Repository | None = None,
) -> None:
    """Raise Forbidden (a one-line reason) unless `actor` may move `ref` from `old_sha` to
    `new_sha` (zero shas: create, delete) by `via` (push, web, api, merge, suggestion).

    `git_repo` must see `new_sha` for updates that are neither creations nor deletions, unless
    `via` is "merge" (a merge commit always descends from the base)."""
    if via not in VIAS:
        raise ValueError(f"unknown ref update path {via!r}")
    if not ref.startswith(BRANCH_PREFIX):
        return
    branch = ref.removeprefix(BRANCH_PREFIX)
    is_create, is_delete = _is_zero(old_sha), _is_zero(new_sha)
    if is_delete and branch == repository.default_branch:
        raise Forbidden(
            f"refusing to delete the default branch {branch}; change the default first."
        )
    rule = rule_for(session, repository, branch)
    if rule is None:
        return
    who = as_actor(actor)
    bypass = _bypasses(session, who, repository, rule)
    # Force pushes and deletions are refused to everyone, admins included, unless allowed.
    if is_delete:
        if not rule.allow_deletions:
            raise _refused(ref, "cannot delete a protected branch.")
    elif not is_create and not rule.allow_force_pushes and via != "merge":
        if git_repo is None:
            raise ValueError("check_ref_update needs git_repo to tell a force push")
        if not _is_fast_forward(git_repo, old_sha, new_sha):
            raise _refused(ref, "cannot force-push to a protected branch.")
    if bypass:
        return
    if rule.restrict_pushes and not may_push(session, who, rule):
        raise _refused(ref, "you are not allowed to push to this branch.")
    if is_create or is_delete or via == "merge":
        return
    if rule.require_pull_request:
        raise _refused(ref, "changes must be made through a pull request.")
    if rule.require_status_checks:
        problem = _status_problem(session, repository, new_sha, rule.context_list)
        if problem is not None:
            raise _refused(ref, problem)


# Code owners -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OwnerRule:
    pattern: str
    owners: tuple[str, ...]  # "@user", "@org/team" or an email, as written
    regex: re.Pattern[str]


def _codeowners_regex(pattern: str) -> re.Pattern[str]:
    """GitHub's CODEOWNERS patterns (gitignore's, without `!` and `[...]`)."""
    if pattern in ("*", "**"):
        return re.compile(r".*\Z", re.DOTALL)
    stripped = pattern.strip("/")
    anchored = pattern.startswith("/") or "/" in stripped
    last = stripped.rsplit("/", 1)[-1]
    out: list[str] = []
    i = 0
    while i < len(stripped):
        if stripped.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif stripped.startswith("/**", i) and i + 3 == len(stripped):
            out.append("/.*")
            i += 3
        elif stripped.startswith("**", i):
            out.append(".*")
            i += 2
        elif stripped[i] == "*":
            out.append("[^/]*")
            i += 1
        elif stripped[i] == "?":
            out.append("[^/]")
            i += 1
        elif stripped[i] == "\\" and i + 1 < len(stripped):
            out.append(re.escape(stripped[i + 1]))
            i += 2
        else:
            out.append(re.escape(stripped[i]))
            i += 1
    # A plain name (file or directory) also owns what lies below it; `docs/*` does not reach
    # into docs' subdirectories (GitHub's documented exception to gitignore).
    below = "" if "*" in last else "(?:/.*)?"
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(prefix + "".join(out) + below + r"\Z", re.DOTALL)


def parse_codeowners(text: str) -> list[OwnerRule]:
    rules: list[OwnerRule] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        # An unescaped `#` starts a comment; `\#` is a literal one.
        line = re.split(r"(?<!\\)#", line, maxsplit=1)[0].strip()
        parts = re.split(r"(?<!\\)\s+", line)
        pattern, owners = parts[0], tuple(p for p in parts[1:] if p)
        if not pattern or pattern.startswith("!") or "[" in pattern:
            continue  # not supported by GitHub either: the line is ignored
        try:
            rules.append(OwnerRule(pattern, owners, _codeowners_regex(pattern)))
        except re.error:
            continue
    return rules


def owners_for(rules: Sequence[OwnerRule], path: str) -> tuple[str, ...]:
    """The owners of `path`: the last matching rule wins (it may name none)."""
    for rule in reversed(rules):
        if rule.regex.match(path):
            return rule.owners
    return ()


def read_codeowners(git_repo: pygit2.Repository, commit_sha: str) -> list[OwnerRule]:
    try:
        commit = git_repo[commit_sha].peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        return []
    for location in CODEOWNERS_LOCATIONS:
        try:
            entry = commit.tree[location]
        except KeyError:
            continue
        blob = git_repo.get(entry.id)
        if isinstance(blob, pygit2.Blob) and blob.size <= MAX_CODEOWNERS_BYTES:
            return parse_codeowners(blob.data.decode("utf-8", "replace"))
    return []


def owner_user_ids(session: Session, repository: Repository, owner: str) -> set[int]:
    """The accounts an owner entry stands for: a user, an organization team's members, or the
    user with that verified email."""
    from opencodehub.accounts import service as accounts
    from opencodehub.accounts.models import Email

    if owner.startswith("@"):
        name = owner[1:]
        if "/" in name:
            org_name, _, slug = name.partition("/")
            if org_name.lower() != repository.owner.username.lower():
                return set()
            team = session.scalar(
                select(Team).where(Team.org_id == repository.owner_id, Team.slug == slug.lower())
            )
            if team is None:
                return set()
            return set(
                session.scalars(select(TeamMember.user_id).where(TeamMember.team_id == team.id))
            )
        user = accounts.get_user(session, name) if 0 < len(name) <= 39 else None
        return {user.id} if user is not None else set()
    if "@" in owner and len(owner) <= 255:
        user_id = session.scalar(
            select(Email.user_id).where(
                Email.lower_email == owner.lower(), Email.is_verified.is_(True)
            )
        )
        return {user_id} if user_id is not None else set()
    return set()


def changed_paths(git_repo: pygit2.Repository, base_sha: str, head_sha: str) -> list[str]:
    """Paths the head changes relative to its merge base with `base_sha`."""
    try:
        head = git_repo[head_sha].peel(pygit2.Commit)
        base_id = git_repo.merge_base(base_sha, head_sha)
        base_tree = git_repo[base_id].peel(pygit2.Commit).tree if base_id is not None else None
    except (KeyError, ValueError, pygit2.GitError):
        return []
    diff = (
        git_repo.diff(base_tree, head.tree)
        if base_tree is not None
        else head.tree.diff_to_tree(swap=True)
    )
    paths: list[str] = []
    for delta in diff.deltas:
        paths.append(delta.new_file.path)
        if delta.old_file.path != delta.new_file.path:
            paths.append(delta.old_file.path)
    return paths


def pending_code_owners(
    session: Session,
    repository: Repository,
    git_repo: pygit2.Repository,
    base_sha: str,
    head_sha: str,
    approver_ids: set[int],
) -> list[str]:
    """Owner entries of changed files with no approval from any of their owners yet."""
    rules = read_codeowners(git_repo, base_sha)
    if not rules:
        return []
    waiting: list[str] = []
    cache: dict[str, set[int]] = {}
    for path in changed_paths(git_repo, base_sha, head_sha):
        owners = owners_for(rules, path)
        if not owners:
            continue
        ids: set[int] = set()
        for owner in owners:
            if owner not in cache:
                cache[owner] = owner_user_ids(session, repository, owner)
            ids |= cache[owner]
        if not ids & approver_ids:
            waiting.extend(o for o in owners if o not in waiting)
    return waiting


# Merging ---------------------------------------------------------------------------------------


class OutOfDate(Forbidden):
    """The merge is refused only because the head lacks the base branch's tip (strict status
    checks): GitHub's `mergeable_state: behind`."""


def _git_for(repository: Repository, settings: Settings | None) -> pygit2.Repository:
    from opencodehub.config import get_settings
    from opencodehub.repos import store

    return store.open_repository(settings or get_settings(), repository.id)


def pr_fields(pull_request: Any) -> tuple[Repository, str, str]:
    """(base repository, base branch, head sha) of a pull request."""
    from opencodehub.pulls import reviews

    return (
        reviews.pr_base_repository(pull_request),
        reviews.pr_base_ref(pull_request),
        (reviews.pr_head_sha(pull_request)),
    )


def check_merge(
    session: Session,
    pull_request: Any,
    actor: Pusher,
    *,
    git_repo: pygit2.Repository | None = None,
    settings: Settings | None = None,
) -> None:
    """Raise Forbidden (one line, GitHub's wording) unless the base branch's rule lets `actor`
    merge the pull request now: push allowance, approvals, no changes requested, code owners,
    required statuses green on the head, head up to date with the base when strict.

    `git_repo` is the base repository's git data (which holds the head commits); opened from
    `settings` when not given."""
    from opencodehub.pulls import reviews

    repository, base_branch, head_sha = pr_fields(pull_request)
    rule = rule_for(session, repository, base_branch)
    if rule is None:
        return
    who = as_actor(actor)
    if _bypasses(session, who, repository, rule):
        return
    if rule.restrict_pushes and not may_push(session, who, rule):
        raise Forbidden("You're not authorized to push to this branch.")
    summary = reviews.review_summary(session, pull_request) if rule.require_pull_request else None
    if summary is not None:
        if summary.changes_requested:
            raise Forbidden("Changes have been requested on this pull request.")
        needed = rule.required_approving_review_count
        if len(summary.approver_ids) < needed:
            plural = "review is" if needed == 1 else "reviews are"
            raise Forbidden(
                f"At least {needed} approving {plural} required by reviewers with write access."
            )
    needs_git = rule.require_code_owner_reviews or (
        rule.require_status_checks and rule.strict_status_checks
    )
    repo_git = git_repo if git_repo is not None or not needs_git else _git_for(repository, settings)
    base_tip: str | None = None
    if repo_git is not None:
        reference = repo_git.references.get(f"{BRANCH_PREFIX}{base_branch}")
        base_tip = str(reference.resolve().target) if reference is not None else None
    if summary is not None and rule.require_code_owner_reviews and repo_git and base_tip:
        waiting = pending_code_owners(
            session, repository, repo_git, base_tip, head_sha, summary.approver_ids
        )
        if waiting:
            raise Forbidden(f"Waiting on code owner review from {', '.join(waiting)}.")
    if rule.require_status_checks:
        problem = _status_problem(session, repository, head_sha, rule.context_list)
        if problem is not None:
            raise Forbidden(problem)
        if (
            rule.strict_status_checks
            and repo_git is not None
            and base_tip is not None
            and not _is_fast_forward(repo_git, base_tip, head_sha)
        ):
            raise OutOfDate("Head branch is out of date with the base branch.")
