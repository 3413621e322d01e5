"""Build large bare git repositories deterministically for the benchmarks.

The history is streamed into ``git fast-import``; nothing but a small per-file line table
is kept in memory. The same parameters always produce the same objects (same commit ids),
and the result is cached under ``benchmarks/work/repos/`` keyed by those parameters.

Shape of the default repository (100,000 commits, 50,000 files):

* files spread over three levels of directories (``src/mNN/pNN/sN/…``), added
  gradually over the first half of the history, each commit touching a few files with
  a skewed (some hot, most cold) distribution;
* ``src/core/engine.py``: touched by >= 1,000 commits (the blame benchmark file);
* ``data/large.txt``: a ~1 MB text file, edited a few times;
* one commit (tag ``bench/big-diff``) adding a 5,000-line file;
* tags every few hundred commits and a few branches, for ls-remote / ref advertisement;
* optionally (``--size-mb N``) N MB of incompressible random blobs from a seeded PRNG
  in ``assets/``, e.g. to build a 50 MB or a 1 GB push payload.

Usage::

    python benchmarks/genrepo.py --small          # 2,000 commits / 1,000 files
    python benchmarks/genrepo.py                  # 100,000 commits / 50,000 files
    python benchmarks/genrepo.py --small --size-mb 50 --commits 200
    python benchmarks/genrepo.py --commits 100 --files 100 --size-mb 1024   # 1 GB push repo

From Python: ``generate(RepoSpec(...)) -> GeneratedRepo`` (cached).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

GENERATOR_VERSION = 1
WORK_DIR = Path(__file__).resolve().parent / "work"
REPO_CACHE = WORK_DIR / "repos"

BLAME_PATH = "src/core/engine.py"
LARGE_PATH = "data/large.txt"
BIG_DIFF_PATH = "src/generated/tables.py"
BIG_DIFF_TAG = "refs/tags/bench/big-diff"
LARGE_FILE_BYTES = 1024 * 1024
BIG_DIFF_LINES = 5000
BLAME_MIN_TOUCHES = 1200
RANDOM_BLOB_BYTES = 1024 * 1024
BASE_TIME = 1_600_000_000
AUTHORS = (
    ("Ada Lovelace", "ada@example.com"),
    ("Alan Turing", "alan@example.com"),
    ("Grace Hopper", "grace@example.com"),
    ("Edsger Dijkstra", "edsger@example.com"),
    ("Barbara Liskov", "barbara@example.com"),
    ("Ken Thompson", "ken@example.com"),
)
EXTENSIONS = (".py", ".py", ".py", ".c", ".h", ".md", ".txt", ".js")
_WORD_TEXT = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi "
    "rho sigma tau upsilon phi chi psi omega request response buffer stream packet index "
    "cache table value result error config handler parser token record commit branch "
    "object reader writer worker queue event signal"
)
WORDS = tuple(_WORD_TEXT.split())


@dataclass(frozen=True)
class RepoSpec:
    """Parameters of a generated repository; equal specs produce identical objects."""

    commits: int = 100_000
    files: int = 50_000
    size_mb: int = 0
    seed: int = 42

    @classmethod
    def small(cls, size_mb: int = 0) -> RepoSpec:
        return cls(commits=2_000, files=1_000, size_mb=size_mb)

    @property
    def key(self) -> str:
        return f"c{self.commits}-f{self.files}-r{self.size_mb}mb-s{self.seed}-v{GENERATOR_VERSION}"


@dataclass
class GeneratedRepo:
    """A generated bare repository plus facts the benchmarks need about it."""

    path: Path
    spec: RepoSpec
    head: str = ""
    big_diff_commit: str = ""
    blame_path: str = BLAME_PATH
    blame_touches: int = 0
    large_path: str = LARGE_PATH
    pack_bytes: int = 0
    refs: int = 0
    seconds: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)

    def manifest(self) -> dict[str, object]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


# --------------------------------------------------------------------------- content


class LineSource:
    """Deterministic pseudo-source lines: a shared vocabulary plus unique edited lines."""

    def __init__(self, rng: random.Random, size: int = 8192) -> None:
        self.rng = rng
        self.vocab: list[bytes] = [self._make_line(i) for i in range(size)]

    def _make_line(self, n: int) -> bytes:
        rng = self.rng
        indent = b"    " * rng.randrange(0, 4)
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 7)))
        kind = n % 5
        if kind == 0:
            text = f"def {words.replace(' ', '_')}(self, {rng.choice(WORDS)}):"
        elif kind == 1:
            text = f"# {words}"
        elif kind == 2:
            text = f"{rng.choice(WORDS)} = {rng.choice(WORDS)}({rng.randrange(1000)})"
        elif kind == 3:
            text = f"return {words.replace(' ', ' + ')}"
        else:
            text = f"if {rng.choice(WORDS)} > {rng.randrange(100)}:"
        return indent + text.encode()

    def pick(self) -> bytes:
        return self.vocab[self.rng.randrange(len(self.vocab))]

    def unique(self, commit: int) -> bytes:
        word = self.rng.choice(WORDS)
        return f"    {word}_{commit} = update({word}, {self.rng.randrange(10**6)})".encode()

    def block(self, count: int) -> list[bytes]:
        vocab, rnd = self.vocab, self.rng.randrange
        size = len(vocab)
        return [vocab[rnd(size)] for _ in range(count)]


def edit_lines(lines: list[bytes], src: LineSource, commit: int, edits: int, cap: int) -> None:
    """Apply a few in-place edits (replace, insert, delete) so that diffs stay small."""
    rng = src.rng
    for _ in range(edits):
        op = rng.random()
        pos = rng.randrange(len(lines)) if lines else 0
        if op < 0.55 and lines:
            lines[pos] = src.unique(commit)
        elif op < 0.9 or len(lines) < 5:
            if len(lines) < cap:
                lines.insert(pos, src.unique(commit))
            elif lines:
                lines[pos] = src.unique(commit)
        else:
            del lines[pos]


def file_path(index: int) -> str:
    """Spread files over src/mNN/pNN/sN/ (16 x 16 x 8 leaf directories)."""
    a, b, c = index % 16, (index // 16) % 16, (index // 256) % 8
    ext = EXTENSIONS[index % len(EXTENSIONS)]
    return f"src/m{a:02d}/p{b:02d}/s{c}/f{index:05d}{ext}"


# --------------------------------------------------------------------------- fast-import stream


class Stream:
    """Thin writer for the fast-import command language."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def data(self, payload: bytes) -> None:
        self.out.write(b"data %d\n" % len(payload))
        self.out.write(payload)
        self.out.write(b"\n")

    def commit(self, ref: str, number: int, message: str) -> None:
        name, email = AUTHORS[number % len(AUTHORS)]
        stamp = BASE_TIME + number * 600
        self.out.write(f"commit {ref}\n".encode())
        self.out.write(f"author {name} <{email}> {stamp} +0000\n".encode())
        self.out.write(f"committer {name} <{email}> {stamp + 30} +0000\n".encode())
        self.data(message.encode())

    def modify(self, path: str, payload: bytes) -> None:
        self.out.write(f"M 100644 inline {path}\n".encode())
        self.data(payload)

    def reset(self, ref: str, source: str) -> None:
        self.out.write(f"reset {ref}\nfrom {source}\n\n".encode())


