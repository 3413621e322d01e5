"""Every domain's tables, imported once so the metadata is complete (for Alembic and tests)."""

from opencodehub.accounts import models as accounts_models
from opencodehub.db.base import Base
from opencodehub.lfs import models as lfs_models
from opencodehub.repos import models as repos_models

__all__ = ["Base", "accounts_models", "lfs_models", "repos_models"]
