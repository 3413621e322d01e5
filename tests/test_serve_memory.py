"""Memory housekeeping of the server roles (serve.py): libgit2's cache bound, and the release
of repositories that only the cyclic garbage collector would free."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from opencodehub import serve


@pytest.fixture
def restore_cache_limit() -> Iterator[None]:
    _current, limit = pygit2.settings.cached_memory
    yield
    pygit2.settings.cache_max_size(limit)


def _repository_with_history(path: Path) -> None:
    repo = pygit2.init_repository(str(path), bare=True)
    signature = pygit2.Signature("A", "a@example.com", 1_700_000_000, 0)
    parents: list[pygit2.Oid] = []
    for number in range(50):
        blob = repo.create_blob(f"content {number}\n".encode())
        builder = repo.TreeBuilder()
        builder.insert("file.txt", blob, pygit2.enums.FileMode.BLOB)
        oid = repo.create_commit(
            "refs/heads/main", signature, signature, f"c{number}", builder.write(), parents
        )
        parents = [oid]
    repo.free()


def test_tune_memory_bounds_the_object_cache(restore_cache_limit: None) -> None:
    serve.tune_memory()
    assert pygit2.settings.cached_memory[1] == serve.GIT_OBJECT_CACHE_BYTES


def test_release_memory_frees_dropped_repositories(tmp_path: Path) -> None:
    path = tmp_path / "history.git"
    _repository_with_history(path)
    gc.collect()
    gc.disable()  # so that only release_memory() can collect the dropped repository
    try:
        repo = pygit2.Repository(str(path))
        commits = sum(1 for _ in repo.walk(repo.references["refs/heads/main"].target))
        assert commits == 50
        del repo
        # Dropping the last reference is not enough: the object cache is still held.
        assert pygit2.settings.cached_memory[0] > 0
        serve.release_memory()
        assert pygit2.settings.cached_memory[0] == 0
    finally:
        gc.enable()


# Libraries a serving process loads only when a feature first needs them (each is 1-11 MB of
# the idle process): libgit2's bindings, the SSH server and its cryptography, token signing,
# image drawing, security keys, provider sign-in, markdown, QR codes, the CLI's console
# rendering, and the HTTP client.
LOADED_ON_FIRST_USE = (
    "pygit2",
    "asyncssh",
    "cryptography",
    "jwt",
    "PIL",
    "webauthn",
    "httpx",
    "joserfc",
    "authlib",
    "markdown_it",
    "nh3",
    "segno",
    "rich",
    "structlog",
    "websockets",
)


def test_starting_the_server_leaves_optional_libraries_unloaded(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "import opencodehub.cli\n"
        "from opencodehub.app import create_app\n"
        "from opencodehub.core import lazy\n"
        "from opencodehub.serve import tune_memory\n"
        "tune_memory()\n"
        "create_app()\n"
        f"print(sorted(name for name in {LOADED_ON_FIRST_USE!r} if lazy.is_loaded(name)))\n"
    )
    env = {**os.environ, "OCH_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stderr


def test_the_object_cache_bound_applies_when_libgit2_loads(tmp_path: Path) -> None:
    script = (
        "from opencodehub.core import lazy\n"
        "from opencodehub.serve import GIT_OBJECT_CACHE_BYTES, tune_memory\n"
        "tune_memory()\n"
        "assert not lazy.is_loaded('pygit2')\n"
        "import pygit2\n"
        "print(pygit2.settings.cached_memory[1] == GIT_OBJECT_CACHE_BYTES)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True", result.stderr
