"""The `StorageAdapter` interface every object store implements, its errors, and key validation.

Every method is synchronous and may block on disk or network I/O: async callers run them with
`asyncio.to_thread` (FastAPI runs `def` routes in its thread pool already). Data always moves as
a stream: `put` reads its input chunk by chunk and `get` returns an `ObjectStream`, so an object
of any size passes through a bounded amount of memory (one chunk per in-flight part).

Writes are atomic: a reader sees the previous object or the complete new one, never a partial
one, and a `put` that fails midway (the source raises, the network drops) leaves no trace.
"""

from __future__ import annotations

import abc
import http.client
import io
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, Literal, TypeVar

MAX_KEY_LENGTH = 1024  # bytes of UTF-8, S3's limit and well inside Azure's and Drive's
MAX_SEGMENT_LENGTH = 255  # bytes of UTF-8: a file name on every common file system
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
READ_CHUNK_SIZE = 1024 * 1024

SignedMethod = Literal["GET", "PUT"]
ByteRange = tuple[int, int | None]
Source = BinaryIO | Iterable[bytes]
Block = TypeVar("Block", bytes, bytearray)

# C0 controls, DEL and the C1 range: invisible in logs and listings, and NUL ends C strings.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class StorageError(Exception):
    """A storage operation failed; the message says which backend and why."""


class ObjectNotFound(StorageError, KeyError):
    def __init__(self, key: str):
        self.key = key
        super().__init__(key)

    def __str__(self) -> str:
        return f"no object at {self.key!r}"


class InvalidKey(StorageError, ValueError):
    """The key (or list prefix) breaks the key rules; nothing was read or written."""


class InvalidRange(StorageError, ValueError):
    """The requested byte range starts at or past the end of the object (HTTP 416)."""

    def __init__(self, message: str, size: int):
        self.size = size
        super().__init__(message)


class StorageConfigError(StorageError):
    """The settings do not describe a usable backend."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    content_type: str | None = None  # listings of some backends do not carry it
    modified: datetime | None = None


@dataclass(frozen=True)
class SignedURL:
    """A URL a client can use directly, and the headers it must send with it."""

    url: str
    method: SignedMethod
    expires_at: datetime
    headers: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.url


# Keys ------------------------------------------------------------------------------------------


def validate_key(key: object) -> str:
    """Return `key` if it is a valid object key, else raise `InvalidKey`.

    A key is `/`-separated segments: not empty, at most 1024 bytes of UTF-8 in NFC form and 255
    per segment, no empty, `.` or `..` segment (so no leading, trailing or doubled `/`), no
    backslash, no control character, and no trailing dot (Azure silently drops it). Keys are
    case-sensitive.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("a key must be a non-empty string")
    _check_text(key, "key")
    segments = key.split("/")
    if any(segment == "" for segment in segments):
        raise InvalidKey(f"key {key[:80]!r} has an empty segment (leading, trailing or double /)")
    if any(segment in (".", "..") for segment in segments):
        raise InvalidKey(f"key {key[:80]!r} has a '.' or '..' segment")
    if any(len(segment.encode()) > MAX_SEGMENT_LENGTH for segment in segments):
        raise InvalidKey(f"key {key[:80]!r} has a segment longer than {MAX_SEGMENT_LENGTH} bytes")
    if key.endswith("."):
        raise InvalidKey(f"key {key[:80]!r} ends with a dot")
    return key


def validate_prefix(prefix: object) -> str:
    """A listing prefix: "" (everything), or the start of a key, which may end with `/`."""
    if not isinstance(prefix, str):
        raise InvalidKey("a prefix must be a string")
    if prefix == "":
        return prefix
    _check_text(prefix, "prefix")
    segments = prefix.split("/")
    if any(segment == "" for segment in segments[:-1]):
        raise InvalidKey(f"prefix {prefix[:80]!r} has an empty segment")
    if any(segment in (".", "..") for segment in segments):
        raise InvalidKey(f"prefix {prefix[:80]!r} has a '.' or '..' segment")
    return prefix


