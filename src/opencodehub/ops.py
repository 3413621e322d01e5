"""Operations endpoints and the request middleware: request ids, access logs, metrics."""

from __future__ import annotations

import random
import time

from fastapi import Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opencodehub.core.logging import bound_context, get_logger
from opencodehub.core.routing import APIRouter, route_template

router = APIRouter(include_in_schema=False)
log = get_logger("opencodehub.http")

REQUESTS = Counter("och_http_requests_total", "HTTP requests served", ["method", "route", "status"])
LATENCY = Histogram(
    "och_http_request_duration_seconds",
    "Time to the response's first byte",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


@router.get("/healthz")
def healthz() -> PlainTextResponse:
    return PlainTextResponse("ok")


@router.get("/readyz")
def readyz(request: Request) -> Response:
    try:
        request.app.state.db.ping()
    except Exception as exc:  # any driver error means not ready
        return JSONResponse({"status": "unavailable", "database": str(exc)[:200]}, 503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _route_label(scope: Scope) -> str:
    template = route_template(scope)
    if template:
        return template
    # Unmatched or raw-ASGI paths (git transport): a coarse label keeps cardinality bounded.
    raw = scope.get("path", "")
    for marker in ("/info/refs", "/git-upload-pack", "/git-receive-pack"):
        if raw.endswith(marker):
            return "{git}" + marker
    return "{unmatched}"


def new_request_id() -> str:
    """32 random hex digits. A request id only has to be unique, not unguessable, and
    `os.urandom` (behind `uuid.uuid4`) releases the interpreter lock for its system call: on
    the event loop's thread, with worker threads running, winning the lock back took about a
    millisecond per request under load."""
    return f"{random.getrandbits(128):032x}"


class RequestContextMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware) so streaming responses pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                state = scope.get("state", {})
                rate = state.get("rate_limit")
                if rate is not None:
                    headers.extend(
                        [
                            (b"x-ratelimit-limit", str(rate.limit).encode()),
                            (b"x-ratelimit-remaining", str(rate.remaining).encode()),
                            (b"x-ratelimit-reset", str(rate.reset_at).encode()),
                            (b"x-ratelimit-used", str(rate.used).encode()),
                            (b"x-ratelimit-resource", b"core"),
                        ]
                    )
                message["headers"] = headers
                elapsed = time.perf_counter() - started
                LATENCY.labels(_route_label(scope)).observe(elapsed)
            await send(message)

        with bound_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                elapsed_ms = (time.perf_counter() - started) * 1000
                REQUESTS.labels(scope["method"], _route_label(scope), str(status)).inc()
                if scope["path"] not in ("/healthz", "/metrics"):
                    log.info(
                        "request",
                        method=scope["method"],
                        path=scope["path"],
                        status=status,
                        ms=round(elapsed_ms, 2),
                    )


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if 0 < len(candidate) <= 64 and candidate.replace("-", "").isalnum():
                return candidate
    return None
