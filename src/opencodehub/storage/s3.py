"""Any S3-compatible store (AWS S3, MinIO, Ceph RGW, Cloudflare R2, moto) through boto3.

Three ways up, by what the caller knows about the object:

* **One part or less**: one PutObject of the bytes read into memory (at most one part).
* **Known size, up to S3's 5 GiB single-request limit, and a payload hash to sign with**: one
  streaming PutObject, the source flowing straight onto the socket (one source chunk in
  memory). SigV4 signs a hash of the payload, which botocore would otherwise compute by reading
  the body ahead of sending it, impossible for a stream: the caller's SHA-256 of the bytes (an
  LFS object's oid is exactly that) is sent as `x-amz-content-sha256`, and S3 checks it against
  what it received; over HTTPS without one, `UNSIGNED-PAYLOAD` (TLS protects the bytes). The
  store has no parts to keep and join, and the app no part buffers.
* **Otherwise** (unknown size, over 5 GiB, or plain HTTP without a hash): a multipart upload
  whose parts are read from the source one at a time, each as soon as a thread is free to send
  it, so memory holds `concurrency + 1` parts at most.

A failed upload leaves nothing: a multipart upload is aborted, which discards its parts, and a
streaming PutObject is cut short before its last byte (S3 stores nothing from a request whose
body is incomplete). S3 never shows an object before the upload completes.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from opencodehub.storage.base import (
    DEFAULT_CHUNK_SIZE,
    READ_CHUNK_SIZE,
    ByteRange,
    ObjectInfo,
    ObjectNotFound,
    ObjectStream,
    SignedMethod,
    SignedURL,
    Source,
    StorageAdapter,
    StorageError,
    check_expires,
    check_method,
    drain_then,
    exact_length,
    http_body_reader,
    iter_blocks,
    iter_source,
    read_http_body,
    resolve_range,
    upload_blocks_concurrently,
    validate_key,
    validate_prefix,
)

# Reads of a GetObject body: at 4 MiB a proxied download costs the app about a fifth less CPU
# than at 1 MiB (fewer trips through urllib3 and between threads), which is its throughput when
# the cores are shared with the store and the client.
GET_CHUNK_SIZE = 4 * READ_CHUNK_SIZE
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
MAX_PARTS = 10_000
MAX_SINGLE_PUT_SIZE = 5 * 1024 * 1024 * 1024  # S3's limit for one PutObject
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# The SigV4 signer for streaming PutObjects (registered with botocore below): S3's own, except
# that it takes the payload hash from the body instead of reading the body to compute it.
KNOWN_PAYLOAD_SIGNER = "och-s3v4-known-payload"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_SHA256_RE = re.compile(r"\A[0-9a-f]{64}\Z")


class S3Storage(StorageAdapter):
    backend = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str = "",
        region: str = "",
        access_key: str = "",
        secret_key: str = "",
        path_style: bool = False,
        part_size: int = DEFAULT_CHUNK_SIZE,
        concurrency: int = 4,
        list_page_size: int = 1000,
        create_bucket: bool = True,
    ):
        import boto3
        from botocore.config import Config

        if not bucket:
            raise StorageError("s3: no bucket configured (OCH_STORAGE_S3_BUCKET)")
        self.bucket = bucket
        self.endpoint = endpoint
        self.region = region or "us-east-1"
        self._part_size = max(part_size, MIN_PART_SIZE)
        self._concurrency = max(concurrency, 1)
        self._list_page_size = list_page_size
        self._create_bucket = create_bucket
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()
        config = Config(
            region_name=self.region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "auto"},
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=max(10, self._concurrency * 2),
            # Checksums only where S3 requires them: several S3-compatible stores reject the
            # newer default trailing checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None,
            region_name=self.region,
        )
        self._client: Any = session.client("s3", endpoint_url=endpoint or None, config=config)
        _register_known_payload_signer()
        self._client.meta.events.register("choose-signer.s3.PutObject", _choose_put_signer)
        self._https = (endpoint or "https://").lower().startswith("https://")

    # Helpers -----------------------------------------------------------------------------------

    def _ensure_bucket(self) -> None:
        if self._bucket_ready or not self._create_bucket:
            return
        from botocore.exceptions import ClientError

        with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _error_code(exc) not in _NOT_FOUND_CODES:
                    raise self._error("cannot reach bucket", exc) from exc
                arguments: dict[str, Any] = {"Bucket": self.bucket}
                if self.region != "us-east-1":
                    arguments["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
                try:
                    self._client.create_bucket(**arguments)
                except ClientError as create_exc:
                    if _error_code(create_exc) not in (
                        "BucketAlreadyOwnedByYou",
                        "BucketAlreadyExists",
                    ):
                        raise self._error("cannot create bucket", create_exc) from create_exc
            self._bucket_ready = True

    def _error(self, action: str, exc: Exception) -> StorageError:
        return StorageError(f"s3: {action} in bucket {self.bucket!r}: {exc}")

    def _info(self, key: str, response: dict[str, Any], size: int | None = None) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=response["ContentLength"] if size is None else size,
            etag=str(response.get("ETag", "")).strip('"'),
            content_type=response.get("ContentType") or DEFAULT_CONTENT_TYPE,
            modified=response.get("LastModified"),
        )

    # Writes ------------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        stream: Source,
        size: int | None = None,
        content_type: str | None = None,
        *,
        sha256: str | None = None,
    ) -> ObjectInfo:
        from botocore.exceptions import BotoCoreError, ClientError

        key = validate_key(key)
        self._ensure_bucket()
        content_type = content_type or DEFAULT_CONTENT_TYPE
        chunks = exact_length(iter_source(stream), size, f"s3: {key!r}")
        payload_hash = self._payload_hash(sha256)
        if (
            size is not None
            and self._part_size < size <= MAX_SINGLE_PUT_SIZE
            and payload_hash is not None
        ):
            body = StreamingPayload(chunks, size, payload_hash)
            try:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentLength=size,
                    ContentType=content_type,
                )
            except Exception as exc:
                # botocore wraps what the body raised (and then fails to rewind it for a
                # retry): the source's own exception is the one to report.
                if body.failure is not None:
                    raise body.failure from None
                if isinstance(exc, (BotoCoreError, ClientError)):
                    raise self._error(f"cannot store {key!r}", exc) from exc
                raise
            return self.stat(key)
        part_size = self._part_size
        if size is not None and size > part_size * MAX_PARTS:
            part_size = math.ceil(size / MAX_PARTS)
        blocks = iter_blocks(chunks, part_size)
        head = list(itertools.islice(blocks, 2))
        try:
            if len(head) < 2:
                body = head.pop() if head else b""
                self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType=content_type
                )
            else:
                self._put_multipart(key, drain_then(head, blocks), content_type)
            return self.stat(key)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(f"cannot store {key!r}", exc) from exc

    def _payload_hash(self, sha256: str | None) -> str | None:
        """What a streaming PutObject signs as its payload hash, or None when it cannot be one:
        the caller's SHA-256, else `UNSIGNED-PAYLOAD` over HTTPS (botocore insists on a real
        hash over plain HTTP, and so do we)."""
        if sha256 is not None:
            if not _SHA256_RE.match(sha256):
                raise ValueError("sha256 must be 64 lowercase hexadecimal digits")
            return sha256
        return UNSIGNED_PAYLOAD if self._https else None

    def _put_multipart(self, key: str, blocks: Iterator[bytearray], content_type: str) -> None:
        upload_id = self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )["UploadId"]

        def upload_part(index: int, block: bytearray) -> dict[str, Any]:
            if index >= MAX_PARTS:
                raise StorageError(f"s3: {key!r} needs more than {MAX_PARTS} parts")
            response = self._client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=index + 1, Body=block
            )
            return {"PartNumber": index + 1, "ETag": response["ETag"]}

        try:
            parts = upload_blocks_concurrently(blocks, upload_part, self._concurrency)
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            # Discard the parts: nothing of this upload becomes visible or keeps costing space.
            # The original failure is the one to report.
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = validate_key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return
            raise self._error(f"cannot delete {key!r}", exc) from exc
        except BotoCoreError as exc:
            raise self._error(f"cannot delete {key!r}", exc) from exc

    # Reads -------------------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo:
        from botocore.exceptions import BotoCoreError, ClientError

        key = validate_key(key)
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise ObjectNotFound(key) from None
            raise self._error(f"cannot stat {key!r}", exc) from exc
        except BotoCoreError as exc:
            raise self._error(f"cannot stat {key!r}", exc) from exc
        return self._info(key, response)

    def get(self, key: str, byte_range: ByteRange | None = None) -> ObjectStream:
        from botocore.exceptions import BotoCoreError, ClientError

        key = validate_key(key)
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        start, length = 0, None
        if byte_range is not None:
            # Resolve the range against the real size first, so every backend answers an
            # out-of-range request the same way; IfMatch pins the read to that version.
            info = self.stat(key)
            start, end = resolve_range(byte_range, info.size)  # type: ignore[misc]
            length = end - start + 1
            arguments["Range"] = f"bytes={start}-{end}"
            arguments["IfMatch"] = f'"{info.etag}"'
        try:
            response = self._client.get_object(**arguments)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES or _error_code(exc) == "PreconditionFailed":
                raise ObjectNotFound(key) from None
            raise self._error(f"cannot read {key!r}", exc) from exc
        except BotoCoreError as exc:
            raise self._error(f"cannot read {key!r}", exc) from exc
        body = response["Body"]
        total = _total_size(response)
        info = self._info(key, response, size=total)
        return ObjectStream(
            _body_chunks(body, response, key),
            info,
            start=start,
            length=response["ContentLength"] if length is None else length,
            on_close=body.close,
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = validate_prefix(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=prefix,
            PaginationConfig={"PageSize": self._list_page_size},
        )
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield ObjectInfo(
                        key=item["Key"],
                        size=item["Size"],
                        etag=str(item.get("ETag", "")).strip('"'),
                        modified=item.get("LastModified"),
                    )
        except ClientError as exc:
            if _error_code(exc) == "NoSuchBucket":
                return
            raise self._error("cannot list", exc) from exc
        except BotoCoreError as exc:
            raise self._error("cannot list", exc) from exc

    # Signing -----------------------------------------------------------------------------------

    def signed_url(self, key: str, method: SignedMethod, expires: int) -> SignedURL | None:
        key = validate_key(key)
        method = check_method(method)
        expires = check_expires(expires)
        if method == "PUT":
            self._ensure_bucket()
        operation = "get_object" if method == "GET" else "put_object"
        url = self._client.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires
        )
        return SignedURL(url, method, datetime.now(UTC) + timedelta(seconds=expires))

    def describe(self) -> str:
        where = self.endpoint or f"AWS {self.region}"
        return f"s3: bucket {self.bucket} at {where}"

    def close(self) -> None:
        self._client.close()


class StreamingPayload:
    """The body of one streaming PutObject: exactly `size` bytes from `chunks`, read by the HTTP
    connection block by block, with the payload hash its request is signed with.

    The bytes that complete the object are handed out only once the source is exhausted, so a
    source that fails at its end (a checksum that does not match) or turns out longer than `size`
    raises before S3 has the whole body: the request is cut short and nothing is stored. It
    cannot be rewound, so a retry botocore attempts fails (`UnseekableStreamError`); `put` then
    reports what the source raised, if it raised.
    """

    def __init__(self, chunks: Iterator[bytes], size: int, payload_hash: str):
        self._chunks = chunks
        self._size = size
        self._taken = 0  # bytes taken from the source so far
        self._pending = memoryview(b"")
        self.payload_hash = payload_hash
        self.failure: BaseException | None = None  # what the source raised, to report as is

    def __len__(self) -> int:
        return self._size

    def read(self, amount: int | None = -1) -> bytes:
        if not self._pending:
            try:
                chunk = self._next_chunk()
            except BaseException as exc:
                self.failure = exc
                raise
            if chunk is None:
                return b""
            self._pending = memoryview(chunk)
        if amount is None or amount < 0:
            amount = len(self._pending)
        piece, self._pending = self._pending[:amount], self._pending[amount:]
        return bytes(piece)

    def _next_chunk(self) -> bytes | None:
        chunk = next(self._chunks, None)
        if chunk is None:
            return None
        self._taken += len(chunk)
        # The source is run to its end, its own checks included, before its last bytes go out.
        if self._taken >= self._size and next(self._chunks, None) is not None:
            raise StorageError(f"s3: the source has more than the declared {self._size} bytes")
        return chunk


def _register_known_payload_signer() -> None:
    import botocore.auth

    if KNOWN_PAYLOAD_SIGNER in botocore.auth.AUTH_TYPE_MAPS:
        return

    class KnownPayloadS3SigV4Auth(botocore.auth.S3SigV4Auth):  # type: ignore[misc]
        """S3's SigV4 signer, taking a `StreamingPayload`'s hash as given."""

        def payload(self, request: Any) -> str:
            if isinstance(request.body, StreamingPayload):
                return request.body.payload_hash
            return str(super().payload(request))

    botocore.auth.AUTH_TYPE_MAPS[KNOWN_PAYLOAD_SIGNER] = KnownPayloadS3SigV4Auth


def _choose_put_signer(signature_version: str, **_: Any) -> str | None:
    """botocore's `choose-signer` hook for PutObject: the known-payload signer for a plain SigV4
    request (it signs every other body as S3's does); presigned URLs keep theirs."""
    return KNOWN_PAYLOAD_SIGNER if signature_version == "s3v4" else None


def _body_chunks(body: Any, response: dict[str, Any], key: str) -> Iterator[bytes]:
    """A GetObject body in chunks of up to `GET_CHUNK_SIZE` bytes: a large one straight from
    the HTTP response (`read_http_body`), its length checked against Content-Length as
    botocore does; others, and those whose checksum botocore validates, through botocore."""
    from botocore.httpchecksum import StreamingChecksumBody

    length = response["ContentLength"]
    headers = {"Content-Encoding": response.get("ContentEncoding") or ""}
    raw = http_body_reader(getattr(body, "_raw_stream", None), length, headers)
    if raw is None or isinstance(body, StreamingChecksumBody):
        yield from body.iter_chunks(chunk_size=GET_CHUNK_SIZE)
        return
    yield from read_http_body(raw, length, GET_CHUNK_SIZE, f"s3: {key!r}")


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _total_size(response: dict[str, Any]) -> int:
    content_range = response.get("ContentRange")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        if total.isdigit():
            return int(total)
    return int(response["ContentLength"])
