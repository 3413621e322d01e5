"""Database: engine, sessions, the declarative Base and Alembic migrations."""

from opencodehub.db.base import Base
from opencodehub.db.engine import Database

__all__ = ["Base", "Database"]
