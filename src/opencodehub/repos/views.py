"""Code-browsing pages: repository home, tree, blob, raw, history, commit, blame, compare,
branches, tags, and editing files in the browser. GitHub's URL scheme.

Every route is a plain `def` (git work runs in the thread pool, off the event loop) and looks the
repository up through `service.get_for`, so a repository the visitor may not see answers the
same 404 page as one that does not exist. Refs in URLs may contain '/': the longest prefix of the
path that names a branch or tag is the ref, as on GitHub.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

import pygit2
from fastapi import Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from markupsafe import Markup
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission
from opencodehub.config import Settings
from opencodehub.core.errors import Forbidden, NotFound, OCHError, ValidationFailed
from opencodehub.core.routing import APIRouter
from opencodehub.core.time import utcnow
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.lfs import pointer as lfs_pointer
from opencodehub.lfs import service as lfs_service
from opencodehub.repos import blame as blame_service
from opencodehub.repos import branches as branch_service
from opencodehub.repos import browse, contents, diffview, lastcommit, stats
from opencodehub.repos.deps import RepoView, load_view
from opencodehub.storage import ObjectNotFound
from opencodehub.storage.views import get_storage
from opencodehub.web import flash
from opencodehub.web.auth import WebUser
from opencodehub.web.csrf import CsrfProtected
from opencodehub.web.highlight import highlight_lines, language_name, numbered_rows
from opencodehub.web.markdown import RepoContext, render_markdown
from opencodehub.web.templating import render

router = APIRouter(include_in_schema=False)

MAX_BLOB_DISPLAY_BYTES = 2 * 1024 * 1024  # larger files are offered for download
MAX_EDIT_BYTES = 1024 * 1024
COMMITS_PER_PAGE = 35
MAX_PAGE = 10_000
MAX_PICKER_REFS = 100
BRANCHES_PER_PAGE = 50
MARKDOWN_EXTENSIONS = (".md", ".markdown", ".mdown", ".mkd")
SAFE_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
RAW_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


# Lookup ----------------------------------------------------------------------------------------


_load = load_view  # the page's repository, its git data and the visitor's rights


def _canonical(view: RepoView, owner: str, repo: str, request: Request) -> Response | None:
    """A 301 to the repository's current name when it was reached by an old one."""
    if owner == view.repository.owner.username and repo == view.repository.name:
        return None
    prefix = f"/{owner}/{repo}"
    rest = request.url.path[len(prefix) :] if request.url.path.startswith(prefix) else ""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(view.base + rest + query, status_code=301)


@dataclass
class Target:
    ref: str  # as written in URLs: a branch, a tag or a sha
    path: str
    commit: pygit2.Commit
    is_branch: bool
    ambiguous: bool = False  # a branch and a tag share the name; the branch wins


def _ref_exists(git: pygit2.Repository, full_name: str) -> bool:
    try:
        return git.references.get(full_name) is not None
    except (ValueError, pygit2.InvalidSpecError):
        return False


def resolve_target(git: pygit2.Repository, rest: str) -> Target:
    """`{ref}/{path}` split at the longest prefix that is a branch or a tag, else a sha."""
    if len(rest) > browse.MAX_PATH_LENGTH + browse.MAX_REF_LENGTH or "\x00" in rest:
        raise NotFound()
    parts = rest.strip("/").split("/") if rest.strip("/") else []
    if not parts:
        raise NotFound()
    for size in range(min(len(parts), 64), 0, -1):
        candidate = "/".join(parts[:size])
        if not browse.is_valid_ref_name(candidate):
            continue
        is_branch = _ref_exists(git, f"refs/heads/{candidate}")
        is_tag = _ref_exists(git, f"refs/tags/{candidate}")
        if is_branch or is_tag:
            path = browse.normalize_path("/".join(parts[size:]))
            commit = browse.resolve_commit(git, candidate)
            return Target(candidate, path, commit, is_branch, ambiguous=is_branch and is_tag)
    ref = parts[0]
    if not browse.SHORT_SHA_RE.match(ref):
        raise browse.RefNotFound(ref)
    commit = browse.resolve_commit(git, ref)
    return Target(ref, browse.normalize_path("/".join(parts[1:])), commit, False)


def _object_at(git: pygit2.Repository, commit: pygit2.Commit, path: str) -> tuple[Any, int]:
    if not path:
        return commit.tree, int(pygit2.enums.FileMode.TREE)
    try:
        entry = commit.tree[path]
    except KeyError as exc:
        raise NotFound() from exc
    if entry.filemode == pygit2.enums.FileMode.COMMIT:
        return entry, int(entry.filemode)
    found = git.get(entry.id)
    if found is None:
        raise NotFound()
    return found, int(entry.filemode)


