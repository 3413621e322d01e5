"""Deferred routes serve and describe themselves exactly as FastAPI's own routes do."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import fastapi
import pytest
from fastapi import Body, Depends, FastAPI, Query
from fastapi.responses import PlainTextResponse, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from opencodehub import app as app_module
from opencodehub.config import Settings
from opencodehub.core.routing import APIRouter, DeferredAPIRoute
from tests.conftest import database_with_tables


class Item(BaseModel):
    name: str
    size: int = 0


class PublicItem(BaseModel):
    name: str


def _caller(x_caller: str = fastapi.Header("anonymous")) -> str:
    return x_caller


def _routes(router: fastapi.APIRouter) -> None:
    @router.get("/items/{item_id}")
    def read_item(item_id: int, verbose: bool = Query(False)) -> Item:
        """Read one item.

        \f
        Not in the description."""
        return Item(name=f"item-{item_id}", size=item_id if verbose else 0)

    @router.post("/items", status_code=201, response_model=PublicItem)
    async def create_item(item: Item, caller: str = Depends(_caller)) -> Any:
        return {"name": f"{item.name} by {caller}", "secret": "dropped"}

    @router.put("/items/{item_id}/size")
    def resize(item_id: int, size: int = Body(embed=True)) -> dict[str, int]:
        return {"id": item_id, "size": size}

    @router.get("/plain", response_class=PlainTextResponse)
    def plain() -> str:
        return "plain text"

    @router.get("/raw")
    def raw() -> Response:
        return Response(b"raw", media_type="application/octet-stream")

    @router.delete("/items/{item_id}", status_code=204)
    def delete(item_id: int) -> None:
        return None


def _app(router: fastapi.APIRouter) -> FastAPI:
    _routes(router)
    app = FastAPI()
    app.include_router(router, prefix="/v1", dependencies=[Depends(_caller)])
    return app


def _exercise(client: TestClient) -> list[tuple[int, Any]]:
    answers = [
        client.get("/v1/items/3", params={"verbose": "true"}),
        client.get("/v1/items/nope"),
        client.post("/v1/items", json={"name": "a", "size": 2}, headers={"X-Caller": "ann"}),
        client.post("/v1/items", json={"size": "big"}),
        client.put("/v1/items/4/size", json={"size": 9}),
        client.get("/v1/plain"),
        client.get("/v1/raw"),
        client.delete("/v1/items/1"),
        client.post("/v1/items/1"),
    ]
    return [(answer.status_code, answer.content) for answer in answers]


def test_a_deferred_route_is_not_analysed_until_it_is_needed() -> None:
    router = APIRouter()
    _routes(router)
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    assert routes and all(isinstance(route, DeferredAPIRoute) for route in routes)
    assert all("dependant" not in vars(route) for route in routes)

    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client:
        assert client.get("/items/1").json() == {"name": "item-1", "size": 0}
    # Serving an included route used FastAPI's analysis of the inclusion, not the route's own.
    assert all("dependant" not in vars(route) for route in routes)

    read_item = next(route for route in routes if route.name == "read_item")
    assert [param.name for param in read_item.dependant.query_params] == ["verbose"]
    assert read_item.response_model is Item
    assert read_item.description == "Read one item."


def test_deferred_routes_answer_and_document_as_fastapis_own() -> None:
    deferred = _app(APIRouter())
    plain = _app(fastapi.APIRouter())
    with TestClient(deferred) as deferred_client, TestClient(plain) as plain_client:
        assert _exercise(deferred_client) == _exercise(plain_client)
    assert deferred.openapi() == plain.openapi()
    assert deferred.url_path_for("read_item", item_id=5) == "/v1/items/5"


def test_two_threads_reading_first_analyse_once() -> None:
    router = APIRouter()
    _routes(router)
    route = next(route for route in router.routes if getattr(route, "name", "") == "create_item")
    analyses = 0
    original = APIRoute.__init__

    def counting(self: APIRoute, *args: Any, **kwargs: Any) -> None:
        nonlocal analyses
        analyses += 1
        original(self, *args, **kwargs)

    start = threading.Barrier(4)
    seen: list[object] = []

    def read() -> None:
        start.wait()
        seen.append(route.body_field)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(APIRoute, "__init__", counting)
        threads = [threading.Thread(target=read) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert analyses == 1
    assert len(seen) == 4 and len({id(field) for field in seen}) == 1


_COMPARE_EVERY_APP_ROUTE = """
import fastapi
from opencodehub import app as app_module
from opencodehub.core.routing import DeferredAPIRoute

