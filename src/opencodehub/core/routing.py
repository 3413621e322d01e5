"""Routers whose routes are analysed when first used, not when their module is imported.

FastAPI analyses an endpoint's signature (its dependencies, body, response model: Pydantic
type adapters for each) in the route's constructor, which runs at import under the route's
decorator. Every OpenCodeHub router is then included into the app (`app.include_router`),
and an included route is served by an *effective context* that FastAPI builds, with an
analysis of its own, the first time a request reaches that router. The decorator's analysis
is never used to serve a request: it cost more than half of the app's import (about 1.5 s of
a 3 s import on a slow machine) and its objects stayed in memory for the life of the process.

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
from fastapi.routing import APIRoute, generate_unique_id

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
    """FastAPI's router with `DeferredAPIRoute` as its routes' class unless told otherwise."""

    def __init__(self, *, route_class: type[APIRoute] = DeferredAPIRoute, **options: Any) -> None:
        super().__init__(route_class=route_class, **options)