def _check_text(value: str, what: str) -> None:
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKey(f"{what} is not valid Unicode (lone surrogate)") from exc
    if len(encoded) > MAX_KEY_LENGTH:
        raise InvalidKey(f"{what} is longer than {MAX_KEY_LENGTH} bytes")
    if _CONTROL_RE.search(value):
        raise InvalidKey(f"{what} contains a control character")
    if "\\" in value:
        raise InvalidKey(f"{what} contains a backslash")
    if value.startswith("/"):
        raise InvalidKey(f"{what} starts with '/'")
    if unicodedata.normalize("NFC", value) != value:
        # Two spellings of one visible name would be two objects on some backends, one on others.
        raise InvalidKey(f"{what} is not in Unicode NFC form")


def resolve_range(byte_range: ByteRange | None, size: int) -> tuple[int, int] | None:
    """`(start, end)` inclusive within an object of `size` bytes, None for the whole object.

    The end is clamped to the object as HTTP does; a start at or past the end is `InvalidRange`.
    """
    if byte_range is None:
        return None
    start, end = byte_range
    if not isinstance(start, int) or start < 0 or (end is not None and end < start):
        raise InvalidRange(f"invalid byte range {byte_range!r}", size)
    if start >= size:
        raise InvalidRange(f"range starts at {start}, the object has {size} bytes", size)
    last = size - 1 if end is None else min(end, size - 1)
    return start, last


def span(resolved: tuple[int, int] | None, size: int) -> tuple[int, int]:
    """`(start, length)` of a resolved range, or of the whole object."""
    if resolved is None:
        return 0, size
    return resolved[0], resolved[1] - resolved[0] + 1


# Streams ---------------------------------------------------------------------------------------


