"""Archive downloads: `/{owner}/{repo}/archive/{ref}.zip` and `.tar.gz`.

The ref is resolved to a commit with pygit2 first, so `git archive` only ever receives a sha
(after `--end-of-options`), and its output streams straight to the client.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pygit2
from fastapi.responses import StreamingResponse

from opencodehub.accounts.models import Permission
from opencodehub.config import Settings
from opencodehub.core.errors import NotFound
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.git.process import GitProcess
from opencodehub.repos import service as repos
from opencodehub.repos import store

router = APIRouter(include_in_schema=False)

ARCHIVE_FORMATS = {".tar.gz": ("tar.gz", "application/gzip"), ".zip": ("zip", "application/zip")}
CHUNK = 64 * 1024
_HEX_RE = re.compile(r"\A[0-9a-f]{4,64}\Z")
_UNSAFE_REF_RE = re.compile(r'[\x00-\x20\x7f~^:?*\[\\"<>|]|\.\.|@\{|//')


def split_archive_name(name: str) -> tuple[str, str, str]:
    """`(ref, git format, media type)` from `main.zip`; NotFound for anything else."""
    for suffix, (git_format, media_type) in ARCHIVE_FORMATS.items():
        if name.endswith(suffix):
            ref = name[: -len(suffix)]
            if (
                not ref
                or len(ref) > 255
                or ref.startswith(("-", "/", "."))
                or ref.endswith(("/", ".", ".lock"))
                or _UNSAFE_REF_RE.search(ref)
                or not ref.isprintable()
            ):
                raise NotFound()
            return ref, git_format, media_type
    raise NotFound()


def resolve_commit(git_repo: pygit2.Repository, ref: str) -> str:
    """The commit a branch, tag or (abbreviated) sha names; NotFound when none does."""
    for prefix in ("refs/heads/", "refs/tags/"):
        reference = git_repo.references.get(prefix + ref)
        if reference is not None:
            try:
                return str(reference.peel(pygit2.Commit).id)
            except (ValueError, pygit2.GitError):
                raise NotFound() from None
    if _HEX_RE.match(ref):
        try:
            return str(git_repo.revparse_single(ref).peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError):
            pass
    raise NotFound()


def archive_prefix(repo_name: str, ref: str) -> str:
    return f"{repo_name}-{ref.replace('/', '-')}"


def archive_argv(
    settings: Settings, repo_path: Path, git_format: str, prefix: str, sha: str
) -> list[str]:
    return [
        settings.git_binary,
        f"--git-dir={repo_path}",
        "archive",
        f"--format={git_format}",
        f"--prefix={prefix}/",
        "--end-of-options",
        sha,
    ]


async def _stream_command(argv: list[str], env: dict[str, str]) -> AsyncIterator[bytes]:
    git = await GitProcess.start(argv, env, stdin=False)
    completed = False
    try:
        while chunk := await git.stdout.read(CHUNK):
            yield chunk
        completed = True
    finally:
        # Killed when the client went away mid-download.
        await git.finish(kill=not completed)


@router.get("/{owner}/{repo}/archive/{archive:path}")
def download_archive(
    owner: str,
    repo: str,
    archive: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> StreamingResponse:
    ref, git_format, media_type = split_archive_name(archive)
    repository = repos.get_for(session, actor, owner, repo, Permission.READ)
    repo_path = store.repository_path(settings, repository.id)
    sha = resolve_commit(store.open_repository(settings, repository.id), ref)
    prefix = archive_prefix(repository.name, ref)
    filename = f"{prefix}{'.zip' if git_format == 'zip' else '.tar.gz'}"
    argv = archive_argv(settings, repo_path, git_format, prefix, sha)
    env = store.git_environment(settings, repo_path)
    return StreamingResponse(
        _stream_command(argv, env),
        media_type=media_type,
        headers={
            "Content-Disposition": (
                f'attachment; filename="{filename.encode("ascii", "replace").decode()}"; '
                f"filename*=UTF-8''{quote(filename, safe='')}"
            ),
            "Cache-Control": "private, max-age=0",
            "ETag": f'"{sha}-{git_format}"',
        },
    )
