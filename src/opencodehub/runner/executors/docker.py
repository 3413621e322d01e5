"""Run a job in a container through the Docker Engine API (Docker or Podman).

One container per job (the job's ``container:`` image, else the runner label's image) with the
job's directory bind-mounted at the same path, a network of its own, ``services:`` containers on
that network reachable by their names, CPU/memory/PID limits and a size-limited /tmp.
Everything is removed when the job ends, whatever the outcome.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opencodehub.runner.executors.base import (
    EXIT_CANCELLED,
    EXIT_TIMEOUT,
    ExecutorError,
    ExecutorOptions,
    JobEnvironment,
    OutputCallback,
)
from opencodehub.runner.executors.host import runner_arch

LABEL = "org.opencodehub.job"
MAX_FILE_BYTES = 4 * 1024**3


def _parse_memory(text: str | None) -> str | None:
    return text or None


def _duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


def _health_options(options: Any, log: OutputCallback, name: str) -> dict[str, Any] | None:
    """The health check of a service's `options` (docker run flags); other flags are ignored."""
    if not options:
        return None
    try:
        words = shlex.split(str(options))
    except ValueError:
        log(f"Service {name}: cannot parse options {options!r}")
        return None
    values: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        key, eq, inline = word.partition("=")
        if key in ("--health-cmd", "--health-interval", "--health-retries", "--health-timeout"):
            if eq:
                values[key] = inline
            elif i + 1 < len(words):
                values[key] = words[i + 1]
                i += 1
        elif word.startswith("-"):
            log(f"Service {name}: option {key} is not supported and was ignored")
        i += 1
    if "--health-cmd" not in values:
        return None
    try:
        interval = _duration(values.get("--health-interval", "2s"))
        retries = int(values.get("--health-retries", "30"))
    except ValueError:
        raise ExecutorError(f"service '{name}': invalid health options") from None
    return {"cmd": values["--health-cmd"], "interval": max(0.05, interval), "retries": retries}


