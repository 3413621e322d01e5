"""LFS files in the web UI: pointers shown and served as the files they stand for."""

from __future__ import annotations

import pytest

from opencodehub.lfs.pointer import MAX_POINTER_BYTES, Pointer, parse_pointer
from tests.lfs.conftest import LFSWorld, basic, oid_of
from tests.repos.git_helpers import commit_files
from tests.web.forms import log_in

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)


def pointer_for(content: bytes) -> bytes:
    return (
        "version https://git-lfs.github.com/spec/v1\n"
        f"oid sha256:{oid_of(content)}\nsize {len(content)}\n"
    ).encode()


# Parsing (no database) -------------------------------------------------------------------------


def test_parse_pointer_accepts_what_git_lfs_writes() -> None:
    content = b"hello lfs\n"
    assert parse_pointer(pointer_for(content)) == Pointer(oid_of(content), len(content))
    with_extension = (
        b"version https://git-lfs.github.com/spec/v1\n"
        b"ext-0-foo sha256:" + b"1" * 64 + b"\n"
        b"oid sha256:" + b"2" * 64 + b"\nsize 0\n"
    )
    assert parse_pointer(with_extension) == Pointer("2" * 64, 0)
    legacy = b"version https://hawser.github.com/spec/v1\noid sha256:" + b"3" * 64 + b"\nsize 9\n"
    assert parse_pointer(legacy) == Pointer("3" * 64, 9)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello\n",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\n",  # no size
        b"version https://git-lfs.github.com/spec/v1\nsize 5\n",  # no oid
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 63 + b"\nsize 5\n",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"A" * 64 + b"\nsize 5\n",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize -5\n",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 05\n",
        b"version https://git-lfs.github.com/spec/v1\nsize 5\noid sha256:" + b"a" * 64 + b"\n",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 5",
        b"version https://git-lfs.github.com/spec/v1\r\noid sha256:"
        + b"a" * 64
        + b"\r\nsize 5\r\n",
        b"version https://example.com/spec/v9\noid sha256:" + b"a" * 64 + b"\nsize 5\n",
        b"oid sha256:" + b"a" * 64 + b"\nversion https://git-lfs.github.com/spec/v1\nsize 5\n",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:"
        + b"a" * 64
        + b"\nsize 5\n"
        + b"x" * MAX_POINTER_BYTES,
        b"version https://git-lfs.github.com/spec/v1\noid sha256:"
        + b"a" * 64
        + b"\nsize 5\nsize 6\n",
    ],
)
def test_parse_pointer_rejects_anything_else(data: bytes) -> None:
    assert parse_pointer(data) is None


# Blob and raw views ------------------------------------------------------------------------------


def test_blob_and_raw_show_the_lfs_object(lfs_world: LFSWorld) -> None:
    world = lfs_world
    text = b"def trained():\n    return 'weights'\n"
    world.upload("alice/hello", text, basic("alice"))
    world.upload("alice/hello", PNG, basic("alice"))
    commit_files(
        world.settings,
        world.public,
        {"model.py": pointer_for(text), "logo.png": pointer_for(PNG)},
        message="LFS files",
    )

    page = world.client.get("/alice/hello/blob/main/model.py")
    assert page.status_code == 200
    assert 'data-testid="lfs-badge"' in page.text
    assert "trained" in page.text and "weights" in page.text
    assert "git-lfs.github.com/spec" not in page.text
    assert f"{len(text):,} bytes" in page.text
    assert 'data-testid="edit-file"' not in page.text  # the editor would replace the pointer

    raw = world.client.get("/alice/hello/raw/main/model.py")
    assert raw.status_code == 200
    assert raw.content == text
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.headers["content-length"] == str(len(text))
    assert raw.headers["x-content-type-options"] == "nosniff"

    image = world.client.get("/alice/hello/blob/main/logo.png")
    assert image.status_code == 200 and "<img" in image.text
    raw_image = world.client.get("/alice/hello/raw/main/logo.png")
    assert raw_image.content == PNG
    assert raw_image.headers["content-type"] == "image/png"


def test_pointer_without_an_object_in_this_repository(lfs_world: LFSWorld) -> None:
    """An object uploaded only to alice's private repository is not bob's to read, whatever
    pointer he commits: his page says it is missing and his raw view serves the pointer."""
    world = lfs_world
    secret = b"alice's private object\n"
    world.upload("alice/secret", secret, basic("alice"))
    pointer = pointer_for(secret)
    commit_files(world.settings, world.bobs, {"stolen.txt": pointer}, message="guess")
    world.client.cookies.clear()
    headers = {"Authorization": basic("bob")}

    page = world.client.get("/bob/mine/blob/main/stolen.txt", headers=headers)
    assert page.status_code == 200
    assert 'data-testid="lfs-missing"' in page.text
    assert "alice&#39;s private object" not in page.text and "private object" not in page.text
    raw = world.client.get("/bob/mine/raw/main/stolen.txt", headers=headers)
    assert raw.status_code == 200
    assert raw.content == pointer


def test_binary_lfs_object_is_offered_for_download(lfs_world: LFSWorld) -> None:
    world = lfs_world
    blob = bytes(range(256)) * 8
    world.upload("alice/hello", blob, basic("alice"))
    commit_files(world.settings, world.public, {"data.bin": pointer_for(blob)}, message="bin")
    page = world.client.get("/alice/hello/blob/main/data.bin")
    assert page.status_code == 200
    assert 'data-testid="blob-download"' in page.text and "binary file" in page.text
    assert f"Download ({len(blob):,} bytes)" in page.text
    raw = world.client.get("/alice/hello/raw/main/data.bin")
    assert raw.content == blob
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.headers["content-disposition"].startswith("attachment;")


def test_settings_page_shows_lfs_usage(lfs_world: LFSWorld) -> None:
    world = lfs_world
    first, second = b"one object\n", b"another, longer object\n"
    world.upload("alice/hello", first, basic("alice"))
    world.upload("alice/hello", second, basic("alice"))
    world.upload("alice/secret", b"counted elsewhere\n", basic("alice"))
    log_in(world.client, "alice")

    page = world.client.get("/alice/hello/settings")
    assert page.status_code == 200
    usage = page.text.split('data-testid="lfs-usage"', 1)[1].split("</div>", 2)[0]
    assert "<strong>2</strong> Git LFS objects" in usage
    assert f"({len(first) + len(second):,} bytes" in usage
    empty = world.client.get("/bob/mine/settings")
    assert empty.status_code == 404  # not alice's to manage
    log_in(world.client, "bob")
    mine = world.client.get("/bob/mine/settings")
    assert "stores no Git LFS objects" in mine.text
