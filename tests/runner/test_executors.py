"""The bubblewrap and container executors: isolation, limits, services and clean-up."""

from __future__ import annotations

import random
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from opencodehub.runner.engine import run_job
from opencodehub.runner.executors.base import ExecutorError, ExecutorOptions, build_executor
from tests.runner.conftest import JOBS, TEST_IMAGE, RecordingReporter, _made, make_spec, run


def test_build_executor_labels() -> None:
    assert build_executor("host").name == "host"
    assert build_executor("bwrap").name == "bwrap"
    docker = build_executor("docker://och-test:latest")
    assert docker.name == "docker"
    with pytest.raises(ExecutorError, match="unknown executor"):
        build_executor("vm")


def test_bwrap_sandbox(tmp_path: Path) -> None:
    outside = Path(__file__).parent / f"outside-{uuid.uuid4().hex}.txt"
    ran = run(
        f"""
        steps:
          - run: |
              echo "pid=$$"
              echo hi > "$GITHUB_WORKSPACE/ok.txt" && echo workspace-writable
              echo secret > /tmp/private && echo tmp-writable
              if echo x > {outside}; then echo host-writable; else echo host-readonly; fi
              if touch /usr/och-test 2>/dev/null; then echo usr-writable; else echo usr-readonly; fi
              tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '
              hostname
        """,
        tmp_path,
        executor="bwrap",
        options=ExecutorOptions(allow_network=False),
    )
    assert ran.result.result == "success", ran.text
    lines = ran.reporter.step_lines(0)
    assert "workspace-writable" in lines and "tmp-writable" in lines
    assert "host-readonly" in lines and "usr-readonly" in lines
    assert "pid=1" in lines or "pid=2" in lines
    assert "lo" in lines and not any(x.startswith(("eth", "en")) for x in lines)
    assert "runner" in lines
    assert not outside.exists()
    assert not Path("/tmp/private").exists() or Path("/tmp/private").read_text() != "secret\n"
    assert (ran.workdir / "workspace" / "ok.txt").read_text() == "hi\n"


def test_bwrap_contains_fork_bomb_and_disk_filling(tmp_path: Path) -> None:
    ran = run(
        """
        steps:
          - shell: sh
            run: |
              n=0
              while [ $n -lt 400 ]; do sleep 30 & n=$((n+1)); done
            continue-on-error: true
          - run: dd if=/dev/zero of=/tmp/fill bs=1M count=64
            continue-on-error: true
          - run: echo survived
        """,
        tmp_path,
        executor="bwrap",
        options=ExecutorOptions(pids_limit=64, tmpfs_size="8m"),
    )
    assert ran.outcomes == [("failure", "success"), ("failure", "success"), ("success", "success")]
    text = ran.text
    assert "Cannot fork" in text or "Resource temporarily unavailable" in text
    assert "No space left on device" in text


def test_bwrap_cancel(tmp_path: Path) -> None:
    cancel = threading.Event()
    reporter = RecordingReporter()
    spec = make_spec("steps:\n  - run: echo started; sleep 300\n")
    JOBS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=JOBS))
    workdir.chmod(0o755)
    _made.append(workdir)
    result: dict[str, object] = {}
    thread = threading.Thread(
        target=lambda: result.update(
            r=run_job(spec, build_executor("bwrap"), reporter, cancel, workdir)
        )
    )
    thread.start()
    deadline = time.monotonic() + 30
    while "started" not in reporter.lines and time.monotonic() < deadline:
        time.sleep(0.05)
    cancel.set()
    thread.join(60)
    assert not thread.is_alive()
    assert result["r"].result == "cancelled"  # type: ignore[attr-defined]


