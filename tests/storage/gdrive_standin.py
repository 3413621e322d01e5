"""A stand-in for Google Drive: no real Drive can run in the tests, so this small server speaks
the part of the Drive API v3 wire protocol the adapter uses, written from Google's public docs
("Upload file data", "Search for files and folders", the `files` resource reference, and the
service-account OAuth 2.0 flow):

- `POST /token`: the JWT-bearer grant (`urn:ietf:params:oauth:grant-type:jwt-bearer`); the
  assertion is checked against the service account's public key, audience and scope.
- `GET /drive/v3/files` with `q` (`name = '…'`, `'…' in parents`, `trashed = false`, `mimeType`
  comparisons, joined by `and`; quotes and backslashes escaped with a backslash), `pageSize`,
  `pageToken`, `orderBy=name`, `fields` (partial responses, e.g. `nextPageToken,files(id,name)`).
- `POST /drive/v3/files` (metadata only, e.g. a folder), `GET /drive/v3/files/{id}` (metadata,
  or the content with `alt=media`, honouring a `Range` header with 206/416),
  `DELETE /drive/v3/files/{id}` (204).
- `POST /upload/drive/v3/files` and `PATCH /upload/drive/v3/files/{id}` with
  `uploadType=multipart` (a `multipart/related` body: JSON metadata, then the media) or
  `uploadType=resumable` (200 with the session URI in `Location`), then `PUT {session}` with
  `Content-Range: bytes a-b/total|*` answering 308 + `Range: bytes=0-n` until the last chunk
  (200 with the file), every chunk but the last a multiple of 256 KiB; `DELETE {session}` cancels
  (499). A file appears, or an existing file's content changes, only when an upload completes.

Every API call needs a bearer token issued by `/token`; errors use Google's JSON error shape.
`max_chunk_acceptance` makes the server keep only part of each chunk, as Drive may.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

GRANULARITY = 256 * 1024
FOLDER_MIME_TYPE = "application/vnd.google-apps.folder"
DEFAULT_FILE_FIELDS = ("kind", "id", "name", "mimeType")


@dataclass
class DriveFile:
    id: str
    name: str
    mime_type: str
    parents: list[str]
    path: Path | None = None
    size: int = 0
    md5: str = ""
    created: str = ""
    modified: str = ""
    trashed: bool = False

    def resource(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": "drive#file",
            "id": self.id,
            "name": self.name,
            "mimeType": self.mime_type,
            "parents": list(self.parents),
            "createdTime": self.created,
            "modifiedTime": self.modified,
            "trashed": self.trashed,
        }
        if self.mime_type != FOLDER_MIME_TYPE:
            data["size"] = str(self.size)  # int64 travels as a string in Google's JSON
            data["md5Checksum"] = self.md5
        return data


@dataclass
class UploadSession:
    id: str
    file_id: str | None
    metadata: dict[str, Any]
    path: Path
    received: int = 0
    md5: Any = field(default_factory=lambda: hashlib.md5(usedforsecurity=False))
    fields: str = ""


class DriveError(Exception):
    def __init__(self, status: int, reason: str, message: str):
        self.status, self.reason, self.message = status, reason, message


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _error_response(exc: DriveError) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "code": exc.status,
                "message": exc.message,
                "errors": [{"domain": "global", "reason": exc.reason, "message": exc.message}],
            }
        },
        status_code=exc.status,
    )


# The `q` language ------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<op>!=|=)|(?P<word>[A-Za-z]+))")


def _tokenize(query: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(query):
        if query[position:].strip() == "":
            break
        match = _TOKEN_RE.match(query, position)
        if match is None:
            raise DriveError(400, "invalid", "Invalid Value")
        position = match.end()
        if match.group("string") is not None:
            tokens.append(("string", re.sub(r"\\(.)", r"\1", match.group("string")[1:-1])))
        elif match.group("op") is not None:
            tokens.append(("op", match.group("op")))
        else:
            tokens.append(("word", match.group("word")))
    return tokens


def _parse_query(query: str) -> list[Any]:
    """The query as a list of predicates on a DriveFile, all of which must hold."""
    tokens = _tokenize(query)
    predicates: list[Any] = []
    index = 0

    def take() -> tuple[str, str]:
        nonlocal index
        if index >= len(tokens):
            raise DriveError(400, "invalid", "Invalid Value")
        index += 1
        return tokens[index - 1]

    while index < len(tokens):
        first = take()
        if first[0] == "string":
            if take() != ("word", "in") or take() != ("word", "parents"):
                raise DriveError(400, "invalid", "Invalid Value")
            parent = first[1]
            predicates.append(lambda item, parent=parent: parent in item.parents)
        elif first == ("word", "name") or first == ("word", "mimeType"):
            operator = take()
            value = take()
            if operator[0] != "op" or value[0] != "string":
                raise DriveError(400, "invalid", "Invalid Value")
            attribute = "name" if first[1] == "name" else "mime_type"
            wanted = operator[1] == "="
            predicates.append(
                lambda item, a=attribute, v=value[1], w=wanted: (getattr(item, a) == v) is w
            )
        elif first == ("word", "trashed"):
            if take() != ("op", "=") or (value := take())[1] not in ("true", "false"):
                raise DriveError(400, "invalid", "Invalid Value")
            flag = value[1] == "true"
            predicates.append(lambda item, flag=flag: item.trashed is flag)
        else:
            raise DriveError(400, "invalid", "Invalid Value")
        if index < len(tokens) and take() != ("word", "and"):
            raise DriveError(400, "invalid", "Invalid Value")
    return predicates


def _parse_fields(spec: str) -> dict[str, Any]:
    """`a,b,files(c,d)` as {"a": {}, "b": {}, "files": {"c": {}, "d": {}}}."""
    result: dict[str, Any] = {}
    stack = [result]
    name = ""
    for char in spec + ",":
        if char in ",()":
            if name.strip():
                stack[-1][name.strip()] = {}
            if char == "(":
                stack.append(stack[-1][name.strip()])
            elif char == ")":
                stack.pop()
            name = ""
        else:
            name += char
    return result


def _select(data: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    selected: dict[str, Any] = {}
    for name, nested in fields.items():
        if name not in data:
            continue
        value = data[name]
        if nested and isinstance(value, list):
            value = [_select(item, nested) for item in value]
        selected[name] = value
    return selected


# The server ------------------------------------------------------------------------------------


class DriveStandIn:
    def __init__(
        self,
        *,
        public_key_pem: bytes,
        client_email: str,
        max_chunk_acceptance: int | None = None,
    ):
        self.public_key_pem = public_key_pem
        self.client_email = client_email
        self.max_chunk_acceptance = max_chunk_acceptance
        self.root = Path(tempfile.mkdtemp(prefix="drive-standin-"))
        self.files: dict[str, DriveFile] = {}
        self.sessions: dict[str, UploadSession] = {}
        self.tokens: set[str] = set()
        self.cancelled_sessions = 0
        self.lock = threading.Lock()
        self.base_url = ""
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/token", self.token, methods=["POST"]),
                Route("/drive/v3/files", self.files_collection, methods=["GET", "POST"]),
                Route("/drive/v3/files/{file_id}", self.file_item, methods=["GET", "DELETE"]),
                Route(
                    "/upload/drive/v3/files",
                    self.upload_collection,
                    methods=["POST", "PUT", "DELETE"],
                ),
                Route(
                    "/upload/drive/v3/files/{file_id}",
                    self.upload_item,
                    methods=["PATCH", "PUT", "DELETE"],
                ),
            ],
            exception_handlers={DriveError: self._drive_error},
        )

    async def _drive_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DriveError)
        return _error_response(exc)

    # Life cycle --------------------------------------------------------------------------------

    def start(self, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the Drive stand-in did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def create_folder(self, name: str) -> str:
        folder = DriveFile(
            id=secrets.token_urlsafe(12),
            name=name,
            mime_type=FOLDER_MIME_TYPE,
            parents=["root"],
            created=_now(),
            modified=_now(),
        )
        self.files[folder.id] = folder
        return folder.id

    # OAuth -------------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            claims = jwt.decode(
                str(form.get("assertion", "")),
                self.public_key_pem,
                algorithms=["RS256"],
                # google-auth always names Google's token endpoint as the audience, wherever
                # token_uri points; Google requires exactly that value.
                audience="https://oauth2.googleapis.com/token",
                issuer=self.client_email,
            )
        except jwt.PyJWTError as exc:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": str(exc)}, status_code=400
            )
        if "https://www.googleapis.com/auth/drive" not in str(claims.get("scope", "")).split():
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return JSONResponse({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def _authorize(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens:
            raise DriveError(401, "authError", "Invalid Credentials")

    # Metadata ----------------------------------------------------------------------------------

    def _file(self, file_id: str) -> DriveFile:
        item = self.files.get(file_id)
        if item is None or item.trashed:
            raise DriveError(404, "notFound", f"File not found: {file_id}.")
        return item

    def _render(self, item: DriveFile, fields: str) -> dict[str, Any]:
        spec = _parse_fields(fields) if fields else {key: {} for key in DEFAULT_FILE_FIELDS}
        return _select(item.resource(), spec)

    async def files_collection(self, request: Request) -> Response:
        self._authorize(request)
        params = request.query_params
        if request.method == "POST":
            metadata = await request.json()
            item = DriveFile(
                id=secrets.token_urlsafe(12),
                name=metadata.get("name", "Untitled"),
                mime_type=metadata.get("mimeType", "application/octet-stream"),
                parents=list(metadata.get("parents", ["root"])),
                created=_now(),
                modified=_now(),
            )
            self.files[item.id] = item
            return JSONResponse(self._render(item, params.get("fields", "")))
        predicates = _parse_query(params.get("q", ""))
        page_size = int(params.get("pageSize", "100"))
        if not 1 <= page_size <= 1000:
            raise DriveError(400, "invalid", "Invalid value for pageSize")
        matches = [item for item in self.files.values() if all(p(item) for p in predicates)]
        if params.get("orderBy", "") == "name":
            matches.sort(key=lambda item: item.name)
        elif params.get("orderBy", ""):
            raise DriveError(400, "invalid", "Invalid Value")
        offset = 0
        if params.get("pageToken"):
            try:
                offset = int(base64.urlsafe_b64decode(params["pageToken"]).decode())
            except ValueError:
                raise DriveError(400, "invalid", "Invalid Value") from None
        page = matches[offset : offset + page_size]
        body: dict[str, Any] = {
            "kind": "drive#fileList",
            "incompleteSearch": False,
            "files": [item.resource() for item in page],
        }
        if offset + page_size < len(matches):
            token = base64.urlsafe_b64encode(str(offset + page_size).encode()).decode()
            body["nextPageToken"] = token
        fields = params.get("fields", "")
        spec = (
            _parse_fields(fields)
            if fields
            else {
                "kind": {},
                "incompleteSearch": {},
                "nextPageToken": {},
                "files": {key: {} for key in DEFAULT_FILE_FIELDS},
            }
        )
        return JSONResponse(_select(body, spec))

    async def file_item(self, request: Request) -> Response:
        self._authorize(request)
        item = self._file(request.path_params["file_id"])
        if request.method == "DELETE":
            with self.lock:
                self.files.pop(item.id, None)
            if item.path is not None:
                item.path.unlink(missing_ok=True)
            return Response(status_code=204)
        if request.query_params.get("alt") != "media":
            return JSONResponse(self._render(item, request.query_params.get("fields", "")))
        return self._media(item, request.headers.get("range", ""))

    def _media(self, item: DriveFile, range_header: str) -> Response:
        if item.path is None:
            raise DriveError(403, "fileNotDownloadable", "Only files with binary content")
        start, end, status = 0, item.size - 1, 200
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{item.md5}"'}
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
        if match:
            start = int(match.group(1))
            if start >= item.size:
                headers["Content-Range"] = f"bytes */{item.size}"
                return Response(status_code=416, headers=headers)
            end = min(int(match.group(2)), item.size - 1) if match.group(2) else item.size - 1
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{item.size}"
        headers["Content-Length"] = str(end - start + 1)
        path = item.path

        def chunks() -> Any:
            with open(path, "rb") as handle:
                handle.seek(start)
                remaining = end - start + 1
                while remaining > 0:
                    chunk = handle.read(min(256 * 1024, remaining))
                    if not chunk:
                        return
                    remaining -= len(chunk)
                    yield chunk

        return StreamingResponse(
            chunks(), status_code=status, headers=headers, media_type=item.mime_type
        )

    # Uploads -----------------------------------------------------------------------------------

    async def upload_collection(self, request: Request) -> Response:
        return await self._upload(request, None)

    async def upload_item(self, request: Request) -> Response:
        return await self._upload(request, request.path_params["file_id"])

    async def _upload(self, request: Request, file_id: str | None) -> Response:
        self._authorize(request)
        params = request.query_params
        if "upload_id" in params:
            return await self._session_request(request, params["upload_id"])
        if file_id is not None:
            self._file(file_id)
        upload_type = params.get("uploadType", "")
        if upload_type == "multipart":
            return await self._multipart(request, file_id)
        if upload_type == "resumable":
            metadata = json.loads(await request.body() or b"{}")
            if request.headers.get("x-upload-content-type"):
                metadata.setdefault("mimeType", request.headers["x-upload-content-type"])
            session = UploadSession(
                id=secrets.token_urlsafe(16),
                file_id=file_id,
                metadata=metadata,
                path=self.root / f"session-{secrets.token_hex(8)}",
                fields=params.get("fields", ""),
            )
            session.path.touch()
            self.sessions[session.id] = session
            location = (
                f"{self.base_url}{request.url.path}?uploadType=resumable&upload_id={session.id}"
            )
            return Response(status_code=200, headers={"Location": location})
        raise DriveError(400, "invalid", f"Invalid value for uploadType: {upload_type!r}")

    async def _multipart(self, request: Request, file_id: str | None) -> Response:
        content_type = request.headers.get("content-type", "")
        match = re.search(r'boundary="?([^";]+)"?', content_type)
        if not content_type.startswith("multipart/related") or match is None:
            raise DriveError(400, "badContent", "Expected a multipart/related body")
        boundary = match.group(1).encode()
        body = await request.body()
        parts = body.split(b"--" + boundary)
        # preamble, metadata part, media part, closing "--\r\n"
        if len(parts) != 4 or not parts[3].startswith(b"--"):
            raise DriveError(400, "badContent", "Malformed multipart body")
        metadata_part, media_part = parts[1], parts[2]
        _, _, metadata_json = metadata_part.partition(b"\r\n\r\n")
        media_headers, _, media = media_part.partition(b"\r\n\r\n")
        media = media.removesuffix(b"\r\n")
        metadata = json.loads(metadata_json)
        media_type = re.search(rb"(?i)content-type:\s*([^\r\n]+)", media_headers)
        if media_type:
            metadata.setdefault("mimeType", media_type.group(1).decode())
        path = self.root / f"blob-{secrets.token_hex(8)}"
        path.write_bytes(media)
        item = self._commit(
            file_id,
            metadata,
            path,
            len(media),
            hashlib.md5(media, usedforsecurity=False).hexdigest(),
        )
        return JSONResponse(self._render(item, request.query_params.get("fields", "")))

    def _commit(
        self, file_id: str | None, metadata: dict[str, Any], path: Path, size: int, md5: str
    ) -> DriveFile:
        with self.lock:
            if file_id is None:
                item = DriveFile(
                    id=secrets.token_urlsafe(12),
                    name=metadata.get("name", "Untitled"),
                    mime_type=metadata.get("mimeType", "application/octet-stream"),
                    parents=list(metadata.get("parents", ["root"])),
                    created=_now(),
                )
                self.files[item.id] = item
            else:
                item = self._file(file_id)
                if "mimeType" in metadata:
                    item.mime_type = metadata["mimeType"]
            old_path = item.path
            item.path, item.size, item.md5, item.modified = path, size, md5, _now()
        if old_path is not None:
            old_path.unlink(missing_ok=True)
        return item

    async def _session_request(self, request: Request, upload_id: str) -> Response:
        session = self.sessions.get(upload_id)
        if session is None:
            raise DriveError(404, "notFound", "Upload session not found")
        if request.method == "DELETE":
            self.sessions.pop(upload_id, None)
            session.path.unlink(missing_ok=True)
            self.cancelled_sessions += 1
            return Response(status_code=499)
        if request.method != "PUT":
            raise DriveError(405, "methodNotAllowed", "Use PUT on an upload session")
        content_range = request.headers.get("content-range", "")
        match = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", content_range.strip())
        if match is None:
            raise DriveError(400, "badRequest", f"Invalid Content-Range {content_range!r}")
        first, last, total_text = match.groups()
        total = None if total_text == "*" else int(total_text)
        if first is not None:
            first_byte, last_byte = int(first), int(last)
            if first_byte != session.received or last_byte < first_byte:
                raise DriveError(400, "badRequest", "Content-Range does not continue the upload")
            length = last_byte - first_byte + 1
            is_last = total is not None and last_byte + 1 == total
            if not is_last and length % GRANULARITY:
                raise DriveError(400, "badRequest", "Chunk size must be a multiple of 256 KiB")
            keep = length
            if self.max_chunk_acceptance is not None and not is_last:
                keep = min(length, self.max_chunk_acceptance)
            written = 0
            with open(session.path, "ab") as handle:
                async for piece in request.stream():
                    piece = piece[: max(keep - written, 0)]
                    if piece:
                        handle.write(piece)
                        session.md5.update(piece)
                        written += len(piece)
            if written < keep:
                raise DriveError(400, "badRequest", "The body is shorter than Content-Range")
            session.received += written
        if total is not None and session.received == total:
            self.sessions.pop(upload_id, None)
            item = self._commit(
                session.file_id,
                session.metadata,
                session.path,
                session.received,
                session.md5.hexdigest(),
            )
            return JSONResponse(self._render(item, session.fields))
        headers = {}
        if session.received:
            headers["Range"] = f"bytes=0-{session.received - 1}"
        return Response(status_code=308, headers=headers)

    # Inspection for the tests ------------------------------------------------------------------

    def live_files(self, parent: str) -> list[DriveFile]:
        return [item for item in self.files.values() if parent in item.parents]
