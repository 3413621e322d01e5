"""Run a job in a container through the Docker Engine API (Docker or Podman).

One container per job (the job's ``container:`` image, else the runner label's image) with the
job's directory bind-mounted at the same path, a network of its own, ``services:`` containers on
that network reachable by their names, CPU/memory/PID limits and a size-limited /tmp.
Everything is removed when the job ends, whatever the outcome.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
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


# `options:` flags (docker run's) that take a value, by every spelling, and what they set.
_VALUE_FLAGS = {
    "--cpus": "cpus",
    "--memory": "memory",
    "-m": "memory",
    "--env": "env",
    "-e": "env",
    "--user": "user",
    "-u": "user",
    "--hostname": "hostname",
    "-h": "hostname",
    "--network-alias": "alias",
    "--net-alias": "alias",
    "--cap-add": "cap_add",
    "--workdir": "workdir",
    "-w": "workdir",
    "--volume": "volume",
    "-v": "volume",
    "--shm-size": "shm_size",
    "--add-host": "add_host",
    "--health-cmd": "health_cmd",
    "--health-interval": "health_interval",
    "--health-retries": "health_retries",
    "--health-timeout": "health_timeout",
    "--health-start-period": "health_start_period",
    "--network": "network",
    "--net": "network",
}
# Flags that would let a job reach past its container (the runner's host, its devices, its
# processes or its network) or past the runner's limits: refused, with the reason.
_REFUSED_FLAGS = {
    "--privileged": "it gives the container every device and capability of the runner's host",
    "--pid": "it shares a process namespace with the runner's host",
    "--ipc": "it shares an IPC namespace with the runner's host",
    "--uts": "it shares the runner's host name namespace",
    "--userns": "it changes the container's user namespace",
    "--cgroupns": "it changes the container's cgroup namespace",
    "--cgroup-parent": "it moves the container out of the runner's cgroups",
    "--device": "it exposes devices of the runner's host",
    "--security-opt": "it weakens the container's confinement",
    "--mount": "use 'volumes' (or --volume) instead",
    "--ulimit": "the runner sets the container's limits",
    "--pids-limit": "the runner sets the container's limits",
    "--name": "the runner names the job's containers",
    "--rm": "the runner removes the job's containers",
}
# Capabilities a job may not add: each is a way out of the container to the runner's host.
_REFUSED_CAPABILITIES = {
    "ALL", "SYS_ADMIN", "SYS_MODULE", "SYS_RAWIO", "SYS_BOOT", "SYS_TIME", "SYS_PTRACE",
    "MAC_ADMIN", "MAC_OVERRIDE", "DAC_READ_SEARCH", "BPF", "PERFMON", "SYSLOG",
}  # fmt: skip
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([bkmgt]?)b?$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CAPABILITY = re.compile(r"^(?:CAP_)?([A-Z_]+)$")


def memory_bytes(text: str) -> int:
    """Docker's memory sizes (`512m`, `1g`, `1.5GB`, `1048576`) in bytes."""
    m = _MEMORY.match(text.strip())
    if m is None:
        raise ValueError(f"invalid memory size {text!r}")
    factor = 1024 ** "bkmgt".index((m[2] or "b").lower())
    return int(float(m[1]) * factor)


@dataclass
class ContainerOptions:
    """A `container:`/`services:` entry's `options` mapped onto docker SDK arguments."""

    create: dict[str, Any] = field(default_factory=dict)  # containers.run() keyword arguments
    environment: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    volumes: list[tuple[str, str, str]] = field(default_factory=list)
    health: dict[str, Any] | None = None


