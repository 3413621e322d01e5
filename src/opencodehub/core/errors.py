"""Errors a service raises; the API renders them in GitHub's shape, the web UI as messages.

Services raise these and never know whether an HTTP request, the SSH server or the CLI called them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DOCS_URL = "https://docs.github.com/rest"


@dataclass
class FieldError:
    """One entry of GitHub's `errors` array."""

    resource: str
    field: str
    code: str  # missing, missing_field, invalid, already_exists, unprocessable, custom
    message: str = ""

    def as_dict(self) -> dict[str, str]:
        data = {"resource": self.resource, "field": self.field, "code": self.code}
        if self.message:
            data["message"] = self.message
        return data


class OCHError(Exception):
    status_code = 400
    default_message = "Bad Request"

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "documentation_url": DOCS_URL}


class BadRequest(OCHError):
    status_code = 400
    default_message = "Bad Request"


class Unauthorized(OCHError):
    status_code = 401
    default_message = "Requires authentication"


class Forbidden(OCHError):
    status_code = 403
    default_message = "Forbidden"


class NotFound(OCHError):
    """Also what a caller gets for anything it may not see: existence is never leaked."""

    status_code = 404
    default_message = "Not Found"


class Conflict(OCHError):
    status_code = 409
    default_message = "Conflict"


class TooManyRequests(OCHError):
    status_code = 429
    default_message = "Too many requests"


class ValidationFailed(OCHError):
    """422 with GitHub's `errors` array naming each field that is wrong."""

    status_code = 422
    default_message = "Validation Failed"

    def __init__(self, errors: list[FieldError] | FieldError, message: str | None = None):
        self.errors = errors if isinstance(errors, list) else [errors]
        super().__init__(message)

    @classmethod
    def invalid(cls, resource: str, field_name: str, message: str) -> ValidationFailed:
        return cls([FieldError(resource, field_name, "invalid", message)])

    @classmethod
    def exists(cls, resource: str, field_name: str, message: str = "") -> ValidationFailed:
        return cls([FieldError(resource, field_name, "already_exists", message)])

    @classmethod
    def missing(cls, resource: str, field_name: str) -> ValidationFailed:
        return cls([FieldError(resource, field_name, "missing_field")])

    def body(self) -> dict[str, Any]:
        data = super().body()
        data["errors"] = [error.as_dict() for error in self.errors]
        return data

    def describe(self) -> str:
        """One line for a form or a terminal: which field and why."""
        parts = []
        for error in self.errors:
            reason = error.message or error.code.replace("_", " ")
            parts.append(f"{error.field}: {reason}")
        return "; ".join(parts) or self.message
