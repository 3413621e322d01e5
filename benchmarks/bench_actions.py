"""Actions: push-to-first-step latency, dispatch of many jobs over several runners, live-log delay.

    .venv/bin/python benchmarks/bench_actions.py [--jobs 200] [--runners 2] [--capacity 4]
                                                 [--latency-rounds 5] [--redis-url URL]
                                                 [--database-url URL-of-an-empty-database]

Starts a real `opencodehub serve` on a fresh data dir (SQLite, or the empty database of
--database-url; the in-process queue, or Redis with --redis-url), real runner processes
(`opencodehub runner run`, host executor), and pushes with the real `git` client. Measures:

- push-to-first-step: from just before `git push` to the moment the job's first step starts
  (the step prints its own clock; same machine), with one idle runner;
- a matrix of N trivial jobs over R runners of capacity C: wall time, jobs that ran more than
  once or never (both must be 0: each job's lease count is read from the database and each
  runner's log is counted), and the dispatch overhead per job (defined in benchmarks/README.md):
  slot time of the batch not spent in the jobs' own step, per job; and per job the time from
  its claim to its step running and from its step's start to its result being recorded;
- log-line delay to an SSE reader of /{owner}/{repo}/actions/jobs/{id}/logs/stream: a step
  prints a timestamped line every 50 ms; delay = arrival at the reader minus the stamp.

`--executor docker` measures push-to-first-step only, with a runner whose label runs jobs in
containers (`docker://och-test:latest`, the busybox image the runner tests build) on a Podman
API service started for the run, as tests/runner does; then the executor's phases in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import OPENCODEHUB, free_port, wait_ready

PASSWORD = "benchmark-password"

LATENCY = """name: Latency
on: push
jobs:
  first:
    runs-on: ubuntu-latest
    steps:
      - run: echo "stamp=$(date +%s.%N)"
"""

MANY = """name: Many
on: push
jobs:
  each:
    strategy:
      matrix:
        n: {values}
    runs-on: ubuntu-latest
    steps:
      - run: echo "n=${{{{ matrix.n }}}} t=$EPOCHREALTIME"
"""

LIVE = """name: Live
on: push
jobs:
  talk:
    runs-on: ubuntu-latest
    steps:
      - run: for i in $(seq 1 {count}); do echo "t=$(date +%s.%N)"; sleep 0.05; done