def parse_options(value: Any, what: str, runner: ExecutorOptions | None = None) -> ContainerOptions:
    """`options:` (docker run flags) as SDK arguments: --cpus, --memory, --env, --user,
    --hostname, --network-alias, --cap-add, --workdir, --volume, --shm-size, --add-host and
    the --health-* flags. A flag that would reach past the container (--privileged,
    --network host, a host path without allow_host_mounts…) or that is not supported is an
    error naming it. CPU and memory never go above the runner's own limits."""
    runner = runner or ExecutorOptions()
    parsed = ContainerOptions()
    if value is None or value == "":
        return parsed
    try:
        words = shlex.split(str(value))
    except ValueError as exc:
        raise ExecutorError(f"{what}: cannot parse options {value!r}: {exc}") from None
    values: list[tuple[str, str, str]] = []  # (flag as written, what it sets, value)
    i = 0
    while i < len(words):
        word = words[i]
        flag, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        if not word.startswith("-") or word == "-":
            raise ExecutorError(f"{what}: unexpected {word!r} in options (flags only)")
        if flag in _REFUSED_FLAGS:
            raise ExecutorError(f"{what}: option {flag} is not allowed: {_REFUSED_FLAGS[flag]}")
        if not word.startswith("--") and len(word) > 2 and word[:2] in _VALUE_FLAGS:
            flag, eq, inline = word[:2], "=", word[2:]  # `-eNAME=value`, `-m512m`
        if flag not in _VALUE_FLAGS:
            raise ExecutorError(
                f"{what}: option {flag} is not supported (supported: "
                + ", ".join(sorted(k for k in _VALUE_FLAGS if k.startswith("--")))
                + ")"
            )
        if eq:
            argument = inline
        elif i + 1 < len(words):
            i += 1
            argument = words[i]
        else:
            raise ExecutorError(f"{what}: option {flag} needs a value")
        values.append((flag, _VALUE_FLAGS[flag], argument))
        i += 1

    health: dict[str, str] = {}
    for flag, key, argument in values:
        if key == "cpus":
            try:
                cpus = float(argument)
            except ValueError:
                raise ExecutorError(f"{what}: {flag} {argument!r} is not a number") from None
            if not 0 < cpus <= 1024:
                raise ExecutorError(f"{what}: {flag} {argument!r} is out of range")
            if runner.cpus:
                cpus = min(cpus, runner.cpus)
            parsed.create["nano_cpus"] = int(cpus * 1e9)
        elif key == "memory":
            try:
                size = memory_bytes(argument)
            except ValueError as exc:
                raise ExecutorError(f"{what}: {flag}: {exc}") from None
            if size < 6 * 1024**2:
                raise ExecutorError(f"{what}: {flag} {argument!r} is below 6 MiB")
            if runner.memory:
                size = min(size, memory_bytes(runner.memory))
            parsed.create["mem_limit"] = size
        elif key == "env":
            name, has_value, text = argument.partition("=")
            if not has_value or not _ENV_NAME.match(name):
                raise ExecutorError(
                    f"{what}: {flag} {argument!r} must be NAME=VALUE (the runner's own "
                    "environment is not passed to jobs)"
                )
            parsed.environment[name] = text
        elif key == "user":
            if not re.fullmatch(r"[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]+)?", argument):
                raise ExecutorError(f"{what}: {flag} {argument!r} is not a user[:group]")
            parsed.create["user"] = argument
        elif key == "hostname":
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?", argument):
                raise ExecutorError(f"{what}: {flag} {argument!r} is not a host name")
            parsed.create["hostname"] = argument
        elif key == "alias":
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,252})?", argument):
                raise ExecutorError(f"{what}: {flag} {argument!r} is not a host name")
            parsed.aliases.append(argument)
        elif key == "cap_add":
            m = _CAPABILITY.match(argument.strip().upper())
            if m is None:
                raise ExecutorError(f"{what}: {flag} {argument!r} is not a capability")
            if m[1] in _REFUSED_CAPABILITIES:
                raise ExecutorError(
                    f"{what}: {flag} {m[1]} is not allowed: it lets a job reach the runner's host"
                )
            parsed.create.setdefault("cap_add", []).append(m[1])
        elif key == "workdir":
            if not argument.startswith("/") or ".." in argument.split("/"):
                raise ExecutorError(f"{what}: {flag} {argument!r} must be an absolute path")
            parsed.create["working_dir"] = argument
        elif key == "volume":
            parsed.volumes.extend(parse_volumes([argument], what, runner.allow_host_mounts))
        elif key == "shm_size":
            try:
                parsed.create["shm_size"] = memory_bytes(argument)
            except ValueError as exc:
                raise ExecutorError(f"{what}: {flag}: {exc}") from None
        elif key == "add_host":
            host, sep, address = argument.partition(":")
            if not sep or not host or not re.fullmatch(r"[0-9A-Fa-f.:\[\]]+", address):
                raise ExecutorError(f"{what}: {flag} {argument!r} must be HOST:IP")
            parsed.create.setdefault("extra_hosts", {})[host] = address.strip("[]")
        elif key == "network":
            reason = (
                "it shares the runner's host network"
                if argument == "host"
                else "the job's containers share a network of their own"
            )
            raise ExecutorError(f"{what}: option {flag} {argument} is not allowed: {reason}")
        else:  # --health-*
            health[key] = argument
    if health:
        if "health_cmd" not in health:
            raise ExecutorError(f"{what}: --health-* options need --health-cmd")
        try:
            interval = _duration(health.get("health_interval", "2s"))
            retries = int(health.get("health_retries", "30"))
        except ValueError:
            raise ExecutorError(f"{what}: invalid health options") from None
        parsed.health = {
            "cmd": health["health_cmd"],
            "interval": max(0.05, interval),
            "retries": retries,
        }
    return parsed


