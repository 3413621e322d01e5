"""A Podman API service with the busybox test images, for the container tests and benchmarks.

The images are built locally (no registry is reachable): ``och-test`` is a busybox root file
system imported as an image, ``och-test-service`` is built from it and answers on port 8080.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache" / "runner-tests"
TEST_IMAGE = "och-test:latest"
SERVICE_IMAGE = "och-test-service:latest"

SERVICE_DOCKERFILE = f"""FROM {TEST_IMAGE}
EXPOSE 8080
CMD ["nc", "-ll", "-p", "8080", "-e", "echo", "hello-from-service"]
"""


class PodmanUnavailable(RuntimeError):
    pass


def _build_rootfs(rootfs: Path) -> None:
    busybox = Path("/bin/busybox")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "tmp", "root", "etc", "proc", "sys", "dev"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    subprocess.run(
        ["chroot", str(rootfs), "/bin/busybox", "--install", "-s"], check=True, capture_output=True
    )
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")


def _image_tar() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    tar_path = CACHE / "och-test-rootfs.tar"
    if not tar_path.exists():
        rootfs = CACHE / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        _build_rootfs(rootfs)
        tmp = tar_path.with_suffix(".tmp")
        with tarfile.open(tmp, "w") as tar:
            tar.add(rootfs, arcname=".")
        tmp.rename(tar_path)
        shutil.rmtree(rootfs, ignore_errors=True)
    return tar_path


def podman_env(base: Path) -> dict[str, str]:
    conf = base / "containers.conf"
    conf.write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


@contextlib.contextmanager
def _images_lock() -> Iterator[None]:
    """The suite's parallel processes each start a Podman service: one builds the images while
    the others wait, then find them built."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "images.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_images(podman: str, env: dict[str, str]) -> None:
    """Import the busybox image and build the service image from it, once."""
    with _images_lock():
        _ensure_images(podman, env)


def _ensure_images(podman: str, env: dict[str, str]) -> None:
    def exists(image: str) -> bool:
        found = subprocess.run([podman, "image", "exists", image], env=env, capture_output=True)
        return found.returncode == 0

    if not exists(TEST_IMAGE):
        with _image_tar().open("rb") as fh:
            subprocess.run(
                [podman, "import", "-", TEST_IMAGE], stdin=fh, env=env, check=True,
                capture_output=True,
            )  # fmt: skip
    if not exists(SERVICE_IMAGE):
        with tempfile.TemporaryDirectory() as context:
            (Path(context) / "Dockerfile").write_text(SERVICE_DOCKERFILE)
            subprocess.run(
                [podman, "build", "--pull=never", "-t", SERVICE_IMAGE, context],
                env=env, check=True, capture_output=True,
            )  # fmt: skip


def start_podman(base: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start `podman system service` on a socket in ``base``; returns the process and its URL."""
    podman = shutil.which("podman")
    if not podman or not Path("/bin/busybox").exists():
        raise PodmanUnavailable(
            "podman and busybox-static are required: apt-get install -y podman runc busybox-static"
        )
    env = podman_env(base)
    socket = base / "podman.sock"
    proc = subprocess.Popen(
        [podman, "system", "service", "--time=0", f"unix://{socket}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_podman(proc)
            raise PodmanUnavailable("podman system service did not start")
        time.sleep(0.1)
    try:
        ensure_images(podman, env)
    except subprocess.CalledProcessError as exc:
        stop_podman(proc)
        raise PodmanUnavailable(f"cannot build the test images: {exc.stderr!r}") from None
    return proc, f"unix://{socket}"


def stop_podman(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 9)
    proc.wait()


@contextlib.contextmanager
def podman_service(base: Path) -> Iterator[str]:
    """A Podman service under `base` for the block, as its Docker API URL; the test fails
    (never skips) when Podman cannot run here."""
    try:
        proc, url = start_podman(base)
    except PodmanUnavailable as exc:
        pytest.fail(str(exc))
    try:
        yield url
    finally:
        stop_podman(proc)
