"""Git LFS transfers of one large object, direct to the storage backend and through the app,
side by side in one run, for each storage backend.

For each backend (`--backends`, default `local,s3`; `azure` runs against Azurite) the run starts
the backend's peer on loopback when it has one (`moto_server` for S3, Azurite for Azure, as the
storage contract tests do) and `opencodehub serve` on a fresh data dir configured for it, then
moves one object of `--size-mb` (1 GiB) of random data up and down along each path:

* **direct**: `curl` PUT and GET of the object straight at the backend. For S3 and Azure that is
  a presigned URL to moto / a SAS URL to Azurite, made by the storage adapter in this process.
  The local backend has no server of its own: its signed URLs are the app's
  `/-/storage/{key}?expires=…&signature=…` links, a bare stream between the socket and the
  file, so "direct" for local is `curl` to that signed URL. `curl file://` of the same object
  is reported beside it as the disk's ceiling (page cache, no fsync).
* **signed**: the LFS batch API hands out presigned hrefs (S3, Azure); `curl` follows them as
  git-lfs does (PUT to the staging key, then `verify`, which makes the app check the SHA-256
  and copy the object into place; GET of the object), and then the real `git lfs push` and
  `git lfs fetch` do the same. The local backend never signs LFS transfers, so it has no row.
* **proxied**: the batch API answers hrefs on the app (`OCH_LFS_PROXY_TRANSFERS=true`; always so
  for local); `curl` and then `git lfs push` / `git lfs fetch` transfer through the app, which
  checks the SHA-256 while streaming into storage.

Each row gives the seconds, MB/s (MiB per second) and the app's memory during the transfer:
the peak RSS of `opencodehub serve` (sampled every 20 ms) minus its settled idle figure taken
just before, for the process tree and for the server program alone. The summary prints
proxied / direct throughput per direction (target >= 0.80) and the proxied RSS growth
(target < 50 MB).

    .venv/bin/python benchmarks/bench_lfs.py                          # 1 GiB, local and S3
    .venv/bin/python benchmarks/bench_lfs.py --size-mb 256            # quicker
    .venv/bin/python benchmarks/bench_lfs.py --backends local,s3,azure --json out.json
    .venv/bin/python benchmarks/bench_lfs.py --no-git-lfs             # curl rows only

Needs `curl`, `git-lfs` (Debian: `apt-get install git-lfs`), and moto (`pip install -e
'.[test]'`); Azurite for `azure` (`scripts/install-test-deps.sh`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_compare
import psutil
from genrepo import WORK_DIR

from opencodehub.storage import AppURLSigner, StorageAdapter

MB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]
SECRET = "lfs-benchmark-secret-0123456789abcdef"  # a throwaway loopback instance
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (  # Azurite's documented development account key
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
MEDIA = "application/vnd.git-lfs+json"
RATIO_TARGET = 0.80
RSS_TARGET_MB = 50.0


# --------------------------------------------------------------------------- backends


@dataclass
class Backend:
    """A storage backend on loopback: the server settings for a namespace (bucket, container)
    and an adapter in this process for the direct transfers."""

    name: str
    settings_env: Callable[[str], dict[str, str]]
    adapter: Callable[[str], StorageAdapter] | None = None
    peer_pid: int | None = None

    @property
    def can_sign(self) -> bool:
        return self.adapter is not None


def _wait_http(url: str, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer on {url}")


@contextlib.contextmanager
def _peer(args: list[str], url: str, name: str, log: Path, **kw: Any) -> Iterator[int]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, **kw)
    try:
        _wait_http(url, proc, name)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def start_backend(name: str, scratch: Path) -> Iterator[Backend]:
    if name == "local":
        yield Backend("local", lambda _ns: {"OCH_STORAGE_BACKEND": "local"})
        return
    if name == "s3":
        from opencodehub.storage.s3 import S3Storage

        moto = Path(sys.executable).with_name("moto_server")
        if not moto.exists():
            raise SystemExit("moto_server is missing: .venv/bin/pip install -e '.[test]'")
        port = bench_compare.free_port()
        endpoint = f"http://127.0.0.1:{port}"

        def s3_env(namespace: str) -> dict[str, str]:
            return {
                "OCH_STORAGE_BACKEND": "s3",
                "OCH_STORAGE_S3_ENDPOINT": endpoint,
                "OCH_STORAGE_S3_REGION": "us-east-1",
                "OCH_STORAGE_S3_BUCKET": namespace,
                "OCH_STORAGE_S3_ACCESS_KEY": "testing",
                "OCH_STORAGE_S3_SECRET_KEY": "testing",
                "OCH_STORAGE_S3_PATH_STYLE": "true",
            }

        def s3_adapter(namespace: str) -> StorageAdapter:
            return S3Storage(
                namespace,
                endpoint=endpoint,
                access_key="testing",
                secret_key="testing",
                path_style=True,
            )

        args = [str(moto), "-H", "127.0.0.1", "-p", str(port)]
        with _peer(args, endpoint, "moto_server", scratch / "moto.log") as pid:
            yield Backend("s3", s3_env, s3_adapter, pid)
        return
    if name == "azure":
        from opencodehub.storage.azure import AzureBlobStorage

        binary = shutil.which("azurite-blob") or str(
            ROOT / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
        )
        if not Path(binary).exists():
            raise SystemExit("Azurite is missing: run scripts/install-test-deps.sh")
        port = bench_compare.free_port()
        blob = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={blob};"
        )

        def azure_env(namespace: str) -> dict[str, str]:
            return {
                "OCH_STORAGE_BACKEND": "azure",
                "OCH_STORAGE_AZURE_CONNECTION_STRING": connection,
                "OCH_STORAGE_AZURE_CONTAINER": namespace,
            }

        def azure_adapter(namespace: str) -> StorageAdapter:
            return AzureBlobStorage(connection, namespace)

        location = scratch / "azurite"
        location.mkdir()
        args = [
            binary,
            *("--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location)),
            *("--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"),
        ]
        env = {**os.environ, "AZURITE_ACCOUNTS": ""}
        with _peer(args, blob, "Azurite", scratch / "azurite.log", env=env) as pid:
            yield Backend("azure", azure_env, azure_adapter, pid)
        return
    raise SystemExit(f"unknown backend {name!r}")


@contextlib.contextmanager
def app_server(scratch: Path, extra: dict[str, str]) -> Iterator[bench_compare.OpenCodeHub]:
    """`opencodehub serve` as bench_compare starts it, with `extra` settings added."""
    plain = bench_compare.och_env

    def with_extra(*args: Any) -> dict[str, str]:
        return {**plain(*args), "OCH_SECRET_KEY": SECRET, **extra}

    bench_compare.och_env = with_extra
    try:
        with bench_compare.opencodehub_server(scratch, 1) as och:
            yield och
    finally:
        bench_compare.och_env = plain


# --------------------------------------------------------------------------- clients


def curl(url: str, headers: dict[str, str] | None = None, upload: Path | None = None) -> None:
    """One curl transfer: PUT `upload` when given, else GET to /dev/null; raises on failure."""
    # No `Expect: 100-continue`: git-lfs does not send it either, and it costs a round trip.
    command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if upload is not None:
        command += ["-T", str(upload)]
    command.append(url)
    done = subprocess.run(command, capture_output=True, text=True)
    code = done.stdout.strip()
    if done.returncode != 0 or not (url.startswith("file:") or code.startswith("2")):
        raise RuntimeError(f"curl {url[:80]}: exit {done.returncode}, HTTP {code} {done.stderr}")


def lfs_request(
    och: bench_compare.OpenCodeHub, url: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
    for name, value in {"Accept": MEDIA, "Content-Type": MEDIA, **headers}.items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=3600) as response:
        return json.loads(response.read() or b"{}")


def basic_auth(och: bench_compare.OpenCodeHub) -> dict[str, str]:
    pair = f"{bench_compare.OCH_USER}:{och.token}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def batch(
    och: bench_compare.OpenCodeHub, repo: str, operation: str, oid: str, size: int
) -> dict[str, Any]:
    url = f"{och.base_url}/{bench_compare.OCH_USER}/{repo}.git/info/lfs/objects/batch"
    body = {"operation": operation, "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]}
    answer = lfs_request(och, url, body, basic_auth(och))["objects"][0]
    if "error" in answer:
        raise RuntimeError(f"batch {operation}: {answer['error']}")
    return answer.get("actions", {})


def git(*args: str, cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:3])}: {done.stderr.strip()[-2000:]}")


def client_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
        # moto answers a 1 GiB PUT only after it has digested the whole body, which can take
        # longer than git-lfs's default 30 s without a byte on the wire: git-lfs would then
        # give up and send the object again, up to 8 times.
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "lfs.activitytimeout",
        "GIT_CONFIG_VALUE_0": "0",
    }


def make_payload(workdir: Path, env: dict[str, str], size_mb: int) -> tuple[Path, str]:
    """A git repository whose one commit adds `size_mb` of random data as one LFS file."""
    git("init", "-q", "-b", "main", str(workdir), cwd=workdir.parent, env=env)
    git("lfs", "install", "--local", cwd=workdir, env=env)
    git("lfs", "track", "*.bin", cwd=workdir, env=env)
    payload = workdir / "object.bin"
    digest = hashlib.sha256()
    with payload.open("wb") as out:
        for _ in range(size_mb):
            chunk = os.urandom(MB)
            digest.update(chunk)
            out.write(chunk)
    git("add", ".", cwd=workdir, env=env)
    git("commit", "-q", "-m", "LFS payload", cwd=workdir, env=env)
    return payload, digest.hexdigest()


# --------------------------------------------------------------------------- measuring


@dataclass
class Row:
    backend: str
    path: str  # direct, disk, signed, proxied
    client: str  # curl, git-lfs
    direction: str  # upload, download, verify
    seconds: list[float] = field(default_factory=list)
    rss_growth_mb: float = 0.0
    alone_growth_mb: float = 0.0
    idle_mb: float = 0.0
    app_cpu_s: list[float] = field(default_factory=list)
    peer_cpu_s: list[float] = field(default_factory=list)
    size: int = 0
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def mb_per_s(self) -> float:
        return self.size / MB / self.median

    def as_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "path": self.path,
            "client": self.client,
            "direction": self.direction,
            "seconds": [round(s, 3) for s in self.seconds],
            "median_s": round(self.median, 3),
            "mb_per_s": round(self.mb_per_s, 1),
            "rss_growth_mb": self.rss_growth_mb,
            "server_alone_growth_mb": self.alone_growth_mb,
            "idle_rss_mb": self.idle_mb,
            "app_cpu_s": [round(c, 2) for c in self.app_cpu_s],
            "peer_cpu_s": [round(c, 2) for c in self.peer_cpu_s],
            "note": self.note,
        }


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process and its children so far (0 when there is none)."""
    if pid is None:
        return 0.0
    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
    except psutil.NoSuchProcess:
        return 0.0
    return total