# Helpers for templates --------------------------------------------------------------------------


def url_path(value: str) -> str:
    return quote(value, safe="/")


def ago(when: datetime | None) -> str:
    if when is None:
        return ""
    seconds = int((utcnow() - when.astimezone(UTC)).total_seconds())
    if seconds < 60:
        return "just now"
    for unit, size in (
        ("year", 31_536_000),
        ("month", 2_592_000),
        ("day", 86_400),
        ("hour", 3_600),
        ("minute", 60),
    ):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def breadcrumbs(path: str) -> list[tuple[str, str]]:
    crumbs: list[tuple[str, str]] = []
    parts = path.split("/") if path else []
    for index, part in enumerate(parts):
        crumbs.append((part, "/".join(parts[: index + 1])))
    return crumbs


def _refs_for_picker(git: pygit2.Repository) -> tuple[list[str], list[str]]:
    branches = [branch.name for branch in browse.list_branches(git)][:MAX_PICKER_REFS]
    tags = [tag.name for tag in browse.list_tags(git)][:MAX_PICKER_REFS]
    return branches, tags


def _page(request: Request, template: str, view: RepoView, tab: str, **context: Any) -> Response:
    branches, tags = _refs_for_picker(view.git) if not browse.is_empty(view.git) else ([], [])
    return render(
        request,
        template,
        repo=view.repository,
        base=view.base,
        can_write=view.can_write,
        tab=tab,
        picker_branches=branches,
        picker_tags=tags,
        url_path=url_path,
        ago=ago,
        **context,
    )


