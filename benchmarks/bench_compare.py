"""OpenCodeHub against the reference git servers, side by side, in one command.

    .venv/bin/python benchmarks/bench_compare.py --small            # smoke run, ~1 minute
    .venv/bin/python benchmarks/bench_compare.py                    # full run (issue 3 targets)
    .venv/bin/python benchmarks/bench_compare.py --record           # also JSON + README section

What one run does:

1. generates (or reuses from the cache, see genrepo.py) the clone repository, a 50 MB
   repository for the concurrent clones and the push payload;
2. starts ``opencodehub serve`` (the venv's console script) on a fresh SQLite data dir under
   ``benchmarks/work/``, on free HTTP and SSH ports, and waits for ``/readyz``; creates a user,
   a PAT and an ed25519 SSH key (``POST /api/v3/user/keys``), creates the repositories with
   ``POST /api/v3/user/repos`` and loads the generated ones with ``git push --mirror`` over
   HTTP (timed: the "load" lines);
3. starts the reference peers (nginx + fcgiwrap + ``git http-backend``, sshd + ``git-shell``)
   serving the same generated repositories;
4. measures every benchmark on the four targets with the repetitions interleaved and prints,
   per transport, OpenCodeHub / reference with the issue's target and PASS / FAIL:

   * ``ls-remote``: median latency within 2x of the reference's;
   * ``clone``: ``git clone --bare`` of the big repository within 1.05x;
   * ``concurrent``: N simultaneous bare clones of the 50 MB repository all succeed and the
     peak memory of OpenCodeHub's process tree (server + its git children) stays under
     300 MB, counted as PSS so that the pack every git process maps counts once (see
     :class:`Memory`; summed RSS is printed too);
   * ``push``: ``git push --mirror`` of the push payload into a fresh empty repository raises
     the RSS of OpenCodeHub's process tree by less than 50 MB over idle.

Every process it starts runs in its own process group and is stopped on exit, on errors and
on Ctrl-C / SIGTERM; the scratch dir (data dir, keys, clones) is removed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_git import clone_once, run_git, start_bare_clone, warm_cache
from genrepo import WORK_DIR, GeneratedRepo, RepoSpec, generate

from peers import (
    Peer,
    free_port,
    generate_key,
    is_unexeced_fork,
    nginx_http_backend,
    ssh_client_command,
    sshd_git_shell,
    stop,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parent.parent
OPENCODEHUB = ROOT / ".venv" / "bin" / "opencodehub"
README = Path(__file__).resolve().parent / "README.md"
RESULTS_DIR = WORK_DIR / "bench"
OCH_USER = "bench"
OCH_PASSWORD = "benchmark-password"  # a throwaway account on a loopback server
BENCH_KEYS = ("ls-remote", "clone", "concurrent", "push")
MB = 2**20

# The targets (issue 3, "Tests and measures").
LS_REMOTE_MAX_RATIO = 2.0
CLONE_MAX_RATIO = 1.05
CONCURRENT_MAX_RSS = 300 * MB
PUSH_MAX_RSS_GROWTH = 50 * MB


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Preset:
    clone_repo: RepoSpec
    ls_remote_reps: int
    clone_reps: int
    clients: int
    concurrent_reps: int
    concurrent_size_mb: int
    push_size_mb: int
    push_reps: int


SMALL = Preset(RepoSpec.small(), 15, 3, 8, 1, 50, 100, 1)
FULL = Preset(RepoSpec(), 50, 3, 50, 1, 50, 1024, 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true",
                   help="2,000-commit repo, few reps, 8 clients, 100 MB push")  # fmt: skip
    p.add_argument("--only", help=f"comma-separated subset of {','.join(BENCH_KEYS)}")
    p.add_argument("--transports", default="http,ssh", help="http, ssh or both (default)")
    p.add_argument("--commits", type=int, help="override the clone repo's commit count")
    p.add_argument("--files", type=int, help="override the clone repo's file count")
    p.add_argument("--ls-remote-reps", type=int)
    p.add_argument("--reps", type=int, help="clone repetitions")
    p.add_argument("--clients", type=int, help="concurrent clones (full: 50, small: 8)")
    p.add_argument("--concurrent-reps", type=int)
    p.add_argument("--push-size-mb", type=int, help="push payload (full: 1024, small: 100)")
    p.add_argument("--push-reps", type=int, help="pushes per target (default 1)")
    p.add_argument("--workers", type=int, default=1, help="OCH_WORKERS for opencodehub serve")
    p.add_argument("--record", action="store_true",
                   help="write JSON, append a dated section to benchmarks/README.md")  # fmt: skip
    p.add_argument("--json", type=Path, help="write the JSON results here (implies JSON)")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (debugging)")
    p.add_argument("--schema", choices=("migrate", "models"), default="migrate",
                   help="build the database with `opencodehub migrate` (default) or from the "
                        "models (for a tree whose models are ahead of its migrations)")  # fmt: skip
    args = p.parse_args(argv)
    global SCHEMA
    SCHEMA = args.schema
    args.only = frozenset(filter(None, (args.only or "").split(",")))
    if unknown := args.only - set(BENCH_KEYS):
        p.error(f"unknown benchmark(s) for --only: {', '.join(sorted(unknown))}")
    args.transports = tuple(filter(None, args.transports.split(",")))
    if not args.transports or set(args.transports) - {"http", "ssh"}:
        p.error("--transports takes http, ssh or http,ssh")
    return args


def preset_from(args: argparse.Namespace) -> Preset:
    base = SMALL if args.small else FULL
    spec = base.clone_repo
    return Preset(
        clone_repo=RepoSpec(commits=args.commits or spec.commits, files=args.files or spec.files),
        ls_remote_reps=args.ls_remote_reps or base.ls_remote_reps,
        clone_reps=args.reps or base.clone_reps,
        clients=args.clients or base.clients,
        concurrent_reps=args.concurrent_reps or base.concurrent_reps,
        concurrent_size_mb=base.concurrent_size_mb,
        push_size_mb=args.push_size_mb or base.push_size_mb,
        push_reps=args.push_reps or base.push_reps,
    )


# --------------------------------------------------------------------------- memory sampling


@dataclass(frozen=True)
class Memory:
    """Memory of a server's process trees, in bytes.

    * ``rss``: sum of RSS over every process (server + git children). Pages shared between
      processes (the mmapped pack every ``pack-objects`` reads, libraries) count once per
      process, so with N clients this grows by N x the pack even when no extra memory is used.
    * ``pss``: sum of PSS, where each shared page is split between its sharers: the tree's
      real footprint, every page counted once.
    * ``own``: RSS of the server program alone (uvicorn/asyncssh, nginx + fcgiwrap, sshd),
      leaving out every git process and whatever runs under one (hooks).
    """

    rss: int = 0
    pss: int = 0
    own: int = 0

    def max(self, other: Memory) -> Memory:
        return Memory(max(self.rss, other.rss), max(self.pss, other.pss), max(self.own, other.own))

    def minus(self, other: Memory) -> Memory:
        """Growth over `other` (never negative)."""
        return Memory(
            max(0, self.rss - other.rss), max(0, self.pss - other.pss), max(0, self.own - other.own)
        )

    def as_mb(self) -> dict[str, float]:
        return {k: round(v / MB, 1) for k, v in asdict(self).items()}


# RSS of each child left out of a sample because it had not exec'd yet (printed per push).
UNEXECED_FORKS: list[int] = []


def tree_memory(pids: Sequence[int]) -> Memory:
    """Memory of the process trees rooted at `pids` right now. A child caught between fork and
    exec is its parent's memory, not more of it (`peers.is_unexeced_fork`): it is left out."""
    rss = pss = own = 0
    seen: set[int] = set()
    stack: list[tuple[int, bool, psutil.Process | None]] = [(pid, False, None) for pid in pids]
    while stack:
        pid, under_git, parent = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            proc = psutil.Process(pid)
            if parent is not None and is_unexeced_fork(proc, parent):
                UNEXECED_FORKS.append(proc.memory_info().rss)
                stack += [(child.pid, under_git, proc) for child in proc.children()]
                continue
            info = proc.memory_full_info()  # reads smaps_rollup: cheap, and root sees all
            is_git = under_git or proc.name().startswith("git")
            children = proc.children()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += info.pss
        own += 0 if is_git else info.rss
        stack += [(child.pid, is_git, proc) for child in children]
    return Memory(rss, pss, own)