class Runner:
    def __init__(self, size: int, reps: int) -> None:
        self.size = size
        self.reps = reps
        self.rows: list[Row] = []
        self.peer_pid: int | None = None  # moto_server or Azurite, for its CPU time

    def sample(self, och: bench_compare.OpenCodeHub, row: Row, work: Callable[[], None]) -> None:
        """Time `work` once into `row`, sampling the app's RSS against its settled idle."""
        row.size = self.size
        # Written-back pages of the previous transfer must not be flushed during this one.
        os.sync()
        idle = bench_compare.settled_memory([och.proc.pid])
        app_cpu, peer_cpu = cpu_seconds(och.proc.pid), cpu_seconds(self.peer_pid)
        with bench_compare.PeakSampler([och.proc.pid]) as sampler:
            started = time.perf_counter()
            work()
            row.seconds.append(time.perf_counter() - started)
        row.app_cpu_s.append(cpu_seconds(och.proc.pid) - app_cpu)
        row.peer_cpu_s.append(cpu_seconds(self.peer_pid) - peer_cpu)
        growth = sampler.peak.minus(idle)
        row.idle_mb = round(idle.rss / MB, 1)
        row.rss_growth_mb = max(row.rss_growth_mb, round(growth.rss / MB, 1))
        row.alone_growth_mb = max(row.alone_growth_mb, round(growth.own / MB, 1))

    def record(self, row: Row) -> Row:
        self.rows.append(row)
        app_cpu, peer_cpu = statistics.median(row.app_cpu_s), statistics.median(row.peer_cpu_s)
        print(
            f"{row.backend:<6} {row.path:<8} {row.client:<7} {row.direction:<9}"
            f"{row.median:>8.2f} s {row.mb_per_s:>8.1f} MB/s   app RSS +{row.rss_growth_mb} MB "
            f"(alone +{row.alone_growth_mb}, idle {row.idle_mb}); CPU app "
            f"{app_cpu:.1f} s, peer {peer_cpu:.1f} s; {row.note}",
            flush=True,
        )
        return row

    def measure(
        self,
        och: bench_compare.OpenCodeHub,
        row: Row,
        work: Callable[[], None],
        before: Callable[[], None] | None = None,
    ) -> Row:
        """Run `work` `reps` times (after `before` each time, untimed) and record the row."""
        for _ in range(self.reps):
            if before is not None:
                before()
            self.sample(och, row, work)
        return self.record(row)


