"""REST routes for a repository's git data: branches, tags, commits, compare, refs, trees, blobs,
contents, readme, archives — GitHub's paths, shapes and status codes.

Routes are plain `def`: git work blocks, so FastAPI runs them in its thread pool. Each one
authorizes through `service.get_for` (READ to look, WRITE to change) and calls `repos.browse`
or `repos.contents`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Email, Permission, User
from opencodehub.config import Settings
from opencodehub.core.errors import NotFound
from opencodehub.core.pagination import Page, link_header
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.repos import browse, contents, service, store
from opencodehub.repos import git_schemas as schemas
from opencodehub.repos.models import Repository

router = APIRouter(tags=["git data"])
T = TypeVar("T")

REPO = "/repos/{owner}/{repo}"
RAW_MEDIA_TYPES = ("application/vnd.github.raw", "application/vnd.github.v3.raw")
OBJECT_MEDIA_TYPES = ("application/vnd.github.object", "application/vnd.github.v3.object")

PerPage = Annotated[int | None, Query(ge=1, le=1000)]
PageNumber = Annotated[int | None, Query(ge=1, le=1_000_000)]


# Helpers ---------------------------------------------------------------------------------------


class _Context:
    """The repository a request is about, opened once: the record, its git data, its URLs."""

    def __init__(self, settings: Settings, repository: Repository) -> None:
        self.settings = settings
        self.repository = repository
        self.git = store.open_repository(settings, repository.id)
        self.urls = schemas.RepoUrls(settings.effective_base_url, repository.full_name)


def _context(
    session: Session,
    settings: Settings,
    actor: Actor,
    owner: str,
    repo: str,
    action: Permission = Permission.READ,
) -> _Context:
    return _Context(settings, service.get_for(session, actor, owner, repo, action))


def _wants(request: Request, media_types: Iterable[str]) -> bool:
    accept = request.headers.get("accept", "").lower()
    return any(media_type in accept for media_type in media_types)


def users_by_email(session: Session, emails: Iterable[str]) -> dict[str, User]:
    """Accounts owning these (verified) addresses, keyed by the lowered address: how GitHub
    links a commit's author and committer to users."""
    lowered = {email.lower() for email in emails if email}
    if not lowered:
        return {}
    rows = session.execute(
        select(Email.lower_email, User)
        .join(User, User.id == Email.user_id)
        .where(Email.lower_email.in_(lowered), Email.is_verified.is_(True))
    ).all()
    return {email: user for email, user in rows if user.is_active}


def _emails_of(infos: Iterable[browse.CommitInfo]) -> set[str]:
    emails: set[str] = set()
    for info in infos:
        emails.add(info.author.email)
        emails.add(info.committer.email)
    return emails


def _filter_emails(session: Session, settings: Settings, who: str | None) -> frozenset[str] | None:
    """GitHub's `author`/`committer` filter: a login (its verified emails) or an email."""
    if who is None:
        return None
    if "@" in who:
        return frozenset({who.lower()})
    user = accounts.get_user(session, who)
    if user is None:
        return frozenset()
    addresses = {email.lower_email for email in user.emails if email.is_verified}
    addresses.add(f"{user.id}+{user.username}@users.noreply.{settings.ssh_clone_host}".lower())
    return frozenset(addresses)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _paginate(request: Request, response: Response, page: Page, has_next: bool) -> None:
    params = {
        key: value for key, value in request.query_params.items() if key not in ("page", "per_page")
    }
    header = link_header(
        str(request.url.replace(query="")), params, page, total=None, has_next=has_next
    )
    if header:
        response.headers["Link"] = header


def _page_of(items: list[T], request: Request, response: Response, page: Page) -> list[T]:
    chunk = items[page.offset : page.offset + page.per_page]
    _paginate(request, response, page, has_next=len(items) > page.offset + page.per_page)
    return chunk


def _split_basehead(basehead: str) -> tuple[str, str]:
    base, sep, head = basehead.partition("...")
    if not sep or not base or not head or "..." in head:
        raise NotFound()
    return base, head