"""


STEP = 'echo "n=1 t=$EPOCHREALTIME"'


class Bench:
    # --executor docker changes the runner's label and adds `--docker-host`.
    label = "ubuntu-latest:host"
    runner_args: tuple[str, ...] = ()

    def __init__(self, scratch: Path, redis_url: str, database_url: str = "") -> None:
        self.scratch = scratch
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "OCH_DATA_DIR": str(scratch / "data"),
            "OCH_HTTP_PORT": str(self.port),
            "OCH_SSH_PORT": str(free_port()),
            "OCH_SSH_ENABLED": "false",
            "OCH_LOG_LEVEL": "WARNING",
            "OCH_REDIS_URL": redis_url,
            "OCH_DATABASE_URL": database_url,
            "OCH_RATE_LIMIT_AUTHENTICATED": "100000000",
            "OCH_RATE_LIMIT_ANONYMOUS": "100000000",
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.runners: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.database = sa.create_engine(
            database_url or f"sqlite:///{scratch / 'data' / 'opencodehub.db'}"
        )
        self.work = scratch / "work"
        self.home = scratch / "home"
        self.home.mkdir()

    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.database.connect() as connection:
            return list(connection.execute(sa.text(sql), params).all())

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [str(OPENCODEHUB), *args], env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def start(self) -> None:
        # The schema straight from the models (a fresh data dir: the same as migrating).
        subprocess.run(
            [sys.executable, "-c", "from opencodehub.config import get_settings; "
             "from opencodehub.db.engine import Database; from opencodehub.db.models import Base; "
             "Base.metadata.create_all(Database(get_settings().effective_database_url).engine)"],
            env=self.env, check=True,
        )  # fmt: skip
        self.cli(
            "admin", "create-user", "bench", "--email", "b@example.com", "--password", PASSWORD
        )
        self.token = self.cli("admin", "create-token", "bench", "--scopes", "repo,user")
        self.server = subprocess.Popen(
            [str(OPENCODEHUB), "serve", "--skip-migrate"],
            env=self.env,
            stdout=(self.scratch / "server.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_ready(self.url, timeout=60)
        self.api = httpx.Client(
            base_url=f"{self.url}/api/v3",
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
        )
        self.api.post("/user/repos", json={"name": "bench"}).raise_for_status()
        remote = f"http://bench:{PASSWORD}@127.0.0.1:{self.port}/bench/bench.git"
        self.git("init", "-q", "-b", "main", str(self.work), cwd=self.scratch)
        self.git("remote", "add", "origin", remote)

    def git(self, *args: str, cwd: Path | None = None) -> None:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "B",
            "GIT_AUTHOR_EMAIL": "b@example.com",
            "GIT_COMMITTER_NAME": "B",
            "GIT_COMMITTER_EMAIL": "b@example.com",
        }
        done = subprocess.run(
            ["git", *args], cwd=cwd or self.work, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"git {args[0]} failed: {done.stderr}")

    def start_runner(self, name: str, capacity: int) -> None:
        token = self.api.post("/repos/bench/bench/actions/runners/registration-token").json()
        config = self.scratch / f"{name}.json"
        self.cli(
            "runner", "register", "--url", self.url, "--token", token["token"],
            "--name", name, "--labels", self.label, "--config", str(config),
        )  # fmt: skip
        log = self.scratch / f"{name}.log"
        process = subprocess.Popen(
            [str(OPENCODEHUB), "runner", "run", "--config", str(config),
             "--capacity", str(capacity), "--poll-wait", "20", *self.runner_args],
            env=self.env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.runners.append((process, log))

    def push(self, files: dict[str, str | None]) -> tuple[str, float]:
        """Commit `files` (None deletes one) and push; returns the sha and the push's start."""
        for path, text in files.items():
            target = self.work / path
            if text is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", "bench")
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=self.work, capture_output=True, text=True, check=True
        ).stdout.strip()
        started = time.time()
        self.git("push", "-q", "origin", "HEAD:main")
        self.push_returned = time.time()
        return sha, started

    def run_for(self, sha: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.api.get("/repos/bench/bench/actions/runs", params={"head_sha": sha}).json()
            if runs["workflow_runs"]:
                return runs["workflow_runs"][0]
            time.sleep(0.02)
        raise RuntimeError("no run was created")

    def wait_completed(self, run_id: int, timeout: float = 900) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.api.get(f"/repos/bench/bench/actions/runs/{run_id}").json()
            if run["status"] == "completed":
                return run
            time.sleep(0.1)
        raise RuntimeError("the run did not complete")

    def stop(self) -> None:
        for process, _log in self.runners:
            process.send_signal(signal.SIGTERM)
        for process, _log in self.runners:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.server is not None:
            os.killpg(self.server.pid, signal.SIGTERM)
            self.server.wait(timeout=30)


def first_job_log(bench: Bench, run_id: int) -> str:
    jobs = bench.api.get(f"/repos/bench/bench/actions/runs/{run_id}/jobs").json()["jobs"]
    return bench.api.get(f"/repos/bench/bench/actions/jobs/{jobs[0]['id']}/logs").text


def _epoch(value: str | datetime) -> float:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC).timestamp()


