"""`container:`/`services:` `options` and `credentials` on the docker executor: docker run flags
mapped onto the SDK's create arguments, unsafe or unsupported flags refused with a clear
error, registry credentials used for the pull and masked in the log."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from opencodehub.runner.executors.base import ExecutorError, ExecutorOptions, JobEnvironment
from opencodehub.runner.executors.docker import (
    DockerExecutor,
    memory_bytes,
    parse_options,
    registry_auth,
)
from tests.runner.conftest import run


def test_supported_options_map_onto_create_arguments() -> None:
    parsed = parse_options(
        "--cpus 1.5 --memory=512m -e A=1 --env B=two=2 -eC= --user 1000:1000 "
        "--hostname build-box --network-alias builder --net-alias b2 --cap-add NET_ADMIN "
        "--cap-add cap_sys_nice -w /srv/app --shm-size 64m --add-host db.local:10.0.0.5 "
        "-v cache:/cache:ro",
        "container",
    )
    assert parsed.create == {
        "nano_cpus": 1_500_000_000,
        "mem_limit": 512 * 1024**2,
        "user": "1000:1000",
        "hostname": "build-box",
        "cap_add": ["NET_ADMIN", "SYS_NICE"],
        "working_dir": "/srv/app",
        "shm_size": 64 * 1024**2,
        "extra_hosts": {"db.local": "10.0.0.5"},
    }
    assert parsed.environment == {"A": "1", "B": "two=2", "C": ""}
    assert parsed.aliases == ["builder", "b2"]
    assert parsed.volumes == [("cache", "/cache", "ro")]
    assert parsed.health is None


def test_health_options_and_empty_options() -> None:
    parsed = parse_options(
        '--health-cmd "pg_isready -U x" --health-interval=100ms --health-retries 5 '
        "--health-timeout 5s --health-start-period 1s",
        "service 'db'",
    )
    assert parsed.health == {"cmd": "pg_isready -U x", "interval": 0.1, "retries": 5}
    assert parse_options(None, "container").create == {}
    assert parse_options("", "container").create == {}


def test_cpu_and_memory_never_exceed_the_runners_limits() -> None:
    runner = ExecutorOptions(cpus=1.0, memory="256m")
    parsed = parse_options("--cpus 4 -m 2g", "container", runner)
    assert parsed.create == {"nano_cpus": 1_000_000_000, "mem_limit": 256 * 1024**2}
    smaller = parse_options("--cpus 0.5 --memory 128m", "container", runner)
    assert smaller.create == {"nano_cpus": 500_000_000, "mem_limit": 128 * 1024**2}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("--privileged", "option --privileged is not allowed: it gives the container every"),
        ("--network host", "option --network host is not allowed: it shares the runner's host"),
        ("--net=host", "option --net host is not allowed"),
        ("--network other", "the job's containers share a network of their own"),
        ("--pid=host", "option --pid is not allowed"),
        ("--device /dev/kvm", "option --device is not allowed"),
        ("--security-opt seccomp=unconfined", "option --security-opt is not allowed"),
        ("--cap-add SYS_ADMIN", "--cap-add SYS_ADMIN is not allowed"),
        ("--cap-add all", "--cap-add ALL is not allowed"),
        ("-v /etc:/host-etc", "mounts a path of the runner's host"),
        ("--volume=/:/host", "mounts a path of the runner's host"),
        ("--ulimit nproc=100000", "option --ulimit is not allowed"),
        ("--init", "option --init is not supported (supported: --add-host, --cap-add"),
        ("--entrypoint sh", "option --entrypoint is not supported"),
        ("-e HOME", "-e 'HOME' must be NAME=VALUE"),
        ("--cpus lots", "--cpus 'lots' is not a number"),
        ("--memory 1k", "--memory '1k' is below 6 MiB"),
        ("--memory 12q", "invalid memory size '12q'"),
        ("--workdir relative", "--workdir 'relative' must be an absolute path"),
        ("--user 'a b'", "--user 'a b' is not a user[:group]"),
        ("--hostname", "option --hostname needs a value"),
        ("image-name", "unexpected 'image-name' in options"),
        ("--health-interval 1s", "--health-* options need --health-cmd"),
        ('--health-cmd "x', "cannot parse options"),
    ],
)
def test_unsafe_or_unsupported_options_are_refused(options: str, message: str) -> None:
    with pytest.raises(ExecutorError) as info:
        parse_options(options, "container", ExecutorOptions())
    assert str(info.value).startswith("container: ")
    assert message in str(info.value)


def test_host_volumes_in_options_follow_allow_host_mounts() -> None:
    allowed = parse_options(
        "-v /srv/data:/data", "container", ExecutorOptions(allow_host_mounts=True)
    )
    assert allowed.volumes == [("/srv/data", "/data", "rw")]


def test_memory_sizes() -> None:
    assert memory_bytes("1048576") == 1048576
    assert memory_bytes("1.5GB") == int(1.5 * 1024**3)
    assert memory_bytes("64M") == 64 * 1024**2


def test_registry_auth() -> None:
    assert registry_auth({"username": "u", "password": "p"}, "container") == {
        "username": "u",
        "password": "p",
    }
    # As on GitHub, empty credentials (a secret that is not set) mean no login.
    assert registry_auth({"username": "u", "password": ""}, "container") is None
    assert registry_auth(None, "container") is None
    with pytest.raises(ExecutorError, match="'credentials' must be a mapping"):
        registry_auth("u:p", "container")


# ---- the executor, against a recording engine ------------------------------------------------


class _Container:
    def __init__(self, name: str) -> None:
        self.id = f"id-{name}"
        self.attrs: dict[str, Any] = {"NetworkSettings": {"Networks": {}}}

    def reload(self) -> None:
        pass

    def exec_run(self, argv: list[str], **_: Any) -> Any:
        return type("Result", (), {"exit_code": 0, "output": b""})()

    def remove(self, **_: Any) -> None:
        pass


class _Engine:
    """The slice of docker.DockerClient the executor's start() uses, recording the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        outer = self

        class Images:
            def pull(self, image: str, **kwargs: Any) -> None:
                outer.calls.append(("pull", image, kwargs))

        class Containers:
            def run(self, image: str, **kwargs: Any) -> _Container:
                outer.calls.append(("run", image, kwargs))
                return _Container(str(kwargs.get("name")))

        class Networks:
            def create(self, name: str, **kwargs: Any) -> Any:
                outer.calls.append(("network", name, kwargs))
                return type("Network", (), {"name": name, "remove": lambda self: None})()

        class Api:
            def create_endpoint_config(self, **kwargs: Any) -> dict[str, Any]:
                return {"endpoint": kwargs}

        self.images, self.containers, self.networks, self.api = (
            Images(),
            Containers(),
            Networks(),
            Api(),
        )

    def close(self) -> None:
        pass