@dataclass
class Payload:
    source: Path  # the git work tree with the LFS commit
    file: Path
    oid: str
    size: int
    env: dict[str, str]
    scratch: Path


def curl_lfs_upload(och: bench_compare.OpenCodeHub, repo: str, p: Payload) -> dict[str, Any]:
    """The batch call git-lfs makes before uploading; the actions to follow."""
    actions = batch(och, repo, "upload", p.oid, p.size)
    if "upload" not in actions:
        raise RuntimeError(f"the server already has the object in {repo}")
    return actions


def verify(och: bench_compare.OpenCodeHub, actions: dict[str, Any], p: Payload) -> None:
    check = actions["verify"]
    lfs_request(och, check["href"], {"oid": p.oid, "size": p.size}, check.get("header", {}))


def lfs_curl_rows(
    runner: Runner, och: bench_compare.OpenCodeHub, backend: str, path: str, p: Payload
) -> None:
    """Upload and download through the batch API's hrefs with curl, as git-lfs would."""
    upload = Row(
        backend,
        path,
        "curl",
        "upload",
        note="PUT + verify (a stat)" if path == "proxied" else "PUT to the staging key",
    )
    # The signed path's verify: the app reads the staged object back from the backend, checks
    # its SHA-256 and writes it to the object's key. Timed apart from the PUT.
    moved = Row(backend, path, "app", "verify", note="staged -> object key, SHA-256 checked")
    repo = ""
    for index in range(runner.reps):
        repo = f"curl-{path}-{index}"
        och.create_repo(repo)
        actions = curl_lfs_upload(och, repo, p)
        action = actions["upload"]

        def put(action: dict[str, Any] = action, actions: dict[str, Any] = actions) -> None:
            curl(action["href"], action.get("header"), upload=p.file)
            if path == "proxied":
                verify(och, actions, p)

        runner.sample(och, upload, put)
        if path == "signed":
            runner.sample(och, moved, lambda actions=actions: verify(och, actions, p))
    runner.record(upload)
    if path == "signed":
        runner.record(moved)
    download_href: dict[str, Any] = {}

    def prepare_download() -> None:
        download_href.update(batch(och, repo, "download", p.oid, p.size)["download"])

    def get() -> None:
        curl(download_href["href"], download_href.get("header"))

    runner.measure(och, Row(backend, path, "curl", "download"), get, prepare_download)


