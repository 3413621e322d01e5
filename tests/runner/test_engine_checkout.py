"""actions/checkout and owner/repo@ref actions fetched over HTTP with the job's token.

The server here is `git http-backend` behind a small HTTP server that insists on the job token
(as OpenCodeHub's smart HTTP does), so the engine's real git traffic is exercised.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.runner.conftest import run

TOKEN = "job-token-123456"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
        env={**os.environ, **GIT_ENV},
    )  # fmt: skip
    return proc.stdout.strip()


class GitHandler(BaseHTTPRequestHandler):
    root: Path
    seen_auth: list[str]

    def log_message(self, *args: object) -> None:
        pass

    def handle_git(self) -> None:
        expected = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        auth = self.headers.get("Authorization", "")
        self.seen_auth.append(auth)
        if auth.lower() != expected.lower():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        head, _, payload = out.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            key, _, value = line.decode().partition(": ")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = handle_git
    do_POST = handle_git


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    root = tmp_path / "srv"
    root.mkdir()
    seen: list[str] = []
    handler = type("H", (GitHandler,), {"root": root, "seen_auth": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, seen
    finally:
        server.shutdown()
        server.server_close()


def make_repo(srv: Path, name: str, files: dict[str, str], tag: str | None = None) -> str:
    work = srv.parent / f"work-{name.replace('/', '-')}"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    (work / "second.txt").write_text("2\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "second", cwd=work)
    if tag:
        git("tag", tag, cwd=work)
    bare = srv / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "-q", "--bare", str(work), str(bare))
    return git("rev-parse", "HEAD", cwd=work)


def test_checkout_and_remote_action(
    tmp_path: Path, git_server: tuple[str, Path, list[str]]
) -> None:
    url, srv, seen = git_server
    sha = make_repo(srv, "alice/project", {"README.md": "project readme\n"})
    make_repo(
        srv,
        "tools/hello",
        {
            "action.yml": (
                "name: hello\ninputs: {who: {default: you}}\n"
                "outputs: {said: {value: '${{ steps.s.outputs.said }}'}}\n"
                "runs:\n  using: composite\n  steps:\n"
                "    - id: s\n      shell: bash\n"
                '      run: echo "said=hi ${{ inputs.who }}" >> "$GITHUB_OUTPUT"\n'
            )
        },
        tag="v1",
    )
    ran = run(
        """
        steps:
          - uses: actions/checkout@v4
          - run: cat README.md && git log --oneline | wc -l && git rev-parse HEAD
          - uses: actions/checkout@v4
            with: {path: full, fetch-depth: 0, ref: main}
          - run: git -C full log --oneline | wc -l && git -C full branch --show-current
          - id: h
            uses: tools/hello@v1
            with: {who: team}
          - run: echo "${{ steps.h.outputs.said }}"
          - uses: tools/missing@v1
            continue-on-error: true
        """,
        tmp_path,
        server_url=url,
        api_url=f"{url}/api/v3",
        token=TOKEN,
        sha=sha,
    )
    assert ran.outcomes[:6] == [("success", "success")] * 6, ran.text
    assert ran.reporter.step_lines(1)[-3:] == ["project readme", "1", sha]
    assert ran.reporter.step_lines(3)[-2:] == ["2", "main"]
    assert ran.reporter.step_lines(5)[-1] == "hi team"
    assert ran.outcomes[6] == ("failure", "success")
    assert any("cannot fetch action 'tools/missing@v1'" in x for x in ran.reporter.step_lines(6))
    assert TOKEN not in ran.text
    assert seen and all(a.lower().startswith("basic ") for a in seen)


def test_checkout_with_wrong_token_fails(
    tmp_path: Path, git_server: tuple[str, Path, list[str]]
) -> None:
    url, srv, _ = git_server
    sha = make_repo(srv, "alice/project", {"README.md": "x\n"})
    ran = run(
        "steps: [{uses: actions/checkout@v4}]",
        tmp_path,
        server_url=url,
        token="wrong-token-value",
        sha=sha,
    )
    assert ran.result.result == "failure"
    assert "wrong-token-value" not in ran.text
