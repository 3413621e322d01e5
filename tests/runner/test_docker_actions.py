"""Docker actions built from a Dockerfile, and `ports`/`volumes` of `container:` and `services:`,
on a real Podman through its Docker-compatible API (the images are built locally)."""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from opencodehub.runner.executors.base import ExecutorOptions
from tests.runner.conftest import SERVICE_IMAGE, TEST_IMAGE, Ran, run

SERVER = "http://127.0.0.1:9"  # never contacted: the action is in the cache already

ACTION = {
    "name": "dock",
    "inputs": {"who": {"required": True}},
    "runs": {
        "using": "docker",
        "image": "Dockerfile",
        "args": ["${{ inputs.who }}", "second arg"],
        "env": {"GREETING": "hi ${{ inputs.who }}"},
        "pre-entrypoint": "/pre.sh",
        "post-entrypoint": "/post.sh",
    },
}
SCRIPTS = {
    "entry.sh": """#!/bin/sh
echo "main args=$1|$2 who=$INPUT_WHO greeting=$GREETING state=$STATE_phase"
echo "pwd=$(pwd) ws=$GITHUB_WORKSPACE home=$HOME"
cat /github/workspace/marker.txt
echo "said=hello $INPUT_WHO" >> "$GITHUB_OUTPUT"
echo "::save-state name=main::done"
""",
    "pre.sh": """#!/bin/sh
echo "pre who=$INPUT_WHO argc=$#"
echo "phase=pre" >> "$GITHUB_STATE"
""",
    "post.sh": """#!/bin/sh
echo "post phase=$STATE_phase main=$STATE_main"
""",
}


def _write_action(directory: Path, dockerfile: str = "Dockerfile", tag: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "action.yml").write_text(yaml.safe_dump(ACTION))
    target = directory / dockerfile
    target.parent.mkdir(parents=True, exist_ok=True)
    # `tag` changes the content, so the test builds at least once whatever ran before.
    target.write_text(
        f"FROM {TEST_IMAGE}\nLABEL test.tag={tag or 'none'}\n"
        'COPY entry.sh pre.sh post.sh /\nENTRYPOINT ["/entry.sh"]\n'
    )
    for name, text in SCRIPTS.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o755)


def _leftovers(podman_host: str, job_id: int) -> list[Any]:
    import docker

    client = docker.DockerClient(base_url=podman_host)
    try:
        label = f"org.opencodehub.job={job_id}"
        return [
            *client.containers.list(all=True, filters={"label": label}),
            *client.volumes.list(filters={"label": label}),
            *client.networks.list(filters={"label": label}),
        ]
    finally:
        client.close()


def _run_dockerfile_action(base: Path, podman_host: str, tag: str) -> Ran:
    cache = base / "job" / "_actions" / "acme" / "dock" / "v1"
    _write_action(cache, tag=tag)
    (cache / ".och-complete").write_text("v1")
    return run(
        """
        steps:
          - run: echo from-workspace > marker.txt
          - id: act
            uses: acme/dock@v1
            with: {who: carol}
          - run: echo "output=${{ steps.act.outputs.said }}"
        """,
        base,
        executor=f"docker://{TEST_IMAGE}",
        options=ExecutorOptions(docker_host=podman_host),
        server_url=SERVER,
    )


@pytest.mark.slow
def test_dockerfile_action_with_pre_and_post(tmp_path: Path, podman_host: str) -> None:
    tag = f"{random.randrange(10**9)}"
    ran = _run_dockerfile_action(tmp_path / "first", podman_host, tag)
    assert ran.result.result == "success", ran.text
    assert [s.name for s in ran.result.steps] == [
        "Pre Run acme/dock@v1",
        "Run echo from-workspace > marker.txt",
        "Run acme/dock@v1",
        'Run echo "output=${{ steps.act.outputs.said }}"',
        "Post Run acme/dock@v1",
    ]
    steps = ran.reporter.step_lines
    assert any("Building the action's image from Dockerfile" in line for line in steps(0))
    assert "pre who=carol argc=0" in steps(0)
    main = steps(2)
    assert "main args=carol|second arg who=carol greeting=hi carol state=pre" in main
    assert "pwd=/github/workspace ws=/github/workspace home=/github/home" in main
    assert "from-workspace" in main
    assert steps(3)[-1] == "output=hello carol"
    assert "post phase=pre main=done" in steps(4)

    # The same action again (another job, another directory): the image is reused.
    started = time.monotonic()
    again = _run_dockerfile_action(tmp_path / "second", podman_host, tag)
    elapsed = time.monotonic() - started
    assert again.result.result == "success", again.text
    assert any("built before" in line for line in again.reporter.step_lines(0))
    assert not any("Building the action's image" in line for line in again.reporter.lines)
    assert elapsed < 60
    import docker

    client = docker.DockerClient(base_url=podman_host)
    try:
        # This test's content is unique (`tag`): its image would never be used again.
        for image in client.images.list(filters={"label": f"test.tag={tag}"}):
            client.images.remove(image.id, force=True)
    finally:
        client.close()


