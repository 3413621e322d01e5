"""Web UI page timings of `opencodehub serve` on a generated repository.

Starts OpenCodeHub on a fresh data dir (as bench_compare.py does), loads the generated
repository (default: the 100,000-commit one) with `git push --mirror`, waits for the server to
go quiet (commit index, commit-graph, warmed home listing), then times, as an anonymous visitor
over HTTP/1.1 keep-alive:

| page | what |
|---|---|
| home (warm) | `/{owner}/{repo}`, listing already cached (p50, p95 of `--reps`) |
| home (cold) | `/{owner}/{repo}/tree/<branch>` of a branch nobody viewed yet, plus the |
|  | fragments it loads with htmx (last-commit column, languages); one branch a sample |
| deep tree | a directory four levels down |
| 1 MB blob | `data/large.txt`, highlighted |
| 5k-line diff | the commit adding a 5,000-line file |
| blame | `src/core/engine.py` (1,206 commits of history in the default repo) |

Each figure is the wall time of the full response (all bytes read). Usage:

    .venv/bin/python benchmarks/bench_web.py                 # 100k-commit repo
    .venv/bin/python benchmarks/bench_web.py --small         # 2,000-commit repo
    .venv/bin/python benchmarks/bench_web.py --schema models # models ahead of migrations
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_compare
from genrepo import WORK_DIR, GeneratedRepo, RepoSpec, generate

HX_GET_RE = re.compile(r'hx-get="([^"]+)"[^>]*hx-trigger="load"')


def fetch(conn: http.client.HTTPConnection, path: str) -> tuple[int, str]:
    conn.request("GET", path, headers={"Accept": "text/html"})
    response = conn.getresponse()
    body = response.read().decode("utf-8", "replace")
    return response.status, body


def timed(conn: http.client.HTTPConnection, path: str) -> tuple[float, str]:
    started = time.perf_counter()
    status, body = fetch(conn, path)
    elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}")
    return elapsed, body


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="the 2,000-commit repository")
    parser.add_argument("--reps", type=int, default=20, help="samples per warm page")
    parser.add_argument("--cold", type=int, default=5, help="cold home samples (branches)")
    parser.add_argument("--schema", choices=("migrate", "models"), default="migrate")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    bench_compare.SCHEMA = args.schema
    spec = RepoSpec.small() if args.small else RepoSpec()
    repo = generate(spec)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    top = Path(tempfile.mkdtemp(prefix="web-", dir=WORK_DIR))
    try:
        results = measure(args, repo, spec, top / "run")
    finally:
        shutil.rmtree(top, ignore_errors=True)
    meta = {"commits": spec.commits, "files": spec.files, "load": os.getloadavg()}
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


def measure(
    args: argparse.Namespace, repo: GeneratedRepo, spec: RepoSpec, scratch: Path
) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with bench_compare.opencodehub_server(scratch, 1) as och:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **och.http_auth_env()}
        started = time.perf_counter()
        url = och.push_url_http("big")
        subprocess.run(
            ["git", "-C", str(repo.path), "push", "--quiet", "--mirror", url], env=env, check=True
        )
        print(f"loaded {spec.commits:,} commits in {time.perf_counter() - started:.1f} s")
        print(f"server quiet after {bench_compare.wait_quiet([och.proc.pid]):.0f} s")
        base = f"/{bench_compare.OCH_USER}/big"
        conn = http.client.HTTPConnection("127.0.0.1", och.http_port, timeout=120)

        def warm(name: str, path: str) -> None:
            timed(conn, path)  # first view: caches (highlighting, listings) filled
            samples = [timed(conn, path)[0] for _ in range(args.reps)]
            results[name] = {
                "p50_ms": round(statistics.median(samples) * 1000, 1),
                "p95_ms": round(percentile(samples, 0.95) * 1000, 1),
                "n": len(samples),
            }
            row = results[name]
            print(f"{name:<16} p50 {row['p50_ms']:>7} ms  p95 {row['p95_ms']:>7} ms")

        deep = "src/m07/p03/s5" if not args.small else "src"
        pages: list[tuple[str, str]] = [
            ("home (warm)", base),
            ("deep tree", f"{base}/tree/main/{deep}"),
            ("1 MB blob", f"{base}/blob/main/{repo.large_path}"),
            ("5k-line diff", f"{base}/commit/{repo.big_diff_commit}"),
            ("blame", f"{base}/blame/main/{repo.blame_path}"),
        ]
        for name, path in pages:
            warm(name, path)

        def cold_home(branch: str) -> float:
            started = time.perf_counter()
            _elapsed, body = timed(conn, f"{base}/tree/{branch}")
            for fragment in HX_GET_RE.findall(body):
                timed(conn, fragment.replace("&amp;", "&"))
            return time.perf_counter() - started

        branches = [f"feature/f{n:02}" for n in range(1, args.cold + 1)]
        samples = [cold_home(branch) for branch in branches]
        results["home (cold)"] = {
            "p50_ms": round(statistics.median(samples) * 1000, 1),
            "p95_ms": round(percentile(samples, 0.95) * 1000, 1),
            "n": len(samples),
        }
        print(
            f"{'home (cold)':<16} p50 {results['home (cold)']['p50_ms']:>7} ms  "
            f"p95 {results['home (cold)']['p95_ms']:>7} ms  (page + htmx fragments)"
        )
        conn.close()
    return results


if __name__ == "__main__":
    sys.exit(main())