def _decode_text(data: bytes) -> tuple[str, bool]:
    """The text and whether it was not valid UTF-8 (decoded with replacement characters)."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), True


def _is_binary(data: bytes) -> bool:
    return b"\x00" in data[:8000]


def _markdown_context(view: RepoView, ref: str, directory: str) -> RepoContext:
    return RepoContext(view.repository.owner.username, view.repository.name, ref, directory)


# Home and tree ---------------------------------------------------------------------------------


@dataclass
class Entry:
    name: str
    path: str
    kind: str  # "dir", "file", "symlink", "submodule"
    sha: str


def _entries(git: pygit2.Repository, tree: pygit2.Tree, prefix: str) -> list[Entry]:
    entries: list[Entry] = []
    for item in tree:
        name = item.raw_name.decode("utf-8", errors="replace")
        path = f"{prefix}/{name}" if prefix else name
        mode = int(item.filemode)
        kind = {
            int(pygit2.enums.FileMode.TREE): "dir",
            int(pygit2.enums.FileMode.COMMIT): "submodule",
            int(pygit2.enums.FileMode.LINK): "symlink",
        }.get(mode, "file")
        entries.append(Entry(name, path, kind, str(item.id)))
    entries.sort(key=lambda entry: (entry.kind != "dir", entry.name.lower()))
    return entries


def _readme(view: RepoView, target: Target) -> dict[str, Any] | None:
    try:
        item = browse.find_readme(view.git, str(target.commit.id), target.path)
    except NotFound:
        return None
    if item.content is None:
        return None
    text, _ = _decode_text(item.content)
    directory = posixpath.dirname(item.path)
    if item.name.lower().endswith(MARKDOWN_EXTENSIONS):
        html = render_markdown(text, repo_context=_markdown_context(view, target.ref, directory))
    else:
        html = Markup("<pre>{0}</pre>").format(text)
    return {"name": item.name, "path": item.path, "html": html}


def _tree_page(
    request: Request,
    settings: Settings,
    view: RepoView,
    target: Target,
    *,
    home: bool,
) -> Response:
    tree, mode = _object_at(view.git, target.commit, target.path)
    if mode != pygit2.enums.FileMode.TREE:
        return RedirectResponse(
            f"{view.base}/blob/{url_path(target.ref)}/{url_path(target.path)}", status_code=302
        )
    entries = _entries(view.git, tree, target.path)
    commit_sha = str(target.commit.id)
    listing = lastcommit.cached(settings, view.repository.id, commit_sha, target.path)
    context: dict[str, Any] = {
        "target": target,
        "entries": entries,
        "listing": listing,
        "crumbs": breadcrumbs(target.path),
        "readme": _readme(view, target),
        "latest": browse.commit_info(target.commit),
        "commit_sha": commit_sha,
        "home": home,
    }
    if home:
        context.update(_clone_urls(settings, view))
        context["branch_count"] = sum(1 for _ in browse.list_branches(view.git))
        context["tag_count"] = len(browse.list_tags(view.git))
    title = view.repository.full_name if home else f"{target.path} at {target.ref}"
    return _page(request, "repos/tree.html", view, "code", page_title=title, **context)


def _clone_urls(settings: Settings, view: RepoView) -> dict[str, str]:
    full_name = view.repository.full_name
    return {
        "https_url": f"{settings.effective_base_url}/{full_name}.git",
        "ssh_url": f"ssh://git@{settings.ssh_clone_host}:{settings.ssh_port}/{full_name}.git",
    }


@router.get("/{owner}/{repo}")
def repository_home(
    request: Request,
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    if repo.lower().endswith(".git") and len(repo) > 4:
        return RedirectResponse(f"/{quote(owner)}/{quote(repo[:-4])}", status_code=301)
    view = _load(session, settings, actor, owner, repo)
    if (redirect := _canonical(view, owner, repo, request)) is not None:
        return redirect
    if browse.is_empty(view.git):
        return _page(
            request,
            "repos/empty.html",
            view,
            "code",
            page_title=view.repository.full_name,
            **_clone_urls(settings, view),
        )
    default = view.repository.default_branch
    try:
        commit = browse.resolve_commit(view.git, default)
        ref = default
    except NotFound:
        # HEAD names a branch that does not exist: show the first branch there is.
        first = browse.list_branches(view.git)[0]
        commit, ref = browse.resolve_commit(view.git, first.name), first.name
    target = Target(ref, "", commit, True)
    return _tree_page(request, settings, view, target, home=True)


@router.get("/{owner}/{repo}/tree/{rest:path}")
def tree(
    request: Request,
    owner: str,
    repo: str,
    rest: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    if (redirect := _canonical(view, owner, repo, request)) is not None:
        return redirect
    target = resolve_target(view.git, rest)
    return _tree_page(request, settings, view, target, home=False)


@router.get("/{owner}/{repo}/tree-commit-info/{sha}/{path:path}")
@router.get("/{owner}/{repo}/tree-commit-info/{sha}")
def tree_commit_info(
    request: Request,
    owner: str,
    repo: str,
    sha: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    path: str = "",
) -> Response:
    """The file list with its last-commit column (htmx swaps it in when it was not cached)."""
    view = _load(session, settings, actor, owner, repo)
    if not browse.FULL_SHA_RE.match(sha):
        raise NotFound()
    commit = browse.resolve_commit(view.git, sha)
    clean = browse.normalize_path(path)
    tree, mode = _object_at(view.git, commit, clean)
    if mode != pygit2.enums.FileMode.TREE:
        raise NotFound()
    listing = lastcommit.last_commits(settings, view.git, view.repository.id, commit, clean)
    ref = request.query_params.get("ref", sha)
    if not browse.is_valid_ref_name(ref):
        ref = sha
    return render(
        request,
        "repos/_file_list.html",
        base=view.base,
        entries=_entries(view.git, tree, clean),
        listing=listing,
        target=Target(ref, clean, commit, False),
        commit_sha=sha,
        url_path=url_path,
        ago=ago,
    )


@router.get("/{owner}/{repo}/repo-stats/{sha}")
def repo_stats(
    request: Request,
    owner: str,
    repo: str,
    sha: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    """Languages bar and commit count for the home page's side panel (loaded by htmx)."""
    view = _load(session, settings, actor, owner, repo)
    if not browse.FULL_SHA_RE.match(sha):
        raise NotFound()
    commit = browse.resolve_commit(view.git, sha)
    ref = request.query_params.get("ref", sha)
    return render(
        request,
        "repos/_stats.html",
        base=view.base,
        languages=stats.languages(settings, view.git, view.repository.id, commit),
        commit_count=stats.commit_count(settings, view.git, view.repository.id, commit),
        ref=ref if browse.is_valid_ref_name(ref) else sha,
        url_path=url_path,
    )


# Blob and raw ----------------------------------------------------------------------------------


