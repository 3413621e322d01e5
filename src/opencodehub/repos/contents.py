"""Writing files through the contents API: one file created, updated or deleted as one commit on
a branch, built in memory with pygit2 (no work tree).

The branch moves by compare-and-swap (`git update-ref <ref> <new> <old>`), so a push that lands
between reading the tip and moving the ref is never overwritten: the commit is rebuilt on the new
tip (when the file there still matches what the caller expects) or the caller gets 409. Every
update passes the same push policy as a `git push` (`pushes.check_push`) and leaves the same
records (`pushes.record_push`).
"""

from __future__ import annotations

import base64
import binascii
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pygit2
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.config import Settings
from opencodehub.core.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from opencodehub.core.events import EventBus
from opencodehub.core.time import utcnow
from opencodehub.repos import browse, pushes, service, store
from opencodehub.repos.models import Repository

MAX_FILE_BYTES = 100 * 1024 * 1024  # GitHub refuses files over 100 MB
MAX_MESSAGE_BYTES = 65_536
# Attempts to land the commit when pushes keep moving the branch underneath.
MAX_ATTEMPTS = 3
_IDENT_FORBIDDEN = re.compile(r"[<>\x00-\x1f\x7f]")
_BASE64_SPACE = re.compile(rb"\s+")
ARCHIVED_MESSAGE = "Repository was archived so is read-only."


@dataclass(frozen=True)
class Identity:
    """An author or committer for the new commit; `date` defaults to now."""

    name: str
    email: str
    date: datetime | None = None


@dataclass(frozen=True)
class FileCommitResult:
    commit: browse.CommitInfo
    content: browse.ContentItem | None  # None after a deletion
    created: bool  # a new file (201) rather than an update (200)
    branch: str


class ShaNotSupplied(ValidationFailed):
    """GitHub's answer when an existing file is written without the sha it replaces."""

    def __init__(self) -> None:
        super().__init__(
            [FieldError("Content", "sha", "missing_field")],
            message='Invalid request.\n\n"sha" wasn\'t supplied.',
        )


# Inputs ----------------------------------------------------------------------------------------