def git_lfs_rows(
    runner: Runner, och: bench_compare.OpenCodeHub, backend: str, path: str, p: Payload
) -> None:
    """The real client: `git push` (pre-push: batch, PUT, verify) and `git lfs fetch`."""
    secret = quote(och.token, safe="")
    user = bench_compare.OCH_USER
    state: dict[str, str] = {}
    counter = iter(range(runner.reps))

    def prepare_push() -> None:
        repo = f"gitlfs-{path}-{next(counter)}"
        och.create_repo(repo)
        state["url"] = f"http://{user}:{secret}@127.0.0.1:{och.http_port}/{user}/{repo}.git"

    def push() -> None:
        git("push", "-q", state["url"], "main", cwd=p.source, env=p.env)

    runner.measure(
        och, Row(backend, path, "git-lfs", "upload", note="git push"), push, prepare_push
    )
    clone = p.scratch / "clone"

    def prepare_fetch() -> None:
        shutil.rmtree(clone, ignore_errors=True)
        skip = {**p.env, "GIT_LFS_SKIP_SMUDGE": "1"}
        git("clone", "-q", state["url"], str(clone), cwd=p.scratch, env=skip)

    def fetch() -> None:
        git("lfs", "fetch", cwd=clone, env=p.env)

    row = Row(backend, path, "git-lfs", "download", note="git lfs fetch")
    runner.measure(och, row, fetch, prepare_fetch)
    fetched = list((clone / ".git" / "lfs" / "objects").rglob(p.oid))
    if not fetched or fetched[0].stat().st_size != p.size:
        raise RuntimeError("git lfs fetch did not store the whole object")
    shutil.rmtree(clone, ignore_errors=True)


