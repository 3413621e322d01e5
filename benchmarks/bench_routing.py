"""How many routes the app tries, and the CPU that costs, before a request reaches its route.

Builds the app on a scratch SQLite database and matches each path the way the top-level router
does (each route's `matches`, in order, until one matches fully), counting the routes whose
`matches` ran and timing the matching alone, in CPU time. No request is served.

    .venv/bin/python benchmarks/bench_routing.py
    .venv/bin/python benchmarks/bench_routing.py --rounds 1000 /api/v3/user /octocat/hello
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match

from opencodehub.app import create_app
from opencodehub.config import Settings
from opencodehub.db.engine import Database

PATHS = [
    "/api/v3/user",
    "/api/v3/repos/octocat/hello/issues/1",
    "/octocat/hello/issues/1",
    "/octocat/hello",
    "/octocat/hello/blob/main/README.md",
    "/settings/profile",
]


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "path": path,
        "method": "GET",
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }


def _match(routes: list[BaseRoute], path: str) -> BaseRoute | None:
    scope = _scope(path)
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", default=PATHS)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="och-bench-routing-") as scratch:
        settings = Settings(
            data_dir=Path(scratch),
            database_url=f"sqlite:///{Path(scratch) / 'och.db'}",
            secret_key="bench-routing-secret-0123456789abcdef",
            ssh_enabled=False,
            log_level="WARNING",
            _env_file=None,
        )
        database = Database(settings.database_url)
        routes = create_app(settings, database).router.routes
        for path in args.paths:
            _match(routes, path)  # FastAPI builds an included router's contexts on first use

        tried = 0
        original = APIRoute.matches

        def counting(self: APIRoute, scope: Any) -> Any:
            nonlocal tried
            tried += 1
            return original(self, scope)

        for path in args.paths:
            APIRoute.matches = counting  # type: ignore[method-assign]
            tried = 0
            _match(routes, path)
            APIRoute.matches = original  # type: ignore[method-assign]
            start = time.process_time()
            for _ in range(args.rounds):
                _match(routes, path)
            cpu_ms = (time.process_time() - start) / args.rounds * 1000
            print(f"{path:45} {tried:4} routes tried  {cpu_ms:7.3f} ms CPU")
        database.dispose()


if __name__ == "__main__":
    main()
