"""Git transport benchmarks: OpenCodeHub against reference peers, side by side.

Each benchmark runs the real `git` client against every target in the same run, with the
targets' repetitions interleaved (A B A B …) so that drift on the machine hits all of them
alike; the figure that matters is the ratio OpenCodeHub / reference on the same transport.

    python benchmarks/bench_git.py --reference-only --small
    python benchmarks/bench_git.py --och-http http://127.0.0.1:4321/bench/big.git \\
        --och-ssh ssh://git@127.0.0.1:2222/bench/big.git --och-ssh-command "ssh -i key …" \\
        --och-pid 1234

The OpenCodeHub repository must hold the same generated repository (push it there first,
e.g. ``git push --mirror URL`` from the path printed by genrepo.py).

From Python: build :class:`Target` objects and call the ``time_*`` functions or
:func:`run_suite`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from genrepo import WORK_DIR, GeneratedRepo, RepoSpec, generate

from peers import Peer, RssSampler, nginx_http_backend, sshd_git_shell

PushUrlFactory = Callable[[str], str]


@dataclass
class Target:
    """One server to benchmark.

    `clone_url` points at the generated repository on that server; `make_push_url(name)`
    returns the URL of a fresh empty repository to push to (None: skip push benchmarks).
    """

    name: str
    transport: str  # "http" or "ssh": ratios compare targets of the same transport
    clone_url: str
    env: dict[str, str] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)
    make_push_url: PushUrlFactory | None = None
    reference: bool = False

    def client_env(self) -> dict[str, str]:
        return {**os.environ, "GIT_TERMINAL_PROMPT": "0", **self.env}


@dataclass
class Stats:
    """Wall-clock samples (seconds) of one benchmark on one target, plus server peak RSS."""

    samples: list[float] = field(default_factory=list)
    peak_rss: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def summary(self) -> dict[str, float | int]:
        return {
            "n": len(self.samples),
            "median_s": round(self.median, 4),
            "p95_s": round(self.p95, 4),
            "min_s": round(min(self.samples), 4),
            "max_s": round(max(self.samples), 4),
            "peak_rss_mb": round(self.peak_rss / 2**20, 1),
        }


@dataclass
class Result:
    benchmark: str
    target: str
    transport: str
    reference: bool
    stats: Stats


# --------------------------------------------------------------------------- primitives


def run_git(args: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> None:
    """Run one git command, raising with its stderr on failure."""
    proc = subprocess.run(
        ["git", *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"git {' '.join(args)} failed ({proc.returncode}): {err}")


def timed(fn: Callable[[], None], pids: Sequence[int]) -> tuple[float, int]:
    """Run fn once; return (seconds, peak RSS of the server pids while it ran)."""
    with RssSampler(pids) as sampler:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
    return elapsed, sampler.peak


def sample(stats: Stats, fn: Callable[[], None], pids: Sequence[int]) -> None:
    elapsed, peak = timed(fn, pids)
    stats.samples.append(elapsed)
    stats.peak_rss = max(stats.peak_rss, peak)


@contextlib.contextmanager
def scratch_dir(parent: Path | None = None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="och-bench-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def clone_once(url: str, env: dict[str, str], dest: Path, bare: bool) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    run_git(["clone", "--quiet", *(["--bare"] if bare else []), url, str(dest)], env)


def start_bare_clone(url: str, env: dict[str, str], dest: Path) -> subprocess.Popen[bytes]:
    cmd = ["git", "clone", "--quiet", "--bare", url, str(dest)]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def concurrent_clones(url: str, env: dict[str, str], workdir: Path, clients: int) -> None:
    """Start `clients` bare clones at once and wait for all of them."""
    dests = [workdir / f"c{i}.git" for i in range(clients)]
    for dest in dests:
        shutil.rmtree(dest, ignore_errors=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs += [start_bare_clone(url, env, dest) for dest in dests]
        errors = [p.communicate()[1].decode() for p in procs]
        failures = [err for p, err in zip(procs, errors, strict=True) if p.returncode != 0]
    finally:
        for proc in procs:  # on error or Ctrl-C: stop each client's process group
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if failures:
        raise RuntimeError(f"{len(failures)}/{clients} concurrent clones failed: {failures[0]}")


# --------------------------------------------------------------------------- benchmarks


def time_clone(
    url: str,
    env: dict[str, str],
    *,
    bare: bool = True,
    reps: int = 5,
    pids: Sequence[int] = (),
    workdir: Path | None = None,
) -> Stats:
    """Full clone (`git clone --bare`, or with checkout if not bare) of `url`."""
    stats = Stats()
    with scratch_dir(workdir) as tmp:
        for _ in range(reps):
            sample(stats, lambda: clone_once(url, env, tmp / "clone", bare), pids)
    return stats


def time_ls_remote(
    url: str, env: dict[str, str], *, reps: int = 50, pids: Sequence[int] = ()
) -> Stats:
    """Latency of `git ls-remote` (connect + ref advertisement)."""
    stats = Stats()
    for _ in range(reps):
        sample(stats, lambda: run_git(["ls-remote", url], env), pids)
    return stats


def time_concurrent_clones(
    url: str,
    env: dict[str, str],
    *,
    clients: int = 8,
    reps: int = 3,
    pids: Sequence[int] = (),
    workdir: Path | None = None,
) -> Stats:
    """Wall time for `clients` simultaneous bare clones to all finish."""
    stats = Stats()
    with scratch_dir(workdir) as tmp:
        for _ in range(reps):
            sample(stats, lambda: concurrent_clones(url, env, tmp, clients), pids)
    return stats


def time_push(
    source: Path,
    make_push_url: PushUrlFactory,
    env: dict[str, str],
    *,
    reps: int = 1,
    pids: Sequence[int] = (),
) -> Stats:
    """Push every ref of the local repo `source` into a fresh empty repo, `reps` times."""
    stats = Stats()
    for rep in range(reps):
        url = make_push_url(f"push-{rep}.git")
        args = ["-C", str(source), "push", "--quiet", "--mirror", url]
        sample(stats, lambda args=args: run_git(args, env), pids)
    return stats


# --------------------------------------------------------------------------- suite


@dataclass
class SuiteConfig:
    clone_reps: int = 5
    checkout_reps: int = 3
    ls_remote_reps: int = 50
    clients: int = 8
    concurrent_reps: int = 3
    push_reps: int = 1
    push_source: Path | None = None  # None: skip push
    workdir: Path | None = None
    only: frozenset[str] = frozenset()  # keys from BENCH_KEYS; empty: all


BENCH_KEYS = ("ls-remote", "clone", "checkout", "concurrent", "push")


@dataclass
class Bench:
    """A named benchmark: `once(target)` measures one repetition on one target."""

    key: str
    name: str
    once: Callable[[Target], Stats]
    reps: int
    needs_push: bool = False


def suite_benchmarks(cfg: SuiteConfig) -> list[Bench]:
    """The benchmarks the config enables, each as a one-repetition function."""

    def ls_remote(t: Target) -> Stats:
        return time_ls_remote(t.clone_url, t.client_env(), reps=1, pids=t.pids)

    def clone_bare(t: Target) -> Stats:
        env = t.client_env()
        return time_clone(t.clone_url, env, reps=1, pids=t.pids, workdir=cfg.workdir)

    def clone_checkout(t: Target) -> Stats:
        env = t.client_env()
        return time_clone(t.clone_url, env, bare=False, reps=1, pids=t.pids, workdir=cfg.workdir)

    def concurrent(t: Target) -> Stats:
        env, n = t.client_env(), cfg.clients
        return time_concurrent_clones(
            t.clone_url, env, clients=n, reps=1, pids=t.pids, workdir=cfg.workdir
        )

    benches = [
        Bench("ls-remote", "ls-remote", ls_remote, cfg.ls_remote_reps),
        Bench("clone", "clone --bare", clone_bare, cfg.clone_reps),
        Bench("checkout", "clone (checkout)", clone_checkout, cfg.checkout_reps),
        Bench("concurrent", f"{cfg.clients} concurrent clones", concurrent, cfg.concurrent_reps),
    ]
    if cfg.push_source is not None:
        source = cfg.push_source

        def push(t: Target) -> Stats:
            assert t.make_push_url is not None
            return time_push(source, t.make_push_url, t.client_env(), pids=t.pids)

        size = sum(f.stat().st_size for f in (source / "objects" / "pack").glob("*.pack"))
        benches.append(Bench("push", f"push {size / 2**20:.0f} MB", push, cfg.push_reps, True))
    return [b for b in benches if b.reps > 0 and (not cfg.only or b.key in cfg.only)]


def run_suite(
    targets: Sequence[Target], cfg: SuiteConfig, log: Callable[[str], None] = print
) -> list[Result]:
    """Run every benchmark on every target, repetitions interleaved across targets."""
    results: list[Result] = []
    for bench in suite_benchmarks(cfg):
        eligible = [t for t in targets if not bench.needs_push or t.make_push_url is not None]
        merged = {t.name: Stats() for t in eligible}
        for _ in range(bench.reps):
            for target in eligible:
                one = bench.once(target)
                merged[target.name].samples += one.samples
                merged[target.name].peak_rss = max(merged[target.name].peak_rss, one.peak_rss)
        for target in eligible:
            stats = merged[target.name]
            results.append(
                Result(bench.name, target.name, target.transport, target.reference, stats)
            )
            log(f"  {bench.name:<24} {target.name:<20} median {stats.median:8.3f}s n={bench.reps}")
    return results


# --------------------------------------------------------------------------- report


def ratio(result: Result, results: Sequence[Result]) -> str:
    """Median of `result` over the reference median of the same benchmark and transport."""
    if result.reference:
        return "1.00 (ref)"
    refs = [
        r
        for r in results
        if r.reference and r.benchmark == result.benchmark and r.transport == result.transport
    ]
    if not refs:
        return "-"
    return f"{result.stats.median / refs[0].stats.median:.2f}"


def format_table(results: Sequence[Result]) -> str:
    head = ("benchmark", "target", "median s", "p95 s", "min s", "peak RSS MB", "ratio")
    rows = [
        (
            r.benchmark,
            r.target,
            f"{r.stats.median:.3f}",
            f"{r.stats.p95:.3f}",
            f"{min(r.stats.samples):.3f}",
            f"{r.stats.peak_rss / 2**20:.1f}",
            ratio(r, results),
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    return "\n".join(lines)


def results_json(results: Sequence[Result], meta: dict[str, object]) -> str:
    rows = [{**asdict(r), "stats": r.stats.summary(), "samples": r.stats.samples} for r in results]
    return json.dumps({"meta": meta, "results": rows}, indent=2)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference-only", action="store_true", help="benchmark only the peers")
    p.add_argument("--small", action="store_true", help="small repos and fewer repetitions")
    p.add_argument("--commits", type=int, help="override the clone repo's commit count")
    p.add_argument("--files", type=int, help="override the clone repo's file count")
    p.add_argument("--och-http", help="OpenCodeHub HTTP clone URL of the generated repo")
    p.add_argument("--och-ssh", help="OpenCodeHub SSH clone URL of the generated repo")
    p.add_argument("--och-ssh-command", help="GIT_SSH_COMMAND for --och-ssh")
    p.add_argument("--och-push-http", help="empty repo URL to push to; {n} -> push-0")
    p.add_argument("--och-push-ssh", help="empty repo URL to push to; {n} -> push-0")
    p.add_argument("--och-pid", type=int, action="append", default=[],
                   help="OpenCodeHub server pid(s) whose process tree RSS is sampled")  # fmt: skip
    p.add_argument("--reps", type=int, default=5, help="clone repetitions")
    p.add_argument("--ls-remote-reps", type=int, default=50)
    p.add_argument("--clients", type=int, default=8, help="concurrent clones")
    p.add_argument("--push-size-mb", type=int, help="push payload (default 1024, small 50)")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(BENCH_KEYS)}")
    p.add_argument("--concurrent-reps", type=int, help="default reps // 2 + 1")
    p.add_argument("--skip-push", action="store_true")
    p.add_argument("--skip-checkout", action="store_true")
    p.add_argument("--json", type=Path, help="also write results here")
    args = p.parse_args(argv)
    if not args.reference_only and not (args.och_http or args.och_ssh):
        p.error("give --och-http/--och-ssh URLs, or --reference-only")
    args.only = frozenset(filter(None, (args.only or "").split(",")))
    if unknown := args.only - set(BENCH_KEYS):
        p.error(f"unknown benchmark(s) for --only: {', '.join(sorted(unknown))}")
    return args


def clone_spec(args: argparse.Namespace) -> RepoSpec:
    base = RepoSpec.small() if args.small else RepoSpec()
    return RepoSpec(commits=args.commits or base.commits, files=args.files or base.files)


def push_spec(args: argparse.Namespace) -> RepoSpec:
    size = args.push_size_mb or (50 if args.small else 1024)
    return RepoSpec(commits=200, files=200, size_mb=size)


def suite_config(args: argparse.Namespace, push_source: Path | None, work: Path) -> SuiteConfig:
    reps = args.reps
    return SuiteConfig(
        clone_reps=reps,
        checkout_reps=0 if args.skip_checkout else max(1, reps // 2 + 1),
        ls_remote_reps=args.ls_remote_reps,
        clients=args.clients,
        concurrent_reps=args.concurrent_reps or max(1, reps // 2 + 1),
        push_source=push_source,
        workdir=work,
        only=args.only,
    )


@contextlib.contextmanager
def serve_root(repo: GeneratedRepo, work: Path) -> Iterator[Path]:
    """A private directory for the peers: `bench.git` -> the generated repo, push targets."""
    root = Path(tempfile.mkdtemp(prefix="serve-", dir=work))
    try:
        root.chmod(0o755)
        (root / "bench.git").symlink_to(repo.path)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def warm_cache(repo: Path) -> None:
    """Read the repository once so that the first target measured is not penalised."""
    for path in repo.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                while fh.read(1 << 20):
                    pass


def peer_target(peer: Peer, transport: str) -> Target:
    return Target(
        name=peer.name,
        transport=transport,
        clone_url=peer.url("bench.git"),
        env=peer.env,
        pids=peer.pids,
        make_push_url=peer.make_push_target,
        reference=True,
    )


def push_template(template: str | None) -> PushUrlFactory | None:
    """`template` with {n} replaced by the push target's name (e.g. push-0)."""
    if not template:
        return None
    return lambda name: template.format(n=name.removesuffix(".git"))