@dataclass
class HistoryState:
    """What the generator remembers between commits: one line table per file."""

    files: list[list[bytes]] = field(default_factory=list)
    blame: list[bytes] = field(default_factory=list)
    large: list[bytes] = field(default_factory=list)
    blame_touches: int = 0


class HistoryWriter:
    """Writes the commits of one RepoSpec into a fast-import stream."""

    def __init__(self, spec: RepoSpec, stream: Stream) -> None:
        self.spec = spec
        self.stream = stream
        self.rng = random.Random(spec.seed)
        self.src = LineSource(self.rng)
        self.state = HistoryState()
        self.growth_commits = max(1, spec.commits // 2)
        self.blame_every = max(2, spec.commits // BLAME_MIN_TOUCHES)
        self.tag_every = max(10, spec.commits // 250)
        self.branch_every = max(50, spec.commits // 20)
        self.big_diff_at = (spec.commits * 3) // 4
        self.large_at = max(1, spec.commits // 10)
        self.random_blobs = (spec.size_mb * 1024 * 1024) // RANDOM_BLOB_BYTES
        self.random_every = max(1, spec.commits // max(1, self.random_blobs))
        self.random_written = 0

    def write(self) -> None:
        for number in range(self.spec.commits):
            self._commit(number)
            self._refs(number)
        self._flush_random_blobs(self.spec.commits)
        self.stream.out.write(b"done\n")

    def _commit(self, number: int) -> None:
        stream = self.stream
        stream.commit("refs/heads/main", number, self._message(number))
        if number == 0:
            self._initial_files()
        self._grow_files(number)
        self._touch_files(number)
        if number % self.blame_every == 1 or number == 1:
            self._touch_blame(number)
        if number == self.large_at:
            self._write_large(number, create=True)
        elif number > self.large_at and number % (self.large_at * 2) == 0:
            self._write_large(number, create=False)
        if number == self.big_diff_at:
            self._write_big_diff(number)
        if self.random_written < self.random_blobs and number % self.random_every == 0:
            self._write_random(self.random_written)
        stream.out.write(b"\n")
        if number == self.big_diff_at:
            stream.reset(BIG_DIFF_TAG, "refs/heads/main")

    def _message(self, number: int) -> str:
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randrange(3, 9)))
        body = f"Change {number}: {words}\n"
        if number % 7 == 0:
            body += f"\nLonger explanation of change {number}.\n\nRefs: #{number // 10}\n"
        return body

    def _initial_files(self) -> None:
        readme = b"# Benchmark repository\n\nGenerated by benchmarks/genrepo.py.\n"
        self.stream.modify("README.md", readme)
        self.state.blame = self.src.block(300)
        self.stream.modify(BLAME_PATH, b"\n".join(self.state.blame) + b"\n")

    def _grow_files(self, number: int) -> None:
        target = min(self.spec.files, (self.spec.files * (number + 1)) // self.growth_commits)
        files = self.state.files
        while len(files) < max(1, target):
            lines = self.src.block(self.rng.randrange(8, 40))
            files.append(lines)
            self.stream.modify(file_path(len(files) - 1), b"\n".join(lines) + b"\n")

    def _pick_file(self) -> int:
        count = len(self.state.files)
        if self.rng.random() < 0.3:  # hot set: the first 1% of files
            return self.rng.randrange(max(1, count // 100))
        return self.rng.randrange(count)

    def _touch_files(self, number: int) -> None:
        if number == 0:
            return
        for index in sorted({self._pick_file() for _ in range(self.rng.randrange(1, 4))}):
            lines = self.state.files[index]
            edit_lines(lines, self.src, number, self.rng.randrange(1, 4), cap=400)
            self.stream.modify(file_path(index), b"\n".join(lines) + b"\n")

    def _touch_blame(self, number: int) -> None:
        edit_lines(self.state.blame, self.src, number, self.rng.randrange(1, 5), cap=2000)
        self.stream.modify(BLAME_PATH, b"\n".join(self.state.blame) + b"\n")
        self.state.blame_touches += 1

    def _write_large(self, number: int, create: bool) -> None:
        large = self.state.large
        if create:
            size = 0
            while size < LARGE_FILE_BYTES:
                line = self.src.pick()
                large.append(line)
                size += len(line) + 1
        else:
            edit_lines(large, self.src, number, 3, cap=len(large) + 10)
        self.stream.modify(LARGE_PATH, b"\n".join(large) + b"\n")

    def _write_big_diff(self, number: int) -> None:
        rows = (self.src.pick().strip()[:60].decode() for _ in range(BIG_DIFF_LINES - 2))
        body = [f"    ({i}, {row!r}),".encode() for i, row in enumerate(rows)]
        lines = [b"TABLES = [", *body, b"]"]
        self.stream.modify(BIG_DIFF_PATH, b"\n".join(lines) + b"\n")

    def _write_random(self, index: int) -> None:
        payload = random.Random(self.spec.seed * 1_000_003 + index).randbytes(RANDOM_BLOB_BYTES)
        self.stream.modify(f"assets/r{index // 100:03d}/blob{index:05d}.bin", payload)
        self.random_written += 1

    def _flush_random_blobs(self, number: int) -> None:
        """Put any random blobs that did not fit one-per-commit into final commits."""
        per_commit = 64
        while self.random_written < self.random_blobs:
            self.stream.commit("refs/heads/main", number, f"Add assets batch {number}\n")
            for _ in range(min(per_commit, self.random_blobs - self.random_written)):
                self._write_random(self.random_written)
            self.stream.out.write(b"\n")
            number += 1

    def _refs(self, number: int) -> None:
        if number and number % self.tag_every == 0:
            self.stream.reset(f"refs/tags/v{number // self.tag_every}.0", "refs/heads/main")
        if number and number % self.branch_every == 0:
            self.stream.reset(
                f"refs/heads/feature/f{number // self.branch_every:02d}", "refs/heads/main"
            )


# --------------------------------------------------------------------------- driver


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


def run_fast_import(spec: RepoSpec, repo: Path) -> HistoryState:
    """Stream the history of `spec` into a fresh bare repository at `repo`."""
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(repo)], check=True)
    (repo / "info" / "attributes").write_text("*.bin -delta\n")
    cmd = [
        "git",
        "-C",
        str(repo),
        "fast-import",
        "--quiet",
        "--done",
        "--big-file-threshold=512k",
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, bufsize=1 << 20)
    assert proc.stdin is not None
    writer = HistoryWriter(spec, Stream(proc.stdin))
    try:
        with proc.stdin:
            writer.write()
    finally:
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"git fast-import failed with exit code {code}")
    return writer.state


def optimize(repo: Path) -> None:
    """Repack like a well-kept server repo: one pack, fresh deltas, bitmaps, commit-graph."""
    git(repo, "repack", "-a", "-d", "-f", "-b", "-q", "--window=10", "--depth=50")
    git(repo, "pack-refs", "--all", "--prune")
    git(repo, "commit-graph", "write", "--reachable")
    git(repo, "prune-packed")


def describe(repo: Path, spec: RepoSpec, seconds: float, blame_touches: int) -> GeneratedRepo:
    packs = list((repo / "objects" / "pack").glob("*.pack"))
    return GeneratedRepo(
        path=repo,
        spec=spec,
        head=git(repo, "rev-parse", "refs/heads/main"),
        big_diff_commit=git(repo, "rev-parse", "--verify", "-q", BIG_DIFF_TAG + "^{commit}"),
        blame_touches=blame_touches,
        pack_bytes=sum(p.stat().st_size for p in packs),
        refs=len(git(repo, "for-each-ref", "--format=%(refname)").splitlines()),
        seconds=round(seconds, 1),
        extra={"commits": int(git(repo, "rev-list", "--count", "refs/heads/main"))},
    )


def cache_paths(spec: RepoSpec, cache: Path) -> tuple[Path, Path]:
    return cache / f"{spec.key}.git", cache / f"{spec.key}.json"


def load_cached(spec: RepoSpec, cache: Path = REPO_CACHE) -> GeneratedRepo | None:
    repo, manifest = cache_paths(spec, cache)
    if not (repo.is_dir() and manifest.is_file()):
        return None
    data = json.loads(manifest.read_text())
    data["path"] = repo
    data["spec"] = spec
    return GeneratedRepo(**data)


def generate(spec: RepoSpec, cache: Path = REPO_CACHE, log: bool = True) -> GeneratedRepo:
    """Return the cached repository for `spec`, building it first if needed."""
    cached = load_cached(spec, cache)
    if cached is not None:
        return cached
    repo, manifest = cache_paths(spec, cache)
    tmp = repo.with_name(repo.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _log(log, f"generating {spec} -> {repo}")
    state = run_fast_import(spec, tmp)
    _log(log, f"fast-import done in {time.perf_counter() - started:.1f}s; repacking")
    optimize(tmp)
    tmp.rename(repo)
    result = describe(repo, spec, time.perf_counter() - started, state.blame_touches + 1)
    manifest.write_text(json.dumps(result.manifest(), indent=2) + "\n")
    _log(log, f"done in {result.seconds}s: {result.pack_bytes / 1e6:.1f} MB pack")
    return result


def _log(enabled: bool, message: str) -> None:
    if enabled:
        print(f"[genrepo] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="2,000 commits / 1,000 files")
    parser.add_argument("--commits", type=int, help="number of commits (default 100,000)")
    parser.add_argument("--files", type=int, help="number of files (default 50,000)")
    parser.add_argument(
        "--size-mb", type=int, default=0, help="add this many MB of incompressible random blobs"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--out", type=Path, help="copy the result here (default: print the cached path only)"
    )
    return parser.parse_args(argv)


def spec_from_args(args: argparse.Namespace) -> RepoSpec:
    base = RepoSpec.small() if args.small else RepoSpec()
    return RepoSpec(
        commits=args.commits if args.commits is not None else base.commits,
        files=args.files if args.files is not None else base.files,
        size_mb=args.size_mb,
        seed=args.seed,
    )


def iter_summary(repo: GeneratedRepo) -> Iterator[str]:
    yield f"path            {repo.path}"
    yield f"commits         {repo.extra.get('commits')}"
    yield f"head            {repo.head}"
    yield f"pack size       {repo.pack_bytes / 1e6:.1f} MB"
    yield f"refs            {repo.refs}"
    yield f"blame file      {repo.blame_path} ({repo.blame_touches} commits)"
    yield f"big diff commit {repo.big_diff_commit}"
    yield f"build seconds   {repo.seconds}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repo = generate(spec_from_args(args))
    if args.out is not None:
        if args.out.exists():
            print(f"{args.out} exists; not overwriting", file=sys.stderr)
            return 1
        shutil.copytree(repo.path, args.out, symlinks=True)
        print(f"copied to {args.out}")
    print("\n".join(iter_summary(repo)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