def _start(tmp_path: Path, container: dict[str, Any], services: dict[str, Any]) -> _Engine:
    engine = _Engine()
    executor = DockerExecutor(ExecutorOptions(cpus=2.0))
    executor._client = lambda: engine  # type: ignore[method-assign]
    lines: list[str] = []
    try:
        executor.start(
            JobEnvironment(
                workdir=tmp_path,
                job_id=5,
                container=container,
                services=services,
                log=lines.append,
            )
        )
    finally:
        executor.stop()
    return engine


def test_the_executor_pulls_with_credentials_and_applies_options(tmp_path: Path) -> None:
    engine = _start(
        tmp_path,
        {
            "image": "registry.example/team/build:1",
            "options": "--cpus 8 -e FROM_OPTIONS=1 --hostname box --network-alias builder",
            "env": {"FROM_ENV": "2"},
            "credentials": {"username": "bot", "password": "s3cret"},
        },
        {
            "db": {
                "image": "registry.example/team/db:1",
                "options": "--user 999 --network-alias database",
                "credentials": {"username": "svc", "password": "pw"},
            },
            "cache": {"image": "cache:1"},
        },
    )
    pulls = [(image, kwargs) for kind, image, kwargs in engine.calls if kind == "pull"]
    assert pulls == [
        ("registry.example/team/db:1", {"auth_config": {"username": "svc", "password": "pw"}}),
        (
            "registry.example/team/build:1",
            {"auth_config": {"username": "bot", "password": "s3cret"}},
        ),
    ]
    runs = {image: kwargs for kind, image, kwargs in engine.calls if kind == "run"}
    db = runs["registry.example/team/db:1"]
    assert db["user"] == "999"
    [network] = db["networking_config"]
    assert db["networking_config"][network] == {"endpoint": {"aliases": ["db", "database"]}}
    assert "user" not in runs["cache:1"]
    job = runs["registry.example/team/build:1"]
    assert job["nano_cpus"] == 2_000_000_000  # the runner's limit, not the job's 8
    assert job["hostname"] == "box"
    assert job["environment"] == {"FROM_ENV": "2", "FROM_OPTIONS": "1"}
    assert job["networking_config"][network] == {"endpoint": {"aliases": ["builder"]}}
    assert job["working_dir"] == str(tmp_path / "workspace")


