"""Every domain's tables, imported once so the metadata is complete (for Alembic and tests)."""

from opencodehub.accounts import models as accounts_models
from opencodehub.accounts.jwt import models as jwt_models
from opencodehub.accounts.oauthapps import models as oauthapps_models
from opencodehub.accounts.security import models as security_models
from opencodehub.accounts.sso import models as sso_models
from opencodehub.actions import models as actions_models
from opencodehub.db.base import Base
from opencodehub.issues import models as issues_models
from opencodehub.lfs import models as lfs_models
from opencodehub.notifications import models as notifications_models
from opencodehub.pulls import models as pulls_models
from opencodehub.repos import models as repos_models

__all__ = [
    "Base",
    "accounts_models",
    "actions_models",
    "issues_models",
    "jwt_models",
    "lfs_models",
    "notifications_models",
    "oauthapps_models",
    "pulls_models",
    "repos_models",
    "security_models",
    "sso_models",
]
