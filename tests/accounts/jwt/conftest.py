from __future__ import annotations

import pytest

from opencodehub.accounts.jwt import service as jwt_service
from opencodehub.config import Settings
from opencodehub.db.engine import Database


@pytest.fixture(autouse=True)
def _bind_jwt_settings(request: pytest.FixtureRequest) -> None:
    """What `create_app` does in production: tell token resolution this app's settings. Only
    for tests that use a database, so the pure ones run once rather than once per engine."""
    if "db" not in request.fixturenames:
        return
    db: Database = request.getfixturevalue("db")
    settings: Settings = request.getfixturevalue("settings")
    jwt_service.bind_settings(db.engine, settings)
