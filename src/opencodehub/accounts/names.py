"""Name rules for accounts (users, organizations, teams)."""

from __future__ import annotations

import re

from opencodehub.core.errors import ValidationFailed

# GitHub's rule: 1-39 characters, ASCII letters and digits, single hyphens only between them.
USERNAME_RE = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}\Z")

# Names that would shadow a top-level route or confuse people.
RESERVED_USERNAMES = frozenset(
    [
        "about",
        "admin",
        "administrator",
        "api",
        "apps",
        "assets",
        "github-actions",
        "avatars",
        "blog",
        "dashboard",
        "docs",
        "explore",
        "favicon.ico",
        "features",
        "git",
        "healthz",
        "help",
        "import",
        "internal",
        "issues",
        "join",
        "login",
        "logout",
        "marketplace",
        "metrics",
        "new",
        "notifications",
        "oauth",
        "org",
        "organizations",
        "orgs",
        "pricing",
        "pulls",
        "readyz",
        "repos",
        "robots.txt",
        "search",
        "security",
        "settings",
        "signin",
        "signout",
        "signup",
        "site",
        "sitemap",
        "static",
        "status",
        "support",
        "team",
        "teams",
        "user",
        "users",
        "well-known",
        "www",
        "opencodehub",
        "ghost",
        "root",
        "system",
        "actions",
        "runners",
        "lfs",
        "raw",
        "ssh",
    ]
)

_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_RE = re.compile(rf"\A[^@\s\x00-\x1f\x7f]{{1,64}}@{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})+\Z")


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


# Free text (profile fields, titles, descriptions) ----------------------------------------------

# C0 controls except tab/newline/carriage return, DEL, and the C1 range: invisible in a page,
# and some of them break terminals and log lines.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SINGLE_LINE_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def validate_text(
    value: str,
    resource: str,
    field: str,
    max_length: int,
    *,
    multiline: bool = False,
    required: bool = False,
) -> str:
    """Trim and check a free-text field; return the trimmed value."""
    if not isinstance(value, str):
        raise ValidationFailed.invalid(resource, field, "must be a string")
    value = value.strip()
    if required and not value:
        raise ValidationFailed.missing(resource, field)
    if len(value) > max_length:
        raise ValidationFailed.invalid(resource, field, f"must be at most {max_length} characters")
    pattern = _CONTROL_RE if multiline else _SINGLE_LINE_CONTROL_RE
    if pattern.search(value):
        raise ValidationFailed.invalid(resource, field, "must not contain control characters")
    return value


# Teams -----------------------------------------------------------------------------------------

TEAM_NAME_MAX_LENGTH = 255
_SLUG_SEPARATORS_RE = re.compile(r"[^a-z0-9]+")
# What team_slug() can produce, matched case-insensitively for lookups.
TEAM_SLUG_RE = re.compile(r"\A[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\Z")


def team_slug(name: str) -> str:
    """GitHub's slug: lower-cased, every run of other characters one hyphen, none at the ends.

    Only ASCII is lowered: str.lower() maps some look-alikes (the Kelvin sign) to ASCII letters.
    """
    lowered = "".join(char.lower() if char.isascii() else "-" for char in name)
    return _SLUG_SEPARATORS_RE.sub("-", lowered).strip("-")


def validate_team_name(name: str) -> str:
    name = validate_text(name, "Team", "name", TEAM_NAME_MAX_LENGTH, required=True)
    if not team_slug(name):
        raise ValidationFailed.invalid(
            "Team", "name", "must contain at least one ASCII letter or digit"
        )
    return name