def registry_auth(value: Any, what: str) -> dict[str, str] | None:
    """`credentials: {username, password}` as the SDK's `auth_config`; None when either is
    empty (as on GitHub: a missing secret means no login, not an error)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ExecutorError(f"{what}: 'credentials' must be a mapping with username and password")
    username = value.get("username")
    password = value.get("password")
    if not username or not password:
        return None
    return {"username": str(username), "password": str(password)}


def _env_list(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    return {}


_PORT = re.compile(
    r"^(?:(?P<ip>\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]):)?(?:(?P<host>\d+):)?(?P<port>\d+)"
    r"(?:/(?P<proto>tcp|udp|sctp))?$"
)
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _port_number(text: str, what: str) -> int:
    number = int(text)
    if not 1 <= number <= 65535:
        raise ExecutorError(f"{what}: port {number} is out of range")
    return number


def parse_ports(value: Any, what: str) -> dict[str, Any]:
    """`ports:` entries (`8080:80`, `5432`, `127.0.0.1:8080:80/udp`) as the SDK's `ports`.

    A port without an address is published on the loopback interface only: a job's service
    is for the job, not for the runner's network.
    """
    if value is None:
        return {}
    if not isinstance(value, list):
        raise ExecutorError(f"{what}: 'ports' must be a list")
    ports: dict[str, Any] = {}
    for entry in value:
        m = _PORT.match(str(entry).strip()) if isinstance(entry, str | int) else None
        if m is None or isinstance(entry, bool):
            raise ExecutorError(
                f"{what}: invalid port {entry!r} (expected PORT, HOST:PORT or IP:HOST:PORT)"
            )
        container_port = _port_number(m["port"], what)
        host = _port_number(m["host"], what) if m["host"] else None
        address = (m["ip"] or "127.0.0.1").strip("[]")
        key = f"{container_port}/{m['proto'] or 'tcp'}"
        if key in ports:
            # One container port published on several host ports.
            previous = ports[key] if isinstance(ports[key], list) else [ports[key]]
            ports[key] = [*previous, (address, host)]
        else:
            ports[key] = (address, host)
    return ports


def parse_volumes(value: Any, what: str, allow_host: bool) -> list[tuple[str, str, str]]:
    """`volumes:` entries as (source, target, mode); source is '' (anonymous), a volume name
    or an absolute host path (only when the runner allows host mounts)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ExecutorError(f"{what}: 'volumes' must be a list")
    volumes: list[tuple[str, str, str]] = []
    for entry in value:
        if not isinstance(entry, str) or not entry.strip():
            raise ExecutorError(f"{what}: invalid volume {entry!r}")
        parts = entry.strip().split(":")
        mode = "rw"
        if len(parts) == 3 or (len(parts) == 2 and parts[1] in ("ro", "rw")):
            mode = parts.pop()
            if mode not in ("ro", "rw"):
                raise ExecutorError(f"{what}: invalid volume mode {mode!r} in {entry!r}")
        if len(parts) == 1:
            source, target = "", parts[0]
        elif len(parts) == 2:
            source, target = parts
        else:
            raise ExecutorError(f"{what}: invalid volume {entry!r} (expected [SOURCE:]PATH[:ro])")
        if not target.startswith("/") or ".." in target.split("/"):
            raise ExecutorError(f"{what}: volume target {target!r} must be an absolute path")
        if source.startswith("/"):
            if not allow_host:
                raise ExecutorError(
                    f"{what}: volume {entry!r} mounts a path of the runner's host, which this "
                    "runner does not allow (its admin can set allow_host_mounts in the runner's "
                    "configuration)"
                )
            if ".." in source.split("/"):
                raise ExecutorError(f"{what}: volume source {source!r} must not contain '..'")
        elif source and not _VOLUME_NAME.match(source):
            raise ExecutorError(
                f"{what}: volume {entry!r}: a source is a volume name or an absolute path"
            )
        volumes.append((source, target, mode))
    return volumes