def decode_content(encoded: str) -> bytes:
    """The file's bytes from base64 (line breaks allowed, as GitHub's own output has them)."""
    try:
        data = base64.b64decode(_BASE64_SPACE.sub(b"", encoded.encode("ascii")), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ValidationFailed.invalid("Content", "content", "is not valid Base64") from exc
    if len(data) > MAX_FILE_BYTES:
        raise ValidationFailed(
            [FieldError("Content", "content", "too_large", "files are limited to 100 MB")]
        )
    return data


def validate_write_path(path: str) -> list[str]:
    """The path's components, or 422: a file may not be written through '..', '.', empty
    components, control characters, or into `.git` (any case)."""
    if not isinstance(path, str) or not path.strip("/") or len(path) > browse.MAX_PATH_LENGTH:
        raise ValidationFailed.invalid("Content", "path", "is not a valid file path")
    parts = path.strip("/").split("/")
    for part in parts:
        if (
            part in ("", ".", "..")
            or part.lower() == ".git"
            or any(ord(ch) < 0x20 or ch == "\x7f" for ch in part)
            or len(part.encode()) > 255
        ):
            raise ValidationFailed.invalid("Content", "path", "is not a valid file path")
    return parts


def _validate_message(message: str) -> str:
    if not message or "\x00" in message or len(message.encode()) > MAX_MESSAGE_BYTES:
        raise ValidationFailed.invalid("Content", "message", "is missing or invalid")
    return message


def _signature(identity: Identity, field: str) -> pygit2.Signature:
    name, email = identity.name.strip(), identity.email.strip()
    if not name or not email or _IDENT_FORBIDDEN.search(name) or _IDENT_FORBIDDEN.search(email):
        raise ValidationFailed.invalid("Content", field, "name and email are required and plain")
    when = identity.date or utcnow()
    if when.tzinfo is None:
        raise ValidationFailed.invalid("Content", field, "date needs a time zone")
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    return pygit2.Signature(name, email, int(when.timestamp()), minutes)


def actor_identity(settings: Settings, actor: Actor) -> Identity | None:
    user = actor.user
    if user is None:
        return None
    email = (
        user.primary_email or f"{user.id}+{user.username}@users.noreply.{settings.ssh_clone_host}"
    )
    return Identity(user.full_name or user.username, email)


def _signatures(
    settings: Settings, actor: Actor, author: Identity | None, committer: Identity | None
) -> tuple[pygit2.Signature, pygit2.Signature]:
    """GitHub's defaults: the committer is the caller; the author is the committer."""
    committer = committer or actor_identity(settings, actor)
    if committer is None:
        raise ValidationFailed.missing("Content", "committer")
    author = author or committer
    return _signature(author, "author"), _signature(committer, "committer")


def ensure_writable(repository: Repository) -> None:
    check = getattr(service, "ensure_writable", None)
    if check is not None:
        check(repository)
    elif repository.is_archived:
        raise Forbidden(ARCHIVED_MESSAGE)


# Trees -----------------------------------------------------------------------------------------


def _existing_entry(
    git_repo: pygit2.Repository, root: pygit2.Tree | None, parts: list[str]
) -> pygit2.TreeEntry | None:
    """The entry at `parts`, or None; 422 when the path runs through something that is not a
    directory (a file, a symlink or a submodule)."""
    current: pygit2.Tree | None = root
    for index, part in enumerate(parts):
        if current is None:
            return None
        try:
            entry = current[part]
        except KeyError:
            return None
        if index == len(parts) - 1:
            return entry
        if entry.filemode != pygit2.enums.FileMode.TREE:
            raise ValidationFailed.invalid(
                "Content", "path", f"{'/'.join(parts[: index + 1])} is not a directory"
            )
        subtree = git_repo.get(entry.id)
        current = subtree if isinstance(subtree, pygit2.Tree) else None
    return None


def _with_entry(
    git_repo: pygit2.Repository,
    tree: pygit2.Tree | None,
    parts: list[str],
    blob: tuple[pygit2.Oid, int] | None,
) -> pygit2.Oid | None:
    """The id of `tree` with `parts` set to `blob` (id, mode), or removed when `blob` is None.
    A directory left empty by a removal disappears (git has no empty directories); None means
    the tree itself is now empty."""
    builder = git_repo.TreeBuilder(tree) if tree is not None else git_repo.TreeBuilder()
    name = parts[0]
    if len(parts) == 1:
        if blob is None:
            if builder.get(name) is not None:
                builder.remove(name)
        else:
            builder.insert(name, blob[0], blob[1])
    else:
        existing = builder.get(name)
        subtree: pygit2.Tree | None = None
        if existing is not None:
            found = git_repo.get(existing.id)
            subtree = found if isinstance(found, pygit2.Tree) else None
        new_subtree = _with_entry(git_repo, subtree, parts[1:], blob)
        if new_subtree is None:
            if existing is not None:
                builder.remove(name)
        else:
            builder.insert(name, new_subtree, pygit2.enums.FileMode.TREE)
    if len(builder) == 0:
        return None
    return builder.write()


# Ref update ------------------------------------------------------------------------------------


def _compare_and_swap(
    settings: Settings, git_repo: pygit2.Repository, ref: str, new: str, old: str | None
) -> bool:
    """Move `ref` to `new` only if it still points at `old` (None: only if it does not exist).
    git takes the ref's lock and checks the old value under it, so nothing is lost to a race."""
    repo_path = Path(git_repo.path.rstrip("/"))
    result = subprocess.run(
        [
            settings.git_binary,
            "--git-dir",
            str(repo_path),
            "update-ref",
            "--no-deref",
            "-m",
            "contents API",
            ref,
            new,
            old or browse.ZERO_SHA,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=store.git_environment(settings, repo_path),
        check=False,
    )
    return result.returncode == 0


# Writing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    parts: list[str]
    blob: pygit2.Oid | None  # None: delete
    expected_sha: str | None


def _tip(git_repo: pygit2.Repository, ref: str) -> pygit2.Commit | None:
    reference = git_repo.references.get(ref)
    if reference is None:
        return None
    commit = git_repo.get(reference.resolve().target)
    return commit if isinstance(commit, pygit2.Commit) else None


def _commit_change(
    session: Session,
    settings: Settings,
    repository: Repository,
    actor: Actor,
    branch: str | None,
    change: _Change,
    message: str,
    author: Identity | None,
    committer: Identity | None,
    events: EventBus | None,
) -> FileCommitResult:
    ensure_writable(repository)
    _validate_message(message)
    branch_name = branch or repository.default_branch
    try:
        service.validate_branch_name(branch_name, "branch")
    except ValidationFailed as exc:
        raise NotFound(f"Branch {browse._shown(branch_name)} not found") from exc
    ref = f"refs/heads/{branch_name}"
    author_sig, committer_sig = _signatures(settings, actor, author, committer)
    git_repo = store.open_repository(settings, repository.id)
    path = "/".join(change.parts)

    for _attempt in range(MAX_ATTEMPTS):
        tip = _tip(git_repo, ref)
        if tip is None and not browse.is_empty(git_repo):
            raise NotFound(f"Branch {browse._shown(branch_name)} not found")
        root = tip.tree if tip is not None else None
        existing = _existing_entry(git_repo, root, change.parts)
        if existing is not None and existing.filemode == pygit2.enums.FileMode.TREE:
            raise ValidationFailed.invalid("Content", "path", f"{path} is a directory")
        if existing is None:
            if change.blob is None:
                raise NotFound()
            if change.expected_sha:
                raise Conflict(f"{path} does not match {change.expected_sha}")
        else:
            if not change.expected_sha:
                raise ShaNotSupplied()
            if change.expected_sha.lower() != str(existing.id):
                raise Conflict(f"{path} does not match {change.expected_sha}")

        # An existing file keeps its executable bit; anything else becomes a regular file.
        mode = (
            int(pygit2.enums.FileMode.BLOB_EXECUTABLE)
            if existing is not None and existing.filemode == pygit2.enums.FileMode.BLOB_EXECUTABLE
            else int(pygit2.enums.FileMode.BLOB)
        )
        new_tree = _with_entry(
            git_repo, root, change.parts, (change.blob, mode) if change.blob is not None else None
        )
        if new_tree is None:
            new_tree = git_repo.TreeBuilder().write()
        parents = [tip.id] if tip is not None else []
        new_id = git_repo.create_commit(None, author_sig, committer_sig, message, new_tree, parents)
        old_sha = str(tip.id) if tip is not None else None
        update = pushes.RefUpdate(ref, old_sha or browse.ZERO_SHA, str(new_id))
        pushes.check_push(session, repository, actor, [update], git_repo=git_repo)
        if not _compare_and_swap(settings, git_repo, ref, str(new_id), old_sha):
            continue  # the branch moved: look again from its new tip
        pushes.record_push(session, settings, repository, actor, [update], events=events)
        new_commit = git_repo.get(new_id)
        assert isinstance(new_commit, pygit2.Commit)
        content: browse.ContentItem | None = None
        if change.blob is not None:
            content = browse.get_contents(git_repo, str(new_id), path, with_content=False).item
        return FileCommitResult(
            commit=browse.commit_info(new_commit),
            content=content,
            created=existing is None,
            branch=branch_name,
        )
    raise Conflict(f"{ref} kept moving while the commit was made; try again.")


def put_file(
    session: Session,
    settings: Settings,
    repository: Repository,
    actor: Actor,
    path: str,
    *,
    content: bytes,
    message: str,
    sha: str | None = None,
    branch: str | None = None,
    author: Identity | None = None,
    committer: Identity | None = None,
    events: EventBus | None = None,
) -> FileCommitResult:
    """Create `path` (no `sha`) or replace it (`sha` of the blob being replaced) on `branch`
    (the default branch when None) as one new commit."""
    parts = validate_write_path(path)
    blob_id = store.open_repository(settings, repository.id).create_blob(content)
    return _commit_change(
        session,
        settings,
        repository,
        actor,
        branch,
        _Change(parts, blob_id, sha),
        message,
        author,
        committer,
        events,
    )


def delete_file(
    session: Session,
    settings: Settings,
    repository: Repository,
    actor: Actor,
    path: str,
    *,
    message: str,
    sha: str | None,
    branch: str | None = None,
    author: Identity | None = None,
    committer: Identity | None = None,
    events: EventBus | None = None,
) -> FileCommitResult:
    """Remove `path` (which must be the blob `sha`) from `branch` as one new commit."""
    parts = validate_write_path(path)
    if not sha:
        raise ShaNotSupplied()
    return _commit_change(
        session,
        settings,
        repository,
        actor,
        branch,
        _Change(parts, None, sha),
        message,
        author,
        committer,
        events,
    )
