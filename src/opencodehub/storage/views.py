"""Transfers through the app: `GET|HEAD|PUT /-/storage/{key}?expires=…&signature=…`.

These are the local adapter's signed URLs, and the proxied transfer URLs for backends that cannot
sign (`storage.app_url_signer(settings).sign(key, method, expires)`). The signature is the only
credential: it names the key, the method and the expiry time. Bytes stream through the configured
adapter in both directions; nothing is held whole in memory.

`get_storage` / `StorageDep` give routes the app's adapter, built once per app.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Annotated

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from opencodehub.core.routing import APIRouter
from opencodehub.storage.base import (
    InvalidKey,
    InvalidRange,
    ObjectNotFound,
    StorageAdapter,
    validate_key,
)
from opencodehub.storage.factory import app_url_signer, build_storage
from opencodehub.storage.responses import ObjectResponse
from opencodehub.storage.signing import AppURLSigner

router = APIRouter(include_in_schema=False)

_RANGE_RE = re.compile(r"\Abytes=(\d*)-(\d*)\Z")


def get_storage(request: Request) -> StorageAdapter:
    state = request.app.state
    storage = getattr(state, "storage", None)
    if storage is None:
        storage = build_storage(state.settings)
        state.storage = storage
    return storage


def get_url_signer(request: Request) -> AppURLSigner:
    state = request.app.state
    signer = getattr(state, "storage_url_signer", None)
    if signer is None:
        signer = app_url_signer(state.settings)
        state.storage_url_signer = signer
    return signer


StorageDep = Annotated[StorageAdapter, Depends(get_storage)]
SignerDep = Annotated[AppURLSigner, Depends(get_url_signer)]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def _authorized(signer: AppURLSigner, request: Request, key: str) -> bool:
    params = request.query_params
    return signer.verify(
        key, request.method, params.get("expires", ""), params.get("signature", "")
    )


def _parse_range(header: str, size: int) -> tuple[int, int | None] | str | None:
    """A single `bytes=` range as `(start, end)`, None to send everything (absent, or several
    ranges, which HTTP lets us ignore), or "unsatisfiable"."""
    match = _RANGE_RE.match(header.strip())
    if not header or "," in header or match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(size - length, 0), None
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, end


@router.api_route("/-/storage/{key:path}", methods=["GET", "HEAD"])
def download(key: str, request: Request, storage: StorageDep, signer: SignerDep) -> Response:
    if not _authorized(signer, request, key):
        return _error(403, "The link is invalid or has expired.")
    try:
        validate_key(key)
        info = storage.stat(key)
    except (InvalidKey, ObjectNotFound):
        return _error(404, "Not Found")
    headers = {
        "ETag": f'"{info.etag}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=0",
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    byte_range = _parse_range(request.headers.get("range", ""), info.size)
    if byte_range == "unsatisfiable":
        headers["Content-Range"] = f"bytes */{info.size}"
        return _error(416, "Requested range not satisfiable", headers)
    media_type = info.content_type or "application/octet-stream"
    if request.method == "HEAD":
        headers["Content-Length"] = str(info.size)
        return Response(status_code=200, headers=headers, media_type=media_type)
    try:
        stream = storage.get(key, byte_range if isinstance(byte_range, tuple) else None)
    except ObjectNotFound:
        return _error(404, "Not Found")
    except InvalidRange as exc:
        headers["Content-Range"] = f"bytes */{exc.size}"
        return _error(416, "Requested range not satisfiable", headers)
    status = 200
    if byte_range is not None:
        status = 206
        headers["Content-Range"] = f"bytes {stream.start}-{stream.end}/{stream.info.size}"
    return ObjectResponse(stream, status_code=status, headers=headers, media_type=media_type)


@router.put("/-/storage/{key:path}")
async def upload(key: str, request: Request, storage: StorageDep, signer: SignerDep) -> Response:
    if not _authorized(signer, request, key):
        return _error(403, "The link is invalid or has expired.")
    try:
        validate_key(key)
    except InvalidKey:
        return _error(404, "Not Found")
    length = request.headers.get("content-length", "")
    put = partial(
        storage.put,
        key,
        _BlockingBody(request.stream()),
        size=int(length) if length.isdigit() else None,
        content_type=request.headers.get("content-type") or None,
    )
    # The adapter blocks on disk or network: it runs in a worker thread and pulls the body
    # from the event loop chunk by chunk.
    info = await anyio.to_thread.run_sync(put)
    return JSONResponse({"key": info.key, "size": info.size, "etag": info.etag}, 200)


class _BlockingBody:
    """The request body as a blocking iterator, for an adapter running in a worker thread."""

    def __init__(self, body: AsyncIterator[bytes]):
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = anyio.from_thread.run(self._next)
            if chunk is None:
                return
            if chunk:
                yield chunk

    async def _next(self) -> bytes | None:
        try:
            return await self._body.__anext__()
        except StopAsyncIteration:
            return None