def och_targets(args: argparse.Namespace) -> list[Target]:
    ssh_env = {"GIT_SSH_COMMAND": args.och_ssh_command} if args.och_ssh_command else {}
    candidates = (
        ("http", args.och_http, {}, args.och_push_http),
        ("ssh", args.och_ssh, ssh_env, args.och_push_ssh),
    )
    return [
        Target(f"opencodehub-{kind}", kind, url, env, args.och_pid, push_template(push))
        for kind, url, env, push in candidates
        if url
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = WORK_DIR / "bench"
    work.mkdir(parents=True, exist_ok=True)
    repo = generate(clone_spec(args))
    wants_push = not args.skip_push and (not args.only or "push" in args.only)
    push_repo = generate(push_spec(args)) if wants_push else None
    warm_cache(repo.path)
    cfg = suite_config(args, push_repo.path if push_repo else None, work)
    print(f"clone repo: {repo.path} ({repo.extra.get('commits')} commits, "
          f"{repo.pack_bytes / 2**20:.1f} MB pack)")  # fmt: skip
    with (
        serve_root(repo, work) as root,
        nginx_http_backend(root) as http,
        sshd_git_shell(root) as ssh,
    ):
        targets = [peer_target(http, "http"), peer_target(ssh, "ssh"), *och_targets(args)]
        results = run_suite(targets, cfg)
    print()
    print(format_table(results))
    meta = {"clone_repo": repo.manifest(), "push_repo": push_repo and push_repo.manifest()}
    out = args.json or work / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(results_json(results, meta) + "\n")
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