def direct_rows(
    runner: Runner,
    och: bench_compare.OpenCodeHub,
    backend: Backend,
    namespace: str,
    p: Payload,
) -> None:
    """curl straight at the backend: a presigned / SAS URL, or for local the app's signed
    storage URL (and `curl file://` for the disk's ceiling)."""
    key = f"bench/{uuid.uuid4().hex}"
    adapter: StorageAdapter | None = None
    if backend.adapter is not None:
        adapter = backend.adapter(namespace)
        signed_put = adapter.signed_url(key, "PUT", 3600)
        signed_get = adapter.signed_url(key, "GET", 3600)
        note = "presigned URL" if backend.name == "s3" else "SAS URL"
    else:
        signer = AppURLSigner(SECRET.encode(), och.base_url)
        signed_put = signer.sign(key, "PUT", 3600)
        signed_get = signer.sign(key, "GET", 3600)
        note = "app's signed /-/storage/ URL"
    if signed_put is None or signed_get is None:
        raise RuntimeError(f"{backend.name} cannot sign")

    def put() -> None:
        curl(signed_put.url, dict(signed_put.headers), upload=p.file)

    def get() -> None:
        curl(signed_get.url, dict(signed_get.headers))

    runner.measure(och, Row(backend.name, "direct", "curl", "upload", note=note), put)
    runner.measure(och, Row(backend.name, "direct", "curl", "download", note=note), get)
    if backend.name == "local":
        stored = och.data_dir / "storage" / key
        copy = p.scratch / "disk-copy.bin"
        row = Row("local", "disk", "curl", "upload", note="curl -T file://, no fsync")
        runner.measure(och, row, lambda: curl(copy.as_uri(), upload=p.file))
        copy.unlink(missing_ok=True)
        row = Row("local", "disk", "curl", "download", note="curl file://, page cache")
        runner.measure(och, row, lambda: curl(stored.as_uri()))
        stored.unlink(missing_ok=True)
    elif adapter is not None:
        adapter.delete(key)  # moto holds objects in memory
        adapter.close()


def empty_namespace(backend: Backend, namespace: str) -> None:
    """Free the peer's memory/disk between phases (moto keeps every object in RAM)."""
    if backend.adapter is None:
        return
    adapter = backend.adapter(namespace)
    for info in list(adapter.list("")):
        adapter.delete(info.key)
    adapter.close()


def run_backend(
    runner: Runner, name: str, scratch: Path, p: Payload, with_git_lfs: bool, check: bool
) -> None:
    with start_backend(name, scratch) as backend:
        runner.peer_pid = backend.peer_pid
        namespace = f"och-proxied-{uuid.uuid4().hex[:8]}"
        extra = {**backend.settings_env(namespace), "OCH_LFS_PROXY_TRANSFERS": "true"}
        with app_server(scratch / f"{name}-proxied", extra) as och:
            # Direct and proxied close together in time, so both see the same machine load.
            direct_rows(runner, och, backend, f"och-direct-{uuid.uuid4().hex[:8]}", p)
            lfs_curl_rows(runner, och, name, "proxied", p)
            if with_git_lfs:
                git_lfs_rows(runner, och, name, "proxied", p)
            if check:
                check_stored(backend, namespace, och, p)
        empty_namespace(backend, namespace)
        if not backend.can_sign:
            return
        namespace = f"och-signed-{uuid.uuid4().hex[:8]}"
        extra = backend.settings_env(namespace)
        with app_server(scratch / f"{name}-signed", extra) as och:
            lfs_curl_rows(runner, och, name, "signed", p)
            if with_git_lfs:
                git_lfs_rows(runner, och, name, "signed", p)
        empty_namespace(backend, namespace)