def _env_list(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    return {}


class DockerExecutor:
    name = "docker"
    os_name = "Linux"

    def __init__(self, options: ExecutorOptions | None = None, image: str | None = None) -> None:
        self.options = options or ExecutorOptions()
        self.image = image
        self.arch = runner_arch()
        self.client: Any = None
        self.container: Any = None
        self.network: Any = None
        self.services: list[Any] = []
        self.container_context: dict[str, Any] = {}
        self.services_context: dict[str, Any] = {}
        self._stopped = False

    # ---- set-up ----

    def _client(self) -> Any:
        import docker

        base_url = self.options.docker_host or os.environ.get("DOCKER_HOST")
        try:
            client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
            client.ping()
        except Exception as exc:
            raise ExecutorError(f"cannot reach the container engine: {exc}") from None
        return client

    def start(self, env: JobEnvironment) -> None:
        import docker.errors

        self.workdir = env.workdir
        self.workspace = env.workspace or env.workdir / "workspace"
        spec = env.container or {}
        image = spec.get("image") or self.image
        if not image:
            raise ExecutorError("no container image: set the job's 'container' or the runner label")
        self.client = self._client()
        suffix = f"{env.job_id}-{uuid.uuid4().hex[:8]}"
        labels = {LABEL: str(env.job_id)}
        self.labels = labels
        hosts: dict[str, str] = {}
        try:
            self.network = self.client.networks.create(
                f"och-job-{suffix}",
                driver="bridge",
                internal=not self.options.allow_network,
                labels=labels,
            )
            for name, svc in (env.services or {}).items():
                if not isinstance(svc, dict) or not svc.get("image"):
                    raise ExecutorError(f"service '{name}' needs an image")
                env.log(f"Starting service {name} ({svc['image']})")
                container = self.client.containers.run(
                    svc["image"],
                    detach=True,
                    name=f"och-{name}-{suffix}",
                    environment=_env_list(svc.get("env")),
                    network=self.network.name,
                    networking_config={
                        self.network.name: self.client.api.create_endpoint_config(aliases=[name])
                    },
                    labels=labels,
                    **self._limits(),
                )
                container.reload()
                networks = container.attrs.get("NetworkSettings", {}).get("Networks", {})
                address = (networks.get(self.network.name) or {}).get("IPAddress")
                if address:
                    # Name resolution without relying on the engine's DNS plugin.
                    hosts[name] = address
                self.services.append(container)
                self.services_context[name] = {
                    "id": container.id,
                    "network": self.network.name,
                    "ports": {},
                }
                health = _health_options(svc.get("options"), env.log, name)
                if health:
                    self._wait_healthy(name, container, health, env.log)
            mounts = {str(self.workdir): {"bind": str(self.workdir), "mode": "rw"}}
            if not self.workspace.resolve().is_relative_to(self.workdir.resolve()):
                mounts[str(self.workspace)] = {"bind": str(self.workspace), "mode": "rw"}
            env.log(f"Starting job container ({image})")
            self.container = self.client.containers.run(
                image,
                entrypoint=["tail"],
                command=["-f", "/dev/null"],
                detach=True,
                name=f"och-job-{suffix}",
                environment=_env_list(spec.get("env")),
                volumes=mounts,
                network=self.network.name,
                working_dir=str(self.workspace),
                labels=labels,
                extra_hosts=hosts or None,
                tmpfs={"/tmp": f"rw,size={self.options.tmpfs_size}"},  # noqa: S108
                **self._limits(),
            )
        except docker.errors.APIError as exc:
            self.stop()
            raise ExecutorError(
                f"cannot start the job's containers: {exc.explanation or exc}"
            ) from None
        except docker.errors.DockerException as exc:
            self.stop()
            raise ExecutorError(f"cannot start the job's containers: {exc}") from None
        except ExecutorError:
            self.stop()
            raise
        self.container_context = {"id": self.container.id, "network": self.network.name}

    def _limits(self) -> dict[str, Any]:
        from docker.types import Ulimit

        limits: dict[str, Any] = {
            "pids_limit": self.options.pids_limit,
            "ulimits": [
                Ulimit(name="nproc", soft=self.options.pids_limit, hard=self.options.pids_limit),
                Ulimit(name="nofile", soft=1024, hard=1024),
                Ulimit(name="fsize", soft=MAX_FILE_BYTES, hard=MAX_FILE_BYTES),
            ],
        }
        if self.options.cpus:
            limits["nano_cpus"] = int(self.options.cpus * 1e9)
        if self.options.memory:
            limits["mem_limit"] = self.options.memory
        return limits

    def _wait_healthy(
        self, name: str, container: Any, health: dict[str, Any], log: OutputCallback
    ) -> None:
        """Run the service's health command ourselves until it passes (engines differ in
        whether and how they run health checks)."""
        log(f"Waiting for service {name} to be healthy")
        for _attempt in range(health["retries"]):
            result = container.exec_run(["sh", "-c", health["cmd"]])
            if result.exit_code == 0:
                log(f"Service {name} is healthy")
                return
            time.sleep(health["interval"])
        raise ExecutorError(f"service '{name}' is unhealthy: '{health['cmd']}' kept failing")

    # ---- running ----

    def path(self, host_path: Path) -> str:
        return str(host_path)

    def which(self, program: str, env: dict[str, str]) -> str | None:
        if self.container is None:
            return None
        result = self.container.exec_run(
            ["sh", "-c", f"command -v {shlex.quote(program)}"],
            environment={"PATH": env.get("PATH", "/usr/local/bin:/usr/bin:/bin")},
        )
        out = result.output.decode().strip() if result.output else ""
        return out or None if result.exit_code == 0 else None

    def run(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: str,
        on_output: OutputCallback,
        cancel: threading.Event,
        timeout: float | None = None,
    ) -> int:
        if self.container is None:
            raise ExecutorError("the job container is not running")
        api = self.client.api
        # The step's output goes to a file in the bind-mounted job directory, read from here
        # as it grows: attaching to an exec's stream loses the output of short commands on
        # some engines.
        log_path = self.workdir / f".exec-{uuid.uuid4().hex}.log"
        log_path.write_bytes(b"")
        log_path.chmod(0o666)
        wrapper = ["sh", "-c", 'exec "$@" >>"$0" 2>&1', str(log_path), *argv]
        exec_id = api.exec_create(
            self.container.id, wrapper, environment=env, workdir=cwd, stdout=True, stderr=True
        )["Id"]
        # Attached, the stream ends when the process does (a detached exec may never report
        # its end on some engines); its output is in the file.
        stream = api.exec_start(exec_id, stream=True)
        state = {"reason": 0}
        done = threading.Event()

        def kill() -> None:
            # The exec API cannot signal an exec'd process: end everything in the container
            # but its init, which keeps the job's container up for the next steps.
            self.container.exec_run(["sh", "-c", "kill -9 -1"])

        def watch() -> None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not done.wait(0.1):
                if cancel.is_set():
                    state["reason"] = EXIT_CANCELLED
                elif deadline is not None and time.monotonic() >= deadline:
                    state["reason"] = EXIT_TIMEOUT
                if state["reason"]:
                    kill()
                    return

        def follow() -> None:
            pending = b""
            with log_path.open("rb") as fh:
                while True:
                    finished = done.is_set()
                    chunk = fh.read()
                    if chunk:
                        pending += chunk
                        *lines, pending = pending.split(b"\n")
                        for raw in lines:
                            on_output(raw.rstrip(b"\r").decode("utf-8", "replace"))
                    elif finished:
                        break
                    else:
                        time.sleep(0.05)
            if pending:
                on_output(pending.rstrip(b"\r").decode("utf-8", "replace"))

        watcher = threading.Thread(target=watch, daemon=True)
        reader = threading.Thread(target=follow, daemon=True)
        watcher.start()
        reader.start()
        try:
            for _chunk in stream:
                pass
        finally:
            done.set()
            watcher.join()
            reader.join()
            log_path.unlink(missing_ok=True)
        code = api.exec_inspect(exec_id).get("ExitCode")
        return state["reason"] or (code if code is not None else 1)

    def run_image(
        self,
        image: str,
        args: list[str],
        *,
        entrypoint: str | None = None,
        env: dict[str, str],
        on_output: OutputCallback,
        cancel: threading.Event,
        timeout: float | None = None,
    ) -> int:
        """A `docker://` action: a sibling container on the job network with the workspace."""
        mounts = {str(self.workdir): {"bind": str(self.workdir), "mode": "rw"}}
        if not self.workspace.resolve().is_relative_to(self.workdir.resolve()):
            mounts[str(self.workspace)] = {"bind": str(self.workspace), "mode": "rw"}
        container = self.client.containers.run(
            image,
            args or None,
            entrypoint=[entrypoint] if entrypoint else None,
            detach=True,
            environment=env,
            volumes=mounts,
            working_dir=str(self.workspace),
            network=self.network.name,
            labels=self.labels,
            **self._limits(),
        )
        self.services.append(container)
        done = threading.Event()
        state = {"reason": 0}

        def watch() -> None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not done.wait(0.1):
                if cancel.is_set():
                    state["reason"] = EXIT_CANCELLED
                elif deadline is not None and time.monotonic() >= deadline:
                    state["reason"] = EXIT_TIMEOUT
                if state["reason"]:
                    container.kill()
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        pending = b""
        try:
            for chunk in container.logs(stream=True, follow=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    on_output(raw.decode("utf-8", "replace"))
            if pending:
                on_output(pending.decode("utf-8", "replace"))
            code = container.wait().get("StatusCode", 1)
        finally:
            done.set()
            watcher.join()
        return state["reason"] or code

    # ---- clean-up ----

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for container in [*(c for c in [self.container] if c is not None), *self.services]:
            # Already gone is fine: clean-up must go on.
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
        if self.network is not None:
            with contextlib.suppress(Exception):
                self.network.remove()
        if self.client is not None:
            self.client.close()