def step_time(rounds: int = 30) -> float:
    """The jobs' own step outside any runner: the host executor's shell running it."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", STEP],
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_latency(bench: Bench, rounds: int) -> list[tuple[float, ...]]:
    """(push -> first step, git push itself, push -> run row, run row -> job taken,
    job taken -> step) per round."""
    delays = []
    for round_number in range(rounds):
        files = {".github/workflows/latency.yml": LATENCY, "round.txt": str(round_number)}
        sha, pushed_at = bench.push(files)
        push_s = bench.push_returned - pushed_at
        run = bench.wait_completed(bench.run_for(sha)["id"])
        stamp = next(
            float(line.split("stamp=", 1)[1])
            for line in first_job_log(bench, run["id"]).splitlines()
            if line.startswith("stamp=")
        )
        created, started = bench.query(
            "SELECT r.created_at, j.started_at FROM actions_runs r "
            "JOIN actions_jobs j ON j.run_id = r.id WHERE r.id = :run",
            run=run["id"],
        )[0]
        created_at, started_at = _epoch(created), _epoch(started)
        delays.append(
            (
                stamp - pushed_at,
                push_s,
                created_at - pushed_at,
                started_at - created_at,
                stamp - started_at,
            )
        )
    return delays


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it has reaped (a runner's step shells)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def bench_cpu(bench: Bench) -> tuple[float, float]:
    """(server, runners) CPU seconds so far."""
    assert bench.server is not None
    runners = sum(cpu_seconds(process.pid) for process, _log in bench.runners)
    return cpu_seconds(bench.server.pid), runners


def measure_many(bench: Bench, count: int) -> dict[str, Any]:
    workflow = MANY.format(values=json.dumps(list(range(count))))
    cpu_before = bench_cpu(bench)
    sha, pushed_at = bench.push(
        {".github/workflows/many.yml": workflow, ".github/workflows/latency.yml": None}
    )
    run = bench.wait_completed(bench.run_for(sha)["id"])
    wall = time.time() - pushed_at
    cpu_after = bench_cpu(bench)
    rows = bench.query(
        "SELECT lease_count, conclusion, started_at, completed_at, id FROM actions_jobs "
        "WHERE run_id = :run",
        run=run["id"],
    )
    runner_lines = Counter()
    for _process, log in bench.runners:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("job ") and line.endswith((": success", ": failure")):
                runner_lines[line.split(":", 1)[0]] += 1
    busy = sum(_epoch(done) - _epoch(started) for _lease, _conclusion, started, done, _id in rows)
    # Per job: claim -> its step runs (the step prints $EPOCHREALTIME as it starts), and the
    # step's start -> its result recorded (the step itself lasts a few ms of that).
    to_step: list[float] = []
    to_recorded: list[float] = []
    for _lease, _conclusion, started, done, job_id in rows:
        log = bench.api.get(f"/repos/bench/bench/actions/jobs/{job_id}/logs").text
        stamp = next(
            float(line.rsplit("t=", 1)[1]) for line in log.splitlines() if line.startswith("n=")
        )
        to_step.append(stamp - _epoch(started))
        to_recorded.append(_epoch(done) - stamp)
    window = max(_epoch(row[3]) for row in rows) - min(_epoch(row[2]) for row in rows)
    return {
        "jobs": len(rows),
        "succeeded": sum(1 for row in rows if row[1] == "success"),
        "ran_twice_by_lease": sum(1 for row in rows if row[0] > 1),
        "ran_twice_by_runner_logs": sum(1 for n in runner_lines.values() if n > 1),
        "ran_by_runners": len(runner_lines),
        "wall_s": wall,
        "jobs_per_s": len(rows) / wall,
        "mean_job_s": busy / max(1, len(rows)),
        "busy_s": busy,
        "window_s": window,
        "server_cpu_s": cpu_after[0] - cpu_before[0],
        "runner_cpu_s": cpu_after[1] - cpu_before[1],
        "to_step": to_step,
        "to_recorded": to_recorded,
    }


def measure_live(bench: Bench, count: int) -> list[float]:
    sha, _ = bench.push(
        {".github/workflows/live.yml": LIVE.format(count=count), ".github/workflows/many.yml": None}
    )
    run = bench.run_for(sha)
    deadline = time.monotonic() + 60
    jobs: list[dict[str, Any]] = []
    while not jobs and time.monotonic() < deadline:
        found = bench.api.get(f"/repos/bench/bench/actions/runs/{run['id']}/jobs").json()
        jobs = [job for job in found["jobs"] if job["name"] == "talk"]
    delays: list[float] = []
    url = f"{bench.url}/bench/bench/actions/jobs/{jobs[0]['id']}/logs/stream"
    with httpx.stream("GET", url, timeout=120) as response:
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "line":
                text = json.loads(line[6:])["text"]
                if text.startswith("t="):
                    delays.append(time.time() - float(text[2:]))
            elif line.startswith("data: ") and event == "done":
                break
    # Lines printed before the reader connected arrive in a burst; count the live ones.
    return delays[10:]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--latency-rounds", type=int, default=5)
    parser.add_argument("--live-lines", type=int, default=100)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--database-url", default="", help="an empty database (default SQLite)")
    parser.add_argument("--executor", choices=("host", "docker"), default="host")
    args = parser.parse_args()
    if args.executor == "docker":
        sys.exit(docker_main(args))

    with tempfile.TemporaryDirectory(prefix="och-bench-actions-") as scratch_name:
        scratch = Path(scratch_name)
        bench = Bench(scratch, args.redis_url, args.database_url)
        try:
            bench.start()
            bench.start_runner("idle", 1)
            time.sleep(1)
            latency = measure_latency(bench, args.latency_rounds)
            for index in range(1, args.runners):
                bench.start_runner(f"r{index}", args.capacity)
            bench.runners[0][0].send_signal(signal.SIGTERM)
            bench.runners[0][0].wait(timeout=30)
            bench.start_runner("r0", args.capacity)
            bench.runners = [r for r in bench.runners if r[0].poll() is None]
            time.sleep(1)
            many = measure_many(bench, args.jobs)
            live = measure_live(bench, args.live_lines)
        except BaseException:
            print((scratch / "server.log").read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            bench.stop()

    queue = "redis" if args.redis_url else "in-process"
    engine = bench.database.dialect.name
    own_step = step_time()
    load = os.getloadavg()
    print(f"queue: {queue}; database: {engine}; machine: {os.cpu_count()} cores (shared)")
    print(f"load average after the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"push -> first step (idle runner, {len(latency)} rounds)")
    for index, label in enumerate(
        (
            "total",
            "git push (client)",
            "push -> run created",
            "run created -> job taken",
            "job taken -> step runs",
        )
    ):
        values = [row[index] * 1000 for row in latency]
        print(
            f"  {label:<26} median {statistics.median(values):5.0f} ms, max {max(values):5.0f} ms"
        )
    slots = args.runners * args.capacity
    print(f"{args.jobs} jobs over {args.runners} runners x capacity {args.capacity}")
    print(f"  jobs completed        {many['jobs']:.0f} ({many['succeeded']:.0f} succeeded)")
    print(f"  run by runners        {many['ran_by_runners']:.0f}")
    print(f"  ran twice (leases)    {many['ran_twice_by_lease']:.0f}")
    print(f"  ran twice (logs)      {many['ran_twice_by_runner_logs']:.0f}")
    print(f"  wall time             {many['wall_s']:.1f} s ({many['jobs_per_s']:.1f} jobs/s)")
    print(f"  mean job run time     {many['mean_job_s'] * 1000:.0f} ms")
    jobs = max(1, many["jobs"])
    print(f"  first claim -> last completion {many['window_s']:.1f} s")
    print(f"  the job's own step    {own_step * 1000:.1f} ms (its shell, outside a runner)")
    overhead = many["window_s"] * slots / jobs - own_step
    print(f"  dispatch overhead     {overhead * 1000:.0f} ms per job (slot time - own step)")
    print(
        f"  CPU per job           server {many['server_cpu_s'] / jobs * 1000:.0f} ms, "
        f"runners {many['runner_cpu_s'] / jobs * 1000:.0f} ms (the run's creation included)"
    )
    idle = (many["wall_s"] * slots - many["busy_s"]) / jobs
    print(f"  slot time outside claim..completion {idle * 1000:.0f} ms per job (earlier figure)")
    for label, values in (
        ("claim -> step runs", many["to_step"]),
        ("step start -> recorded", many["to_recorded"]),
    ):
        ms = [value * 1000 for value in values]
        print(f"  {label:<22} median {statistics.median(ms):5.0f} ms, p95 {pct(ms, 0.95):5.0f} ms")
    if live:
        print(f"log line -> SSE reader ({len(live)} lines)")
        print(
            f"  median {statistics.median(live) * 1000:.0f} ms, p95 {pct(live, 0.95) * 1000:.0f} ms"
        )
    ok = many["jobs"] == args.jobs and many["ran_twice_by_lease"] == 0
    ok = ok and many["ran_by_runners"] == args.jobs and many["ran_twice_by_runner_logs"] == 0
    sys.exit(0 if ok else 1)


def docker_phases(docker_host: str, image: str, rounds: int) -> list[dict[str, float]]:
    """run_job in-process on the docker executor: ms from the job's start to the job
    container's start, to the step's start, to its first line, and the clean-up."""
    import threading

    from opencodehub.runner.engine import run_job
    from opencodehub.runner.executors.base import ExecutorOptions, build_executor
    from opencodehub.runner.jobspec import JobSpec

    class Clock:
        def __init__(self) -> None:
            self.start = time.perf_counter()
            self.marks: dict[str, float] = {}

        def mark(self, what: str) -> None:
            self.marks.setdefault(what, (time.perf_counter() - self.start) * 1000)

        def step_started(self, index: int, name: str) -> None:
            self.mark("step started")

        def log(self, index: int | None, line: str) -> None:
            if line.startswith("Starting job container"):
                self.mark("network + engine calls")
            elif line.startswith("stamp="):
                self.mark("first line")
            elif line == "Cleaning up":
                self.mark("cleaned up")

        def step_finished(self, *args: Any) -> None:
            self.mark("step finished")

        def annotation(self, *args: Any) -> None:
            return None

    spec = JobSpec(
        job_id=1,
        run_id=1,
        job_key="first",
        job={"steps": [{"run": 'echo "stamp=$EPOCHREALTIME"'}]},
        repository="bench/bench",
        sha="0" * 40,
        ref="refs/heads/main",
    )
    rows = []
    for _ in range(rounds):
        clock = Clock()
        with tempfile.TemporaryDirectory(prefix="och-bench-job-") as workdir:
            executor = build_executor(f"docker://{image}", ExecutorOptions(docker_host=docker_host))
            run_job(spec, executor, clock, threading.Event(), Path(workdir))
        rows.append(clock.marks)
    return rows


def docker_main(args: argparse.Namespace) -> int:
    """Push-to-first-step with a docker-executor runner on a Podman service of our own."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.runner.podman import TEST_IMAGE, start_podman, stop_podman

    global LATENCY
    # The busybox image has no bash, and its `date` no %N; its shell has $EPOCHREALTIME.
    LATENCY = LATENCY.replace("$(date +%s.%N)", "$EPOCHREALTIME")
    with tempfile.TemporaryDirectory(prefix="och-bench-actions-") as scratch_name:
        scratch = Path(scratch_name)
        podman, docker_host = start_podman(scratch)
        bench = Bench(scratch, args.redis_url, args.database_url)
        bench.label = f"ubuntu-latest:docker://{TEST_IMAGE}"
        bench.runner_args = ("--docker-host", docker_host)
        try:
            bench.start()
            bench.start_runner("idle", 1)
            time.sleep(1)
            latency = measure_latency(bench, args.latency_rounds)
            phases = docker_phases(docker_host, TEST_IMAGE, args.latency_rounds)
        except BaseException:
            print((scratch / "server.log").read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            bench.stop()
            stop_podman(podman)
    load = os.getloadavg()
    print(f"executor: docker://{TEST_IMAGE} on Podman; machine: {os.cpu_count()} cores (shared)")
    print(f"load average after the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"push -> first step (idle runner, {len(latency)} rounds)")
    labels = ("total", "git push (client)", "push -> run created", "run created -> job taken")
    for index, label in enumerate((*labels, "job taken -> step runs")):
        values = [row[index] * 1000 for row in latency]
        print(f"  {label:<26} p50 {statistics.median(values):5.0f} ms, max {max(values):5.0f} ms")
    print(f"docker executor phases in-process, ms from the job's start ({len(phases)} rounds)")
    for key in ("network + engine calls", "step started", "first line", "cleaned up"):
        values = [row[key] for row in phases if key in row]
        if values:
            print(f"  {key:<26} p50 {statistics.median(values):5.0f}, max {max(values):5.0f}")
    total = statistics.median(row[0] for row in latency)
    return 0 if total < 3 else 1


if __name__ == "__main__":
    main()