def check_stored(
    backend: Backend, namespace: str, och: bench_compare.OpenCodeHub, p: Payload
) -> None:
    """The object the proxied path stored has the payload's SHA-256 (read back once)."""
    key = f"lfs/{p.oid[0:2]}/{p.oid[2:4]}/{p.oid}"
    if backend.adapter is None:
        path = och.data_dir / "storage" / key
        stream: Any = path.open("rb")
    else:
        stream = backend.adapter(namespace).get(key)
    digest = hashlib.sha256()
    with stream:
        for chunk in iter(lambda: stream.read(MB), b""):
            digest.update(chunk)
    if digest.hexdigest() != p.oid:
        raise RuntimeError(f"{backend.name}: the stored object does not match the payload")


# --------------------------------------------------------------------------- report


def summary(rows: list[Row]) -> list[dict[str, Any]]:
    """Per backend and direction: proxied (curl) / direct (curl), and the proxied RSS growth."""
    out = []
    for backend in dict.fromkeys(row.backend for row in rows):
        for direction in ("upload", "download"):

            def pick(path: str, client: str, b: str = backend, d: str = direction) -> Row | None:
                for row in rows:
                    if (row.backend, row.path, row.client, row.direction) == (b, path, client, d):
                        return row
                return None

            direct = pick("direct", "curl")
            proxied = pick("proxied", "curl")
            if direct is None or proxied is None:
                continue
            git_lfs = pick("proxied", "git-lfs")
            ratio = proxied.mb_per_s / direct.mb_per_s
            growth = max([proxied.rss_growth_mb] + ([git_lfs.rss_growth_mb] if git_lfs else []))
            entry = {
                "backend": backend,
                "direction": direction,
                "direct_mb_s": round(direct.mb_per_s, 1),
                "proxied_mb_s": round(proxied.mb_per_s, 1),
                "ratio": round(ratio, 2),
                "ratio_pass": ratio >= RATIO_TARGET,
                "git_lfs_proxied_mb_s": round(git_lfs.mb_per_s, 1) if git_lfs else None,
                "proxied_rss_growth_mb": growth,
                "rss_pass": growth < RSS_TARGET_MB,
            }
            out.append(entry)
            print(
                f"{backend:<6} {direction:<9} proxied/direct {entry['ratio']:.2f} "
                f"({entry['proxied_mb_s']} / {entry['direct_mb_s']} MB/s) "
                f"{'PASS' if entry['ratio_pass'] else 'FAIL'}   app RSS +{growth} MB "
                f"{'PASS' if entry['rss_pass'] else 'FAIL'}"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="object size in MiB")
    parser.add_argument("--backends", default="local,s3", help="local, s3, azure (comma list)")
    parser.add_argument("--reps", type=int, default=1, help="transfers per row (median)")
    parser.add_argument("--no-git-lfs", action="store_true", help="curl rows only")
    parser.add_argument("--no-check", action="store_true", help="skip the stored-object hash")
    parser.add_argument("--schema", choices=("migrate", "models"), default="migrate")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    with_git_lfs = not args.no_git_lfs
    if with_git_lfs and shutil.which("git-lfs") is None:
        print("git-lfs is not installed (apt-get install git-lfs)", file=sys.stderr)
        return 2
    if shutil.which("curl") is None:
        print("curl is not installed", file=sys.stderr)
        return 2
    bench_compare.SCHEMA = args.schema
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="lfs-", dir=WORK_DIR))
    load_before = os.getloadavg()
    runner = Runner(args.size_mb * MB, args.reps)
    try:
        env = client_env(scratch / "home")
        source = scratch / "source"
        source.mkdir()
        started = time.perf_counter()
        payload_file, oid = make_payload(source, env, args.size_mb)
        payload = Payload(source, payload_file, oid, args.size_mb * MB, env, scratch)
        print(f"payload: one {args.size_mb} MiB LFS object (made in "
              f"{time.perf_counter() - started:.0f} s); load {load_before}")  # fmt: skip
        for name in args.backends.split(","):
            run_backend(runner, name.strip(), scratch, payload, with_git_lfs, not args.no_check)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average before {load_before}, after {os.getloadavg()}")
    results = summary(runner.rows)
    if args.json:
        meta = {
            "size_mb": args.size_mb,
            "reps": args.reps,
            "load_before": load_before,
            "load_after": os.getloadavg(),
        }
        rows = [row.as_json() for row in runner.rows]
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "summary": results}, indent=2))
    return 0 if all(e["ratio_pass"] and e["rss_pass"] for e in results) else 1


if __name__ == "__main__":
    sys.exit(main())