# Branches and tags -----------------------------------------------------------------------------


@router.get(f"{REPO}/branches", response_model=list[schemas.BranchShort])
def list_branches(
    owner: str,
    repo: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    protected: bool | None = None,
    per_page: PerPage = None,
    page: PageNumber = None,
) -> list[schemas.BranchShort]:
    ctx = _context(session, settings, actor, owner, repo)
    patterns = browse.protected_patterns(session, ctx.repository.id)
    branches = browse.list_branches(ctx.git, patterns)
    if protected is not None:
        branches = [branch for branch in branches if branch.protected == protected]
    chunk = _page_of(branches, request, response, Page.of(page, per_page))
    return [schemas.BranchShort.of(branch, ctx.urls) for branch in chunk]


@router.get(f"{REPO}/branches/{{branch:path}}", response_model=schemas.BranchWithProtection)
def get_branch(
    owner: str,
    repo: str,
    branch: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> schemas.BranchWithProtection:
    ctx = _context(session, settings, actor, owner, repo)
    patterns = browse.protected_patterns(session, ctx.repository.id)
    info = browse.get_branch(ctx.git, branch, patterns)
    commit = browse.get_commit(ctx.git, info.sha)
    users = users_by_email(session, _emails_of([commit]))
    return schemas.BranchWithProtection.of(info, commit, ctx.urls, users)


@router.get(f"{REPO}/tags", response_model=list[schemas.Tag])
def list_tags(
    owner: str,
    repo: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    per_page: PerPage = None,
    page: PageNumber = None,
) -> list[schemas.Tag]:
    ctx = _context(session, settings, actor, owner, repo)
    chunk = _page_of(browse.list_tags(ctx.git), request, response, Page.of(page, per_page))
    return [schemas.Tag.of(tag, ctx.urls) for tag in chunk]


# Commits ---------------------------------------------------------------------------------------


@router.get(f"{REPO}/commits", response_model=list[schemas.RepoCommit])
def list_commits(
    owner: str,
    repo: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    sha: Annotated[str | None, Query(max_length=browse.MAX_REF_LENGTH)] = None,
    path: Annotated[str | None, Query(max_length=browse.MAX_PATH_LENGTH)] = None,
    author: Annotated[str | None, Query(max_length=255)] = None,
    committer: Annotated[str | None, Query(max_length=255)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    per_page: PerPage = None,
    page: PageNumber = None,
) -> list[schemas.RepoCommit]:
    ctx = _context(session, settings, actor, owner, repo)
    browse.require_not_empty(ctx.git)
    query = browse.LogQuery(
        path=path or None,
        author_emails=_filter_emails(session, settings, author),
        committer_emails=_filter_emails(session, settings, committer),
        since=_as_utc(since),
        until=_as_utc(until),
    )
    paging = Page.of(page, per_page)
    if query.author_emails == frozenset() or query.committer_emails == frozenset():
        return []
    try:
        if path is not None:
            browse.normalize_path(path)
    except NotFound:
        return []  # no commit can touch a path that cannot exist
    try:
        log = browse.list_commits(
            settings,
            ctx.git,
            sha or ctx.repository.default_branch,
            query,
            offset=paging.offset,
            limit=paging.limit,
        )
    except browse.RefNotFound as exc:
        raise NotFound() from exc
    _paginate(request, response, paging, log.has_next)
    users = users_by_email(session, _emails_of(log.commits))
    return [schemas.RepoCommit.of(info, ctx.urls, users) for info in log.commits]


@router.get(f"{REPO}/commits/{{ref:path}}", response_model=schemas.RepoCommit)
def get_commit(
    owner: str,
    repo: str,
    ref: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> schemas.RepoCommit:
    ctx = _context(session, settings, actor, owner, repo)
    browse.require_not_empty(ctx.git)
    try:
        detail = browse.get_commit_detail(ctx.git, ref)
    except browse.RefNotFound as exc:
        raise browse.Unprocessable(f"No commit found for SHA: {browse._shown(ref)}") from exc
    users = users_by_email(session, _emails_of([detail.commit]))
    return schemas.RepoCommit.of(detail.commit, ctx.urls, users, detail.diff)


@router.get(f"{REPO}/compare/{{basehead:path}}", response_model=schemas.Comparison)
def compare(
    owner: str,
    repo: str,
    basehead: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    per_page: PerPage = None,
    page: PageNumber = None,
) -> schemas.Comparison:
    ctx = _context(session, settings, actor, owner, repo)
    base, head = _split_basehead(basehead)
    try:
        comparison = browse.compare(ctx.git, base, head)
    except browse.RefNotFound as exc:
        raise NotFound() from exc
    commits = comparison.commits
    if page is not None or per_page is not None:
        paging = Page.of(page, per_page)
        commits = commits[paging.offset : paging.offset + paging.per_page]
    infos = [comparison.base, comparison.merge_base, *commits]
    users = users_by_email(session, _emails_of(infos))
    return schemas.Comparison.of(comparison, basehead, ctx.urls, users, commits)


# Refs ------------------------------------------------------------------------------------------


def _refs(ctx: _Context, prefix: str) -> list[schemas.GitRef]:
    browse.require_not_empty(ctx.git)
    return [schemas.GitRef.of(ref, ctx.urls) for ref in browse.list_refs(ctx.git, prefix)]


@router.get(f"{REPO}/git/refs", response_model=list[schemas.GitRef])
def list_refs(
    owner: str, repo: str, session: SessionDep, settings: SettingsDep, actor: CurrentActor
) -> list[schemas.GitRef]:
    return _refs(_context(session, settings, actor, owner, repo), "")


@router.get(
    f"{REPO}/git/refs/{{ref:path}}",
    response_model=schemas.GitRef | list[schemas.GitRef],
)
def get_refs(
    owner: str,
    repo: str,
    ref: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> schemas.GitRef | list[schemas.GitRef]:
    """GitHub's older form: the ref itself when `ref` names one exactly, else the refs it is a
    prefix of; 404 when there are none."""
    ctx = _context(session, settings, actor, owner, repo)
    refs = _refs(ctx, ref)
    for candidate in refs:
        if candidate.ref == f"refs/{ref}":
            return candidate
    if not refs:
        raise NotFound()
    return refs


@router.get(f"{REPO}/git/ref/{{ref:path}}", response_model=schemas.GitRef)
def get_ref(
    owner: str,
    repo: str,
    ref: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> schemas.GitRef:
    ctx = _context(session, settings, actor, owner, repo)
    browse.require_not_empty(ctx.git)
    return schemas.GitRef.of(browse.get_ref(ctx.git, ref), ctx.urls)


@router.get(f"{REPO}/git/matching-refs/{{ref:path}}", response_model=list[schemas.GitRef])
def matching_refs(
    owner: str,
    repo: str,
    ref: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> list[schemas.GitRef]:
    return _refs(_context(session, settings, actor, owner, repo), ref)


# Git objects -----------------------------------------------------------------------------------


@router.get(f"{REPO}/git/commits/{{sha}}", response_model=schemas.GitCommit)
def get_git_commit(
    owner: str,
    repo: str,
    sha: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> schemas.GitCommit:
    ctx = _context(session, settings, actor, owner, repo)
    browse.require_not_empty(ctx.git)
    try:
        info = browse.get_git_commit(ctx.git, sha)
    except browse.RefNotFound as exc:
        raise NotFound() from exc
    return schemas.GitCommit.of(info, ctx.urls)


@router.get(f"{REPO}/git/trees/{{tree_sha:path}}", response_model=schemas.GitTree)
def get_tree(
    owner: str,
    repo: str,
    tree_sha: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    recursive: Annotated[str | None, Query(max_length=10)] = None,
) -> schemas.GitTree:
    ctx = _context(session, settings, actor, owner, repo)
    browse.require_not_empty(ctx.git)
    # GitHub treats any value of `recursive` (even "0" or "false") as set.
    listing = browse.get_tree(ctx.git, tree_sha, recursive=recursive is not None)
    return schemas.GitTree.of(listing, ctx.urls)


@router.get(f"{REPO}/git/blobs/{{sha}}", response_model=schemas.GitBlob)
def get_blob(
    owner: str,
    repo: str,
    sha: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> schemas.GitBlob | StreamingResponse:
    ctx = _context(session, settings, actor, owner, repo)
    browse.require_not_empty(ctx.git)
    info = browse.get_blob_info(ctx.git, sha)
    if _wants(request, RAW_MEDIA_TYPES):
        return _raw_response(ctx, info)
    return schemas.GitBlob.of(info, browse.read_blob(ctx.git, info.sha), ctx.urls)


def _raw_response(ctx: _Context, info: browse.BlobInfo) -> StreamingResponse:
    """A blob's bytes, streamed; never rendered by a browser (the API shares the web origin)."""
    return StreamingResponse(
        browse.stream_blob(ctx.settings, ctx.git, info.sha),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(info.size),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "ETag": f'"{info.sha}"',
        },
    )


# Contents --------------------------------------------------------------------------------------


def _contents_response(
    ctx: _Context, request: Request, ref: str | None, path: str
) -> schemas.ContentItem | list[schemas.ContentItem] | StreamingResponse:
    if browse.is_empty(ctx.git):
        raise NotFound("This repository is empty.")
    wanted_ref = ref or ctx.repository.default_branch
    raw = _wants(request, RAW_MEDIA_TYPES)
    found = browse.get_contents(ctx.git, wanted_ref, path, with_content=not raw)
    if found.entries is not None:
        return [
            schemas.ContentItem.of(item, wanted_ref, ctx.urls, in_listing=True)
            for item in found.entries
        ]
    assert found.item is not None
    if raw and found.item.type == "file":
        return _raw_response(ctx, browse.BlobInfo(found.item.sha, found.item.size))
    return schemas.ContentItem.of(found.item, wanted_ref, ctx.urls, include_content=True)


ContentsAnswer = schemas.ContentItem | list[schemas.ContentItem]


@router.get(f"{REPO}/contents", response_model=ContentsAnswer)
@router.get(f"{REPO}/contents/", response_model=ContentsAnswer, include_in_schema=False)
def get_root_contents(
    owner: str,
    repo: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    ref: Annotated[str | None, Query(max_length=browse.MAX_REF_LENGTH)] = None,
) -> schemas.ContentItem | list[schemas.ContentItem] | StreamingResponse:
    ctx = _context(session, settings, actor, owner, repo)
    return _contents_response(ctx, request, ref, "")


@router.get(f"{REPO}/contents/{{path:path}}", response_model=ContentsAnswer)
def get_contents(
    owner: str,
    repo: str,
    path: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    ref: Annotated[str | None, Query(max_length=browse.MAX_REF_LENGTH)] = None,
) -> schemas.ContentItem | list[schemas.ContentItem] | StreamingResponse:
    ctx = _context(session, settings, actor, owner, repo)
    return _contents_response(ctx, request, ref, path)


def _identity(value: schemas.CommitIdentity | None) -> contents.Identity | None:
    if value is None:
        return None
    return contents.Identity(value.name, value.email, _as_utc(value.date))


def _file_commit(ctx: _Context, result: contents.FileCommitResult) -> schemas.FileCommit:
    item = (
        schemas.ContentItem.of(result.content, result.branch, ctx.urls)
        if result.content is not None
        else None
    )
    return schemas.FileCommit(content=item, commit=schemas.GitCommit.of(result.commit, ctx.urls))


@router.put(
    f"{REPO}/contents/{{path:path}}",
    response_model=schemas.FileCommit,
    responses={201: {"model": schemas.FileCommit}},
)
def put_contents(
    owner: str,
    repo: str,
    path: str,
    body: schemas.FileWrite,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> schemas.FileCommit:
    ctx = _context(session, settings, actor, owner, repo, Permission.WRITE)
    result = contents.put_file(
        session,
        settings,
        ctx.repository,
        actor,
        path,
        content=contents.decode_content(body.content),
        message=body.message,
        sha=body.sha,
        branch=body.branch,
        author=_identity(body.author),
        committer=_identity(body.committer),
        events=getattr(request.app.state, "events", None),
    )
    response.status_code = 201 if result.created else 200
    return _file_commit(ctx, result)


@router.delete(f"{REPO}/contents/{{path:path}}", response_model=schemas.FileCommit)
def delete_contents(
    owner: str,
    repo: str,
    path: str,
    body: schemas.FileDelete,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> schemas.FileCommit:
    ctx = _context(session, settings, actor, owner, repo, Permission.WRITE)
    result = contents.delete_file(
        session,
        settings,
        ctx.repository,
        actor,
        path,
        message=body.message,
        sha=body.sha,
        branch=body.branch,
        author=_identity(body.author),
        committer=_identity(body.committer),
        events=getattr(request.app.state, "events", None),
    )
    return _file_commit(ctx, result)


# README ----------------------------------------------------------------------------------------


def _readme(
    ctx: _Context, request: Request, ref: str | None, directory: str | None
) -> schemas.ContentItem | StreamingResponse:
    if browse.is_empty(ctx.git):
        raise NotFound("Not Found")
    wanted_ref = ref or ctx.repository.default_branch
    item = browse.find_readme(ctx.git, wanted_ref, directory)
    if _wants(request, RAW_MEDIA_TYPES):
        return _raw_response(ctx, browse.BlobInfo(item.sha, item.size))
    return schemas.ContentItem.of(item, wanted_ref, ctx.urls, include_content=True)


@router.get(f"{REPO}/readme", response_model=schemas.ContentItem)
def get_readme(
    owner: str,
    repo: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    ref: Annotated[str | None, Query(max_length=browse.MAX_REF_LENGTH)] = None,
) -> schemas.ContentItem | StreamingResponse:
    ctx = _context(session, settings, actor, owner, repo)
    return _readme(ctx, request, ref, None)


@router.get(f"{REPO}/readme/{{directory:path}}", response_model=schemas.ContentItem)
def get_readme_in(
    owner: str,
    repo: str,
    directory: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    ref: Annotated[str | None, Query(max_length=browse.MAX_REF_LENGTH)] = None,
) -> schemas.ContentItem | StreamingResponse:
    ctx = _context(session, settings, actor, owner, repo)
    return _readme(ctx, request, ref, directory)


# Archives --------------------------------------------------------------------------------------


def _archive_redirect(ctx: _Context, ref: str | None, extension: str) -> RedirectResponse:
    if browse.is_empty(ctx.git):
        raise NotFound()
    wanted_ref = ref or ctx.repository.default_branch
    try:
        browse.resolve_commit(ctx.git, wanted_ref)
    except (browse.RefNotFound, browse.AmbiguousRef) as exc:
        raise NotFound() from exc
    return RedirectResponse(ctx.urls.archive(wanted_ref, extension), status_code=302)


@router.get(f"{REPO}/tarball", status_code=302, response_class=RedirectResponse)
@router.get(f"{REPO}/tarball/{{ref:path}}", status_code=302, response_class=RedirectResponse)
def tarball(
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    ref: str | None = None,
) -> RedirectResponse:
    return _archive_redirect(_context(session, settings, actor, owner, repo), ref, "tar.gz")


@router.get(f"{REPO}/zipball", status_code=302, response_class=RedirectResponse)
@router.get(f"{REPO}/zipball/{{ref:path}}", status_code=302, response_class=RedirectResponse)
def zipball(
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    ref: str | None = None,
) -> RedirectResponse:
    return _archive_redirect(_context(session, settings, actor, owner, repo), ref, "zip")