class ObjectStream(io.RawIOBase):
    """A readable stream over an object's bytes (or a range of them).

    Read it like a file (`read(n)`, `readinto`, `shutil.copyfileobj`) or iterate it for chunks
    (`for chunk in stream`, which is what Starlette's `StreamingResponse` wants). Close it, or use
    it as a context manager, to release the connection or file underneath.
    """

    def __init__(
        self,
        chunks: Iterator[bytes],
        info: ObjectInfo,
        *,
        start: int = 0,
        length: int | None = None,
        on_close: Callable[[], None] | None = None,
    ):
        super().__init__()
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._on_close = on_close
        self.info = info
        self.start = start
        self.length = info.size - start if length is None else length

    @property
    def end(self) -> int:
        """The inclusive index of the last byte this stream delivers (-1 when empty)."""
        return self.start + self.length - 1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(target), len(self._pending))
        target[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def __iter__(self) -> Iterator[bytes]:  # type: ignore[override]
        try:
            if self._pending:
                pending, self._pending = bytes(self._pending), memoryview(b"")
                yield pending
            for chunk in self._chunks:
                if chunk:
                    yield chunk
        finally:
            self.close()

    def close(self) -> None:
        if not self.closed:
            try:
                if self._on_close is not None:
                    self._on_close()
            finally:
                super().close()


def iter_source(source: Source, chunk_size: int = READ_CHUNK_SIZE) -> Iterator[bytes]:
    """Chunks from a binary file object or an iterable of bytes, skipping empty ones."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        raise TypeError("put() takes a binary stream or an iterable of bytes, not bytes itself")
    read = getattr(source, "read", None)
    if callable(read):
        while True:
            chunk = read(chunk_size)
            if not chunk:
                return
            yield bytes(chunk)
    else:
        for chunk in source:
            if chunk:
                yield bytes(chunk)


def exact_length(chunks: Iterable[bytes], size: int | None, what: str) -> Iterator[bytes]:
    """The chunks, passed on; when `size` is given, raises `StorageError` as soon as they add up
    to more than `size` bytes, or at their end when they add up to fewer, so that the consuming
    `put` discards the upload. None means any length."""
    if size is None:
        yield from chunks
        return
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > size:
            raise StorageError(f"{what}: the source has more than the declared {size} bytes")
        yield chunk
    if total != size:
        raise StorageError(f"{what}: the source has {total} bytes, not the declared {size}")


# A backend's GET body at least this large is read straight from its HTTP response
# (`read_http_body`); smaller ones through the backend's SDK, which pools their connection.
DIRECT_READ_MIN_SIZE = 16 * 1024 * 1024


def http_body_reader(http_response: Any, length: int, headers: Mapping[str, str]) -> Any | None:
    """The `http.client.HTTPResponse` under an SDK's urllib3 response, when its body may be
    read straight from it by `read_http_body`; None when the SDK's own reading must be used
    (a small body, an encoded one, another HTTP stack)."""
    if length < DIRECT_READ_MIN_SIZE or headers.get("Content-Encoding"):
        return None
    raw = getattr(http_response, "_fp", None)
    return raw if callable(getattr(raw, "readinto", None)) else None


def read_http_body(raw: Any, length: int, chunk_size: int, what: str) -> Iterator[bytes]:
    """`length` bytes of an HTTP response body, in chunks of up to `chunk_size` bytes.

    The SDKs read a body through urllib3, which gathers each chunk from pieces and copies it
    twice more on the way: reading 1 GiB from a local S3 that way cost 0.72-0.83 s of CPU, on
    cores a proxied download shares with the store and the client. Read here into one reused
    buffer, each chunk copied once into the `bytes` handed on: 0.41-0.53 s. A body that ends
    early, or a connection that fails, raises `StorageError`, as the SDKs' errors do. The
    connection is closed with the body, not pooled, which costs a large download nothing."""
    view = memoryview(bytearray(chunk_size))
    remaining = length
    while remaining:
        try:
            count = raw.readinto(view[: min(remaining, chunk_size)])
        except (OSError, http.client.HTTPException) as exc:
            raise StorageError(f"{what}: the connection failed while reading: {exc}") from exc
        if not count:
            raise StorageError(f"{what} ended after {length - remaining} of its {length} bytes")
        remaining -= count
        yield bytes(view[:count])


def iter_blocks(source: Source, block_size: int) -> Iterator[bytearray]:
    """Blocks of exactly `block_size` bytes (the last may be shorter), for part-wise uploads.

    Each block is a fresh `bytearray` the consumer owns, filled in place from the source's
    chunks: the bytes are copied once, and a block is allocated only when the first bytes for it
    arrive, so a suspended generator holds at most the part of one block read so far.
    """
    block: bytearray | None = None
    filled = 0
    for chunk in iter_source(source, min(block_size, READ_CHUNK_SIZE)):
        view = memoryview(chunk)
        while view:
            if block is None:
                block = bytearray(block_size)
                filled = 0
            count = min(len(view), block_size - filled)
            block[filled : filled + count] = view[:count]
            filled += count
            view = view[count:]
            if filled == block_size:
                full, block = block, None
                yield full
                del full  # the consumer holds the only reference from here on
    if block is not None:
        del block[filled:]
        yield block


def iter_byte_blocks(source: Source, block_size: int) -> Iterator[bytes]:
    """Blocks of exactly `block_size` bytes (the last may be shorter) as `bytes`, for clients
    that send nothing else (the Azure SDK, httpx).

    Each block is joined once from views of the source's chunks: the bytes are copied once (a
    `bytearray` block turned into `bytes` was two copies, and two blocks alive at the switch).
    While a block is being joined, memory holds its pieces and the new block; the pieces go as
    soon as it is made, except the part of a chunk that belongs to the next block.
    """
    pieces: list[memoryview] = []
    filled = 0
    for chunk in iter_source(source, min(block_size, READ_CHUNK_SIZE)):
        view = memoryview(chunk)
        del chunk
        while view:
            count = min(len(view), block_size - filled)
            pieces.append(view[:count])
            filled += count
            view = view[count:]
            if filled == block_size:
                block = b"".join(pieces)
                pieces.clear()
                filled = 0
                yield block
                del block  # the consumer holds the only reference from here on
    if pieces:
        block = b"".join(pieces)
        pieces.clear()
        yield block


def drain_then(head: list[Block], rest: Iterator[Block]) -> Iterator[Block]:
    """The blocks of `head` (emptied as they are handed out, so memory is freed) then `rest`."""
    while head:
        yield head.pop(0)
    yield from rest


def upload_blocks_concurrently(
    blocks: Iterator[Block],
    upload: Callable[[int, Block], object],
    concurrency: int,
) -> list[object]:
    """Call `upload(index, block)` for every block on up to `concurrency` threads, in order of
    index in the result. The next block is read from `blocks` only once a thread is free, so
    memory holds `concurrency` blocks being sent plus the one being read: `concurrency + 1`.

    The first failure (of an upload or of reading the source) cancels what has not started and
    is raised after the running uploads finish, so the caller can abort cleanly.
    """
    if concurrency <= 1:
        return [upload(index, block) for index, block in enumerate(blocks)]
    results: dict[int, object] = {}
    in_flight: set[Future[object]] = set()
    lock = threading.Lock()

    def run(index: int, block: Block) -> object:
        result = upload(index, block)
        with lock:
            results[index] = result
        return result

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="och-upload") as pool:
        try:
            index = 0
            while True:
                # Wait for a free thread before reading on: a block read early would sit in
                # memory for nothing.
                while len(in_flight) >= concurrency:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                block = next(blocks, None)
                if block is None:
                    break
                in_flight.add(pool.submit(run, index, block))
                del block  # the worker holds the only reference from here on
                index += 1
            for future in in_flight:
                future.result()
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
    return [results[index] for index in sorted(results)]


# The interface ---------------------------------------------------------------------------------


class StorageAdapter(abc.ABC):
    """One object store. Keys are validated by every method (see `validate_key`)."""

    #: Short backend name: local, s3, azure, gdrive.
    backend: str = ""

    @abc.abstractmethod
    def put(
        self,
        key: str,
        stream: Source,
        size: int | None = None,
        content_type: str | None = None,
        *,
        sha256: str | None = None,
    ) -> ObjectInfo:
        """Store the bytes of `stream` at `key`, replacing any object there, atomically.

        `size`, when known, is the stream's exact length: it lets a backend pick its upload
        strategy (S3 sends an object of known size as one streaming request), and a stream of
        another length fails with `StorageError`, storing nothing. `sha256`, when known, is the
        hex SHA-256 of the stream's bytes (an LFS object's oid): S3 signs its request with it
        instead of hashing the body first (and S3 rejects a body that does not match it);
        other backends ignore it. It does not replace the caller's own check of the content.
        Exceptions raised by `stream` propagate unchanged after the partial upload is discarded.
        """

    @abc.abstractmethod
    def get(self, key: str, byte_range: ByteRange | None = None) -> ObjectStream:
        """A stream over the object (or the inclusive byte range `(start, end)`; `end` None
        means to the end). Raises `ObjectNotFound`, or `InvalidRange` past the end."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """The object's metadata; raises `ObjectNotFound`."""

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix` (a plain string prefix, not a folder),
        fetched page by page as the iterator advances. The order is unspecified."""

    @abc.abstractmethod
    def signed_url(self, key: str, method: SignedMethod, expires: int) -> SignedURL | None:
        """A URL valid for `expires` seconds that lets a client GET or PUT the object without
        going through the app, or None when the backend cannot sign (the app proxies then)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the objects live, for `doctor` and logs (never a secret)."""

    def close(self) -> None:  # noqa: B027 - adapters without connections need no clean-up
        """Release connections held by the adapter."""


def check_expires(expires: int) -> int:
    if not isinstance(expires, int) or isinstance(expires, bool) or not 1 <= expires <= 7 * 86400:
        raise ValueError("expires must be between 1 second and 7 days (S3's limit)")
    return expires


def check_method(method: str) -> SignedMethod:
    if method == "GET":
        return "GET"
    if method == "PUT":
        return "PUT"
    raise ValueError(f"cannot sign method {method!r}: only GET and PUT")