def _published(container: Any) -> dict[str, str]:
    """`job.services.<id>.ports`: container port -> host port."""
    out: dict[str, str] = {}
    ports = container.attrs.get("NetworkSettings", {}).get("Ports") or {}
    for key, bindings in ports.items():
        if bindings:
            out[key.split("/", 1)[0]] = str(bindings[0].get("HostPort", ""))
    return out


def context_digest(directory: Path, dockerfile: str) -> str:
    """A hash of a build context's files (names, executable bits, contents, link targets)."""
    digest = hashlib.sha256(f"dockerfile={dockerfile}\0".encode())
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            path = Path(root) / name
            rel = path.relative_to(directory).as_posix()
            if rel == ".och-complete":
                continue
            if path.is_symlink():
                digest.update(f"L{rel}\0{os.readlink(path)}\0".encode())
                continue
            executable = os.access(path, os.X_OK)
            digest.update(f"F{rel}\0{int(executable)}\0".encode())
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            digest.update(b"\0")
        for name in dirs:
            if (Path(root) / name).is_symlink():
                link = Path(root) / name
                rel = link.relative_to(directory).as_posix()
                digest.update(f"L{rel}\0{os.readlink(link)}\0".encode())
    return digest.hexdigest()


_build_locks: dict[str, threading.Lock] = {}
_api_versions: dict[str, str] = {}
_build_locks_guard = threading.Lock()
# Action images (`och-action:<content hash>`): when this process last used each, and how many
# of its running jobs hold each (a held image is never pruned).
ACTION_IMAGE = "och-action"
ACTION_LABEL = "org.opencodehub.action"
_image_used_at: dict[str, float] = {}
_image_holders: Counter[str] = Counter()
_image_guard = threading.Lock()


def _build_lock(tag: str) -> threading.Lock:
    with _build_locks_guard:
        return _build_locks.setdefault(tag, threading.Lock())


def _created_at(image: Any) -> float:
    """An image's creation time (seconds since the epoch); 0 when the engine does not say."""
    created = image.attrs.get("Created")
    if isinstance(created, int | float):
        return float(created)
    if isinstance(created, str) and created:
        # RFC 3339 with up to nanoseconds (Podman): keep microseconds for fromisoformat.
        text = re.sub(r"(\.\d{6})\d+", r"\1", created.replace("Z", "+00:00"))
        text = re.sub(r"\s+[A-Z]{3,4}$", "", text)
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(text).timestamp()
    return 0.0


def _bare_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")


