"""Name rules for accounts (users, organizations, teams)."""

from __future__ import annotations

import re

from opencodehub.core.errors import ValidationFailed

# GitHub's rule: 1-39 characters, ASCII letters and digits, single hyphens only between them.
USERNAME_RE = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}\Z")

# Names that would shadow a top-level route or confuse people.
RESERVED_USERNAMES = frozenset(
    """
    about admin administrator api apps assets avatars blog dashboard docs explore favicon.ico
    features git healthz help import internal issues join login logout marketplace metrics new
    notifications oauth org organizations orgs pricing pulls readyz repos robots.txt search
    security settings signin signout signup site sitemap static status support team teams
    user users well-known www opencodehub ghost root system actions runners lfs raw ssh
    """.split()
)

EMAIL_RE = re.compile(r"\A[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+\Z")


def validate_username(name: str, resource: str = "User", field: str = "login") -> str:
    if not isinstance(name, str) or not USERNAME_RE.match(name):
        raise ValidationFailed.invalid(
            resource,
            field,
            "may only contain ASCII letters, digits and single hyphens between them, "
            "and must be 1 to 39 characters long",
        )
    if name.lower() in RESERVED_USERNAMES:
        raise ValidationFailed.invalid(resource, field, f"'{name}' is reserved")
    return name


def validate_email(email: str) -> str:
    if not isinstance(email, str) or len(email) > 254 or not EMAIL_RE.match(email):
        raise ValidationFailed.invalid("User", "email", "is not a valid email address")
    return email