class PeakSampler:
    """Samples tree_memory(pids) in a thread while the `with` block runs; keeps the peaks."""

    def __init__(self, pids: Sequence[int], interval: float = 0.02) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.peak = Memory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = self.peak.max(tree_memory(self.pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self.peak = tree_memory(self.pids)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def settled_memory(pids: Sequence[int], samples: int = 5, gap: float = 0.1) -> Memory:
    """Idle memory: the lowest of a few readings, after a pause for the last request to end."""
    time.sleep(0.5)
    readings = []
    for _ in range(samples):
        readings.append(tree_memory(pids))
        time.sleep(gap)
    return Memory(*(min(getattr(r, f) for r in readings) for f in ("rss", "pss", "own")))


# --------------------------------------------------------------------------- measurements


@dataclass
class Measure:
    """Wall-clock samples (seconds) of one benchmark on one target, plus server memory."""

    samples: list[float] = field(default_factory=list)
    peak: Memory = Memory()
    idle: Memory = Memory()  # just before the work (push and load only)
    failures: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def p95(self) -> float:
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    @property
    def growth(self) -> Memory:
        return self.peak.minus(self.idle)

    def run(self, fn: Callable[[], None], pids: Sequence[int] = (), interval: float = 0.02) -> None:
        """Time `fn` once (sampling the servers' memory if `pids`); a failure is recorded."""
        sampler = PeakSampler(pids, interval) if pids else contextlib.nullcontext()
        try:
            with sampler:
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
        except RuntimeError as exc:
            self.failures.append(str(exc)[:500])
            return
        self.samples.append(elapsed)
        if isinstance(sampler, PeakSampler):
            self.peak = self.peak.max(sampler.peak)

    def summary(self) -> dict[str, object]:
        def rounded(value: float) -> float | None:
            return None if value != value else round(value, 4)  # NaN -> null

        return {
            "n": len(self.samples),
            "median_s": rounded(self.median),
            "p95_s": rounded(self.p95),
            "min_s": rounded(min(self.samples)) if self.samples else None,
            "peak_mb": self.peak.as_mb(),
            "idle_mb": self.idle.as_mb(),
            "growth_mb": self.growth.as_mb(),
            "failures": self.failures,
            "samples": [round(s, 5) for s in self.samples],
        }


@dataclass
class Target:
    """One server on one transport. Repository names are bare (``bench``, ``conc``)."""

    name: str
    transport: str
    reference: bool
    url: Callable[[str], str]
    make_push_url: Callable[[str], str]
    env: dict[str, str] = field(default_factory=dict)
    push_env: dict[str, str] = field(default_factory=dict)  # e.g. credentials for pushes
    pids: list[int] = field(default_factory=list)

    def client_env(self, push: bool = False) -> dict[str, str]:
        extra = self.push_env if push else {}
        return {**os.environ, "GIT_TERMINAL_PROMPT": "0", **self.env, **extra}


def concurrent_clones(url: str, env: dict[str, str], workdir: Path, clients: int) -> None:
    """Start `clients` bare clones at once; raise (listing the failures) unless all succeed."""
    dests = [workdir / f"c{i}.git" for i in range(clients)]
    for dest in dests:
        shutil.rmtree(dest, ignore_errors=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs += [start_bare_clone(url, env, dest) for dest in dests]
        errors = [p.communicate()[1].decode(errors="replace").strip() for p in procs]
    finally:
        for proc in procs:  # on error or Ctrl-C: stop each client's process group
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for dest in dests:
            shutil.rmtree(dest, ignore_errors=True)
    failed = [err for proc, err in zip(procs, errors, strict=True) if proc.returncode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)}/{clients} concurrent clones failed: {failed[0]}")


def push_mirror(source: Path, url: str, env: dict[str, str]) -> None:
    run_git(["-C", str(source), "push", "--quiet", "--mirror", url], env)


# --------------------------------------------------------------------------- OpenCodeHub


@dataclass
class OpenCodeHub:
    """A running `opencodehub serve` with a user, a PAT and a registered SSH key."""

    proc: subprocess.Popen[bytes]
    http_port: int
    ssh_port: int
    token: str
    ssh_key: Path
    data_dir: Path
    log: Path
    ready_seconds: float = 0.0
    idle: Memory = Memory()  # right after startup, before any repository exists

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def api(self, method: str, path: str, body: dict[str, object] | None = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}/api/v3{path}", data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        request.add_header("Accept", "application/vnd.github+json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {detail}") from exc
        return json.loads(raw) if raw else None

    def create_repo(self, name: str) -> None:
        self.api("POST", "/user/repos", {"name": name, "private": False})

    def http_url(self, name: str) -> str:
        return f"{self.base_url}/{OCH_USER}/{name}.git"

    def ssh_url(self, name: str) -> str:
        return f"ssh://git@127.0.0.1:{self.ssh_port}/{OCH_USER}/{name}.git"

    def http_auth_env(self) -> dict[str, str]:
        """Basic auth sent up front (as a credential helper would after the first 401)."""
        basic = base64.b64encode(f"{OCH_USER}:{self.token}".encode()).decode()
        return {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        }

    def ssh_env(self) -> dict[str, str]:
        return {"GIT_SSH_COMMAND": ssh_client_command(self.ssh_key, self.ssh_port)}

    def push_url_http(self, name: str) -> str:
        self.create_repo(name)
        return self.http_url(name)

    def push_url_ssh(self, name: str) -> str:
        self.create_repo(name)
        return self.ssh_url(name)


def och_env(data_dir: Path, http_port: int, ssh_port: int, workers: int) -> dict[str, str]:
    """A clean configuration: no OCH_* from the caller's shell, SQLite in `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCH_")}
    return {
        **env,
        "OCH_DATA_DIR": str(data_dir),
        "OCH_HTTP_HOST": "127.0.0.1",
        "OCH_HTTP_PORT": str(http_port),
        "OCH_SSH_HOST": "127.0.0.1",
        "OCH_SSH_PORT": str(ssh_port),
        "OCH_LOG_LEVEL": "WARNING",
        "OCH_WORKERS": str(workers),
        # The benchmark drives the API and git hard from one user / one IP.
        "OCH_RATE_LIMIT_AUTHENTICATED": "1000000000",
        "OCH_RATE_LIMIT_ANONYMOUS": "1000000000",
    }


def cli(args: Sequence[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(
        [str(OPENCODEHUB), *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"opencodehub {args[0]} {args[1:2]} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


SCHEMA = "migrate"
CREATE_ALL = (
    "from opencodehub.config import Settings; from opencodehub.db.engine import Database; "
    "from opencodehub.db.models import Base; "
    "Base.metadata.create_all(Database(Settings().effective_database_url).engine)"
)


def build_schema(env: dict[str, str], cwd: Path) -> None:
    if SCHEMA == "migrate":
        cli(["migrate"], env, cwd)
        return
    Path(env["OCH_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    python = OPENCODEHUB.parent / "python"
    subprocess.run([str(python), "-c", CREATE_ALL], env=env, cwd=cwd, check=True)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"opencodehub serve exited with {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/readyz", timeout=1) as response,
        ):
            if response.status == 200:
                return time.perf_counter() - started
        time.sleep(0.05)
    raise TimeoutError(f"{url}/readyz not ready after {timeout}s")


@contextlib.contextmanager
def opencodehub_server(scratch: Path, workers: int) -> Iterator[OpenCodeHub]:
    """`opencodehub serve` on a fresh data dir, with user `bench`, a PAT and an SSH key."""
    scratch.mkdir(parents=True)
    data_dir = scratch / "data"
    http_port, ssh_port = free_port(), free_port()
    env = och_env(data_dir, http_port, ssh_port, workers)
    build_schema(env, scratch)
    email = f"{OCH_USER}@example.com"
    cli(
        ["admin", "create-user", OCH_USER, "--email", email, "--password", OCH_PASSWORD],
        env,
        scratch,
    )
    scopes = "repo,user,admin:public_key,delete_repo"
    token = cli(["admin", "create-token", OCH_USER, "--scopes", scopes], env, scratch)
    log = scratch / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(OPENCODEHUB), "serve", "--skip-migrate"],
            env=env,
            cwd=scratch,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # its own process group: stopped as a whole on exit
        )
    try:
        ready = wait_ready(f"http://127.0.0.1:{http_port}", proc)
        wait_for_port(ssh_port, proc, timeout=30)
        idle = settled_memory([proc.pid])
        print(f"opencodehub serve ready in {ready:.2f} s (pid {proc.pid}, http {http_port}, "
              f"ssh {ssh_port}), idle RSS {idle.rss / MB:.0f} MB")  # fmt: skip
        key = scratch / "id_ed25519"
        generate_key(key, "och-bench")
        server = OpenCodeHub(proc, http_port, ssh_port, token, key, data_dir, log, ready, idle)
        public_key = key.with_suffix(".pub").read_text().strip()
        server.api("POST", "/user/keys", {"title": "bench", "key": public_key})
        yield server
    except Exception:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        if tail:
            print(f"--- tail of {log} ---\n{tail}", file=sys.stderr)
        raise
    finally:
        stop(proc)


# --------------------------------------------------------------------------- targets


def peer_target(peer: Peer, transport: str) -> Target:
    def push_url(name: str) -> str:
        return peer.make_push_target(f"{name}.git")

    return Target(
        name=peer.name,
        transport=transport,
        reference=True,
        url=lambda name: peer.url(f"{name}.git"),
        make_push_url=push_url,
        env=peer.env,
        pids=peer.pids,
    )


def och_target(och: OpenCodeHub, transport: str) -> Target:
    if transport == "http":
        return Target(
            name="opencodehub-http",
            transport="http",
            reference=False,
            url=och.http_url,
            make_push_url=och.push_url_http,
            push_env=och.http_auth_env(),
            pids=[och.proc.pid],
        )
    return Target(
        name="opencodehub-ssh",
        transport="ssh",
        reference=False,
        url=och.ssh_url,
        make_push_url=och.push_url_ssh,
        env=och.ssh_env(),
        pids=[och.proc.pid],
    )


# --------------------------------------------------------------------------- benchmarks

Once = Callable[[Target, Measure, int], None]


def interleaved(targets: Sequence[Target], reps: int, once: Once) -> dict[str, Measure]:
    """Run `once(target, measure, rep)` reps times per target, taking turns; every other
    round runs the targets in reverse order so that neither always goes first."""
    measures = {t.name: Measure() for t in targets}
    for rep in range(reps):
        order = targets if rep % 2 == 0 else list(reversed(targets))
        for target in order:
            once(target, measures[target.name], rep)
    return measures


def bench_ls_remote(targets: Sequence[Target], reps: int) -> dict[str, Measure]:
    # No RSS sampling here: a sampling thread would weigh on a 15 ms measurement.
    def once(target: Target, measure: Measure, _rep: int) -> None:
        url, env = target.url("bench"), target.client_env()
        measure.run(lambda: run_git(["ls-remote", url], env))

    return interleaved(targets, reps, once)


def bench_clone(targets: Sequence[Target], reps: int, scratch: Path) -> dict[str, Measure]:
    dest = scratch / "clone.git"

    def once(target: Target, measure: Measure, _rep: int) -> None:
        url, env = target.url("bench"), target.client_env()
        measure.run(lambda: clone_once(url, env, dest, bare=True), target.pids)
        shutil.rmtree(dest, ignore_errors=True)

    return interleaved(targets, reps, once)


def bench_concurrent(
    targets: Sequence[Target], reps: int, clients: int, scratch: Path
) -> dict[str, Measure]:
    workdir = scratch / "concurrent"
    workdir.mkdir(exist_ok=True)

    def once(target: Target, measure: Measure, _rep: int) -> None:
        url, env = target.url("conc"), target.client_env()
        work = lambda: concurrent_clones(url, env, workdir, clients)  # noqa: E731
        measure.run(work, target.pids, interval=0.05)

    return interleaved(targets, reps, once)


def bench_push(
    targets: Sequence[Target], reps: int, source: Path, forget: Callable[[Target, str], None]
) -> dict[str, Measure]:
    """Mirror-push `source` into a fresh empty repository; RSS growth is peak minus the idle
    reading taken just before (the largest growth over the repetitions is kept)."""

    def once(target: Target, measure: Measure, rep: int) -> None:
        name = f"push-{target.transport}-{'ref' if target.reference else 'och'}-{rep}"
        url = target.make_push_url(name)
        probe = Measure()
        probe.idle = settled_memory(target.pids)
        env = target.client_env(push=True)
        UNEXECED_FORKS.clear()
        probe.run(lambda: push_mirror(source, url, env), target.pids)
        if UNEXECED_FORKS:
            largest = max(UNEXECED_FORKS) / MB
            print(f"  {target.name:<20} push {rep}: left out {len(UNEXECED_FORKS)} sample(s) "
                  f"of a child not yet exec'd (RSS up to {largest:.0f} MB)")  # fmt: skip
        measure.samples += probe.samples
        measure.failures += probe.failures
        if probe.samples and reps > 1:
            rss, own = probe.growth.rss / MB, probe.growth.own / MB
            print(f"  {target.name:<20} push {rep}: {probe.median:7.2f} s, "
                  f"RSS +{rss:.0f} MB, server alone +{own:.0f} MB")  # fmt: skip
        if probe.samples and probe.growth.rss >= measure.growth.rss:
            measure.peak, measure.idle = probe.peak, probe.idle
        forget(target, name)  # a 1 GB payload per target adds up on disk

    return interleaved(targets, reps, once)


# --------------------------------------------------------------------------- verdicts


@dataclass
class Row:
    """OpenCodeHub against the reference of the same transport, for one benchmark."""

    key: str
    benchmark: str
    transport: str
    och: Measure
    ref: Measure
    target: str
    verdict: str  # PASS, FAIL, or ERROR (the reference itself failed)
    note: str = ""

    @property
    def ratio(self) -> float:
        if not self.och.samples or not self.ref.samples or self.ref.median == 0:
            return float("nan")
        return self.och.median / self.ref.median

    @property
    def p95_ratio(self) -> float:
        if not self.och.samples or not self.ref.samples or self.ref.p95 == 0:
            return float("nan")
        return self.och.p95 / self.ref.p95

    def as_json(self) -> dict[str, object]:
        def rounded(value: float) -> float | None:
            return None if value != value else round(value, 3)

        return {
            "key": self.key,
            "benchmark": self.benchmark,
            "transport": self.transport,
            "ratio": rounded(self.ratio),
            "p95_ratio": rounded(self.p95_ratio),
            "target": self.target,
            "verdict": self.verdict,
            "note": self.note,
            "opencodehub": self.och.summary(),
            "reference": self.ref.summary(),
        }


def judge(key: str, och: Measure, ref: Measure, ratio: float) -> tuple[str, str, str]:
    """(target text, verdict, note) for one benchmark's OCH / reference pair."""
    notes: list[str] = []
    if key == "ls-remote":
        target, ok = f"median <= {LS_REMOTE_MAX_RATIO:g}x", ratio <= LS_REMOTE_MAX_RATIO
        notes.append(f"p95 ratio {och.p95 / ref.p95:.2f}")
    elif key == "clone":
        target, ok = f"median <= {CLONE_MAX_RATIO:g}x", ratio <= CLONE_MAX_RATIO
        notes.append(
            f"p95 ratio {och.p95 / ref.p95:.2f}; OCH server alone {och.peak.own / MB:.0f} MB"
        )
    elif key == "concurrent":
        # Judged on PSS: summed RSS counts the mmapped pack once per pack-objects (see Memory).
        target = f"all succeed, OCH peak PSS < {CONCURRENT_MAX_RSS // MB} MB"
        ok = och.peak.pss < CONCURRENT_MAX_RSS
        notes.append(
            f"time ratio {ratio:.2f}; OCH tree RSS sum {och.peak.rss / MB:.0f} MB, "
            f"server alone {och.peak.own / MB:.0f} MB"
        )
    else:
        target = f"OCH RSS growth < {PUSH_MAX_RSS_GROWTH // MB} MB"
        ok = och.growth.rss < PUSH_MAX_RSS_GROWTH
        notes.append(
            f"time ratio {ratio:.2f}; OCH PSS +{och.growth.pss / MB:.0f} MB, "
            f"server alone +{och.growth.own / MB:.0f} MB (idle {och.idle.own / MB:.0f} MB)"
        )
    if och.failures:
        ok = False
        notes.append(f"OCH failed {len(och.failures)}x: {och.failures[0][:160]}")
    verdict = "PASS" if ok else "FAIL"
    if ref.failures:
        verdict = "ERROR" if not och.failures else verdict
        notes.append(f"reference failed {len(ref.failures)}x: {ref.failures[0][:160]}")
    return target, verdict, "; ".join(notes)


def make_rows(
    key: str, benchmark: str, targets: Sequence[Target], measures: dict[str, Measure]
) -> list[Row]:
    rows = []
    for transport in ("http", "ssh"):
        ref = next((t for t in targets if t.transport == transport and t.reference), None)
        och = next((t for t in targets if t.transport == transport and not t.reference), None)
        if ref is None or och is None:
            continue
        och_m, ref_m = measures[och.name], measures[ref.name]
        ratio = och_m.median / ref_m.median if och_m.samples and ref_m.samples else float("nan")
        target, verdict, note = judge(key, och_m, ref_m, ratio)
        rows.append(Row(key, benchmark, transport, och_m, ref_m, target, verdict, note))
    return rows


# --------------------------------------------------------------------------- report


def fmt(value: float, digits: int = 3) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def rss_cell(row: Row, measure: Measure) -> str:
    if row.key == "ls-remote" or not measure.samples:
        return "-"
    if row.key == "push":
        idle, peak = measure.idle.rss / MB, measure.peak.rss / MB
        return f"RSS +{measure.growth.rss / MB:.0f} ({idle:.0f}→{peak:.0f})"
    return f"PSS {measure.peak.pss / MB:.0f}, RSS {measure.peak.rss / MB:.0f}"


def format_table(rows: Sequence[Row]) -> str:
    head = (
        "benchmark", "via", "n", "OCH median s", "ref median s", "OCH/ref",
        "OCH p95 s", "ref p95 s", "OCH memory MB", "ref memory MB", "target", "result",
    )  # fmt: skip
    body = [
        (
            row.benchmark,
            row.transport,
            str(len(row.och.samples)),
            fmt(row.och.median),
            fmt(row.ref.median),
            fmt(row.ratio, 2),
            fmt(row.och.p95),
            fmt(row.ref.p95),
            rss_cell(row, row.och),
            rss_cell(row, row.ref),
            row.target,
            row.verdict,
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in body
    ]
    notes = [f"* {row.benchmark} ({row.transport}): {row.note}" for row in rows if row.note]
    return "\n".join(lines + (["", *notes] if notes else []))


def machine_facts() -> dict[str, object]:
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "git": git,
    }


def describe_repo(repo: GeneratedRepo) -> str:
    spec = repo.spec
    return f"{spec.commits:,} commits / {spec.files:,} files, {repo.pack_bytes / MB:.0f} MB pack"


def readme_section(report: dict[str, object], rows: Sequence[Row], command: str) -> str:
    meta = report["meta"]
    assert isinstance(meta, dict)
    machine = meta["machine"]
    assert isinstance(machine, dict)
    passed = sum(row.verdict == "PASS" for row in rows)
    repos = ", ".join(f"{k} ({v})" for k, v in meta["repos"].items())
    loads = ", ".join(
        f"{name} {fmt(load['median_s'] or float('nan'), 2)} s"
        for name, load in meta["loads"].items()
    )
    och = meta.get("opencodehub", {})
    idle = och.get("idle_mb", {})
    return f"""
### {meta["started"]} — `{command}`

* machine: {machine["cpus"]} CPUs, {machine["memory_gb"]} GB RAM, {machine["git"]},
  {machine["platform"]}
* load average {meta["load_start"]} at the start, {meta["load_end"]} at the end; took
  {meta["seconds"]:.0f} s
* OpenCodeHub: ready in {och.get("ready_s", "-")} s, idle RSS {idle.get("rss", "-")} MB
  (PSS {idle.get("pss", "-")} MB) before any repository existed
* repositories: {repos}
* loaded into OpenCodeHub by `git push --mirror` over HTTP in: {loads or "-"}

{format_table(rows)}

{passed} of {len(rows)} targets met.
"""


@contextlib.contextmanager
def terminate_on_signals() -> Iterator[None]:
    """Turn SIGTERM / SIGHUP into KeyboardInterrupt so that every `finally` runs."""

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_quiet(pids: Sequence[int], quiet_seconds: int = 3, timeout: float = 900.0) -> float:
    """Wait until the process trees of `pids` used (almost) no CPU for `quiet_seconds`."""
    started = time.monotonic()

    def cpu() -> float:
        total = 0.0
        for pid in pids:
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = proc.cpu_times()
                    total += times.user + times.system
        return total

    quiet, last = 0, cpu()
    while quiet < quiet_seconds and time.monotonic() - started < timeout:
        time.sleep(1)
        now = cpu()
        quiet = quiet + 1 if now - last < 0.05 else 0
        last = now
    return time.monotonic() - started


def load_into_och(och: OpenCodeHub, name: str, repo: GeneratedRepo) -> Measure:
    """Create `name` and mirror-push the generated repo into it over HTTP (timed)."""
    och.create_repo(name)
    load = Measure()
    pids = [och.proc.pid]
    load.idle = settled_memory(pids)
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **och.http_auth_env()}
    load.run(lambda: push_mirror(repo.path, och.http_url(name), env), pids)
    if load.failures:
        raise RuntimeError(f"loading {name} into OpenCodeHub failed: {load.failures[0]}")
    print(f"loaded {name} ({describe_repo(repo)}) into OpenCodeHub over HTTP in "
          f"{load.median:.2f} s, RSS +{load.growth.rss / MB:.0f} MB "
          f"(server alone +{load.growth.own / MB:.0f} MB)")  # fmt: skip
    return load


def run(args: argparse.Namespace, preset: Preset, scratch: Path) -> tuple[list[Row], dict]:
    selected = [k for k in BENCH_KEYS if not args.only or k in args.only]
    repos: dict[str, GeneratedRepo] = {}
    if {"ls-remote", "clone"} & set(selected):
        repos["bench"] = generate(preset.clone_repo)
    if "concurrent" in selected:
        repos["conc"] = generate(RepoSpec(200, 200, size_mb=preset.concurrent_size_mb))
    push_repo = (
        generate(RepoSpec(200, 200, size_mb=preset.push_size_mb)) if "push" in selected else None
    )
    meta: dict[str, object] = {
        "repos": {name: describe_repo(repo) for name, repo in repos.items()},
        "manifests": {name: repo.manifest() for name, repo in repos.items()},
    }
    if push_repo is not None:
        meta["repos"]["push"] = describe_repo(push_repo)  # type: ignore[index]
        meta["manifests"]["push"] = push_repo.manifest()  # type: ignore[index]
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        och = stack.enter_context(opencodehub_server(scratch / "och", args.workers))
        meta["opencodehub"] = {"ready_s": round(och.ready_seconds, 2), "idle_mb": och.idle.as_mb()}
        loads = {name: load_into_och(och, name, repo) for name, repo in repos.items()}
        meta["loads"] = {name: load.summary() for name, load in loads.items()}
        # A push is followed by work in the server (the rest of a large commit index, the
        # commit-graph, the home page's listing): measuring before it ends would time clones
        # against a server busy with it (a 100,000-commit load keeps it busy for a while).
        quiet = wait_quiet([och.proc.pid])
        print(f"OpenCodeHub quiet {quiet:.0f} s after the loads")
        meta["quiet_after_load_s"] = round(quiet, 1)
        root = scratch / "serve"
        root.mkdir()
        root.chmod(0o755)  # the sshd peer's user reads it
        for name, repo in repos.items():
            (root / f"{name}.git").symlink_to(repo.path)
        targets: list[Target] = []
        if "http" in args.transports:
            http = stack.enter_context(nginx_http_backend(root))
            targets += [peer_target(http, "http"), och_target(och, "http")]
        if "ssh" in args.transports:
            ssh = stack.enter_context(sshd_git_shell(root))
            targets += [peer_target(ssh, "ssh"), och_target(och, "ssh")]
        for repo in repos.values():  # nobody should pay for a cold page cache
            warm_cache(repo.path)
        warm_cache(och.data_dir)

        def forget(target: Target, name: str) -> None:
            if target.reference:
                shutil.rmtree(root / f"{name}.git", ignore_errors=True)
            else:
                with contextlib.suppress(RuntimeError):
                    och.api("DELETE", f"/repos/{OCH_USER}/{name}")

        # Cheap and decisive first, the long full clones last.
        plan: list[tuple[str, str, Callable[[], dict[str, Measure]]]] = [
            ("ls-remote", f"ls-remote (x{preset.ls_remote_reps})",
             lambda: bench_ls_remote(targets, preset.ls_remote_reps)),
            ("concurrent", f"{preset.clients} concurrent clones of conc",
             lambda: bench_concurrent(targets, preset.concurrent_reps, preset.clients, scratch)),
            ("push", f"push {preset.push_size_mb} MB",
             lambda: bench_push(targets, preset.push_reps, push_repo.path, forget)),  # type: ignore[union-attr]
            ("clone", f"clone --bare of bench (x{preset.clone_reps})",
             lambda: bench_clone(targets, preset.clone_reps, scratch)),
        ]  # fmt: skip
        for key, name, bench in plan:
            if key not in selected:
                continue
            print(f"\n== {name}")
            started = time.perf_counter()
            new_rows = make_rows(key, name, targets, bench())
            print(format_table(new_rows))
            print(f"({time.perf_counter() - started:.0f} s)")
            rows += new_rows
    return rows, meta


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    preset = preset_from(args)
    command = shlex.join(["bench_compare.py", *(sys.argv[1:] if argv is None else argv)])
    started = datetime.now(UTC)
    load_start = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="compare-", dir=WORK_DIR))
    scratch.chmod(0o755)
    clock = time.perf_counter()
    try:
        with terminate_on_signals():
            rows, meta = run(args, preset, scratch)
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({str(exc) or 'SIGINT'}); every server stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"scratch dir kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    meta.update(
        started=started.strftime("%Y-%m-%d %H:%M UTC"),
        command=command,
        preset=asdict(preset) | {"clone_repo": asdict(preset.clone_repo)},
        machine=machine_facts(),
        load_start=load_start,
        load_end=" / ".join(f"{x:.1f}" for x in os.getloadavg()),
        seconds=round(time.perf_counter() - clock, 1),
    )
    meta.setdefault("loads", {})
    print(
        f"\n== summary ({meta['seconds']:.0f} s, load average {load_start} -> {meta['load_end']})"
    )
    print(format_table(rows))
    report = {"meta": meta, "rows": [row.as_json() for row in rows]}
    out = args.json or (
        RESULTS_DIR / f"compare-{started:%Y%m%d-%H%M%S}.json" if args.record else None
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nJSON written to {out}")
    if args.record:
        with README.open("a") as readme:
            readme.write(readme_section(report, rows, command))
        print(f"results section appended to {README}")
    return 0 if all(row.verdict == "PASS" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
