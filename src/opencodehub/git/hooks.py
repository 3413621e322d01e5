"""Server-side git hooks: where they live, how they are provisioned, and the token they carry.

`git receive-pack` runs with `core.hooksPath={data}/hooks` (see `git.commands.service_argv`). The
hooks there are a tiny stdlib-only Python client (`git/hooks/hook.py`, copied with a shebang naming
this interpreter) that POSTs the ref updates to the app's internal channel
(`/internal/git/hooks/{pre,post}-receive`) with a short-lived HMAC token. The app decides; the
hook only relays. Nothing in the pusher's environment is trusted: the token binds the repository
and the pusher, and is minted by the transport that authorized the push.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from opencodehub.config import Settings
from opencodehub.core import crypto

HOOK_NAMES = ("pre-receive", "post-receive")
TOKEN_PURPOSE = "git-hook"  # noqa: S105 - an HMAC purpose label, not a secret
# The hooks run after the whole pack has arrived, so the token must outlive the slowest upload
# the server accepts; it is bound to one repository and one pusher, so a long life costs little.
TOKEN_TTL_SECONDS = 12 * 3600

# Environment variables receive-pack passes on to the hooks.
ENV_TOKEN = "OCH_HOOK_TOKEN"  # noqa: S105 - a variable name
ENV_INTERNAL_URL = "OCH_INTERNAL_URL"
ENV_REPOSITORY_ID = "OCH_REPOSITORY_ID"
ENV_PUSHER_ID = "OCH_PUSHER_ID"
ENV_TRANSPORT = "OCH_TRANSPORT"


def hooks_dir(settings: Settings) -> Path:
    return settings.data_dir / "hooks"


def _hook_source() -> str:
    return resources.files("opencodehub.git").joinpath("hooks/hook.py").read_text("utf-8")


def _hook_script() -> bytes:
    # -I: ignore PYTHON* variables and user site; -S: skip site, which halves start-up time.
    # The interpreter is named absolutely, so the hook runs whatever PATH receive-pack has.
    return f"#!{sys.executable} -IS\n{_hook_source()}".encode()


_provisioned: set[Path] = set()


def ensure_hooks(settings: Settings) -> Path:
    """Write the hook scripts under `{data}/hooks` unless they are already current; idempotent
    and safe when several processes start together (each file is replaced atomically)."""
    directory = hooks_dir(settings)
    if directory in _provisioned and all((directory / name).exists() for name in HOOK_NAMES):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    script = _hook_script()
    for name in HOOK_NAMES:
        target = directory / name
        try:
            if target.read_bytes() == script and os.access(target, os.X_OK):
                continue
        except FileNotFoundError:
            pass
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(script)
            os.chmod(temporary, 0o755)  # noqa: S103 - git must execute the hooks
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    _provisioned.add(directory)
    return directory


# Tokens ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HookGrant:
    """What a valid hook token proves: this push, to this repository, by this pusher."""

    repository_id: int
    pusher_id: int | None  # None for deploy keys and other user-less pushers
    expires_at: int


def _token_message(repository_id: int, pusher_id: int, expires_at: int) -> str:
    return f"{repository_id}:{pusher_id}:{expires_at}"


def issue_hook_token(
    settings: Settings, repository_id: int, pusher_id: int | None, *, now: float | None = None
) -> str:
    expires_at = int((now if now is not None else time.time()) + TOKEN_TTL_SECONDS)
    pusher = pusher_id or 0
    signature = crypto.sign(
        settings.secret, TOKEN_PURPOSE, _token_message(repository_id, pusher, expires_at)
    )
    return f"{repository_id}.{pusher}.{expires_at}.{signature}"


def verify_hook_token(settings: Settings, token: str, *, now: float | None = None) -> HookGrant:
    """The grant a token carries; ValueError when it is malformed, forged or expired."""
    if not token or len(token) > 200:
        raise ValueError("missing or oversized hook token")
    parts = token.split(".")
    if len(parts) != 4 or not all(part.isdigit() for part in parts[:3]):
        raise ValueError("malformed hook token")
    repository_id, pusher, expires_at = (int(part) for part in parts[:3])
    expected_message = _token_message(repository_id, pusher, expires_at)
    if not crypto.verify(settings.secret, TOKEN_PURPOSE, expected_message, parts[3]):
        raise ValueError("hook token signature mismatch")
    if expires_at < (now if now is not None else time.time()):
        raise ValueError("hook token expired")
    if repository_id <= 0:
        raise ValueError("hook token names no repository")
    return HookGrant(repository_id, pusher or None, expires_at)