routers = [
    value
    for module in vars(app_module).values()
    if isinstance(module, type(app_module))
    for value in vars(module).values()
    if isinstance(value, fastapi.APIRouter)
]
names = ("path", "name", "methods", "status_code", "tags", "include_in_schema")
checked = 0
for router in routers:
    for route in router.routes:
        if isinstance(route, DeferredAPIRoute) and "_deferred" in vars(route):
            before = {name: getattr(route, name) for name in names}
            route.dependant  # runs the analysis
            after = {name: getattr(route, name) for name in names}
            assert before == after, (route.path, before, after)
            checked += 1
print(checked)
"""


def test_every_route_of_the_app_reads_as_fastapi_would_analyse_it() -> None:
    """The attributes a deferred route carries before its analysis are the ones FastAPI's
    constructor would have given it, for every route OpenCodeHub defines. Checked in an
    interpreter of its own: in this one, other tests may have analysed the routes already."""
    result = subprocess.run(
        [sys.executable, "-c", _COMPARE_EVERY_APP_ROUTE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 300


def _counting_router(prefix: str = "") -> tuple[APIRouter, list[str]]:
    router = APIRouter(prefix=prefix)
    tried: list[str] = []

    @router.get("/user")
    def user() -> dict[str, str]:
        return {"route": "user"}

    @router.get("/users/{name}")
    def named(name: str) -> dict[str, str]:
        return {"route": name}

    original = DeferredAPIRoute.matches

    def matches(self: DeferredAPIRoute, scope: Any) -> Any:
        tried.append(self.path)
        return original(self, scope)

    for route in router.routes:
        route.matches = matches.__get__(route)  # type: ignore[method-assign]
    return router, tried


def test_a_router_whose_routes_cannot_match_is_skipped_in_one_lookup() -> None:
    api, api_tried = _counting_router()
    pages = APIRouter()

    @pages.get("/{owner}/{repo}")
    def repository(owner: str, repo: str) -> dict[str, str]:
        return {"owner": owner, "repo": repo}

    app = FastAPI()
    app.include_router(api, prefix="/api/v3")
    app.include_router(pages)
    with TestClient(app) as client:
        assert client.get("/api/v3/user").json() == {"route": "user"}
        assert client.get("/api/v3/users/ann").json() == {"route": "ann"}
        assert set(api_tried) == {"/user", "/users/{name}"}

        api_tried.clear()
        assert client.get("/ann/tools").json() == {"owner": "ann", "repo": "tools"}
        assert client.get("/api/v3/nothing/here").status_code == 404
        assert client.get("/api/v3user").json() == {"owner": "api", "repo": "v3user"}
        assert api_tried == []

    assert api.first_segments() == frozenset({"user", "users"})
    assert pages.first_segments() is None


def test_nested_routers_and_routes_added_later_count_in_the_shortcut() -> None:
    inner, _ = _counting_router()
    outer = APIRouter()
    outer.include_router(inner, prefix="/v2")
    outer.include_router(APIRouter(), prefix="")
    app = FastAPI()
    app.include_router(outer, prefix="/api")
    with TestClient(app) as client:
        assert client.get("/api/v2/user").json() == {"route": "user"}
        assert client.get("/api/late").status_code == 404

        @outer.get("/late")
        def late() -> dict[str, str]:
            return {"route": "late"}

        assert client.get("/api/late").json() == {"route": "late"}
    assert outer.first_segments() == frozenset({"v2", "late"})

    mounted = APIRouter()
    mounted.mount("/static", FastAPI())
    assert mounted.first_segments() == frozenset({"static"})
    mounted.mount("", FastAPI())
    assert mounted.first_segments() is None


def test_the_app_tries_no_rest_route_for_a_repository_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'och.db'}",
        secret_key="test-secret-key-0123456789abcdef",
        ssh_enabled=False,
        _env_file=None,
    )
    api_routes = {id(route) for router, _ in app_module.API_ROUTERS for route in router.routes}
    tried: list[str] = []
    original = DeferredAPIRoute.matches

    def matches(self: DeferredAPIRoute, scope: Any) -> Any:
        if id(self) in api_routes:
            tried.append(self.path)
        return original(self, scope)

    monkeypatch.setattr(DeferredAPIRoute, "matches", matches)
    with (
        database_with_tables(settings.database_url) as database,
        TestClient(app_module.create_app(settings, database)) as client,
    ):
        assert client.get("/octocat/hello-world/issues/1").status_code == 404
        assert client.get("/settings/profile", follow_redirects=False).status_code == 303
        assert tried == []
        assert client.get("/api/v3/user").status_code == 401
        assert tried  # the REST API's own routes are still matched for its paths
