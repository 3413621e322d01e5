"""The StorageAdapter contract, run against every adapter: local disk, S3 (moto_server), Azure
Blob (Azurite) and Google Drive (a local stand-in for Drive, see gdrive_standin.py)."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opencodehub.doctor import check_storage
from opencodehub.storage import (
    InvalidKey,
    InvalidRange,
    ObjectNotFound,
    StorageError,
    build_storage,
)
from opencodehub.storage import views as storage_views
from tests.storage.conftest import Case, MiB


class Boom(Exception):
    """What a source stream raises midway through an upload."""


def generated(total: int, chunk: int = 256 * 1024, seed: int = 7) -> Iterator[bytes]:
    """`total` bytes of deterministic, incompressible-looking data, made chunk by chunk."""
    block = hashlib.sha256(str(seed).encode()).digest() * (chunk // 32)
    produced = 0
    counter = 0
    while produced < total:
        piece = block[: min(chunk, total - produced)]
        counter += 1
        head = counter.to_bytes(8, "big")
        piece = head[: len(piece)] + piece[len(head) :]
        produced += len(piece)
        yield piece


def digest(chunks: Iterator[bytes]) -> tuple[int, str]:
    hasher = hashlib.sha256()
    size = 0
    for chunk in chunks:
        hasher.update(chunk)
        size += len(chunk)
    return size, hasher.hexdigest()


def exploding(total_before: int) -> Iterator[bytes]:
    yield from generated(total_before)
    raise Boom("the source failed midway")


def read_all(case: Case, key: str, byte_range: tuple[int, int | None] | None = None) -> bytes:
    with case.storage.get(key, byte_range) as stream:
        return stream.read()


def keys(case: Case, prefix: str = "") -> list[str]:
    return sorted(info.key for info in case.storage.list(prefix))


# Round trips -----------------------------------------------------------------------------------


def test_small_object_round_trip(case: Case) -> None:
    info = case.storage.put(
        "avatars/user/1", io.BytesIO(b"hello storage"), size=13, content_type="image/png"
    )
    assert info.key == "avatars/user/1"
    assert info.size == 13
    assert info.etag
    assert read_all(case, "avatars/user/1") == b"hello storage"
    stat = case.storage.stat("avatars/user/1")
    assert (stat.size, stat.etag, stat.content_type) == (13, info.etag, "image/png")
    assert stat.modified is not None
    assert case.storage.exists("avatars/user/1")


def test_empty_object(case: Case) -> None:
    info = case.storage.put("logs/empty", iter([]))
    assert info.size == 0
    assert read_all(case, "logs/empty") == b""
    assert case.storage.stat("logs/empty").size == 0
    assert case.storage.stat("logs/empty").content_type == "application/octet-stream"
    with pytest.raises(InvalidRange):
        case.storage.get("logs/empty", (0, None))


def test_multi_megabyte_object_from_an_iterator(case: Case) -> None:
    total = 3 * MiB + 12345
    case.storage.put("artifacts/1/bundle.zip", generated(total), size=total)
    with case.storage.get("artifacts/1/bundle.zip") as stream:
        assert stream.length == total
        assert digest(iter(stream)) == digest(generated(total))
    assert case.storage.stat("artifacts/1/bundle.zip").size == total


@pytest.mark.slow
def test_large_object_goes_up_in_parts_and_streams_back(case: Case) -> None:
    """21 MB: several S3 parts, Azure blocks and Drive resumable chunks."""
    total = 21 * MiB + 7
    case.storage.put("lfs/aa/bb/large", generated(total))
    with case.storage.get("lfs/aa/bb/large") as stream:
        assert digest(iter(stream)) == digest(generated(total))
    assert case.storage.stat("lfs/aa/bb/large").size == total


def test_stream_reads_like_a_file(case: Case) -> None:
    case.storage.put("logs/7", io.BytesIO(b"0123456789" * 1000))
    with case.storage.get("logs/7") as stream:
        assert stream.read(5) == b"01234"
        assert stream.read(7) == b"5678901"
        assert len(stream.read()) == 10000 - 12
        assert stream.read() == b""
    assert stream.closed


# Ranges ----------------------------------------------------------------------------------------


def test_byte_ranges(case: Case) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    case.storage.put("lfs/range", io.BytesIO(data))
    assert read_all(case, "lfs/range", (0, 9)) == data[:10]
    assert read_all(case, "lfs/range", (5, 5)) == data[5:6]
    assert read_all(case, "lfs/range", (10000, None)) == data[10000:]
    assert read_all(case, "lfs/range", (10230, 99999)) == data[10230:]
    with case.storage.get("lfs/range", (100, 199)) as stream:
        assert (stream.start, stream.end, stream.length, stream.info.size) == (100, 199, 100, 10240)
    with pytest.raises(InvalidRange):
        case.storage.get("lfs/range", (10240, None))
    with pytest.raises(InvalidRange):
        case.storage.get("lfs/range", (9, 3))
    with pytest.raises(ObjectNotFound):
        case.storage.get("lfs/missing", (0, 3))


def test_large_bodies_read_straight_from_the_http_response(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 reads a large body from the HTTP response under botocore (`base.read_http_body`);
    the bytes and ranges are those every backend gives."""
    import importlib

    from opencodehub.storage import base

    monkeypatch.setattr(base, "DIRECT_READ_MIN_SIZE", 1 * MiB)
    direct_reads: list[int] = []
    if case.backend == "s3":
        adapter = importlib.import_module("opencodehub.storage.s3")

        def counted(raw: object, length: int, chunk_size: int, what: str) -> Iterator[bytes]:
            direct_reads.append(length)
            return base.read_http_body(raw, length, chunk_size, what)

        monkeypatch.setattr(adapter, "read_http_body", counted)
    data = os.urandom(3 * MiB + 5)
    case.storage.put("lfs/direct", io.BytesIO(data), size=len(data))
    assert read_all(case, "lfs/direct") == data
    assert read_all(case, "lfs/direct", (7, 2 * MiB + 6)) == data[7 : 2 * MiB + 7]
    assert read_all(case, "lfs/direct", (3 * MiB, None)) == data[3 * MiB :]  # below the bar
    if case.backend == "s3":
        assert direct_reads == [len(data), 2 * MiB]


