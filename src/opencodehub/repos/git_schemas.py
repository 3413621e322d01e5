"""Pydantic models of the git-data REST API (branches, tags, commits, compare, refs, trees, blobs,
contents), in GitHub's REST v3 shapes, and the functions that build them from `repos.browse`.

Every `url` is absolute; `RepoUrls` knows the repository's API and web addresses.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, model_serializer
from pydantic.functional_serializers import SerializerFunctionWrapHandler

from opencodehub.accounts.models import User
from opencodehub.accounts.schemas import ApiUrls, SimpleUser
from opencodehub.repos import browse

API_PREFIX = "/api/v3"


def git_node_id(kind: str, sha: str) -> str:
    """A stable global id for a git object (GitHub's legacy `0{len}:{Kind}{id}` form)."""
    return base64.b64encode(f"0{len(kind)}:{kind}{sha}".encode()).decode("ascii")


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _path_part(path: str) -> str:
    return quote(path, safe="/")


def _ref_part(ref: str) -> str:
    return quote(ref, safe="/")


@dataclass(frozen=True)
class RepoUrls:
    """Absolute URLs of one repository's API resources and web pages."""

    base_url: str
    full_name: str  # owner/name

    @property
    def api(self) -> str:
        return f"{self.base_url}{API_PREFIX}/repos/{self.full_name}"

    @property
    def html(self) -> str:
        return f"{self.base_url}/{self.full_name}"

    @property
    def accounts(self) -> ApiUrls:
        return ApiUrls(self.base_url)

    def commit(self, sha: str) -> str:
        return f"{self.api}/commits/{sha}"

    def commit_html(self, sha: str) -> str:
        return f"{self.html}/commit/{sha}"

    def git_commit(self, sha: str) -> str:
        return f"{self.api}/git/commits/{sha}"

    def git_tree(self, sha: str) -> str:
        return f"{self.api}/git/trees/{sha}"

    def git_blob(self, sha: str) -> str:
        return f"{self.api}/git/blobs/{sha}"

    def git_tag(self, sha: str) -> str:
        return f"{self.api}/git/tags/{sha}"

    def git_ref(self, name: str) -> str:
        return f"{self.api}/git/{_ref_part(name)}"

    def contents(self, path: str, ref: str) -> str:
        return f"{self.api}/contents/{_path_part(path)}?ref={quote(ref, safe='')}"

    def tree_html(self, ref: str, path: str) -> str:
        return f"{self.html}/tree/{_ref_part(ref)}/{_path_part(path)}"

    def blob_html(self, ref: str, path: str) -> str:
        return f"{self.html}/blob/{_ref_part(ref)}/{_path_part(path)}"

    def raw(self, ref: str, path: str) -> str:
        return f"{self.html}/raw/{_ref_part(ref)}/{_path_part(path)}"

    def tarball(self, ref: str) -> str:
        return f"{self.api}/tarball/{_ref_part(ref)}"

    def zipball(self, ref: str) -> str:
        return f"{self.api}/zipball/{_ref_part(ref)}"

    def archive(self, ref: str, extension: str) -> str:
        return f"{self.html}/archive/{_ref_part(ref)}.{extension}"


class _Out(BaseModel):
    """Output models. Fields named in `_omit_if_none` are left out when None, as GitHub leaves
    out `patch` for a binary file; every other None is rendered as null."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
    _omit_if_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in self._omit_if_none:
            if key in data and data[key] is None:
                del data[key]
        return data


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


# Commits ---------------------------------------------------------------------------------------


class GitActor(_Out):
    name: str
    email: str
    date: str

    @classmethod
    def of(cls, person: browse.Person) -> GitActor:
        return cls(name=person.name, email=person.email, date=iso(person.date))


class Verification(_Out):
    verified: bool = False
    reason: str = "unsigned"
    signature: str | None = None
    payload: str | None = None
    verified_at: str | None = None


class ShaUrl(_Out):
    sha: str
    url: str


class ParentRef(_Out):
    sha: str
    url: str
    html_url: str


class CommitData(_Out):
    url: str
    author: GitActor
    committer: GitActor
    message: str
    tree: ShaUrl
    comment_count: int = 0
    verification: Verification = Field(default_factory=Verification)


class CommitStats(_Out):
    additions: int
    deletions: int
    total: int


class DiffEntry(_Out):
    _omit_if_none = frozenset({"patch", "previous_filename"})

    sha: str
    filename: str
    status: browse.FileStatus
    additions: int
    deletions: int
    changes: int
    blob_url: str
    raw_url: str
    contents_url: str
    patch: str | None = None
    previous_filename: str | None = None

    @classmethod
    def of(cls, change: browse.FileChange, ref: str, urls: RepoUrls) -> DiffEntry:
        return cls(
            sha=change.blob_sha,
            filename=change.filename,
            status=change.status,
            additions=change.additions,
            deletions=change.deletions,
            changes=change.changes,
            blob_url=urls.blob_html(ref, change.filename),
            raw_url=urls.raw(ref, change.filename),
            contents_url=urls.contents(change.filename, ref),
            patch=change.patch,
            previous_filename=change.previous_filename,
        )


class RepoCommit(_Out):
    """GitHub's `commit` resource (`/repos/{o}/{r}/commits/{ref}`); `stats` and `files` only on
    a single commit."""

    _omit_if_none = frozenset({"stats", "files"})

    url: str
    sha: str
    node_id: str
    html_url: str
    comments_url: str
    commit: CommitData
    author: SimpleUser | None
    committer: SimpleUser | None
    parents: list[ParentRef]
    stats: CommitStats | None = None
    files: list[DiffEntry] | None = None

    @classmethod
    def of(
        cls,
        info: browse.CommitInfo,
        urls: RepoUrls,
        users: Mapping[str, User],
        diff: browse.DiffResult | None = None,
    ) -> RepoCommit:
        """`users` maps lowered emails to the accounts that own them (see `users_by_email`)."""
        author = users.get(info.author.email.lower())
        committer = users.get(info.committer.email.lower())
        return cls(
            url=urls.commit(info.sha),
            sha=info.sha,
            node_id=git_node_id("Commit", info.sha),
            html_url=urls.commit_html(info.sha),
            comments_url=f"{urls.commit(info.sha)}/comments",
            commit=CommitData(
                url=urls.git_commit(info.sha),
                author=GitActor.of(info.author),
                committer=GitActor.of(info.committer),
                message=info.message,
                tree=ShaUrl(sha=info.tree_sha, url=urls.git_tree(info.tree_sha)),
            ),
            author=SimpleUser.of(author, urls.accounts) if author else None,
            committer=SimpleUser.of(committer, urls.accounts) if committer else None,
            parents=[_parent(sha, urls) for sha in info.parent_shas],
            stats=CommitStats(
                additions=diff.additions,
                deletions=diff.deletions,
                total=diff.additions + diff.deletions,
            )
            if diff is not None
            else None,
            files=[DiffEntry.of(change, info.sha, urls) for change in diff.files]
            if diff is not None
            else None,
        )


def _parent(sha: str, urls: RepoUrls) -> ParentRef:
    return ParentRef(sha=sha, url=urls.commit(sha), html_url=urls.commit_html(sha))


class GitCommit(_Out):
    """GitHub's git `commit` object (`/git/commits/{sha}`)."""

    sha: str
    node_id: str
    url: str
    html_url: str
    author: GitActor
    committer: GitActor
    tree: ShaUrl
    message: str
    parents: list[ParentRef]
    verification: Verification = Field(default_factory=Verification)

    @classmethod
    def of(cls, info: browse.CommitInfo, urls: RepoUrls) -> GitCommit:
        return cls(
            sha=info.sha,
            node_id=git_node_id("Commit", info.sha),
            url=urls.git_commit(info.sha),
            html_url=urls.commit_html(info.sha),
            author=GitActor.of(info.author),
            committer=GitActor.of(info.committer),
            tree=ShaUrl(sha=info.tree_sha, url=urls.git_tree(info.tree_sha)),
            message=info.message,
            parents=[
                ParentRef(sha=sha, url=urls.git_commit(sha), html_url=urls.commit_html(sha))
                for sha in info.parent_shas
            ],
        )


class Comparison(_Out):
    url: str
    html_url: str
    permalink_url: str
    diff_url: str
    patch_url: str
    base_commit: RepoCommit
    merge_base_commit: RepoCommit
    status: browse.CompareStatus
    ahead_by: int
    behind_by: int
    total_commits: int
    commits: list[RepoCommit]
    files: list[DiffEntry]

    @classmethod
    def of(
        cls,
        comparison: browse.Comparison,
        spec: str,
        urls: RepoUrls,
        users: Mapping[str, User],
        commits: list[browse.CommitInfo],
    ) -> Comparison:
        """`spec` is `base...head` as asked; `commits` the page of commits to show."""
        head_sha = comparison.head.sha
        permalink = f"{comparison.base.sha[:7]}...{head_sha[:7]}"
        return cls(
            url=f"{urls.api}/compare/{_ref_part(spec)}",
            html_url=f"{urls.html}/compare/{_ref_part(spec)}",
            permalink_url=f"{urls.html}/compare/{permalink}",
            diff_url=f"{urls.html}/compare/{_ref_part(spec)}.diff",
            patch_url=f"{urls.html}/compare/{_ref_part(spec)}.patch",
            base_commit=RepoCommit.of(comparison.base, urls, users),
            merge_base_commit=RepoCommit.of(comparison.merge_base, urls, users),
            status=comparison.status,
            ahead_by=comparison.ahead_by,
            behind_by=comparison.behind_by,
            total_commits=comparison.ahead_by,
            commits=[RepoCommit.of(info, urls, users) for info in commits],
            files=[DiffEntry.of(change, head_sha, urls) for change in comparison.diff.files],
        )


# Branches, tags, refs --------------------------------------------------------------------------


class BranchShort(_Out):
    name: str
    commit: ShaUrl
    protected: bool

    @classmethod
    def of(cls, branch: browse.BranchInfo, urls: RepoUrls) -> BranchShort:
        return cls(
            name=branch.name,
            commit=ShaUrl(sha=branch.sha, url=urls.commit(branch.sha)),
            protected=branch.protected,
        )


class BranchLinks(_Out):
    self_: str = Field(alias="self")
    html: str


class StatusChecks(_Out):
    enforcement_level: str = "off"
    contexts: list[str] = Field(default_factory=list)
    checks: list[dict[str, Any]] = Field(default_factory=list)


class BranchProtectionSummary(_Out):
    enabled: bool
    required_status_checks: StatusChecks = Field(default_factory=StatusChecks)


class BranchWithProtection(_Out):
    name: str
    commit: RepoCommit
    links: BranchLinks = Field(alias="_links")
    protected: bool
    protection: BranchProtectionSummary
    protection_url: str

    @classmethod
    def of(
        cls,
        branch: browse.BranchInfo,
        commit: browse.CommitInfo,
        urls: RepoUrls,
        users: Mapping[str, User],
    ) -> BranchWithProtection:
        return cls(
            name=branch.name,
            commit=RepoCommit.of(commit, urls, users),
            links=BranchLinks(
                self_=f"{urls.api}/branches/{_ref_part(branch.name)}",
                html=urls.tree_html(branch.name, "").rstrip("/"),
            ),
            protected=branch.protected,
            protection=BranchProtectionSummary(enabled=branch.protected),
            protection_url=f"{urls.api}/branches/{_ref_part(branch.name)}/protection",
        )


class Tag(_Out):
    name: str
    commit: ShaUrl
    zipball_url: str
    tarball_url: str
    node_id: str

    @classmethod
    def of(cls, tag: browse.TagInfo, urls: RepoUrls) -> Tag:
        return cls(
            name=tag.name,
            commit=ShaUrl(sha=tag.commit_sha, url=urls.commit(tag.commit_sha)),
            zipball_url=urls.zipball(tag.name),
            tarball_url=urls.tarball(tag.name),
            node_id=git_node_id("Ref", f"refs/tags/{tag.name}"),
        )


class GitRefObject(_Out):
    type: Literal["commit", "tag", "tree", "blob"]
    sha: str
    url: str


class GitRef(_Out):
    ref: str
    node_id: str
    url: str
    object: GitRefObject

    @classmethod
    def of(cls, ref: browse.RefInfo, urls: RepoUrls) -> GitRef:
        object_urls = {
            "commit": urls.git_commit,
            "tag": urls.git_tag,
            "tree": urls.git_tree,
            "blob": urls.git_blob,
        }
        return cls(
            ref=ref.name,
            node_id=git_node_id("Ref", ref.name),
            url=urls.git_ref(ref.name),
            object=GitRefObject(
                type=ref.object_type,
                sha=ref.object_sha,
                url=object_urls[ref.object_type](ref.object_sha),
            ),
        )


# Trees and blobs -------------------------------------------------------------------------------


class GitTreeEntry(_Out):
    _omit_if_none = frozenset({"size"})

    path: str
    mode: str
    type: Literal["blob", "tree", "commit"]
    sha: str
    size: int | None = None
    url: str | None = None


class GitTree(_Out):
    sha: str
    url: str
    tree: list[GitTreeEntry]
    truncated: bool

    @classmethod
    def of(cls, listing: browse.TreeListing, urls: RepoUrls) -> GitTree:
        def entry_url(entry: browse.TreeEntryInfo) -> str | None:
            if entry.type == "tree":
                return urls.git_tree(entry.sha)
            if entry.type == "blob":
                return urls.git_blob(entry.sha)
            return None  # a submodule's commit lives in another repository

        return cls(
            sha=listing.sha,
            url=urls.git_tree(listing.sha),
            tree=[
                GitTreeEntry(
                    path=entry.path,
                    mode=entry.mode,
                    type=entry.type,
                    sha=entry.sha,
                    size=entry.size,
                    url=entry_url(entry),
                )
                for entry in listing.entries
            ],
            truncated=listing.truncated,
        )


def encode_base64(data: bytes) -> str:
    """Base64 in lines, as GitHub sends file and blob contents."""
    return base64.encodebytes(data).decode("ascii")


class GitBlob(_Out):
    sha: str
    node_id: str
    size: int
    url: str
    content: str
    encoding: Literal["base64", "utf-8", "none"] = "base64"

    @classmethod
    def of(cls, info: browse.BlobInfo, content: bytes, urls: RepoUrls) -> GitBlob:
        return cls(
            sha=info.sha,
            node_id=git_node_id("Blob", info.sha),
            size=info.size,
            url=urls.git_blob(info.sha),
            content=encode_base64(content),
        )


# Contents --------------------------------------------------------------------------------------


class ContentLinks(_Out):
    self_: str = Field(alias="self")
    git: str | None
    html: str | None


class ContentItem(_Out):
    """One entry of `/contents`: a file (with `content` and `encoding` when it is the answer),
    a directory, a symlink (`target`) or a submodule (`submodule_git_url`)."""

    _omit_if_none = frozenset({"content", "encoding", "target", "submodule_git_url"})

    type: browse.ContentType
    encoding: str | None = None
    size: int
    name: str
    path: str
    content: str | None = None
    target: str | None = None
    submodule_git_url: str | None = None
    sha: str
    url: str
    git_url: str | None
    html_url: str | None
    download_url: str | None
    links: ContentLinks = Field(alias="_links")

    @classmethod
    def of(
        cls,
        item: browse.ContentItem,
        ref: str,
        urls: RepoUrls,
        *,
        in_listing: bool = False,
        include_content: bool = False,
    ) -> ContentItem:
        """`in_listing`: an entry of a directory listing, where GitHub calls submodules
        "file" (for backwards compatibility) and gives no content."""
        self_url = urls.contents(item.path, ref)
        git_url: str | None
        html_url: str | None
        download_url: str | None = None
        if item.type == "dir":
            git_url = urls.git_tree(item.sha)
            html_url = urls.tree_html(ref, item.path)
        elif item.type == "submodule":
            git_url = urls.git_tree(item.sha) if in_listing else None
            html_url = item.submodule_git_url if in_listing else None
        else:
            git_url = urls.git_blob(item.sha)
            html_url = urls.blob_html(ref, item.path)
            download_url = urls.raw(ref, item.path)
        content: str | None = None
        encoding: str | None = None
        if include_content and item.type == "file":
            if item.content is not None:
                content, encoding = encode_base64(item.content), "base64"
            else:
                content, encoding = "", "none"  # too large for /contents: use /git/blobs
        shown_type: browse.ContentType = (
            "file" if in_listing and item.type == "submodule" else item.type
        )
        return cls(
            type=shown_type,
            encoding=encoding,
            size=item.size,
            name=item.name,
            path=item.path,
            content=content,
            target=item.target if not in_listing else None,
            submodule_git_url=item.submodule_git_url if not in_listing else None,
            sha=item.sha,
            url=self_url,
            git_url=git_url,
            html_url=html_url,
            download_url=download_url,
            links=ContentLinks(self_=self_url, git=git_url, html=html_url),
        )


class FileCommit(_Out):
    """The answer to creating, updating or deleting a file through the contents API."""

    content: ContentItem | None
    commit: GitCommit


# Inputs ----------------------------------------------------------------------------------------


class CommitIdentity(_In):
    name: str = Field(min_length=1, max_length=255)
    email: str = Field(min_length=3, max_length=255)
    date: datetime | None = None


class FileWrite(_In):
    message: str = Field(min_length=1, max_length=65_536)
    content: str
    sha: str | None = Field(default=None, max_length=64)
    branch: str | None = Field(default=None, max_length=1024)
    committer: CommitIdentity | None = None
    author: CommitIdentity | None = None


class FileDelete(_In):
    message: str = Field(min_length=1, max_length=65_536)
    sha: str | None = Field(default=None, max_length=64)
    branch: str | None = Field(default=None, max_length=1024)
    committer: CommitIdentity | None = None
    author: CommitIdentity | None = None