@pytest.mark.slow
def test_local_dockerfile_action_in_a_subdirectory_and_build_failure(
    tmp_path: Path, podman_host: str
) -> None:
    workspace = tmp_path / "job" / "workspace"
    _write_action(workspace / "act", dockerfile="build/Dockerfile", tag="local")
    action = yaml.safe_load((workspace / "act" / "action.yml").read_text())
    action["runs"]["image"] = "build/Dockerfile"
    (workspace / "act" / "action.yml").write_text(yaml.safe_dump(action))
    (workspace / "broken").mkdir()
    (workspace / "broken" / "action.yml").write_text(
        yaml.safe_dump({"runs": {"using": "docker", "image": "Dockerfile"}})
    )
    (workspace / "broken" / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nRUN exit 7\n")
    ran = run(
        """
        steps:
          - run: echo here > marker.txt
          - uses: ./act
            with: {who: dave}
          - uses: ./broken
        """,
        tmp_path,
        executor=f"docker://{TEST_IMAGE}",
        options=ExecutorOptions(docker_host=podman_host),
    )
    # A local action has no pre (not checked out when the job starts), but its post runs.
    assert [s.name for s in ran.result.steps] == [
        "Run echo here > marker.txt",
        "Run ./act",
        "Run ./broken",
        "Post Run ./act",
    ]
    assert ran.outcomes[1] == ("success", "success"), ran.text
    assert "main args=dave|second arg who=dave greeting=hi dave state=" in ran.reporter.step_lines(
        1
    )
    assert ran.outcomes[2] == ("failure", "failure")
    assert any("the action's image failed to build" in line for line in ran.reporter.step_lines(2))
    assert "post phase= main=done" in ran.reporter.step_lines(3)


@pytest.mark.slow
def test_ports_and_volumes(tmp_path: Path, podman_host: str) -> None:
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "host.txt").write_text("from the runner's host\n")
    job_id = random.randrange(10**6, 10**7)
    workspace = tmp_path / "job" / "workspace"
    replies: list[str] = []
    result: dict[str, Ran] = {}

    def job() -> None:
        result["ran"] = run(
            f"""
            container:
              image: {TEST_IMAGE}
              volumes: ["shared:/data", "{host_dir}:/hostdir:ro", "/scratch"]
            services:
              web:
                image: {SERVICE_IMAGE}
                ports: ["8080"]
                volumes: ["shared:/data"]
                options: --health-cmd "touch /data/from-service" --health-interval 100ms
            steps:
              - run: test -f /data/from-service && echo shared-volume-ok
              - run: cat /hostdir/host.txt && ! touch /hostdir/x 2>/dev/null
              - run: touch /scratch/x && echo scratch-ok
              - run: echo "${{{{ job.services.web.ports['8080'] }}}}" > port.txt
              - run: |
                  i=0
                  until [ -f done ]; do i=$((i+1)); [ $i -gt 300 ] && exit 1; sleep 0.1; done
            """,
            tmp_path,
            executor=f"docker://{TEST_IMAGE}",
            options=ExecutorOptions(docker_host=podman_host, allow_host_mounts=True),
            job_id=job_id,
        )

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 120
    port = None
    while not port and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
        if (workspace / "port.txt").exists():
            port = (workspace / "port.txt").read_text().strip()
    try:
        if port:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as conn:
                replies.append(conn.recv(100).decode().strip())
    finally:
        if workspace.exists():
            (workspace / "done").write_text("")
        thread.join(180)
    ran = result["ran"]
    assert ran.result.result == "success", ran.text
    assert "shared-volume-ok" in ran.reporter.step_lines(0)
    assert "from the runner's host" in ran.reporter.step_lines(1)
    assert "scratch-ok" in ran.reporter.step_lines(2)
    assert port and port.isdigit()
    assert replies == ["hello-from-service"]
    assert _leftovers(podman_host, job_id) == []


@pytest.mark.slow
def test_host_volume_refused_by_default(tmp_path: Path, podman_host: str) -> None:
    job_id = random.randrange(10**6, 10**7)
    ran = run(
        f"""
        container:
          image: {TEST_IMAGE}
          volumes: ["shared:/data"]
        services:
          db:
            image: {SERVICE_IMAGE}
            volumes: ["/etc:/host-etc"]
        steps: [{{run: 'true'}}]
        """,
        tmp_path,
        executor=f"docker://{TEST_IMAGE}",
        options=ExecutorOptions(docker_host=podman_host),
        job_id=job_id,
    )
    assert ran.result.result == "failure"
    assert any(
        "service 'db': volume '/etc:/host-etc' mounts a path of the runner's host" in line
        and "allow_host_mounts" in line
        for line in ran.reporter.lines
    ), ran.text
    assert ran.result.steps == []
    assert _leftovers(podman_host, job_id) == []
