"""Pruning the images built for Dockerfile actions (`och-action:<content hash>`): after a job
that used them, only the most recently used are kept, and an image in use (held by a running
job, or the image of a container) is never removed. On a Podman of its own (its own image
store, on vfs: nothing stays mounted after it), so that no other test's images are pruned."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opencodehub.runner.executors.base import ExecutorOptions
from opencodehub.runner.executors.docker import DockerExecutor
from tests.runner.podman import TEST_IMAGE, podman_service


@pytest.fixture
def own_podman(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    base = tmp_path_factory.mktemp("prune")
    storage = base / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{base}/run"\ngraphroot = "{base}/graph"\n'
    )
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(storage))
    with podman_service(base) as url:
        yield url


def _context(base: Path, name: str) -> Path:
    directory = base / name
    directory.mkdir()
    (directory / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nLABEL test.image={name}\n")
    return directory


def _executor(url: str, keep: int) -> DockerExecutor:
    executor = DockerExecutor(ExecutorOptions(docker_host=url, action_images_keep=keep))
    executor.client = executor._client()
    return executor


def _action_images(url: str) -> set[str]:
    import docker

    client = docker.DockerClient(base_url=url)
    try:
        return {
            image.labels["test.image"]
            for image in client.images.list(filters={"label": "org.opencodehub.action=1"})
        }
    finally:
        client.close()


@pytest.mark.slow
def test_only_the_most_recently_used_action_images_are_kept_and_never_one_in_use(
    tmp_path: Path, own_podman: str
) -> None:
    import docker

    lines: list[str] = []
    first = _executor(own_podman, keep=1)
    tags = {
        name: first.build_image(_context(tmp_path, name), "Dockerfile", lines.append)
        for name in ("d", "a", "b")
    }
    # Another job uses `b` (built before) and is still running.
    second = _executor(own_podman, keep=1)
    assert second.build_image(tmp_path / "b", "Dockerfile", lines.append) == tags["b"]
    assert f"Using the action's image {tags['b']}, built before" in lines
    tags["c"] = first.build_image(_context(tmp_path, "c"), "Dockerfile", lines.append)
    # A (stopped) container of `a`, as another runner of the same engine may have.
    client = docker.DockerClient(base_url=own_podman)
    try:
        container = client.containers.create(tags["a"], command=["true"])
        assert _action_images(own_podman) == {"a", "b", "c", "d"}

        first.stop()
        # `c` is the most recent; `b` is held by the running job, `a` is a container's image.
        assert _action_images(own_podman) == {"a", "b", "c"}

        second.stop()
        # The job that held `b` ended: `b` may go now; `a` still is a container's image.
        assert _action_images(own_podman) == {"a", "c"}

        container.remove(force=True)
        third = _executor(own_podman, keep=0)
        # A job that used no action image leaves them alone (nothing new to make room for).
        third.stop()
        assert _action_images(own_podman) == {"a", "c"}
        fourth = _executor(own_podman, keep=0)
        fourth.build_image(tmp_path / "a", "Dockerfile", lines.append)
        fourth.stop()
        assert _action_images(own_podman) == set()
    finally:
        client.close()