def test_a_refused_option_fails_before_anything_is_created(tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match="service 'db': option --privileged is not allowed"):
        _start(
            tmp_path,
            {"image": "build:1"},
            {"db": {"image": "db:1", "options": "--privileged"}},
        )


def test_registry_passwords_are_masked_in_the_log(tmp_path: Path) -> None:
    ran = run(
        """
        container:
          image: registry.example/build:1
          credentials: {username: bot, password: "${{ secrets.REGISTRY_PASSWORD }}"}
        services:
          db:
            image: db:1
            credentials: {username: svc, password: hunter22-service}
        steps:
          - run: echo "job ${{ secrets.REGISTRY_PASSWORD }} service hunter22-service"
        """,
        tmp_path,
        contexts={"secrets": {"REGISTRY_PASSWORD": "registry-pw-1"}},
    )
    assert ran.result.result == "success", ran.text
    assert "job *** service ***" in ran.reporter.step_lines(0)
    assert "registry-pw-1" not in ran.text and "hunter22-service" not in ran.text


# ---- on Podman --------------------------------------------------------------------------------


class _Inspecting(DockerExecutor):
    """Records what the engine made of the job's containers before they are removed."""

    inspected: dict[str, dict[str, Any]]

    def stop(self) -> None:
        self.inspected = {}
        for container in [self.container, *self.services]:
            if container is not None:
                container.reload()
                self.inspected[container.name] = container.attrs
        super().stop()


@pytest.mark.slow
def test_options_apply_to_the_job_and_service_containers(tmp_path: Path, podman_host: str) -> None:
    import threading

    from opencodehub.runner.engine import run_job
    from tests.runner.conftest import TEST_IMAGE, RecordingReporter, make_spec

    executor = _Inspecting(ExecutorOptions(docker_host=podman_host), image=None)
    reporter = RecordingReporter()
    result = run_job(
        make_spec(
            f"""
            container:
              image: {TEST_IMAGE}
              options: >-
                --env FROM_OPTIONS=yes --user 0:0 --hostname buildbox
                --network-alias builder --workdir /srv --cap-add NET_ADMIN
                --memory 128m --cpus 0.5
            services:
              web:
                image: och-test-service:latest
                options: >-
                  --network-alias www -e SERVICE_FLAG=1
                  --health-cmd "test -d /proc/1" --health-interval 100ms
            steps:
              - run: echo "env=$FROM_OPTIONS host=$(hostname) uid=$(id -u) pwd=$PWD"
              - run: |
                  caps=$(awk '/^CapEff/ {{print $2}}' /proc/self/status)
                  echo "net_admin=$(( (0x$caps >> 12) & 1 ))"
            """,
            job_id=random.randrange(10**6, 10**7),
        ),
        executor,
        reporter,
        threading.Event(),
        tmp_path / "job",
    )
    text = "\n".join(reporter.lines)
    assert result.result == "success", text
    workspace = tmp_path / "job" / "workspace"
    # Steps still run in the workspace; --workdir is the container's own working directory.
    assert f"env=yes host=buildbox uid=0 pwd={workspace}" in reporter.step_lines(0)
    assert "net_admin=1" in reporter.step_lines(1)
    assert "Service web is healthy" in reporter.lines
    job = next(v for k, v in executor.inspected.items() if k.startswith("och-job-"))
    service = next(v for k, v in executor.inspected.items() if k.startswith("och-web-"))
    assert job["HostConfig"]["NanoCpus"] == 500_000_000
    assert job["HostConfig"]["Memory"] == 128 * 1024**2
    assert job["Config"]["WorkingDir"] == "/srv"
    assert job["Config"]["User"] == "0:0"
    [network] = job["NetworkSettings"]["Networks"]
    assert "builder" in job["NetworkSettings"]["Networks"][network]["Aliases"]
    assert {"web", "www"} <= set(service["NetworkSettings"]["Networks"][network]["Aliases"])
    assert "SERVICE_FLAG=1" in service["Config"]["Env"]
