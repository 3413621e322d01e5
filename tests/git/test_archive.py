"""Archive downloads, compared with `git archive` of the same commit."""

from __future__ import annotations

import io
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pygit2
import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import store
from opencodehub.repos.models import Repository
from tests.conftest import auth_header
from tests.git.gitutil import create_repo, git_env


def _populate(settings: Settings, repo: Repository) -> tuple[str, str]:
    """Two commits with nested paths, an executable, a symlink; a branch with a slash, a tag."""
    git_repo = store.open_repository(settings, repo.id)
    signature = pygit2.Signature("T", "t@example.com", 1_700_000_000, 0)

    def tree(files: dict[str, tuple[bytes, int]]) -> pygit2.Oid:
        index = pygit2.Index()
        for path, (content, mode) in files.items():
            index.add(pygit2.IndexEntry(path, git_repo.create_blob(content), mode))
        return index.write_tree(git_repo)

    files = {
        "README.md": (b"# archive\n", pygit2.GIT_FILEMODE_BLOB),
        "src/pkg/mod.py": (b"print('hi')\n", pygit2.GIT_FILEMODE_BLOB),
        "bin/run.sh": (b"#!/bin/sh\necho run\n", pygit2.GIT_FILEMODE_BLOB_EXECUTABLE),
        "link": (b"README.md", pygit2.GIT_FILEMODE_LINK),
    }
    first = git_repo.create_commit(
        "refs/heads/main", signature, signature, "first", tree(files), []
    )
    files["data.bin"] = (bytes(range(256)) * 40, pygit2.GIT_FILEMODE_BLOB)
    second = git_repo.create_commit(
        "refs/heads/feature/x", signature, signature, "second", tree(files), [first]
    )
    git_repo.create_tag("v1.0", first, pygit2.enums.ObjectType.COMMIT, signature, "release")
    return str(first), str(second)


def _git_archive(settings: Settings, repo: Repository, fmt: str, prefix: str, sha: str) -> bytes:
    path = store.repository_path(settings, repo.id)
    return subprocess.run(
        ["git", f"--git-dir={path}", "archive", f"--format={fmt}", f"--prefix={prefix}/", sha],
        env=git_env(settings.data_dir / "home"),
        capture_output=True,
        check=True,
    ).stdout


def _tar_members(data: bytes) -> dict[str, tuple[int, bytes | str]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        members: dict[str, tuple[int, bytes | str]] = {}
        for member in archive.getmembers():
            if member.issym():
                members[member.name] = (member.mode, member.linkname)
            elif member.isfile():
                extracted = archive.extractfile(member)
                assert extracted is not None
                members[member.name] = (member.mode, extracted.read())
            else:
                members[member.name] = (member.mode, b"")
        return members


def _zip_members(data: bytes) -> dict[str, tuple[int, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {
            info.filename: (info.external_attr, archive.read(info)) for info in archive.infolist()
        }


@pytest.fixture
def archived(db: Database, settings: Settings, make_user: Callable[..., User]):
    alice = make_user("alice")
    repo = create_repo(db, settings, alice, "arch")
    first, second = _populate(settings, repo)
    return repo, alice, first, second


@pytest.mark.parametrize(
    ("ref", "expected_index", "prefix"),
    [
        ("main", 0, "arch-main"),
        ("feature/x", 1, "arch-feature-x"),
        ("v1.0", 0, "arch-v1.0"),
    ],
)
def test_tar_gz_equals_git_archive(
    client: TestClient, settings: Settings, archived, ref: str, expected_index: int, prefix: str
) -> None:
    repo, _alice, *shas = archived
    response = client.get(f"/alice/arch/archive/{ref}.tar.gz")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/gzip"
    assert response.headers["content-disposition"].startswith(
        f'attachment; filename="{prefix}.tar.gz"'
    )
    reference = _git_archive(settings, repo, "tar", prefix, shas[expected_index])
    downloaded = _tar_members(response.content)
    assert downloaded == _tar_members(reference)
    assert f"{prefix}/src/pkg/mod.py" in downloaded
    assert downloaded[f"{prefix}/link"][1] == "README.md"
    assert downloaded[f"{prefix}/bin/run.sh"][0] & 0o111


def test_zip_equals_git_archive(client: TestClient, settings: Settings, archived) -> None:
    repo, _alice, first, second = archived
    response = client.get("/alice/arch/archive/feature/x.zip")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    reference = _git_archive(settings, repo, "zip", "arch-feature-x", second)
    assert _zip_members(response.content) == _zip_members(reference)
    # An abbreviated sha names the commit as well.
    by_sha = client.get(f"/alice/arch/archive/{first[:10]}.zip")
    assert by_sha.status_code == 200
    assert _zip_members(by_sha.content) == _zip_members(
        _git_archive(settings, repo, "zip", f"arch-{first[:10]}", first)
    )


@pytest.mark.parametrize(
    "name",
    [
        "missing.zip",
        "main.tar",
        "main.rar",
        "main",
        "..%2f..%2fetc.zip",
        "main..feature.zip",
        "-main.zip",
        "--output=x.zip",
        "main~1.zip",
        "main^{tree}.zip",
        "HEAD@{1}.zip",
        "ma%00in.zip",
        "ma%0ain.zip",
        "m\u0430in.zip",
        "a" * 10_000 + ".zip",
        "'; DROP TABLE repositories;--.zip",
        "0000000.zip",
    ],
)
def test_bad_refs_are_not_found(client: TestClient, archived, name: str) -> None:
    response = client.get(f"/alice/arch/archive/{name}")
    assert response.status_code == 404


def test_private_archives_need_read_access(
    client: TestClient,
    db: Database,
    settings: Settings,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
    tmp_path: Path,
) -> None:
    alice = make_user("alice")
    make_user("mallory")
    mallory = make_user("mallory2")
    create_repo(db, settings, alice, "hidden", private=True, auto_init=True)
    assert client.get("/alice/hidden/archive/main.zip").status_code == 404
    stranger = client.get(
        "/alice/hidden/archive/main.zip", headers=auth_header(make_token(mallory))
    )
    assert stranger.status_code == 404
    owner = client.get("/alice/hidden/archive/main.zip", headers=auth_header(make_token(alice)))
    assert owner.status_code == 200
    assert "hidden-main/README.md" in _zip_members(owner.content)
