"""The on-disk store: bare repositories named by id, and the environment git runs in.

`{data}/repos/{id // 1000}/{id}.git` — names live in the database, so a rename or a transfer never
touches the disk.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pygit2

from opencodehub.config import Settings

# Server-side configuration of every repository OpenCodeHub creates.
REPOSITORY_CONFIG = {
    "receive.fsckObjects": "true",
    "receive.denyNonFastForwards": "false",  # protection is decided by pre-receive, per branch
    "receive.denyDeleteCurrent": "false",
    "receive.advertisePushOptions": "true",
    "uploadpack.allowFilter": "true",
    "uploadpack.allowAnySHA1InWant": "false",
    "uploadpack.allowReachableSHA1InWant": "true",
    "core.logAllRefUpdates": "false",
    "gc.auto": "0",  # maintenance runs from the worker, never in the middle of a push
}


def repository_path(settings: Settings, repository_id: int) -> Path:
    if repository_id <= 0:
        raise ValueError("repository ids are positive")
    return settings.repos_dir / str(repository_id // 1000) / f"{repository_id}.git"


def git_environment(
    settings: Settings, repo_path: Path | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """A clean environment for a git process OpenCodeHub spawns.

    Nothing is inherited from the server's environment but PATH and locale: no user config, no
    system config, and `safe.directory` names just the repository being served (the data dir may
    belong to another user than the server process).
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(settings.data_dir),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
    }
    config_pairs: list[tuple[str, str]] = []
    if repo_path is not None:
        config_pairs.append(("safe.directory", str(repo_path)))
    for index, (key, value) in enumerate(config_pairs):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    env["GIT_CONFIG_COUNT"] = str(len(config_pairs))
    if extra:
        env.update(extra)
    return env


def init_bare(settings: Settings, repository_id: int, default_branch: str) -> pygit2.Repository:
    path = repository_path(settings, repository_id)
    if path.exists():
        raise FileExistsError(f"{path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    repo = pygit2.init_repository(str(path), bare=True, initial_head=default_branch)
    for key, value in REPOSITORY_CONFIG.items():
        repo.config[key] = value
    # Hooks come from core.hooksPath passed on each receive-pack's command line; the sample
    # hooks git copies in would only confuse whoever looks into the directory.
    shutil.rmtree(path / "hooks", ignore_errors=True)
    (path / "hooks").mkdir()
    return repo


def open_repository(settings: Settings, repository_id: int) -> pygit2.Repository:
    return pygit2.Repository(str(repository_path(settings, repository_id)))


def remove(settings: Settings, repository_id: int) -> None:
    shutil.rmtree(repository_path(settings, repository_id), ignore_errors=True)


def disk_usage_kb(settings: Settings, repository_id: int) -> int:
    total = 0
    for root, _dirs, files in os.walk(repository_path(settings, repository_id)):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total // 1024