# Metadata, deletion, listing -------------------------------------------------------------------


def test_missing_keys(case: Case) -> None:
    with pytest.raises(ObjectNotFound):
        case.storage.get("nothing/here")
    with pytest.raises(ObjectNotFound):
        case.storage.stat("nothing/here")
    assert not case.storage.exists("nothing/here")
    case.storage.delete("nothing/here")  # idempotent
    assert keys(case) == []


def test_delete_is_idempotent(case: Case) -> None:
    case.storage.put("a/b/c", io.BytesIO(b"x"))
    case.storage.delete("a/b/c")
    case.storage.delete("a/b/c")
    assert not case.storage.exists("a/b/c")
    with pytest.raises(ObjectNotFound):
        case.storage.get("a/b/c")
    assert keys(case) == []


def test_list_with_prefixes_across_pages(case: Case) -> None:
    names = [f"lfs/0{i}/obj{i}" for i in range(5)] + [
        "lfs/10/x",
        "lfsx/1",
        "avatars/user/1",
        "avatars/org/2",
    ]
    for index, name in enumerate(names):
        case.storage.put(name, io.BytesIO(b"z" * index))
    assert keys(case) == sorted(names)
    # Plain string prefixes, not folders; the adapters list 3 per page, so this spans pages.
    assert keys(case, "lfs/") == sorted(names[:6])
    assert keys(case, "lfs") == sorted(names[:7])
    assert keys(case, "lfs/0") == sorted(names[:5])
    assert keys(case, "avatars/user/") == ["avatars/user/1"]
    assert keys(case, "nope/") == []
    sizes = {info.key: info.size for info in case.storage.list("lfs/0")}
    assert sizes == {name: index for index, name in enumerate(names[:5])}
    with pytest.raises(InvalidKey):
        list(case.storage.list("../"))
    with pytest.raises(InvalidKey):
        list(case.storage.list("/lfs"))


def test_overwrite_replaces_content_and_metadata(case: Case) -> None:
    first = case.storage.put("avatars/user/9", io.BytesIO(b"first version"), content_type="a/b")
    second = case.storage.put("avatars/user/9", io.BytesIO(b"v2"), content_type="image/webp")
    assert read_all(case, "avatars/user/9") == b"v2"
    stat = case.storage.stat("avatars/user/9")
    assert (stat.size, stat.content_type) == (2, "image/webp")
    assert second.etag != first.etag
    assert keys(case) == ["avatars/user/9"]


def test_unusual_but_valid_keys(case: Case) -> None:
    names = [
        "It's/a key with spaces",
        "héllo/wörld",
        "-dash/-leading",
        "Case/A",
        "case/a",
        "/".join(["y" * 250] * 4),
    ]
    for index, name in enumerate(names):
        case.storage.put(name, io.BytesIO(str(index).encode()))
    for index, name in enumerate(names):
        assert read_all(case, name) == str(index).encode()
    assert keys(case) == sorted(names)


