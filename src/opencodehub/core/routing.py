"""Routers whose routes are analysed when first used, not when their module is imported.

FastAPI analyses an endpoint's signature (its dependencies, body, response model: Pydantic
type adapters for each) in the route's constructor, which runs at import under the route's
decorator. Every OpenCodeHub router is then included into the app (`app.include_router`),
and an included route is served by an *effective context* that FastAPI builds, with an
analysis of its own, the first time a request reaches that router. The decorator's analysis
is never used to serve a request: it was about half of the app's import (4.0-4.3 s, without it
2.2-2.5 s, on one machine) and its objects stayed in memory for the life of the process.

`DeferredAPIRoute` keeps the constructor's arguments as plain attributes (what FastAPI reads to
build the effective context) and runs the analysis only when something reads an attribute the
analysis produces (`dependant`, `app`, `body_field`, `response_field`, …), for instance a test
that walks the routes, or a route served without being included. Either way the route ends up
exactly as FastAPI's own constructor leaves it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import fastapi
from fastapi._form_limits import _validate_form_limits
from fastapi.datastructures import Default
from fastapi.responses import JSONResponse
from fastapi.routing import (
    APIRoute,
    _get_scope_effective_route_context,
    _get_scope_included_router,
    _IncludedRouter,
    generate_unique_id,
)
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import Scope

# One lock for every route: analyses are rare (once per route) and short.
_analysis_lock = threading.RLock()


class DeferredAPIRoute(APIRoute):
    """An `APIRoute` that runs FastAPI's analysis of its endpoint on first need."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        self._deferred = (path, endpoint, options)
        # What including the route reads from it; the effective context derives the rest
        # (response model from the return annotation, unique id, description, path regex)
        # from these the way the constructor would.
        self.path = path
        self.endpoint = endpoint
        name = options.get("name")
        self.name = getattr(endpoint, "__name__", type(endpoint).__name__) if name is None else name
        self.methods = {method.upper() for method in options.get("methods") or ["GET"]}
        status_code = options.get("status_code")
        self.status_code = int(status_code) if isinstance(status_code, IntEnum) else status_code
        self.response_model = options.get("response_model", Default(None))
        self.stream_item_type = None
        self.tags = list(options.get("tags") or [])
        self.dependencies = list(options.get("dependencies") or [])
        self.responses = dict(options.get("responses") or {})
        self.callbacks = options.get("callbacks")
        self.include_in_schema = options.get("include_in_schema", True)
        self.form_limits = _validate_form_limits(options.get("form_limits"))
        for option, default in _PLAIN_OPTIONS.items():
            setattr(self, option, options.get(option, default))

    def __getattr__(self, attribute: str) -> Any:
        # Only attributes not set above come here: the ones FastAPI's analysis produces.
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        with _analysis_lock:
            # Taken out first, so that the constructor reading an attribute it has not set
            # yet fails as it would on a plain APIRoute instead of starting over; a second
            # thread waits on the lock and then finds the analysis done.
            deferred = self.__dict__.pop("_deferred", None)
            if deferred is not None:
                path, endpoint, options = deferred
                APIRoute.__init__(self, path, endpoint, **options)
        return object.__getattribute__(self, attribute)


_PLAIN_OPTIONS: dict[str, Any] = {
    "summary": None,
    "description": None,
    "response_description": "Successful Response",
    "deprecated": None,
    "operation_id": None,
    "response_model_include": None,
    "response_model_exclude": None,
    "response_model_by_alias": True,
    "response_model_exclude_unset": False,
    "response_model_exclude_defaults": False,
    "response_model_exclude_none": False,
    "response_class": Default(JSONResponse),
    "dependency_overrides_provider": None,
    "openapi_extra": None,
    "generate_unique_id_function": Default(generate_unique_id),
    "strict_content_type": Default(True),
    "max_body_size": None,
}


class APIRouter(fastapi.APIRouter):
    """FastAPI's router with `DeferredAPIRoute` as its routes' class unless told otherwise, and
    a shortcut past its routes for a request none of them can match.

    FastAPI matches a request against the routes of each included router one by one, so a
    request for a repository's page tried every REST route first (a few hundred regular
    expressions, 2-3 ms of CPU on a slow machine). A router whose every route starts with a
    literal path segment (`/user`, `/repos/...`, `/settings/...`) now answers "no match" in
    one set lookup when the request's first segment (after the inclusion's prefix) is none of
    them. Routers with a route whose first segment is a parameter (`/{owner}/{repo}`) are
    matched as before."""

    def __init__(self, *, route_class: type[APIRoute] = DeferredAPIRoute, **options: Any) -> None:
        super().__init__(route_class=route_class, **options)
        self._first_segments: tuple[tuple[int, int], frozenset[str] | None] | None = None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        included = _get_scope_included_router(scope)
        if included is not None and included.original_router is self:
            prefix = included.include_context.prefix
            path = get_route_path(scope)
            rest = path[len(prefix) :]
            if not path.startswith(prefix) or (rest and not rest.startswith("/")):
                return Match.NONE, {}
            segments = self.first_segments()
            if segments is not None and _first_segment(rest) not in segments:
                return Match.NONE, {}
        return super().matches(scope)

    def first_segments(self) -> frozenset[str] | None:
        """The literal first path segments of this router's routes, or None when one of them
        starts with a parameter (then any path may match)."""
        # FastAPI counts the routes it adds; Starlette's `mount` adds one without counting.
        version = (self._get_routes_version(), len(self.routes))
        if self._first_segments is None or self._first_segments[0] != version:
            self._first_segments = (version, _literal_first_segments(self.routes))
        return self._first_segments[1]


def route_template(scope: Scope) -> str | None:
    """The path template of the route that answered (`/api/v3/repos/{owner}/{repo}`), with the
    prefixes it was included under; None when no route matched."""
    context = _get_scope_effective_route_context(scope)
    template = getattr(context, "path_format", None)
    if template:
        return str(template)
    path = getattr(scope.get("route"), "path", None)
    return str(path) if path else None


def _first_segment(path: str) -> str:
    return path.removeprefix("/").split("/", 1)[0]


def _literal_first_segments(routes: list[BaseRoute]) -> frozenset[str] | None:
    segments: set[str] = set()
    for route in routes:
        if isinstance(route, _IncludedRouter):  # its prefix, or its own routes' segments
            nested, prefix = route.original_router, route.include_context.prefix
            if prefix:
                found: frozenset[str] | None = frozenset({_first_segment(prefix)})
            elif isinstance(nested, APIRouter):
                found = nested.first_segments()
            else:
                found = _literal_first_segments(nested.routes)
        elif isinstance(route, Mount) and not route.path.strip("/"):
            return None  # mounted at the root: any path may reach it
        elif isinstance(getattr(route, "path", None), str):
            found = frozenset({_first_segment(route.path)})  # type: ignore[attr-defined]
        else:
            return None  # a host route or another kind that does not match by path
        if found is None or any("{" in segment for segment in found):
            return None
        segments |= found
    return frozenset(segments)
