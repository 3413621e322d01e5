"""Git LFS push and pull through `opencodehub serve` with the real git-lfs client.

Starts OpenCodeHub on a fresh data dir (local storage backend, as bench_compare.py does),
makes a repository whose commit adds `--size-mb` of incompressible data as LFS files
(`--files` files), then times

* `git push` (git-lfs uploads every object through the batch API and the app's transfer
  endpoint, then git pushes the pointers), and
* a fresh `git clone` with `GIT_LFS_SKIP_SMUDGE=1` followed by `git lfs pull` (the download),

reporting throughput and the server's memory: the peak RSS of its process tree and of the
server program alone (no git process), each minus the idle figure taken just before.

    .venv/bin/python benchmarks/bench_lfs.py                     # 1 GB in 16 files
    .venv/bin/python benchmarks/bench_lfs.py --size-mb 200       # quicker
    .venv/bin/python benchmarks/bench_lfs.py --schema models     # models ahead of migrations

Needs `git-lfs` (Debian: `apt-get install git-lfs`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_compare
from genrepo import WORK_DIR

MB = 1024 * 1024


def git(*args: str, cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


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
    }


def make_payload(workdir: Path, env: dict[str, str], size_mb: int, files: int) -> None:
    git("init", "-q", "-b", "main", str(workdir), cwd=workdir.parent, env=env)
    git("lfs", "install", "--local", cwd=workdir, env=env)
    git("lfs", "track", "*.bin", cwd=workdir, env=env)
    per_file = max(1, size_mb // files)
    for index in range(files):
        with (workdir / f"blob-{index:03}.bin").open("wb") as out:
            for _ in range(per_file):
                out.write(os.urandom(MB))
    git("add", ".", cwd=workdir, env=env)
    git("commit", "-q", "-m", "LFS payload", cwd=workdir, env=env)


def measure(
    och: bench_compare.OpenCodeHub,
    label: str,
    run: list[str],
    cwd: Path,
    env: dict[str, str],
    size: int,
) -> dict[str, float]:
    idle = bench_compare.settled_memory([och.proc.pid])
    with bench_compare.PeakSampler([och.proc.pid]) as sampler:
        started = time.perf_counter()
        subprocess.run(run, cwd=cwd, env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - started
    peak = sampler.peak
    row = {
        "seconds": round(seconds, 2),
        "mb_per_s": round(size / MB / seconds, 1),
        "idle_rss_mb": round(idle.rss / MB, 1),
        "rss_growth_mb": round(peak.minus(idle).rss / MB, 1),
        "server_alone_growth_mb": round(peak.minus(idle).own / MB, 1),
    }
    print(
        f"{label:<6} {row['seconds']:>7} s  {row['mb_per_s']:>7} MB/s  server tree RSS "
        f"+{row['rss_growth_mb']} MB, server alone +{row['server_alone_growth_mb']} MB "
        f"(idle {row['idle_rss_mb']} MB)"
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--schema", choices=("migrate", "models"), default="migrate")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if shutil.which("git-lfs") is None:
        print("git-lfs is not installed (apt-get install git-lfs)", file=sys.stderr)
        return 2
    bench_compare.SCHEMA = args.schema
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="lfs-", dir=WORK_DIR))
    results: dict[str, dict[str, float]] = {}
    try:
        env = client_env(scratch / "home")
        source = scratch / "source"
        source.mkdir()
        started = time.perf_counter()
        make_payload(source, env, args.size_mb, args.files)
        size = sum(path.stat().st_size for path in source.glob("*.bin"))
        print(f"payload: {size / MB:.0f} MB in {args.files} LFS files "
              f"(made in {time.perf_counter() - started:.0f} s)")  # fmt: skip
        with bench_compare.opencodehub_server(scratch / "server", 1) as och:
            och.create_repo("lfs")
            secret = quote(och.token, safe="")
            user = bench_compare.OCH_USER
            url = f"http://{user}:{secret}@127.0.0.1:{och.http_port}/{user}/lfs.git"
            git("remote", "add", "origin", url, cwd=source, env=env)
            results["push"] = measure(
                och, "push", ["git", "push", "-q", "origin", "main"], source, env, size
            )
            clone = scratch / "clone"
            skip = {**env, "GIT_LFS_SKIP_SMUDGE": "1"}
            git("clone", "-q", url, str(clone), cwd=scratch, env=skip)
            git("lfs", "install", "--local", cwd=clone, env=env)  # so that pull checks out
            results["pull"] = measure(och, "pull", ["git", "lfs", "pull"], clone, env, size)
            pulled = sum(path.stat().st_size for path in clone.glob("*.bin"))
            if pulled != size:
                raise RuntimeError(f"pulled {pulled} bytes, pushed {size}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        meta = {"size_mb": args.size_mb, "files": args.files, "load": os.getloadavg()}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
