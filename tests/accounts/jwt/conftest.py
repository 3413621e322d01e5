from __future__ import annotations

import pytest

from opencodehub.accounts.jwt import service as jwt_service
from opencodehub.config import Settings
from opencodehub.db.engine import Database


@pytest.fixture(autouse=True)
def _bind_jwt_settings(db: Database, settings: Settings) -> None:
    """What `create_app` does in production: tell token resolution this app's settings."""
    jwt_service.bind_settings(db.engine, settings)