BAD_KEYS = [
    "",
    "/leading",
    "trailing/",
    "a//b",
    "../escape",
    "a/../../b",
    "a/./b",
    "..",
    "a\\b",
    "nul\x00byte",
    "new\nline",
    "bell\x07",
    "c1\x85control",
    "x" * 1025,
    "/".join(["y" * 250] * 5),  # 1254 bytes
    "x" * 256,  # one segment longer than a file name may be
    "é" * 513,  # 1026 bytes of UTF-8
    "ends.with.dot.",
    "e\u0301",  # not NFC
    "lone\ud800surrogate",
]


@pytest.mark.parametrize("bad", BAD_KEYS, ids=lambda key: repr(key[:20]))
def test_bad_keys_are_refused_everywhere(case: Case, bad: str) -> None:
    storage = case.storage
    with pytest.raises(InvalidKey):
        storage.put(bad, io.BytesIO(b"x"))
    with pytest.raises(InvalidKey):
        storage.get(bad)
    with pytest.raises(InvalidKey):
        storage.stat(bad)
    with pytest.raises(InvalidKey):
        storage.exists(bad)
    with pytest.raises(InvalidKey):
        storage.delete(bad)
    with pytest.raises(InvalidKey):
        storage.signed_url(bad, "GET", 60)
    assert keys(case) == []


