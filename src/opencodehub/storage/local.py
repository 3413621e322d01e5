"""Objects as files under one directory: `{root}/{key}`.

A write goes to a temporary file in `{root}/.och-tmp/`, is fsynced, and is renamed over the
target, so readers see the old file or the new one, and a failed write leaves only a temporary
file that is removed at once (or, after a crash, is never visible as an object). The content type
rides in an extended attribute of the file; on file systems without user xattrs it is not kept
and reads answer `application/octet-stream`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_module
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from opencodehub.storage.base import (
    READ_CHUNK_SIZE,
    ByteRange,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStream,
    SignedMethod,
    SignedURL,
    Source,
    StorageAdapter,
    StorageError,
    exact_length,
    iter_source,
    resolve_range,
    span,
    validate_key,
    validate_prefix,
)
from opencodehub.storage.signing import AppURLSigner

TEMP_DIR = ".och-tmp"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_XATTR = "user.opencodehub.content_type"
_RENAME_ATTEMPTS = 5


class LocalStorage(StorageAdapter):
    backend = "local"

    def __init__(
        self,
        root: Path,
        signer: AppURLSigner | None = None,
        chunk_size: int = READ_CHUNK_SIZE,
    ):
        self.root = Path(root).expanduser().resolve()
        self._signer = signer
        self._chunk_size = chunk_size

    # Paths -------------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        key = validate_key(key)
        if key.split("/", 1)[0] == TEMP_DIR:
            raise InvalidKey(f"keys under {TEMP_DIR}/ are reserved by the local adapter")
        return self.root.joinpath(*key.split("/"))

    def _info(self, key: str, st: os.stat_result, content_type: str | None) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}",
            content_type=content_type,
            modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    # Writes ------------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        stream: Source,
        size: int | None = None,
        content_type: str | None = None,
        *,
        sha256: str | None = None,  # no use here: see StorageAdapter.put
    ) -> ObjectInfo:
        target = self._path(key)
        temp_dir = self.root / TEMP_DIR
        temp_dir.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=temp_dir, prefix="put-")
        try:
            with os.fdopen(fd, "wb", buffering=0) as handle:
                chunks = iter_source(stream, self._chunk_size)
                for chunk in exact_length(chunks, size, f"local: {key!r}"):
                    handle.write(chunk)
                os.fsync(handle.fileno())
                if content_type:
                    _set_content_type(handle.fileno(), content_type)
                st = os.fstat(handle.fileno())
            self._rename_into_place(temp_name, target, key)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        return self._info(key, st, content_type or DEFAULT_CONTENT_TYPE)

    def _rename_into_place(self, temp_name: str, target: Path, key: str) -> None:
        # A concurrent delete may prune the parent directory between mkdir and rename: retry.
        for attempt in range(_RENAME_ATTEMPTS):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temp_name, target)
            except FileNotFoundError:
                if attempt == _RENAME_ATTEMPTS - 1:
                    raise
                continue
            except (NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
                raise StorageError(
                    f"local: cannot store {key!r}: a part of its path is an object or a "
                    "folder of objects already"
                ) from exc
            _fsync_directory(target.parent)
            return

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a folder of other objects, not an object
        except PermissionError as exc:
            if path.is_dir():  # macOS reports unlink() of a directory as EPERM
                return
            raise StorageError(f"local: cannot delete {key!r}: {exc}") from exc
        self._prune_empty_parents(path.parent)

    def _prune_empty_parents(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    # Reads -------------------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        if not stat_module.S_ISREG(st.st_mode):
            raise ObjectNotFound(key)
        return self._info(key, st, _get_content_type(path))

    def get(self, key: str, byte_range: ByteRange | None = None) -> ObjectStream:
        path = self._path(key)
        try:
            handle = open(path, "rb", buffering=0)  # noqa: SIM115 - the stream owns it
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        try:
            st = os.fstat(handle.fileno())
            if not stat_module.S_ISREG(st.st_mode):
                raise ObjectNotFound(key)
            info = self._info(key, st, _get_content_type(path))
            resolved = resolve_range(byte_range, st.st_size)
            start, length = span(resolved, st.st_size)
            handle.seek(start)
        except BaseException:
            handle.close()
            raise
        return ObjectStream(
            _read_file(handle, length, self._chunk_size),
            info,
            start=start,
            length=length,
            on_close=handle.close,
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        folder = prefix.rpartition("/")[0]
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        yield from self._walk(start, f"{folder}/" if folder else "", prefix)

    def _walk(self, directory: Path, relative: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            key = relative + entry.name
            if not relative and entry.name == TEMP_DIR:
                continue
            if entry.is_dir(follow_symlinks=False):
                folder = key + "/"
                if folder.startswith(prefix) or prefix.startswith(folder):
                    yield from self._walk(Path(entry.path), folder, prefix)
            elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted while we walked
                yield self._info(key, st, None)

    # Signing -----------------------------------------------------------------------------------

    def signed_url(self, key: str, method: SignedMethod, expires: int) -> SignedURL | None:
        self._path(key)
        if self._signer is None:
            return None
        return self._signer.sign(key, method, expires)

    def describe(self) -> str:
        return f"local: {self.root}"


def _read_file(handle: BinaryIO, length: int, chunk_size: int) -> Iterator[bytes]:
    read = handle.read
    remaining = length
    while remaining > 0:
        chunk = read(min(chunk_size, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk


def _set_content_type(fd: int, content_type: str) -> None:
    try:
        os.setxattr(fd, _XATTR, content_type.encode("utf-8")[:255])
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.ENOSPC, errno.E2BIG):
            raise
    except AttributeError:  # os.setxattr exists on Linux only
        return


def _get_content_type(path: Path) -> str:
    try:
        return os.getxattr(path, _XATTR).decode("utf-8", "replace")
    except (OSError, AttributeError):
        return DEFAULT_CONTENT_TYPE


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