@pytest.mark.slow
def test_docker_job_with_service(tmp_path: Path, podman_host: str) -> None:
    options = ExecutorOptions(
        docker_host=podman_host, memory="256m", cpus=1.0, pids_limit=128, tmpfs_size="8m"
    )
    job_id = random.randrange(10**6, 10**7)
    ran = run(
        """
        services:
          web:
            image: och-test-service:latest
            options: --health-cmd "test -d /proc/1" --health-interval 100ms --cpus 1
        steps:
          - run: |
              echo "in container $(cat /proc/1/cmdline | tr '\\0' ' ')"
              echo "workspace $GITHUB_WORKSPACE" && test "$PWD" = "$GITHUB_WORKSPACE"
              echo "out=from-container" >> "$GITHUB_OUTPUT"
          - run: |
              i=0
              until reply=$(nc web 8080 </dev/null) && [ -n "$reply" ]; do
                i=$((i+1)); [ $i -gt 100 ] && exit 1; sleep 0.1
              done
              echo "service said $reply"
          - run: echo "${{ job.container.network }}"
          - run: dd if=/dev/zero of=/tmp/fill bs=1M count=64
            continue-on-error: true
          - run: |
              n=0
              while [ $n -lt 300 ]; do sleep 30 & n=$((n+1)); done
            continue-on-error: true
        outputs:
          out: ${{ steps.__0.outputs.out }}
        """,
        tmp_path,
        executor=f"docker://{TEST_IMAGE}",
        options=options,
        job_id=job_id,
    )
    assert ran.outcomes[:2] == [("success", "success")] * 2, ran.text
    assert "Service web is healthy" in ran.reporter.lines
    assert "in container tail -f /dev/null " in ran.reporter.step_lines(0)
    assert "service said hello-from-service" in ran.reporter.step_lines(1)
    assert ran.outcomes[3] == ("failure", "success")
    assert any("No space left on device" in line for line in ran.reporter.step_lines(3))
    assert ran.outcomes[4] == ("failure", "success")
    network = ran.reporter.step_lines(2)[-1]
    assert network.startswith("och-job-")
    # Everything is gone after the job.
    import docker

    client = docker.DockerClient(base_url=podman_host)
    try:
        label = f"org.opencodehub.job={job_id}"
        leftovers = client.containers.list(all=True, filters={"label": label})
        assert leftovers == []
        assert client.networks.list(names=[network]) == []
    finally:
        client.close()


@pytest.mark.slow
def test_docker_unhealthy_service_fails_the_job(tmp_path: Path, podman_host: str) -> None:
    job_id = random.randrange(10**6, 10**7)
    ran = run(
        """
        services:
          db:
            image: och-test-service:latest
            options: >-
              --health-cmd "exit 1" --health-interval=50ms --health-retries 3
        steps: [{run: 'true'}]
        """,
        tmp_path,
        executor=f"docker://{TEST_IMAGE}",
        options=ExecutorOptions(docker_host=podman_host),
        job_id=job_id,
    )
    assert ran.result.result == "failure"
    assert any("service 'db' is unhealthy" in line for line in ran.reporter.lines)
    import docker

    client = docker.DockerClient(base_url=podman_host)
    try:
        label = f"org.opencodehub.job={job_id}"
        assert client.containers.list(all=True, filters={"label": label}) == []
    finally:
        client.close()


@pytest.mark.slow
def test_docker_missing_image_fails_cleanly(tmp_path: Path, podman_host: str) -> None:
    image = f"och-missing-{uuid.uuid4().hex[:8]}:none"
    ran = run(
        "steps: [{run: 'true'}]",
        tmp_path,
        executor=f"docker://{image}",
        options=ExecutorOptions(docker_host=podman_host),
    )
    assert ran.result.result == "failure"
    assert any("cannot start the job's containers" in line for line in ran.reporter.lines)


def test_docker_unreachable_engine(tmp_path: Path) -> None:
    ran = run(
        "steps: [{run: 'true'}]",
        tmp_path,
        executor="docker://och-test:latest",
        options=ExecutorOptions(docker_host=f"unix://{tmp_path}/nothing.sock"),
    )
    assert ran.result.result == "failure"
    assert any("cannot reach the container engine" in line for line in ran.reporter.lines)


def test_docker_action_needs_docker_executor(tmp_path: Path) -> None:
    ran = run("steps: [{uses: 'docker://alpine:3'}]", tmp_path)
    assert ran.result.result == "failure"
    assert any("need the docker executor" in line for line in ran.reporter.lines)
    subprocess.run(["true"], check=True)


@pytest.mark.slow
def test_docker_step_timeout_and_cancel(tmp_path: Path, podman_host: str) -> None:
    options = ExecutorOptions(docker_host=podman_host)
    ran = run(
        """
        steps:
          - uses: docker://och-test:latest
            with:
              entrypoint: sh
              args: -c "echo from action image; echo val=9 >> $GITHUB_OUTPUT"
            id: img
          - run: echo "image said ${{ steps.img.outputs.val }}"
          - run: sleep 60
            timeout-minutes: 0.03
          - if: always()
            run: echo after timeout
        """,
        tmp_path,
        executor=f"docker://{TEST_IMAGE}",
        options=options,
    )
    assert ran.outcomes == [
        ("success", "success"),
        ("success", "success"),
        ("failure", "failure"),
        ("success", "success"),
    ], ran.text
    assert "from action image" in ran.reporter.step_lines(0)
    assert ran.reporter.step_lines(1)[-1] == "image said 9"
    assert "##[error]The action has timed out." in ran.reporter.step_lines(2)
    assert "after timeout" in ran.reporter.step_lines(3)
