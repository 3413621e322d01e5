"""Azure Blob Storage (and Azurite) through azure-storage-blob, configured by a connection string.

Large objects are staged as blocks read from the source one at a time and sent on a few threads,
then made visible in one Put Block List. The blocks in memory at once (those being sent, the one
being read, and the one being joined from the source's chunks) fit in `upload_buffer` bytes
(24 MiB by default): the block size and the number of threads are cut down to fit it, whatever
`OCH_STORAGE_CHUNK_SIZE` and `OCH_STORAGE_UPLOAD_CONCURRENCY` say. Staged blocks that are never
committed are invisible and Azure drops them after a week, so a failed upload leaves nothing
behind. Signed URLs are SAS tokens made with the account key from the connection string; a
connection string without a key (a SAS one) cannot sign, and the app proxies then.
"""

from __future__ import annotations

import base64
import math
import threading
import uuid
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
    iter_byte_blocks,
    iter_source,
    resolve_range,
    upload_blocks_concurrently,
    validate_key,
    validate_prefix,
)

MAX_BLOCKS = 50_000
MAX_BLOCK_SIZE = 4000 * 1024 * 1024
MIN_BLOCK_SIZE = 1024 * 1024
# Bytes of blocks an upload may hold at once: `concurrency` blocks being sent, the next one being
# filled and one more while it is joined into `bytes` (`iter_byte_blocks`). With the default
# four threads that is 4 MiB blocks, the SDK's own default block size.
DEFAULT_UPLOAD_BUFFER = 24 * 1024 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class AzureBlobStorage(StorageAdapter):
    backend = "azure"

    def __init__(
        self,
        connection_string: str,
        container: str,
        *,
        block_size: int = DEFAULT_CHUNK_SIZE,
        concurrency: int = 4,
        upload_buffer: int = DEFAULT_UPLOAD_BUFFER,
        list_page_size: int = 5000,
        create_container: bool = True,
    ):
        from azure.storage.blob import BlobServiceClient

        if not connection_string:
            raise StorageError(
                "azure: no connection string configured (OCH_STORAGE_AZURE_CONNECTION_STRING)"
            )
        if not container:
            raise StorageError("azure: no container configured (OCH_STORAGE_AZURE_CONTAINER)")
        try:
            self._service = BlobServiceClient.from_connection_string(
                connection_string,
                # What a streamed download hands on per read: the SDK's default of 256 KiB
                # would cost four times as many hops between threads in a streamed response.
                connection_data_block_size=READ_CHUNK_SIZE,
            )
        except ValueError as exc:
            raise StorageError(f"azure: the connection string is not valid: {exc}") from exc
        self.container = container
        self._container = self._service.get_container_client(container)
        self._upload_buffer = upload_buffer
        self._block_size, self._concurrency = bounded_blocks(block_size, concurrency, upload_buffer)
        self._list_page_size = list_page_size
        self._create_container = create_container
        self._container_ready = False
        self._container_lock = threading.Lock()

    # Helpers -----------------------------------------------------------------------------------

    def _ensure_container(self) -> None:
        if self._container_ready or not self._create_container:
            return
        from azure.core.exceptions import AzureError, ResourceExistsError

        with self._container_lock:
            if self._container_ready:
                return
            try:
                self._container.create_container()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise self._error("cannot create the container", exc) from exc
            self._container_ready = True

    def _error(self, action: str, exc: Exception) -> StorageError:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return StorageError(f"azure: {action} in container {self.container!r}: {message}")

    def _info(self, key: str, properties: Any) -> ObjectInfo:
        settings = getattr(properties, "content_settings", None)
        return ObjectInfo(
            key=key,
            size=int(properties.size),
            etag=str(properties.etag).strip('"'),
            content_type=(settings.content_type if settings else None) or DEFAULT_CONTENT_TYPE,
            modified=properties.last_modified,
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
        from azure.core.exceptions import AzureError
        from azure.storage.blob import BlobBlock, ContentSettings

        key = validate_key(key)
        self._ensure_container()
        blob = self._container.get_blob_client(key)
        settings = ContentSettings(content_type=content_type or DEFAULT_CONTENT_TYPE)
        block_size, concurrency = self._block_size, self._concurrency
        if size is not None and size > block_size * MAX_BLOCKS:
            # Over 50,000 blocks (195 GiB in 4 MiB blocks): larger blocks, and fewer threads
            # to stay in the budget as far as one thread allows.
            block_size = min(math.ceil(size / MAX_BLOCKS), MAX_BLOCK_SIZE)
            concurrency = max(min(concurrency, self._upload_buffer // block_size - 2), 1)
        chunks = exact_length(iter_source(stream), size, f"azure: {key!r}")
        blocks = iter_byte_blocks(chunks, block_size)  # the SDK sends bytes only
        head = [block for _, block in zip(range(2), blocks, strict=False)]
        try:
            if len(head) < 2:
                body = head.pop() if head else b""
                blob.upload_blob(body, overwrite=True, content_settings=settings)
            else:
                # Ids unique to this upload, so a concurrent upload of the same key never
                # commits our blocks or we theirs. All ids of a blob must have one length.
                upload = uuid.uuid4().hex

                def stage(index: int, block: bytes) -> str:
                    if index >= MAX_BLOCKS:
                        raise StorageError(f"azure: {key!r} needs more than {MAX_BLOCKS} blocks")
                    block_id = base64.b64encode(f"{upload}-{index:06d}".encode()).decode()
                    blob.stage_block(block_id, block, length=len(block))
                    return block_id

                block_ids = upload_blocks_concurrently(drain_then(head, blocks), stage, concurrency)
                blob.commit_block_list(
                    [BlobBlock(block_id=str(block_id)) for block_id in block_ids],
                    content_settings=settings,
                )
            return self._info(key, blob.get_blob_properties())
        except AzureError as exc:
            raise self._error(f"cannot store {key!r}", exc) from exc

    def delete(self, key: str) -> None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        key = validate_key(key)
        try:
            self._container.get_blob_client(key).delete_blob()
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise self._error(f"cannot delete {key!r}", exc) from exc

    # Reads -------------------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        key = validate_key(key)
        try:
            properties = self._container.get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError:
            raise ObjectNotFound(key) from None
        except AzureError as exc:
            raise self._error(f"cannot stat {key!r}", exc) from exc
        return self._info(key, properties)

    def get(self, key: str, byte_range: ByteRange | None = None) -> ObjectStream:
        from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
        from azure.storage.blob._generated.models import ModifiedAccessConditions

        key = validate_key(key)
        blob = self._container.get_blob_client(key)
        start, length = 0, None
        measured: ObjectInfo | None = None
        arguments: dict[str, Any] = {}
        if byte_range is not None:
            # Resolve against the real size so every backend answers a range past the end
            # alike; the etag condition pins the read to the version we measured.
            measured = self.stat(key)
            start, end = resolve_range(byte_range, measured.size)  # type: ignore[misc]
            length = end - start + 1
            arguments.update(
                range=f"bytes={start}-{end}",
                modified_access_conditions=ModifiedAccessConditions(if_match=f'"{measured.etag}"'),
            )
        # One Get Blob request whose body streams as it is read, as a direct download does.
        # The SDK's `download_blob` instead reads a blob as a series of ranged requests, each
        # read whole into memory before the next starts: one round trip and one request's
        # overhead per chunk, which made proxied downloads from Azurite 3-4 times slower than
        # a direct one. This is the operation `download_blob` itself sends, through the same
        # pipeline (authentication, retries of the request, API version).
        try:
            response, body, headers = blob._client.blob.download(
                cls=lambda response, body, headers: (response.http_response, body, headers),
                **arguments,
            )
        except ResourceNotFoundError:
            raise ObjectNotFound(key) from None
        except HttpResponseError as exc:
            if exc.status_code == 412:  # the object changed since we measured it
                raise ObjectNotFound(key) from None
            raise self._error(f"cannot read {key!r}", exc) from exc
        except AzureError as exc:
            raise self._error(f"cannot read {key!r}", exc) from exc
        # A ranged response describes the range; the object is what we measured.
        info = measured or ObjectInfo(
            key=key,
            size=int(headers["Content-Length"]),
            etag=str(headers["ETag"]).strip('"'),
            content_type=headers.get("Content-Type") or DEFAULT_CONTENT_TYPE,
            modified=headers.get("Last-Modified"),
        )
        return ObjectStream(
            _translate_errors(body, self, key),
            info,
            start=start,
            length=info.size if length is None else length,
            # Releases the connection, also when the reader stops early.
            on_close=response.internal_response.close,
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        prefix = validate_prefix(prefix)
        pages = self._container.list_blobs(
            name_starts_with=prefix or None, results_per_page=self._list_page_size
        ).by_page()
        try:
            for page in pages:
                for properties in page:
                    yield self._info(properties.name, properties)
        except ResourceNotFoundError:
            return  # no container yet: no objects
        except AzureError as exc:
            raise self._error("cannot list", exc) from exc

    # Signing -----------------------------------------------------------------------------------

    def signed_url(self, key: str, method: SignedMethod, expires: int) -> SignedURL | None:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        key = validate_key(key)
        method = check_method(method)
        expires = check_expires(expires)
        account_key = getattr(self._service.credential, "account_key", None)
        account_name = self._service.account_name
        if not account_key or not account_name:
            return None
        if method == "PUT":
            self._ensure_container()
            permission = BlobSasPermissions(create=True, write=True)
            headers = {"x-ms-blob-type": "BlockBlob"}
        else:
            permission = BlobSasPermissions(read=True)
            headers = {}
        expires_at = datetime.now(UTC) + timedelta(seconds=expires)
        token = generate_blob_sas(
            account_name=account_name,
            container_name=self.container,
            blob_name=key,
            account_key=account_key,
            permission=permission,
            expiry=expires_at,
            # Tolerate a few minutes of clock skew between us and the storage service.
            start=datetime.now(UTC) - timedelta(minutes=5),
        )
        url = f"{self._container.get_blob_client(key).url}?{token}"
        return SignedURL(url, method, expires_at, headers)

    def describe(self) -> str:
        return f"azure: container {self.container} at {self._service.url}"

    def close(self) -> None:
        self._service.close()


def bounded_blocks(block_size: int, concurrency: int, budget: int) -> tuple[int, int]:
    """`(block size, threads)` for block uploads that hold at most `budget` bytes of blocks,
    `threads + 2` blocks (see `DEFAULT_UPLOAD_BUFFER`). The block shrinks first, down to 1 MiB,
    then the threads; never above the asked size and number, nor Azure's block limit."""
    concurrency = max(concurrency, 1)
    block_size = max(min(block_size, MAX_BLOCK_SIZE), 1)
    fitted = budget // (concurrency + 2)
    if fitted >= block_size:
        return block_size, concurrency
    if fitted >= MIN_BLOCK_SIZE:
        return fitted, concurrency
    block_size = min(block_size, MIN_BLOCK_SIZE)
    return block_size, max(min(concurrency, budget // block_size - 2), 1)


def _translate_errors(
    chunks: Iterator[bytes], adapter: AzureBlobStorage, key: str
) -> Iterator[bytes]:
    from azure.core.exceptions import AzureError

    try:
        yield from chunks
    except AzureError as exc:
        raise adapter._error(f"cannot read {key!r}", exc) from exc