@router.get("/{owner}/{repo}/blob/{rest:path}")
def blob(
    request: Request,
    owner: str,
    repo: str,
    rest: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    plain: Annotated[int, Query(ge=0, le=1)] = 0,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    if (redirect := _canonical(view, owner, repo, request)) is not None:
        return redirect
    target = resolve_target(view.git, rest)
    if not target.path:
        return RedirectResponse(f"{view.base}/tree/{url_path(target.ref)}", status_code=302)
    obj, mode = _object_at(view.git, target.commit, target.path)
    if mode == pygit2.enums.FileMode.TREE:
        return RedirectResponse(
            f"{view.base}/tree/{url_path(target.ref)}/{url_path(target.path)}", status_code=302
        )
    name = target.path.rsplit("/", 1)[-1]
    context: dict[str, Any] = {
        "target": target,
        "crumbs": breadcrumbs(target.path),
        "name": name,
        "commit_sha": str(target.commit.id),
        "kind": "file",
        "size": 0,
        "code_rows": Markup(""),
        "rendered": None,
        "invalid_utf8": False,
        "plain": bool(plain),
    }
    if mode == pygit2.enums.FileMode.COMMIT:
        context["kind"] = "submodule"
        context["submodule_sha"] = str(obj.id)
    else:
        assert isinstance(obj, pygit2.Blob)
        context["size"] = obj.size
        context["blob_sha"] = str(obj.id)
        extension = posixpath.splitext(name)[1].lower()
        # A Git LFS pointer is shown as the file it stands for, read from object storage.
        lfs_file = (
            _lfs_file(request, session, view, obj) if mode != pygit2.enums.FileMode.LINK else None
        )
        content = obj.data if lfs_file is None else lfs_file.content
        if lfs_file is not None:
            context["lfs"] = lfs_file
            context["size"] = lfs_file.size
        if mode == pygit2.enums.FileMode.LINK:
            context["kind"] = "symlink"
            context["link_target"] = _decode_text(obj.data)[0]
        elif extension in SAFE_IMAGE_TYPES and (lfs_file is None or lfs_file.stored):
            context["kind"] = "image"
        elif context["size"] > MAX_BLOB_DISPLAY_BYTES or content is None:
            context["kind"] = "large"
        elif _is_binary(content):
            context["kind"] = "binary"
        else:
            text, invalid = _decode_text(content)
            context["invalid_utf8"] = invalid
            context["line_count"] = text.count("\n") + (0 if text.endswith("\n") else 1)
            context["language"] = language_name(name, text)
            if extension in MARKDOWN_EXTENSIONS and not plain:
                context["rendered"] = render_markdown(
                    text,
                    repo_context=_markdown_context(
                        view, target.ref, posixpath.dirname(target.path)
                    ),
                )
            else:
                context["code_rows"] = numbered_rows(
                    highlight_lines(text, name, cache_key=str(obj.id))
                )
            context["editable"] = (
                view.can_write and target.is_branch and not invalid and lfs_file is None
            )
    return _page(
        request,
        "repos/blob.html",
        view,
        "code",
        page_title=f"{target.path} at {target.ref}",
        **context,
    )


def raw_headers(name: str, data_start: bytes) -> dict[str, str]:
    """Content type and disposition for untrusted file content: never HTML, never script."""
    extension = posixpath.splitext(name)[1].lower()
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": RAW_CSP,
        "Cache-Control": "private, max-age=60",
    }
    if extension in SAFE_IMAGE_TYPES:
        headers["Content-Type"] = SAFE_IMAGE_TYPES[extension]
    elif _is_binary(data_start):
        headers["Content-Type"] = "application/octet-stream"
        ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
        headers["Content-Disposition"] = (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
        )
    else:
        headers["Content-Type"] = "text/plain; charset=utf-8"
    return headers


@dataclass(frozen=True)
class LFSFile:
    """A blob that is a Git LFS pointer: the object's size, whether this repository has it in
    storage, and its bytes when it is small enough to show."""

    oid: str
    size: int
    stored: bool
    content: bytes | None


def _lfs_pointer(
    session: Session, view: RepoView, obj: pygit2.Blob
) -> tuple[lfs_pointer.Pointer, bool] | None:
    if obj.size >= lfs_pointer.MAX_POINTER_BYTES:
        return None
    pointer = lfs_pointer.parse_pointer(obj.data)
    if pointer is None:
        return None
    linked = lfs_service.linked_object(session, view.repository, pointer.oid)
    return pointer, linked is not None and linked.size == pointer.size


def _lfs_file(
    request: Request, session: Session, view: RepoView, obj: pygit2.Blob
) -> LFSFile | None:
    found = _lfs_pointer(session, view, obj)
    if found is None:
        return None
    pointer, stored = found
    content = None
    if stored and pointer.size <= MAX_BLOB_DISPLAY_BYTES:
        try:
            with get_storage(request).get(lfs_service.object_key(pointer.oid)) as stream:
                content = b"".join(stream)
        except ObjectNotFound:
            stored = False
    return LFSFile(pointer.oid, pointer.size, stored, content)


