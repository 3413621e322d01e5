"""Google Drive (API v3) through plain HTTP requests, authenticated as a service account.

Each object is one file in the folder `OCH_STORAGE_GDRIVE_FOLDER_ID`, named by its key (Drive
names may contain `/`). An object that fits in one chunk goes up in one multipart request; a
larger one through a resumable upload session, chunk by chunk, so memory holds two chunks at
most. A failed upload cancels its session: Drive creates the file, or replaces the content of an
existing one, only when the last chunk arrives, so nothing partial is ever visible.

Drive cannot sign URLs: `signed_url` answers None and the app proxies transfers.

The OAuth token comes from the `token_uri` named in the service-account JSON file (Google's is
`https://oauth2.googleapis.com/token`); the tests point it, and `OCH_STORAGE_GDRIVE_API_URL`, at a
local stand-in for Drive.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx

from opencodehub.storage.base import (
    DEFAULT_CHUNK_SIZE,
    ByteRange,
    ObjectInfo,
    ObjectNotFound,
    ObjectStream,
    SignedMethod,
    SignedURL,
    Source,
    StorageAdapter,
    StorageError,
    check_method,
    exact_length,
    iter_byte_blocks,
    iter_source,
    resolve_range,
    span,
    validate_key,
    validate_prefix,
)

SCOPES = ("https://www.googleapis.com/auth/drive",)
CHUNK_GRANULARITY = 256 * 1024  # Drive wants every chunk but the last in multiples of 256 KiB
FOLDER_MIME_TYPE = "application/vnd.google-apps.folder"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
FILE_FIELDS = "id,name,size,md5Checksum,mimeType,modifiedTime"
_RETRY_STATUSES = {429, 500, 502, 503, 504}
_RANGE_RE = re.compile(r"bytes=0-(\d+)")


class GoogleDriveStorage(StorageAdapter):
    backend = "gdrive"

    def __init__(
        self,
        credentials_file: str,
        folder_id: str,
        *,
        api_url: str = "https://www.googleapis.com",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        list_page_size: int = 1000,
        timeout: float = 60.0,
        retries: int = 3,
    ):
        from google.oauth2 import service_account

        if not credentials_file:
            raise StorageError(
                "gdrive: no service-account credentials file (OCH_STORAGE_GDRIVE_CREDENTIALS_FILE)"
            )
        if not folder_id:
            raise StorageError("gdrive: no folder id configured (OCH_STORAGE_GDRIVE_FOLDER_ID)")
        try:
            self._credentials = service_account.Credentials.from_service_account_file(
                credentials_file, scopes=list(SCOPES)
            )
        except (OSError, ValueError, KeyError) as exc:
            raise StorageError(
                f"gdrive: cannot read service-account credentials {credentials_file!r}: {exc}"
            ) from exc
        self.folder_id = folder_id
        self.api_url = api_url.rstrip("/")
        self._chunk_size = max(
            CHUNK_GRANULARITY, chunk_size // CHUNK_GRANULARITY * CHUNK_GRANULARITY
        )
        self._list_page_size = max(1, min(list_page_size, 1000))
        self._retries = retries
        self._token_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=self.api_url,
            timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=False,
        )

    # HTTP --------------------------------------------------------------------------------------

    def _token(self, force: bool = False) -> str:
        from google.auth.exceptions import GoogleAuthError
        from google.auth.transport.requests import Request

        with self._token_lock:
            if force or not self._credentials.valid:
                try:
                    self._credentials.refresh(Request())
                except GoogleAuthError as exc:
                    raise StorageError(f"gdrive: cannot get an OAuth token: {exc}") from exc
            return str(self._credentials.token)

    def _request(
        self,
        method: str,
        url: str,
        *,
        stream: bool = False,
        retry: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """One API call with the bearer token; a 401 refreshes the token once, and idempotent
        calls are retried with backoff on 429/5xx and transport errors, as Google advises."""
        headers = dict(kwargs.pop("headers", None) or {})
        attempts = self._retries + 1 if retry else 1
        refreshed = False
        attempt = 0
        while True:
            headers["Authorization"] = f"Bearer {self._token(force=refreshed)}"
            request = self._http.build_request(method, url, headers=headers, **kwargs)
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                attempt += 1
                if attempt >= attempts:
                    raise StorageError(f"gdrive: {method} {url}: {exc}") from exc
                time.sleep(min(2**attempt * 0.25, 4))
                continue
            if response.status_code == 401 and not refreshed:
                response.close()
                refreshed = True
                continue
            if response.status_code in _RETRY_STATUSES and attempt + 1 < attempts:
                response.close()
                attempt += 1
                time.sleep(min(2**attempt * 0.25, 4))
                continue
            return response

    def _raise_for(self, response: httpx.Response, action: str) -> None:
        if response.is_success:
            return
        if response.is_stream_consumed is False:
            response.read()
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise StorageError(f"gdrive: {action}: HTTP {response.status_code}: {message}")

    # Lookups -----------------------------------------------------------------------------------

    def _files_named(self, key: str) -> list[dict[str, Any]]:
        """The files in our folder named `key`, newest first (a race can make two)."""
        query = f"name = {_quote(key)} and {_quote(self.folder_id)} in parents and trashed = false"
        files = list(self._query(query, page_size=100))
        # Compare names ourselves: what Drive's `=` does with case and Unicode is not ours to
        # rely on, and keys are case-sensitive.
        files = [item for item in files if item.get("name") == key]
        files.sort(key=lambda item: item.get("modifiedTime", ""), reverse=True)
        return files

    def _query(self, query: str, *, page_size: int) -> Iterator[dict[str, Any]]:
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {
                "q": query,
                "pageSize": page_size,
                "fields": f"nextPageToken,files({FILE_FIELDS})",
                "orderBy": "name",
                "spaces": "drive",
                "supportsAllDrives": "true",
                "includeItemsFromAllDrives": "true",
            }
            if page_token:
                params["pageToken"] = page_token
            response = self._request("GET", "/drive/v3/files", params=params)
            self._raise_for(response, "cannot list files")
            body = response.json()
            yield from body.get("files", ())
            page_token = body.get("nextPageToken")
            if not page_token:
                return

    def _find(self, key: str) -> dict[str, Any]:
        files = self._files_named(key)
        if not files:
            raise ObjectNotFound(key)
        return files[0]

    def _info(self, key: str, item: dict[str, Any]) -> ObjectInfo:
        modified = item.get("modifiedTime")
        return ObjectInfo(
            key=key,
            size=int(item.get("size") or 0),
            etag=str(item.get("md5Checksum") or item.get("id", "")),
            content_type=item.get("mimeType") or DEFAULT_CONTENT_TYPE,
            modified=datetime.fromisoformat(modified.replace("Z", "+00:00")) if modified else None,
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
        key = validate_key(key)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        existing = self._files_named(key)
        # Replace the newest file's content in place (a new revision, atomic on Drive's side)
        # rather than creating a second file with the same name.
        file_id = existing[0]["id"] if existing else None
        metadata: dict[str, Any] = {"mimeType": content_type}
        if file_id is None:
            metadata.update(name=key, parents=[self.folder_id])
        chunks = exact_length(iter_source(stream), size, f"gdrive: {key!r}")
        blocks = iter_byte_blocks(chunks, self._chunk_size)  # httpx sends bytes
        head = [block for _, block in zip(range(2), blocks, strict=False)]
        if len(head) < 2:
            item = self._upload_multipart(file_id, metadata, head.pop() if head else b"")
        else:
            item = self._upload_resumable(file_id, metadata, head, blocks)
        for duplicate in existing[1:]:
            self._delete_file(duplicate["id"])
        return self._info(key, item)

    def _upload_path(self, file_id: str | None) -> tuple[str, str]:
        if file_id is None:
            return "POST", "/upload/drive/v3/files"
        return "PATCH", f"/upload/drive/v3/files/{file_id}"

    def _upload_multipart(
        self, file_id: str | None, metadata: dict[str, Any], data: bytes
    ) -> dict[str, Any]:
        boundary = secrets.token_hex(16)
        while boundary.encode() in data:
            boundary = secrets.token_hex(16)
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
                json.dumps(metadata).encode(),
                f"\r\n--{boundary}\r\nContent-Type: {metadata['mimeType']}\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        method, path = self._upload_path(file_id)
        response = self._request(
            method,
            path,
            params={"uploadType": "multipart", "fields": FILE_FIELDS, "supportsAllDrives": "true"},
            headers={"Content-Type": f"multipart/related; boundary={boundary}"},
            content=body,
            # A retried create could make two files; a failed one made none.
            retry=file_id is not None,
        )
        self._raise_for(response, "cannot upload")
        return response.json()

    def _upload_resumable(
        self,
        file_id: str | None,
        metadata: dict[str, Any],
        head: list[bytes],
        rest: Iterator[bytes],
    ) -> dict[str, Any]:
        method, path = self._upload_path(file_id)
        response = self._request(
            method,
            path,
            params={"uploadType": "resumable", "fields": FILE_FIELDS, "supportsAllDrives": "true"},
            headers={
                "Content-Type": "application/json; charset=UTF-8",
                "X-Upload-Content-Type": metadata["mimeType"],
            },
            content=json.dumps(metadata).encode(),
        )
        self._raise_for(response, "cannot start a resumable upload")
        session = response.headers.get("location")
        if not session:
            raise StorageError("gdrive: the resumable upload answered without a session URI")
        try:
            return self._send_chunks(session, head, rest)
        except BaseException:
            self._cancel_session(session)
            raise

    def _send_chunks(
        self, session: str, head: list[bytes], rest: Iterator[bytes]
    ) -> dict[str, Any]:
        offset = 0
        current = head.pop(0)
        upcoming: bytes | None = head.pop(0)
        while True:
            is_last = upcoming is None
            # The total is declared with the last chunk, which is what tells Drive to finish.
            total = str(offset + len(current)) if is_last else "*"
            response = self._request(
                "PUT",
                session,
                headers={"Content-Range": f"bytes {offset}-{offset + len(current) - 1}/{total}"},
                content=current,
                retry=False,
            )
            if response.status_code in (200, 201):
                return response.json()
            if response.status_code != 308:
                self._raise_for(response, "a resumable upload chunk was refused")
                raise StorageError(f"gdrive: unexpected HTTP {response.status_code} on upload")
            # Drive may keep only part of a chunk (308 with a shorter Range): send the rest.
            received = _received_bytes(response)
            if not offset <= received <= offset + len(current):
                raise StorageError("gdrive: the upload session reports a range we did not send")
            current = current[received - offset :]
            offset = received
            if current:
                continue
            if upcoming is None:
                raise StorageError("gdrive: the upload session did not finish after the last byte")
            current, upcoming = upcoming, next(rest, None)

    def _cancel_session(self, session: str) -> None:
        # Best effort: an abandoned session expires on its own after a week.
        with contextlib.suppress(Exception):
            self._request("DELETE", session, retry=False).close()

    def delete(self, key: str) -> None:
        key = validate_key(key)
        for item in self._files_named(key):
            self._delete_file(item["id"])

    def _delete_file(self, file_id: str) -> None:
        response = self._request(
            "DELETE", f"/drive/v3/files/{file_id}", params={"supportsAllDrives": "true"}
        )
        if response.status_code == 404:
            return
        self._raise_for(response, f"cannot delete file {file_id}")

    # Reads -------------------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo:
        key = validate_key(key)
        return self._info(key, self._find(key))

    def get(self, key: str, byte_range: ByteRange | None = None) -> ObjectStream:
        key = validate_key(key)
        item = self._find(key)
        info = self._info(key, item)
        resolved = resolve_range(byte_range, info.size)
        headers = {}
        if resolved is not None:
            headers["Range"] = f"bytes={resolved[0]}-{resolved[1]}"
        response = self._request(
            "GET",
            f"/drive/v3/files/{item['id']}",
            params={"alt": "media", "supportsAllDrives": "true"},
            headers=headers,
            stream=True,
        )
        if response.status_code == 404:
            response.close()
            raise ObjectNotFound(key)
        if response.status_code not in (200, 206) or (
            resolved is not None and response.status_code != 206 and resolved[0] != 0
        ):
            response.read()
            response.close()
            self._raise_for(response, f"cannot read {key!r}")
            raise StorageError(f"gdrive: {key!r}: the range was not honoured")
        start, length = span(resolved, info.size)
        return ObjectStream(
            _limited(response.iter_bytes(1024 * 1024), length),
            info,
            start=start,
            length=length,
            on_close=response.close,
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        # Drive's `name contains` matches word prefixes, not string prefixes, so the folder is
        # listed page by page and filtered here.
        query = f"{_quote(self.folder_id)} in parents and trashed = false"
        for item in self._query(query, page_size=self._list_page_size):
            name = item.get("name", "")
            if item.get("mimeType") == FOLDER_MIME_TYPE or not name.startswith(prefix):
                continue
            yield self._info(name, item)

    def signed_url(self, key: str, method: SignedMethod, expires: int) -> SignedURL | None:
        validate_key(key)
        check_method(method)
        return None

    def describe(self) -> str:
        return f"gdrive: folder {self.folder_id} at {self.api_url}"

    def close(self) -> None:
        self._http.close()


def _quote(value: str) -> str:
    """A string literal for Drive's `q` language: backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _received_bytes(response: httpx.Response) -> int:
    match = _RANGE_RE.fullmatch(response.headers.get("range", "").strip())
    return int(match.group(1)) + 1 if match else 0


def _limited(chunks: Iterator[bytes], length: int) -> Iterator[bytes]:
    """Stop at `length` bytes, even if a server ignores Range and sends the whole file."""
    remaining = length
    for chunk in chunks:
        if remaining <= 0:
            return
        if len(chunk) > remaining:
            chunk = chunk[:remaining]
        remaining -= len(chunk)
        yield chunk