def prune_action_images(client: Any, keep: int, log: OutputCallback | None = None) -> list[str]:
    """Remove the built action images beyond the `keep` most recently used, never one in use:
    held by a job of this runner, or the image of any container of the engine (another
    runner's job, a stopped container). Last use is this process's record, else the image's
    creation time. Returns the tags removed."""
    import docker.errors

    found: list[tuple[float, str, str, str]] = []  # (last use, tag as listed, our tag, id)
    for image in client.images.list(filters={"label": f"{ACTION_LABEL}=1"}):
        for listed in image.tags or []:
            # Engines qualify the name: `localhost/…` (Podman), `docker.io/library/…`.
            tag = listed.rsplit("/", 1)[-1]
            if tag.startswith(f"{ACTION_IMAGE}:"):
                with _image_guard:
                    used = _image_used_at.get(tag)
                found.append(
                    (used if used is not None else _created_at(image), listed, tag, image.id)
                )
    if len(found) <= keep:
        return []
    found.sort(key=lambda item: item[0], reverse=True)
    in_use = {_bare_id(str(c.get("ImageID") or "")) for c in client.api.containers(all=True) or []}
    removed: list[str] = []
    for _used, listed, tag, image_id in found[keep:]:
        if _bare_id(image_id) in in_use:
            continue
        # Under the tag's build lock a job cannot be between finding the image and holding it.
        with _build_lock(tag):
            with _image_guard:
                if _image_holders[tag]:
                    continue
            try:
                client.images.remove(listed)
            except docker.errors.DockerException as exc:
                # In use after all (a container made meanwhile): it stays, as it should.
                if log is not None:
                    log(f"The action image {tag} was kept: {exc}")
                continue
            with _image_guard:
                _image_used_at.pop(tag, None)
        removed.append(tag)
    if removed and log is not None:
        log(f"Removed {len(removed)} action image(s) not used recently")
    return removed


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
        self.volumes: dict[str, Any] = {}
        self._which: dict[tuple[str, str], str] = {}
        self.held_images: set[str] = set()
        self._stopped = False

    # ---- set-up ----

    def _client(self) -> Any:
        import docker

        base_url = self.options.docker_host or os.environ.get("DOCKER_HOST")
        # Asking the engine for its API version costs up to a second on Podman (its /version
        # gathers system information): once per engine and process is enough.
        version = _api_versions.get(base_url or "")
        try:
            client = (
                docker.DockerClient(base_url=base_url, version=version)
                if base_url
                else docker.from_env(version=version)
            )
            client.ping()
        except Exception as exc:
            raise ExecutorError(f"cannot reach the container engine: {exc}") from None
        _api_versions.setdefault(base_url or "", client.api.api_version)
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
        self.suffix = suffix
        hosts: dict[str, str] = {}
        try:
            # Every entry is checked before anything is created.
            allow_host = self.options.allow_host_mounts
            job_ports = parse_ports(spec.get("ports"), "container")
            job_volumes = parse_volumes(spec.get("volumes"), "container", allow_host)
            job_options = parse_options(spec.get("options"), "container", self.options)
            job_auth = registry_auth(spec.get("credentials"), "container")
            service_specs: dict[str, tuple[dict[str, Any], Any, Any, ContainerOptions]] = {}
            for name, svc in (env.services or {}).items():
                if not isinstance(svc, dict) or not svc.get("image"):
                    raise ExecutorError(f"service '{name}' needs an image")
                what = f"service '{name}'"
                service_specs[name] = (
                    svc,
                    parse_ports(svc.get("ports"), what),
                    parse_volumes(svc.get("volumes"), what, allow_host),
                    parse_options(svc.get("options"), what, self.options),
                )
                # Checked before anything is created, like the rest.
                registry_auth(svc.get("credentials"), what)
            self.network = self.client.networks.create(
                f"och-job-{suffix}",
                driver="bridge",
                internal=not self.options.allow_network,
                labels=labels,
            )
            for name, (svc, ports, volumes, options) in service_specs.items():
                what = f"service '{name}'"
                self._pull(svc["image"], registry_auth(svc.get("credentials"), what), env.log)
                env.log(f"Starting service {name} ({svc['image']})")
                container = self.client.containers.run(
                    svc["image"],
                    detach=True,
                    name=f"och-{name}-{suffix}",
                    environment={**_env_list(svc.get("env")), **options.environment},
                    network=self.network.name,
                    networking_config={
                        self.network.name: self.client.api.create_endpoint_config(
                            aliases=[name, *options.aliases]
                        )
                    },
                    labels=labels,
                    ports=ports or None,
                    volumes=self._binds([*volumes, *options.volumes]) or None,
                    **{**self._limits(), **options.create},
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
                    "ports": _published(container),
                }
                if options.health:
                    self._wait_healthy(name, container, options.health, env.log)
            mounts = [*self._job_mounts(), *self._binds([*job_volumes, *job_options.volumes])]
            self._pull(image, job_auth, env.log)
            env.log(f"Starting job container ({image})")
            create = {
                "working_dir": str(self.workspace),
                **self._limits(),
                **job_options.create,
                "extra_hosts": {**hosts, **job_options.create.get("extra_hosts", {})} or None,
            }
            if job_options.aliases:
                create["networking_config"] = {
                    self.network.name: self.client.api.create_endpoint_config(
                        aliases=job_options.aliases
                    )
                }
            self.container = self.client.containers.run(
                image,
                entrypoint=["tail"],
                command=["-f", "/dev/null"],
                detach=True,
                name=f"och-job-{suffix}",
                environment={**_env_list(spec.get("env")), **job_options.environment},
                volumes=mounts,
                network=self.network.name,
                labels=labels,
                tmpfs={"/tmp": f"rw,size={self.options.tmpfs_size}"},  # noqa: S108
                ports=job_ports or None,
                **create,
            )
            if job_ports:
                self.container.reload()
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
        if job_ports:
            self.container_context["ports"] = _published(self.container)

    def _pull(self, image: str, auth: dict[str, str] | None, log: OutputCallback) -> None:
        """With `credentials`, pull the image as that registry user first (as GitHub does);
        without, the engine pulls a missing image itself when the container is created."""
        import docker.errors

        if auth is None:
            return
        log(f"Pulling {image} as {auth['username']}")
        try:
            self.client.images.pull(image, auth_config=auth)
        except docker.errors.DockerException as exc:
            explanation = getattr(exc, "explanation", None) or exc
            raise ExecutorError(
                f"cannot pull {image} with the given credentials: {explanation}"
            ) from None

    def _job_mounts(self) -> list[str]:
        """The job's directory at the same path (the engine's paths are valid inside)."""
        mounts = [f"{self.workdir}:{self.workdir}:rw"]
        if not self.workspace.resolve().is_relative_to(self.workdir.resolve()):
            mounts.append(f"{self.workspace}:{self.workspace}:rw")
        return mounts

    def _binds(self, volumes: list[tuple[str, str, str]]) -> list[str]:
        """Bind strings for parsed `volumes:`; a named volume is the job's own, made once."""
        binds: list[str] = []
        for source, target, mode in volumes:
            if not source.startswith("/"):
                # A name is shared by the job's containers; an anonymous volume is one's own.
                # Both are the job's, so its clean-up removes them.
                key = source or f"#{len(self.volumes)}"
                volume = self.volumes.get(key)
                if volume is None:
                    name = source or f"_{len(self.volumes)}"
                    volume = self.client.volumes.create(
                        name=f"och-{self.suffix}-{name}", labels=self.labels
                    )
                    self.volumes[key] = volume
                source = volume.name
            binds.append(f"{source}:{target}:{mode}")
        return binds

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
        path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        # Each lookup is an exec (100-250 ms); a program found stays found for the job. A miss
        # is asked again: a step may install the program.
        found = self._which.get((program, path))
        if found:
            return found
        result = self.container.exec_run(
            ["sh", "-c", f"command -v {shlex.quote(program)}"], environment={"PATH": path}
        )
        out = result.output.decode().strip() if result.output else ""
        if result.exit_code != 0 or not out:
            return None
        self._which[(program, path)] = out
        return out

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

    def build_image(self, context: Path, dockerfile: str, log: OutputCallback) -> str:
        """Build a docker action's image from its directory; the tag is a hash of the
        directory's content, so a second use (by any job of this engine) reuses the image."""
        import docker.errors

        tag = f"{ACTION_IMAGE}:{context_digest(context, dockerfile)[:40]}"
        with _build_lock(tag):
            try:
                self.client.images.get(tag)
                log(f"Using the action's image {tag}, built before")
                self._hold(tag)
                return tag
            except docker.errors.ImageNotFound:
                pass
            log(f"Building the action's image from {dockerfile} ({tag})")
            try:
                for item in self.client.api.build(
                    path=str(context),
                    dockerfile=dockerfile,
                    tag=tag,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    decode=True,
                    network_mode=None if self.options.allow_network else "none",
                    labels={ACTION_LABEL: "1"},
                ):
                    if "error" in item:
                        detail = (item.get("errorDetail") or {}).get("message") or item["error"]
                        raise ExecutorError(f"the action's image failed to build: {detail}")
                    text = str(item.get("stream") or "")
                    for line in text.rstrip("\n").splitlines():
                        log(line)
            except docker.errors.APIError as exc:
                raise ExecutorError(
                    f"the action's image failed to build: {exc.explanation or exc}"
                ) from None
            try:
                self.client.images.get(tag)
            except docker.errors.ImageNotFound:
                raise ExecutorError("the action's image failed to build") from None
            self._hold(tag)
        return tag

    def _hold(self, tag: str) -> None:
        """The job uses the action image `tag`: it is not pruned before the job ends."""
        with _image_guard:
            _image_used_at[tag] = time.time()
            if tag not in self.held_images:
                self.held_images.add(tag)
                _image_holders[tag] += 1

    def _release_images(self) -> bool:
        """Let go of the job's action images; True when it used any."""
        with _image_guard:
            for tag in self.held_images:
                _image_holders[tag] -= 1
                if _image_holders[tag] <= 0:
                    del _image_holders[tag]
            used = bool(self.held_images)
            self.held_images.clear()
        return used

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
        """A docker action: a sibling container on the job network, with the workspace at
        /github/workspace (its working directory) and the job's directory at its own path
        (the GITHUB_* command files)."""
        import docker.errors

        home = self.workdir / "temp" / "_github_home"
        home.mkdir(parents=True, exist_ok=True)
        mounts = [
            *self._job_mounts(),
            f"{self.workspace}:/github/workspace:rw",
            f"{home}:/github/home:rw",
        ]
        # The image's own PATH applies, as on GitHub.
        env = {k: v for k, v in env.items() if k != "PATH"}
        env.update({"GITHUB_WORKSPACE": "/github/workspace", "HOME": "/github/home"})
        try:
            container = self.client.containers.run(
                image,
                args or None,
                entrypoint=[entrypoint] if entrypoint else None,
                detach=True,
                environment=env,
                volumes=mounts,
                working_dir="/github/workspace",
                network=self.network.name,
                labels=self.labels,
                **self._limits(),
            )
        except docker.errors.DockerException as exc:
            explanation = getattr(exc, "explanation", None) or exc
            on_output(f"##[error]cannot start the action's container: {explanation}")
            return 1
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
        received = {"bytes": 0, "pending": b""}
        stream = container.logs(stream=True, follow=True)

        def forward(chunk: bytes) -> None:
            received["bytes"] += len(chunk)
            pending = received["pending"] + chunk
            *lines, received["pending"] = pending.split(b"\n")
            for raw in lines:
                on_output(raw.decode("utf-8", "replace"))

        def follow() -> None:
            with contextlib.suppress(Exception):
                for chunk in stream:
                    forward(chunk)

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        try:
            code = container.wait().get("StatusCode", 1)
            # A follow stream may not end for a container that exited at once (some engines):
            # close it and take the rest of the log from the finished container.
            reader.join(2.0)
            if reader.is_alive():
                with contextlib.suppress(Exception):
                    stream.close()
                reader.join(1.0)
                with contextlib.suppress(Exception):
                    rest = container.logs(stream=False)
                    if len(rest) > received["bytes"]:
                        forward(rest[received["bytes"] :])
            if received["pending"]:
                on_output(received["pending"].decode("utf-8", "replace"))
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
        for volume in self.volumes.values():
            with contextlib.suppress(Exception):
                volume.remove(force=True)
        if self.network is not None:
            with contextlib.suppress(Exception):
                self.network.remove()
        if self._release_images() and self.client is not None:
            # Only a job that used action images can have added one: prune after those.
            with contextlib.suppress(Exception):
                prune_action_images(self.client, max(0, self.options.action_images_keep))
        if self.client is not None:
            self.client.close()