def test_non_string_keys_are_refused(case: Case) -> None:
    with pytest.raises(InvalidKey):
        case.storage.stat(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        case.storage.put(b"bytes", io.BytesIO(b""))  # type: ignore[arg-type]


# Failure midway --------------------------------------------------------------------------------


def _assert_no_partial_upload_left(case: Case, stored: list[str] | None = None) -> None:
    """Nothing but the `stored` keys: no temporary file, multipart upload or staged blob."""
    stored = stored or []
    if case.backend == "local":
        assert os.listdir(os.path.join(case.namespace, ".och-tmp")) == []
    elif case.backend == "s3":
        client = case.storage._client  # type: ignore[attr-defined]
        assert client.list_multipart_uploads(Bucket=case.namespace).get("Uploads", []) == []
    elif case.backend == "azure":
        container = case.storage._container  # type: ignore[attr-defined]
        assert sorted(blob.name for blob in container.list_blobs()) == sorted(stored)
    assert keys(case) == sorted(stored)


@pytest.mark.parametrize("fail_after", [100, 6 * MiB + 5], ids=["first-chunk", "later-part"])
def test_interrupted_upload_leaves_nothing(case: Case, fail_after: int) -> None:
    with pytest.raises(Boom):
        case.storage.put("lfs/cc/dd/interrupted", exploding(fail_after))
    assert not case.storage.exists("lfs/cc/dd/interrupted")
    assert keys(case) == []
    _assert_no_partial_upload_left(case)


def test_known_size_and_hash_round_trip(case: Case) -> None:
    """What LFS sends: the exact size and the SHA-256 (S3: one streaming PutObject)."""
    total = 12 * MiB + 3
    size, sha256 = digest(generated(total))
    info = case.storage.put("lfs/ab/cd/known", generated(total), size=size, sha256=sha256)
    assert info.size == total
    with case.storage.get("lfs/ab/cd/known") as stream:
        assert digest(iter(stream)) == (size, sha256)
    assert (
        case.storage.get("lfs/ab/cd/known", (total - 10, None)).read()
        == b"".join(generated(total))[-10:]
    )
    assert keys(case) == ["lfs/ab/cd/known"]
    _assert_no_partial_upload_left(case, ["lfs/ab/cd/known"])


@pytest.mark.parametrize("hashed", [False, True], ids=["size", "size-and-hash"])
@pytest.mark.parametrize("actual", [12 * MiB - 1, 12 * MiB + 1, 100], ids=["short", "long", "tiny"])
def test_a_stream_of_another_length_than_declared_stores_nothing(
    case: Case, actual: int, hashed: bool
) -> None:
    declared = 12 * MiB
    sha256 = digest(generated(declared))[1] if hashed else None
    with pytest.raises(StorageError, match="declared"):
        case.storage.put("lfs/cc/dd/sized", generated(actual), size=declared, sha256=sha256)
    assert not case.storage.exists("lfs/cc/dd/sized")
    _assert_no_partial_upload_left(case)


@pytest.mark.parametrize("fail_after", [100, 6 * MiB + 5, 12 * MiB], ids=["first", "later", "end"])
def test_interrupted_upload_of_known_size_and_hash_leaves_nothing(
    case: Case, fail_after: int
) -> None:
    """A source that fails, even after its last byte (a checksum found wrong at the end), stores
    nothing although the backend was told the whole length up front."""
    size, sha256 = digest(generated(12 * MiB))
    with pytest.raises(Boom):
        case.storage.put("lfs/cc/dd/broken", exploding(fail_after), size=size, sha256=sha256)
    assert not case.storage.exists("lfs/cc/dd/broken")
    assert keys(case) == []
    _assert_no_partial_upload_left(case)


def test_interrupted_overwrite_keeps_the_previous_object(case: Case) -> None:
    case.storage.put("lfs/keep", io.BytesIO(b"the good version"), content_type="text/plain")
    with pytest.raises(Boom):
        case.storage.put("lfs/keep", exploding(6 * MiB + 5), content_type="bad/type")
    assert read_all(case, "lfs/keep") == b"the good version"
    assert case.storage.stat("lfs/keep").content_type == "text/plain"
    assert keys(case) == ["lfs/keep"]


# Memory ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("hashed", [False, True], ids=["size", "size-and-hash"])
def test_a_50_mb_stream_never_sits_in_memory(case: Case, hashed: bool) -> None:
    total = 50 * MiB
    sha256 = digest(generated(total))[1] if hashed else None
    tracemalloc.start()
    try:
        case.storage.put("lfs/ee/ff/fifty", generated(total), size=total, sha256=sha256)
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with case.storage.get("lfs/ee/ff/fifty") as stream:
            size = sum(len(chunk) for chunk in stream)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == total
    assert upload_peak < case.memory_bound, f"upload peak {upload_peak / MiB:.1f} MiB"
    assert download_peak < case.memory_bound, f"download peak {download_peak / MiB:.1f} MiB"


# Signed URLs -----------------------------------------------------------------------------------


def _http_for(case: Case) -> httpx.Client:
    """A client that reaches the signed URLs: the app's storage route for the local adapter,
    the backend itself otherwise."""
    if case.backend == "local":
        app = FastAPI()
        app.state.settings = case.settings
        app.state.storage = case.storage
        app.include_router(storage_views.router)
        return TestClient(app, base_url="http://testserver")
    return httpx.Client(timeout=30)


def test_signed_urls_work_with_a_plain_http_client(case: Case) -> None:
    put_url = case.storage.signed_url("lfs/11/22/signed", "PUT", 300)
    if case.backend == "gdrive":
        assert put_url is None
        assert case.storage.signed_url("lfs/11/22/signed", "GET", 300) is None
        return
    assert put_url is not None
    with _http_for(case) as http:
        payload = b"uploaded through a signed URL" * 1000
        response = http.put(put_url.url, content=payload, headers={**put_url.headers})
        assert response.status_code in (200, 201), response.text
        assert read_all(case, "lfs/11/22/signed") == payload

        get_url = case.storage.signed_url("lfs/11/22/signed", "GET", 300)
        assert get_url is not None and get_url.method == "GET"
        response = http.get(get_url.url, headers={**get_url.headers})
        assert response.status_code == 200
        assert response.content == payload
        response = http.get(get_url.url, headers={"Range": "bytes=10-19"})
        assert response.status_code == 206
        assert response.content == payload[10:20]

        # The GET URL does not upload, and a tampered URL does nothing (moto_server does not
        # check signatures, so S3's side of this is AWS's word, not ours).
        if case.backend != "s3":
            assert http.put(get_url.url, content=b"evil").status_code in (400, 403, 405)
            tampered = get_url.url.replace("signed", "signee")
            assert http.get(tampered).status_code in (400, 403, 404)
        assert read_all(case, "lfs/11/22/signed") == payload
    assert keys(case) == ["lfs/11/22/signed"]


def test_signed_url_arguments_are_checked(case: Case) -> None:
    with pytest.raises(ValueError):
        case.storage.signed_url("lfs/x", "DELETE", 60)  # type: ignore[arg-type]
    if case.backend != "gdrive":
        with pytest.raises(ValueError):
            case.storage.signed_url("lfs/x", "GET", 0)
        with pytest.raises(ValueError):
            case.storage.signed_url("lfs/x", "GET", 8 * 86400)


# Configuration and doctor ----------------------------------------------------------------------


def test_settings_build_the_same_adapter_and_doctor_probes_it(case: Case) -> None:
    case.storage.put("shared/object", io.BytesIO(b"seen by both"))
    built = build_storage(case.settings)
    try:
        assert type(built) is type(case.storage)
        assert read_all(Case(case.backend, built, case.settings, 0), "shared/object") == (
            b"seen by both"
        )
    finally:
        built.close()
    check = check_storage(case.settings)
    assert check.ok, check.detail
    assert case.backend in check.detail
    assert keys(case) == ["shared/object"]  # the probe cleaned up after itself