def _lfs_raw(
    request: Request, session: Session, view: RepoView, obj: pygit2.Blob, name: str
) -> Response | None:
    """The raw view of an LFS pointer serves the object's bytes (the pointer itself when the
    object is not in this repository's storage, as git-lfs would leave it in a checkout)."""
    found = _lfs_pointer(session, view, obj)
    if found is None or not found[1]:
        return None
    pointer = found[0]
    try:
        stream = get_storage(request).get(lfs_service.object_key(pointer.oid))
    except ObjectNotFound:
        return None
    chunks = iter(stream)
    head = next(chunks, b"")
    headers = raw_headers(name, head)
    media_type = headers.pop("Content-Type")
    headers["Content-Length"] = str(pointer.size)

    def body() -> Iterator[bytes]:
        with stream:
            if head:
                yield head
            yield from chunks

    return StreamingResponse(body(), media_type=media_type, headers=headers)


@router.get("/{owner}/{repo}/raw/{rest:path}")
def raw(
    request: Request,
    owner: str,
    repo: str,
    rest: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    target = resolve_target(view.git, rest)
    obj, _mode = _object_at(view.git, target.commit, target.path)
    if not isinstance(obj, pygit2.Blob):
        raise NotFound()
    name = target.path.rsplit("/", 1)[-1]
    lfs_raw = _lfs_raw(request, session, view, obj, name)
    if lfs_raw is not None:
        return lfs_raw
    # The first bytes decide text or binary; the whole blob is streamed, never held.
    head = next(iter(browse.stream_blob(settings, view.git, str(obj.id), chunk_size=8000)), b"")
    headers = raw_headers(name, head)
    media_type = headers.pop("Content-Type")
    headers["Content-Length"] = str(obj.size)
    return StreamingResponse(
        browse.stream_blob(settings, view.git, str(obj.id)), media_type=media_type, headers=headers
    )


# History ---------------------------------------------------------------------------------------


@router.get("/{owner}/{repo}/commits/{rest:path}")
def commits(
    request: Request,
    owner: str,
    repo: str,
    rest: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    if (redirect := _canonical(view, owner, repo, request)) is not None:
        return redirect
    target = resolve_target(view.git, rest)
    log = browse.list_commits(
        settings,
        view.git,
        str(target.commit.id),
        browse.LogQuery(path=target.path or None),
        offset=(page - 1) * COMMITS_PER_PAGE,
        limit=COMMITS_PER_PAGE,
    )
    groups: dict[str, list[browse.CommitInfo]] = {}
    for info in log.commits:
        groups.setdefault(info.committer.date.astimezone(UTC).strftime("%b %d, %Y"), []).append(
            info
        )
    return _page(
        request,
        "repos/commits.html",
        view,
        "commits",
        page_title=f"History of {target.path or view.repository.full_name}",
        target=target,
        crumbs=breadcrumbs(target.path),
        groups=groups,
        page=page,
        has_next=log.has_next,
    )


@router.get("/{owner}/{repo}/commits")
def commits_default(
    owner: str, repo: str, session: SessionDep, settings: SettingsDep, actor: CurrentActor
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    return RedirectResponse(
        f"{view.base}/commits/{url_path(view.repository.default_branch)}", status_code=302
    )


def _diff_mode(request: Request) -> str:
    return "split" if request.query_params.get("diff") == "split" else "unified"


def _commit_trees(view: RepoView, sha: str) -> tuple[pygit2.Commit, pygit2.Tree | None]:
    if not browse.SHORT_SHA_RE.match(sha) and not browse.is_valid_ref_name(sha):
        raise NotFound()
    commit = browse.resolve_commit(view.git, sha)
    parent_tree = commit.parents[0].tree if commit.parent_ids else None
    return commit, parent_tree


@router.get("/{owner}/{repo}/commit/{sha}")
def commit_page(
    request: Request,
    owner: str,
    repo: str,
    sha: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    if (redirect := _canonical(view, owner, repo, request)) is not None:
        return redirect
    commit, parent_tree = _commit_trees(view, sha)
    diff = diffview.build(view.git, parent_tree, commit.tree)
    info = browse.commit_info(commit)
    return _page(
        request,
        "repos/commit.html",
        view,
        "commits",
        page_title=info.message.split("\n", 1)[0][:80] or info.sha[:7],
        commit=info,
        diff=diff,
        diff_mode=_diff_mode(request),
        diff_url=f"{view.base}/commit/{info.sha}/file-diff",
    )


@router.get("/{owner}/{repo}/commit/{sha}/file-diff")
def commit_file_diff(
    request: Request,
    owner: str,
    repo: str,
    sha: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    path: Annotated[str, Query(max_length=browse.MAX_PATH_LENGTH)],
) -> Response:
    """One file's full diff, for the "Load diff" link (an htmx partial)."""
    view = _load(session, settings, actor, owner, repo)
    commit, parent_tree = _commit_trees(view, sha)
    item = diffview.load_file_diff(view.git, parent_tree, commit.tree, browse.normalize_path(path))
    if item is None:
        raise NotFound()
    return render(
        request,
        "repos/_diff_file.html",
        file=item,
        diff_mode=_diff_mode(request),
        base=view.base,
        head_ref=str(commit.id),
        diff_url=None,
        url_path=url_path,
    )


# Blame -----------------------------------------------------------------------------------------


@router.get("/{owner}/{repo}/blame/{rest:path}")
def blame(
    request: Request,
    owner: str,
    repo: str,
    rest: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    if (redirect := _canonical(view, owner, repo, request)) is not None:
        return redirect
    target = resolve_target(view.git, rest)
    obj, mode = _object_at(view.git, target.commit, target.path)
    if not isinstance(obj, pygit2.Blob) or mode == pygit2.enums.FileMode.LINK:
        raise NotFound()
    if obj.size > blame_service.MAX_BLAME_BYTES or _is_binary(obj.data):
        raise NotFound("This file cannot be blamed in the browser; download it instead.")
    result = blame_service.blame_file(settings, view.git, target.commit, target.path)
    text, invalid = _decode_text(obj.data)
    name = target.path.rsplit("/", 1)[-1]
    lines = highlight_lines(text, name, cache_key=str(obj.id))
    return _page(
        request,
        "repos/blame.html",
        view,
        "code",
        page_title=f"Blame {target.path} at {target.ref}",
        target=target,
        crumbs=breadcrumbs(target.path),
        blame=result,
        lines=lines,
        invalid_utf8=invalid,
        commit_sha=str(target.commit.id),
    )


# Branches, tags, compare -----------------------------------------------------------------------


@dataclass
class BranchRow:
    name: str
    commit: browse.CommitInfo
    protected: bool
    ahead: int
    behind: int
    is_default: bool


@router.get("/{owner}/{repo}/branches")
def branches(
    request: Request,
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    patterns = browse.protected_patterns(session, view.repository.id)
    all_branches = browse.list_branches(view.git, patterns)
    default = view.repository.default_branch
    default_tip = next((b.sha for b in all_branches if b.name == default), None)
    start = (page - 1) * BRANCHES_PER_PAGE
    rows: list[BranchRow] = []
    for branch in all_branches[start : start + BRANCHES_PER_PAGE]:
        ahead = behind = 0
        if default_tip is not None and branch.name != default:
            ahead, behind = view.git.ahead_behind(branch.sha, default_tip)
        commit = view.git.get(branch.sha)
        assert isinstance(commit, pygit2.Commit)
        rows.append(
            BranchRow(
                branch.name,
                browse.commit_info(commit),
                branch.protected,
                ahead,
                behind,
                branch.name == default,
            )
        )
    rows.sort(key=lambda row: (not row.is_default, -row.commit.committer.date.timestamp()))
    return _page(
        request,
        "repos/branches.html",
        view,
        "branches",
        page_title=f"Branches · {view.repository.full_name}",
        rows=rows,
        page=page,
        has_next=start + BRANCHES_PER_PAGE < len(all_branches),
    )


@router.post("/{owner}/{repo}/branches/delete")
def delete_branch(
    request: Request,
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    branch: Annotated[str, Form(max_length=browse.MAX_REF_LENGTH)],
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.WRITE)
    try:
        branch_service.delete_branch(
            session,
            settings,
            view.repository,
            actor,
            branch,
            events=getattr(request.app.state, "events", None),
        )
    except Forbidden as exc:
        return flash.redirect(request, f"{view.base}/branches", exc.message, "error")
    return flash.redirect(request, f"{view.base}/branches", f"Branch {branch} deleted.")


@router.get("/{owner}/{repo}/tags")
def tags(
    request: Request,
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    rows = []
    for tag in browse.list_tags(view.git)[:500]:
        commit = view.git.get(tag.commit_sha)
        if isinstance(commit, pygit2.Commit):
            rows.append((tag, browse.commit_info(commit)))
    return _page(
        request,
        "repos/tags.html",
        view,
        "tags",
        page_title=f"Tags · {view.repository.full_name}",
        rows=rows,
    )


@router.get("/{owner}/{repo}/compare")
def compare_form(
    request: Request,
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    base: Annotated[str | None, Query(max_length=browse.MAX_REF_LENGTH)] = None,
    head: Annotated[str | None, Query(max_length=browse.MAX_REF_LENGTH)] = None,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    if base and head:
        return RedirectResponse(
            f"{view.base}/compare/{url_path(base)}...{url_path(head)}", status_code=302
        )
    return _page(
        request,
        "repos/compare.html",
        view,
        "code",
        page_title="Compare",
        comparison=None,
        base_ref=view.repository.default_branch,
        head_ref="",
    )


@router.get("/{owner}/{repo}/compare/{spec:path}")
def compare(
    request: Request,
    owner: str,
    repo: str,
    spec: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    base_ref, sep, head_ref = spec.partition("...")
    if not sep:
        base_ref, head_ref = view.repository.default_branch, spec
    for ref in (base_ref, head_ref):
        if not browse.is_valid_ref_name(ref):
            raise NotFound(f"{browse._shown(ref)} is not a branch, tag or commit.")
    comparison = browse.compare(view.git, base_ref, head_ref, max_files=1)
    merge_base = view.git.get(comparison.merge_base.sha)
    head_commit = view.git.get(comparison.head.sha)
    assert isinstance(merge_base, pygit2.Commit) and isinstance(head_commit, pygit2.Commit)
    diff = diffview.build(view.git, merge_base.tree, head_commit.tree)
    return _page(
        request,
        "repos/compare.html",
        view,
        "code",
        page_title=f"Comparing {base_ref}...{head_ref}",
        comparison=comparison,
        base_ref=base_ref,
        head_ref=head_ref,
        diff=diff,
        diff_mode=_diff_mode(request),
        diff_url=None,
    )


# Editing ---------------------------------------------------------------------------------------


def _editable_target(view: RepoView, rest: str) -> Target:
    target = resolve_target(view.git, rest)
    if not target.is_branch:
        raise NotFound("Files can only be edited on a branch.")
    return target


def _edit_form(
    request: Request,
    view: RepoView,
    target: Target,
    *,
    mode: str,
    filename: str,
    content: str,
    message: str,
    sha: str,
    error: str = "",
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "repos/edit.html",
        status_code=status_code,
        repo=view.repository,
        base=view.base,
        can_write=view.can_write,
        tab="code",
        picker_branches=[],
        picker_tags=[],
        url_path=url_path,
        ago=ago,
        page_title=f"Editing {view.repository.full_name}",
        target=target,
        mode=mode,
        filename=filename,
        content=content,
        message=message,
        sha=sha,
        error=error,
        crumbs=breadcrumbs(target.path),
    )


def _existing_file(view: RepoView, target: Target) -> pygit2.Blob:
    obj, mode = _object_at(view.git, target.commit, target.path)
    if not isinstance(obj, pygit2.Blob) or mode == pygit2.enums.FileMode.LINK:
        raise NotFound()
    return obj


def _text_for_editing(blob_obj: pygit2.Blob) -> str:
    if blob_obj.size > MAX_EDIT_BYTES or _is_binary(blob_obj.data):
        raise NotFound("This file is too large or not text; it cannot be edited in the browser.")
    text, invalid = _decode_text(blob_obj.data)
    if invalid:
        raise NotFound("This file is not UTF-8 text; it cannot be edited in the browser.")
    return text


@router.get("/{owner}/{repo}/new/{rest:path}")
def new_file_form(
    request: Request,
    owner: str,
    repo: str,
    rest: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.WRITE)
    target = _editable_target(view, rest)
    return _edit_form(
        request, view, target, mode="new", filename="", content="", message="", sha=""
    )


@router.get("/{owner}/{repo}/edit/{rest:path}")
def edit_file_form(
    request: Request,
    owner: str,
    repo: str,
    rest: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.WRITE)
    target = _editable_target(view, rest)
    existing = _existing_file(view, target)
    return _edit_form(
        request,
        view,
        target,
        mode="edit",
        filename=target.path.rsplit("/", 1)[-1],
        content=_text_for_editing(existing),
        message="",
        sha=str(existing.id),
    )


@router.get("/{owner}/{repo}/delete/{rest:path}")
def delete_file_form(
    request: Request,
    owner: str,
    repo: str,
    rest: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.WRITE)
    target = _editable_target(view, rest)
    existing = _existing_file(view, target)
    return _edit_form(
        request,
        view,
        target,
        mode="delete",
        filename=target.path.rsplit("/", 1)[-1],
        content="",
        message="",
        sha=str(existing.id),
    )


def _normalize_newlines(content: str, original: str | None) -> str:
    """Browsers send CRLF from a textarea; keep the file's own line endings."""
    if original is not None and "\r\n" in original:
        return content
    return content.replace("\r\n", "\n")


def _commit_form(
    request: Request,
    session: Session,
    settings: Settings,
    actor: Actor,
    view: RepoView,
    target: Target,
    *,
    mode: str,
    path: str,
    content: str | None,
    message: str,
    sha: str,
    filename: str,
) -> Response:
    summary = (
        message.strip()
        or {
            "new": f"Create {path}",
            "edit": f"Update {path}",
            "delete": f"Delete {path}",
        }[mode]
    )
    events = getattr(request.app.state, "events", None)
    try:
        if mode == "delete":
            contents.delete_file(
                session,
                settings,
                view.repository,
                actor,
                path,
                message=summary,
                sha=sha,
                branch=target.ref,
                events=events,
            )
        else:
            assert content is not None
            contents.put_file(
                session,
                settings,
                view.repository,
                actor,
                path,
                content=content.encode("utf-8"),
                message=summary,
                sha=sha or None,
                branch=target.ref,
                events=events,
            )
    except (ValidationFailed, Forbidden, OCHError) as exc:
        if isinstance(exc, NotFound) and not isinstance(exc, browse.RefNotFound):
            raise
        text = exc.describe() if isinstance(exc, ValidationFailed) else exc.message
        return _edit_form(
            request,
            view,
            target,
            mode=mode,
            filename=filename,
            content=content or "",
            message=message,
            sha=sha,
            error=text,
            status_code=exc.status_code,
        )
    if mode == "delete":
        parent = posixpath.dirname(path)
        where = f"{view.base}/tree/{url_path(target.ref)}" + (
            f"/{url_path(parent)}" if parent else ""
        )
        return flash.redirect(request, where, f"Deleted {path}.")
    return flash.redirect(
        request, f"{view.base}/blob/{url_path(target.ref)}/{url_path(path)}", f"Committed {path}."
    )


@router.post("/{owner}/{repo}/new/{rest:path}")
def new_file(
    request: Request,
    owner: str,
    repo: str,
    rest: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    filename: Annotated[str, Form(max_length=browse.MAX_PATH_LENGTH)],
    content: Annotated[str, Form(max_length=contents.MAX_FILE_BYTES)] = "",
    message: Annotated[str, Form(max_length=contents.MAX_MESSAGE_BYTES)] = "",
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.WRITE)
    target = _editable_target(view, rest)
    path = f"{target.path}/{filename.strip('/')}" if target.path else filename.strip("/")
    return _commit_form(
        request,
        session,
        settings,
        actor,
        view,
        target,
        mode="new",
        path=path,
        content=_normalize_newlines(content, None),
        message=message,
        sha="",
        filename=filename,
    )


@router.post("/{owner}/{repo}/edit/{rest:path}")
def edit_file(
    request: Request,
    owner: str,
    repo: str,
    rest: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    sha: Annotated[str, Form(max_length=64)],
    content: Annotated[str, Form(max_length=contents.MAX_FILE_BYTES)] = "",
    message: Annotated[str, Form(max_length=contents.MAX_MESSAGE_BYTES)] = "",
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.WRITE)
    target = _editable_target(view, rest)
    existing = _existing_file(view, target)
    original, _invalid = _decode_text(existing.data)
    return _commit_form(
        request,
        session,
        settings,
        actor,
        view,
        target,
        mode="edit",
        path=target.path,
        content=_normalize_newlines(content, original),
        message=message,
        sha=sha,
        filename=target.path.rsplit("/", 1)[-1],
    )


@router.post("/{owner}/{repo}/delete/{rest:path}")
def delete_file(
    request: Request,
    owner: str,
    repo: str,
    rest: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    sha: Annotated[str, Form(max_length=64)],
    message: Annotated[str, Form(max_length=contents.MAX_MESSAGE_BYTES)] = "",
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.WRITE)
    target = _editable_target(view, rest)
    return _commit_form(
        request,
        session,
        settings,
        actor,
        view,
        target,
        mode="delete",
        path=target.path,
        content=None,
        message=message,
        sha=sha,
        filename=target.path.rsplit("/", 1)[-1],
    )
