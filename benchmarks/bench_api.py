"""API throughput, startup time and idle memory of `opencodehub serve`.

    .venv/bin/python benchmarks/bench_api.py [--duration 20] [--connections 50] [--workers 1]
                                             [--migrate]

Starts a real `opencodehub serve` on a fresh data dir (SQLite, the embedded default), creates a
user and a PAT with the CLI, then measures:

- ready time: from process start to the first 200 from /readyz;
- idle RSS and PSS of the server's process tree, a few seconds after it became ready (RSS
  counts a page shared by several processes once in each; PSS divides it among them);
- `GET /api/v3/user` with the PAT at N concurrent connections, driven by `wrk` (C, so the load
  generator costs little of the two cores): requests per second and latency percentiles.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPENCODEHUB = ROOT / ".venv" / "bin" / "opencodehub"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tree(pid: int) -> list[int]:
    pids = [pid]
    children_file = Path(f"/proc/{pid}/task/{pid}/children")
    if children_file.exists():
        pids += [int(child) for child in children_file.read_text().split()]
    return pids


def _sum_kb(pid: int, path: str, field: str) -> int:
    total_kb = 0
    for each in _tree(pid):
        source = Path(f"/proc/{each}/{path}")
        if source.exists():
            match = re.search(rf"^{field}:\s+(\d+) kB", source.read_text(), re.MULTILINE)
            total_kb += int(match.group(1)) if match else 0
    return total_kb


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, from /proc: pages shared between them
    (a pre-forked worker's, say) counted once per process that maps them."""
    return _sum_kb(pid, "status", "VmRSS") / 1024


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and its children: each shared page divided among the
    processes that map it, so the sum is the memory the tree really holds."""
    return _sum_kb(pid, "smaps_rollup", "Pss") / 1024


def wait_ready(url: str, timeout: float = 30) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("server did not become ready")


def run_wrk(url: str, token: str, duration: int, connections: int) -> dict[str, float]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    output = subprocess.run(
        [
            "wrk",
            "--latency",
            f"-t{min(2, connections)}",
            f"-c{connections}",
            f"-d{duration}s",
            "-H",
            f"Authorization: token {token}",
            f"{url}/api/v3/user",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures: dict[str, float] = {}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    figures["rps"] = float(rps.group(1)) if rps else 0.0
    for percentile in ("50", "90", "99"):
        match = re.search(rf"\s{percentile}%\s+([\d.]+)(us|ms|s)", output)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            figures[f"p{percentile}_ms"] = (
                value / 1000 if unit == "us" else (value * 1000 if unit == "s" else value)
            )
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    figures["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--migrate",
        action="store_true",
        help="start `serve` as `make run` does, checking the migrations first",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="och-bench-api-") as scratch:
        port = free_port()
        env = {
            **os.environ,
            "OCH_DATA_DIR": str(Path(scratch) / "data"),
            "OCH_HTTP_PORT": str(port),
            "OCH_SSH_PORT": str(free_port()),
            "OCH_LOG_LEVEL": "WARNING",
            "OCH_WORKERS": str(args.workers),
            # The benchmark measures throughput, not the rate limiter's refusals.
            "OCH_RATE_LIMIT_AUTHENTICATED": "100000000",
        }
        # As an installed package is: pip compiles its modules when it installs them, whereas
        # an editable install compiles each on first import (never, with
        # PYTHONDONTWRITEBYTECODE set), which would add seconds to every start measured here.
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(ROOT / "src")],
            check=True,
            capture_output=True,
        )
        subprocess.run([OPENCODEHUB, "migrate"], env=env, check=True, capture_output=True)
        subprocess.run(
            [
                OPENCODEHUB,
                "admin",
                "create-user",
                "bench",
                "--email",
                "bench@example.com",
                "--password",
                "benchmark-password",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        token = subprocess.run(
            [OPENCODEHUB, "admin", "create-token", "bench", "--scopes", "user"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [OPENCODEHUB, "serve", *([] if args.migrate else ["--skip-migrate"])],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            ready_s = wait_ready(url)
            time.sleep(3)
            idle_rss, idle_pss = tree_rss_mb(server.pid), tree_pss_mb(server.pid)
            run_wrk(url, token, 3, args.connections)  # warm-up
            figures = run_wrk(url, token, args.duration, args.connections)
            loaded_rss = tree_rss_mb(server.pid)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)

    print(f"serve ready in          {ready_s:.2f} s")
    print(f"idle RSS                {idle_rss:.1f} MB")
    print(f"idle PSS                {idle_pss:.1f} MB")
    print(f"RSS after load          {loaded_rss:.1f} MB")
    load = f"{args.connections} connections, {args.duration} s, workers={args.workers}"
    if args.migrate:
        load += ", migrations checked at start"
    print(f"GET /api/v3/user, {load}")
    print(f"  requests/s            {figures['rps']:.0f}")
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        if key in figures:
            print(f"  {key:<20}  {figures[key]:.1f}")
    print(f"  non-2xx responses     {figures['non_2xx']:.0f}")
    sys.exit(0 if figures["non_2xx"] == 0 else 1)


if __name__ == "__main__":
    main()
