"""How the S3 adapter chooses between one streaming PutObject and a multipart upload, and what it
signs (moto_server does not check signatures, so the requests themselves are inspected)."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from opencodehub.storage.s3 import UNSIGNED_PAYLOAD, S3Storage
from tests.storage.conftest import MiB


class Recorder:
    """The S3 operations an adapter calls, and the payload hash each request was signed with."""

    def __init__(self, storage: S3Storage) -> None:
        self.calls: list[tuple[str, str | None]] = []
        events = storage._client.meta.events
        events.register("before-send.s3", self._record)

    def _record(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]  # before-send.s3.PutObject
        content_sha256 = request.headers.get("X-Amz-Content-SHA256")
        if isinstance(content_sha256, bytes):
            content_sha256 = content_sha256.decode()
        self.calls.append((operation, content_sha256))

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]

    def signed_hash(self, operation: str) -> str | None:
        return next(sha256 for name, sha256 in self.calls if name == operation)


@pytest.fixture
def s3(moto_endpoint: str) -> Iterator[S3Storage]:
    storage = S3Storage(
        f"och-{uuid.uuid4().hex[:12]}",
        endpoint=moto_endpoint,
        access_key="testing",
        secret_key="testing",
        path_style=True,
        part_size=5 * MiB,
        concurrency=2,
    )
    yield storage
    storage.close()


def chunks(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


DATA = bytes(range(256)) * (12 * MiB // 256)  # 12 MiB: more than two 5 MiB parts
SHA256 = hashlib.sha256(DATA).hexdigest()


def test_known_size_and_hash_go_up_as_one_request_signed_with_the_hash(s3: S3Storage) -> None:
    recorder = Recorder(s3)
    info = s3.put("lfs/one", chunks(DATA), size=len(DATA), sha256=SHA256)
    assert info.size == len(DATA)
    assert "CreateMultipartUpload" not in recorder.operations()
    assert recorder.operations().count("PutObject") == 1
    # The caller's hash is the payload hash: botocore did not read the body ahead to make one.
    assert recorder.signed_hash("PutObject") == SHA256
    assert s3.get("lfs/one").read() == DATA


def test_without_a_hash_plain_http_goes_multipart(s3: S3Storage) -> None:
    """Over plain HTTP botocore must sign a real payload hash, which a stream cannot give ahead
    of sending: parts then, each hashed on its own."""
    recorder = Recorder(s3)
    s3.put("lfs/parts", chunks(DATA), size=len(DATA))
    assert recorder.operations().count("UploadPart") == 3
    assert "PutObject" not in recorder.operations()
    part_hash = recorder.signed_hash("UploadPart")
    assert part_hash == hashlib.sha256(DATA[: 5 * MiB]).hexdigest()
    assert s3.get("lfs/parts").read() == DATA


def test_unknown_size_goes_multipart_and_small_objects_in_one_put(s3: S3Storage) -> None:
    recorder = Recorder(s3)
    s3.put("lfs/unknown", chunks(DATA), sha256=SHA256)
    assert "CreateMultipartUpload" in recorder.operations()
    recorder.calls.clear()
    small = b"small object"
    s3.put("lfs/small", io.BytesIO(small), size=len(small))
    assert recorder.operations()[-2:] == ["PutObject", "HeadObject"]
    assert recorder.signed_hash("PutObject") == hashlib.sha256(small).hexdigest()


def test_over_https_a_stream_without_a_hash_is_sent_unsigned() -> None:
    secure = S3Storage("bucket", endpoint="https://s3.example.test", access_key="a", secret_key="b")
    plain = S3Storage("bucket", endpoint="http://s3.example.test", access_key="a", secret_key="b")
    aws = S3Storage("bucket", region="eu-west-1", access_key="a", secret_key="b")
    try:
        assert secure._payload_hash(None) == UNSIGNED_PAYLOAD
        assert aws._payload_hash(None) == UNSIGNED_PAYLOAD
        assert plain._payload_hash(None) is None
        assert plain._payload_hash(SHA256) == SHA256
        with pytest.raises(ValueError):
            plain._payload_hash(SHA256.upper())
        with pytest.raises(ValueError):
            plain._payload_hash("UNSIGNED-PAYLOAD")
    finally:
        for storage in (secure, plain, aws):
            storage.close()


def test_presigned_urls_keep_their_own_signer(s3: S3Storage) -> None:
    url = s3.signed_url("lfs/presigned", "PUT", 60)
    assert url is not None
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url.url and "X-Amz-Signature=" in url.url


class _Body:
    """A GetObject body whose HTTP response ends early, or that must go through botocore."""

    def __init__(self, data: bytes) -> None:
        self._raw_stream = type("Raw", (), {"_fp": io.BufferedReader(io.BytesIO(data))})()
        self.data = data

    def iter_chunks(self, chunk_size: int) -> Iterator[bytes]:
        yield self.data


def test_a_body_shorter_than_its_content_length_is_an_error() -> None:
    from opencodehub.storage import s3 as s3_module
    from opencodehub.storage.base import DIRECT_READ_MIN_SIZE, StorageError

    size = DIRECT_READ_MIN_SIZE + 10
    body = _Body(b"x" * (size - 1))
    chunks_read = s3_module._body_chunks(body, {"ContentLength": size}, "object")
    with pytest.raises(StorageError, match="ended after 16777225 of its 16777226 bytes"):
        list(chunks_read)

    class Broken(io.RawIOBase):
        def readinto(self, buffer: Any) -> int:
            raise ConnectionResetError("reset by peer")

    failing = _Body(b"")
    failing._raw_stream._fp = Broken()  # type: ignore[attr-defined]
    with pytest.raises(StorageError, match="connection failed while reading: reset by peer"):
        list(s3_module._body_chunks(failing, {"ContentLength": size}, "object"))

    encoded = _Body(b"gzipped")
    assert list(
        s3_module._body_chunks(
            encoded, {"ContentLength": size, "ContentEncoding": "gzip"}, "object"
        )
    ) == [b"gzipped"]


def test_a_body_whose_checksum_botocore_validates_is_read_through_botocore() -> None:
    from botocore.httpchecksum import StreamingChecksumBody

    from opencodehub.storage import s3 as s3_module
    from opencodehub.storage.base import DIRECT_READ_MIN_SIZE

    class Checksummed(StreamingChecksumBody, _Body):
        def __init__(self, data: bytes) -> None:
            _Body.__init__(self, data)

        def iter_chunks(self, chunk_size: int = 1024) -> Iterator[bytes]:
            yield b"validated"

    size = DIRECT_READ_MIN_SIZE + 10
    body = Checksummed(b"x" * size)
    assert list(s3_module._body_chunks(body, {"ContentLength": size}, "object")) == [b"validated"]
