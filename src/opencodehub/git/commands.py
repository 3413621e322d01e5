"""The git commands the transports run, and the environment they run in.

Both transports (smart HTTP and SSH) build their command lines here, so what reaches git is the
same whichever way a client came: a fixed service name, fixed options, and the repository path
computed from the repository's id. Nothing the client typed is ever an argument.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission
from opencodehub.config import Settings
from opencodehub.git import hooks
from opencodehub.repos import store
from opencodehub.repos.models import Repository

# The services git's wire protocol names, and the permission each one needs.
GIT_SERVICES: dict[str, Permission] = {
    "git-upload-pack": Permission.READ,
    "git-receive-pack": Permission.WRITE,
    "git-upload-archive": Permission.READ,
}

# `GIT_PROTOCOL` as clients send it (`version=2`, possibly with more `:key=value` parts). A value
# that does not match is dropped, never passed on: git reads it as configuration of its own.
GIT_PROTOCOL_RE = re.compile(r"\Aversion=[0-9]{1,3}(?::[A-Za-z0-9_.=-]{1,64}){0,8}\Z")


def valid_git_protocol(value: str | None) -> str | None:
    if value and GIT_PROTOCOL_RE.match(value):
        return value
    return None


def wants_protocol_v2(git_protocol: str | None) -> bool:
    protocol = valid_git_protocol(git_protocol)
    return protocol is not None and "version=2" in protocol.split(":")


def service_argv(
    settings: Settings,
    service: str,
    repo_path: Path,
    *,
    stateless_rpc: bool,
    advertise_refs: bool = False,
) -> list[str]:
    """The argv for `service` on `repo_path`. Raises ValueError for a service git does not have
    (or one that has no stateless mode when `stateless_rpc` is asked for)."""
    if service not in GIT_SERVICES:
        raise ValueError(f"unknown git service {service!r}")
    if stateless_rpc and service == "git-upload-archive":
        raise ValueError("git-upload-archive has no stateless-rpc mode")
    argv = [
        settings.git_binary,
        "-c",
        f"core.hooksPath={hooks.ensure_hooks(settings)}",
    ]
    if service == "git-receive-pack" and settings.git_max_push_bytes > 0:
        argv += ["-c", f"receive.maxInputSize={settings.git_max_push_bytes}"]
    argv.append(service.removeprefix("git-"))
    if stateless_rpc:
        argv.append("--stateless-rpc")
    if advertise_refs:
        argv.append("--advertise-refs")
    if service == "git-upload-pack":
        # --strict: serve exactly this directory, never try `<path>.git` or `<path>/.git`
        # (upload-pack only: upload-archive takes no options and refuses them).
        argv.append("--strict")
    # The path is absolute (computed from the id), so it can never read as an option.
    argv.append(str(repo_path))
    return argv


def service_env(
    settings: Settings,
    repository: Repository,
    actor: Actor,
    *,
    git_protocol: str | None,
    transport: Literal["http", "ssh"],
) -> dict[str, str]:
    """The environment for a service on `repository` run for `actor`: the store's clean git
    environment, the validated protocol version, and what the hooks need to reach the app."""
    repo_path = store.repository_path(settings, repository.id)
    extra = {
        hooks.ENV_REPOSITORY_ID: str(repository.id),
        hooks.ENV_PUSHER_ID: str(actor.user_id or 0),
        hooks.ENV_TOKEN: hooks.issue_hook_token(settings, repository.id, actor.user_id),
        hooks.ENV_INTERNAL_URL: settings.effective_internal_url,
        hooks.ENV_TRANSPORT: transport,
    }
    protocol = valid_git_protocol(git_protocol)
    if protocol is not None:
        extra["GIT_PROTOCOL"] = protocol
    return store.git_environment(settings, repo_path, extra)
