"""Reference git servers for the benchmarks, started on loopback on free ports.

* ``nginx_http_backend(root)``: nginx -> fcgiwrap -> ``git http-backend`` (smart HTTP,
  upload-pack and receive-pack), every path (config, pid, logs, temp dirs, socket) in a
  private temp dir, ``daemon off``.
* ``sshd_git_shell(root)``: OpenSSH ``sshd -D`` with its own host key and config, letting a
  dedicated system user (``ochbench``, login shell ``git-shell``) in with a generated
  ed25519 key.

Both are context managers yielding a :class:`Peer` (URLs, client environment, server pids)
and stop their processes on exit. ``tree_rss`` / ``RssSampler`` measure server memory.

Needs root for the sshd peer (it creates the system user and runs sshd).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
GIT_SHELL = "/usr/bin/git-shell"
SSH_USER = "ochbench"
SSH_USER_HOME = Path("/var/lib/ochbench")
# Config every server-side git process gets: allow anonymous push over HTTP and read
# repositories owned by another user (root-generated repos served as `ochbench`).
SERVER_GIT_CONFIG = (("http.receivepack", "true"), ("safe.directory", "*"))


@dataclass
class Peer:
    """A running reference server."""

    name: str
    root: Path
    base_url: str
    env: dict[str, str] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)
    workdir: Path | None = None
    push_owner: str | None = None

    def url(self, repo: str) -> str:
        """Clone URL of `repo` (a path relative to the served root, e.g. ``big.git``)."""
        return f"{self.base_url}/{repo}"

    def client_env(self) -> dict[str, str]:
        """os.environ plus what the git client needs to reach this peer."""
        return {**os.environ, **self.env}

    def make_push_target(self, name: str) -> str:
        """Create an empty bare repo under the root that this peer can be pushed to."""
        path = self.root / name
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
        if self.push_owner is not None:
            chown_tree(path, self.push_owner)
        return self.url(name)

    def rss(self) -> int:
        """Current resident memory of the server process trees, in bytes."""
        return tree_rss(self.pids)


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def wait_for_path(path: Path, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear after {timeout}s")
        time.sleep(0.05)


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a server in its own process group, its output going to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop a server started by spawn(): signal its process group (the leader's pid), wait,
    then SIGKILL whatever is left (e.g. prefork children that outlive their parent)."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    deadline = time.monotonic() + 2.0
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def git_config_env(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """GIT_CONFIG_COUNT/KEY/VALUE variables setting `pairs` for a git process."""
    env: dict[str, str] = {}
    items = list(pairs)
    for index, (key, value) in enumerate(items):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    env["GIT_CONFIG_COUNT"] = str(len(items))
    return env


def chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


def make_workdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)  # the sshd peer reads authorized_keys as the git user
    return path


# --------------------------------------------------------------------------- RSS


# A child still running its parent's program this long after its fork is a worker of its own
# (fcgiwrap's pre-forked workers, git's helpers), not one on its way to exec.
EXEC_GRACE_SECONDS = 1.0


def is_unexeced_fork(proc: psutil.Process, parent: psutil.Process) -> bool:
    """True for a child caught between fork and exec: same program, same command line as its
    parent, and forked moments ago. Its pages are the parent's (the same address space under
    vfork, which `subprocess.Popen` uses; copy-on-write copies under fork), so counting its
    RSS or PSS counts the parent a second time: a sample taken in that window of a server
    spawning git adds the server's whole size to the tree. Long-lived forks (fcgiwrap's
    workers) and children that renamed themselves (nginx, sshd) are counted as usual."""
    try:
        return (
            time.time() - proc.create_time() < EXEC_GRACE_SECONDS
            and proc.exe() == parent.exe()
            and proc.cmdline() == parent.cmdline()
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def tree_rss(pids: Iterable[int]) -> int:
    """Sum of RSS over the given processes and all their descendants, in bytes (a child not
    yet exec'd counts as part of its parent: see `is_unexeced_fork`)."""
    seen: set[int] = set()
    total = 0
    stack: list[tuple[int, psutil.Process | None]] = [(pid, None) for pid in pids]
    while stack:
        pid, parent = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            proc = psutil.Process(pid)
            children = proc.children()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        stack += [(child.pid, proc) for child in children]
        if parent is not None and is_unexeced_fork(proc, parent):
            continue
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return total


class RssSampler:
    """Samples tree_rss(pids) in a thread; `peak` is the maximum seen (bytes).

    Use as a context manager around the work to measure.
    """

    def __init__(self, pids: Iterable[int], interval: float = 0.02) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pids))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        if self.pids:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


# --------------------------------------------------------------------------- nginx + http-backend


def nginx_conf(workdir: Path, root: Path, port: int, socket_path: Path) -> str:
    user = "user root root;\n" if os.geteuid() == 0 else ""
    params = {
        "SCRIPT_FILENAME": HTTP_BACKEND,
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": "$uri",
        "QUERY_STRING": "$query_string",
        "REQUEST_METHOD": "$request_method",
        "CONTENT_TYPE": "$content_type",
        "CONTENT_LENGTH": "$content_length",
        "REMOTE_USER": "$remote_user",
        "REMOTE_ADDR": "$remote_addr",
        "SERVER_PROTOCOL": "$server_protocol",
        "GATEWAY_INTERFACE": "CGI/1.1",
        **git_config_env(SERVER_GIT_CONFIG),
    }
    lines = "\n".join(f'            fastcgi_param {k} "{v}";' for k, v in params.items())
    temp = "\n".join(
        f"    {kind}_temp_path {workdir}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}daemon off;
worker_processes auto;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            fastcgi_pass unix:{socket_path};
            fastcgi_buffering off;
            fastcgi_read_timeout 600s;
{lines}
        }}
    }}
}}
"""


def start_fcgiwrap(workdir: Path, socket_path: Path, children: int) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **git_config_env(SERVER_GIT_CONFIG)}
    cmd = ["fcgiwrap", "-c", str(children), "-s", f"unix:{socket_path}", "-p", HTTP_BACKEND]
    proc = spawn(cmd, workdir / "fcgiwrap.log", env)
    wait_for_path(socket_path, proc)
    return proc


def start_nginx(workdir: Path, root: Path, port: int, socket_path: Path) -> subprocess.Popen[bytes]:
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(workdir, root, port, socket_path))
    cmd = ["nginx", "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
    proc = spawn(cmd, workdir / "nginx.out")
    wait_for_port(port, proc)
    return proc


@contextlib.contextmanager
def nginx_http_backend(root: Path, children: int = 16) -> Iterator[Peer]:
    """Serve the bare repos under `root` at http://127.0.0.1:PORT/<repo>.git.

    `children` is the number of fcgiwrap workers, i.e. how many git requests run at once.
    """
    workdir = make_workdir("och-nginx-")
    socket_path = workdir / "fcgiwrap.sock"
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start_fcgiwrap(workdir, socket_path, children))
        procs.append(start_nginx(workdir, root.resolve(), port, socket_path))
        yield Peer(
            name="nginx+http-backend",
            root=root.resolve(),
            base_url=f"http://127.0.0.1:{port}",
            pids=[p.pid for p in procs],
            workdir=workdir,
        )
    finally:
        for proc in reversed(procs):
            stop(proc, signal.SIGQUIT if proc.args[0] == "nginx" else signal.SIGTERM)
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- sshd + git-shell


def ensure_ssh_user(user: str = SSH_USER, home: Path = SSH_USER_HOME) -> None:
    """Create the system user that git-shell runs as (unlocked, key-only login)."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        cmd = ["useradd", "--system", "--home-dir", str(home), "--create-home"]
        subprocess.run([*cmd, "--shell", GIT_SHELL, user], check=True)
    # sshd without PAM refuses accounts whose password field starts with "!" (locked).
    subprocess.run(["usermod", "-p", "*", user], check=True)


def generate_key(path: Path, comment: str) -> None:
    cmd = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]
    subprocess.run(cmd, check=True)


def authorized_keys_line(public_key: str) -> str:
    """Key line passing the server git config to git-shell through `environment=`."""
    env = git_config_env(SERVER_GIT_CONFIG)
    options = ",".join(f'environment="{k}={v}"' for k, v in env.items())
    restrictions = "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty"
    return f"{options},{restrictions} {public_key}"


def sshd_conf(workdir: Path, port: int, user: str) -> str:
    return f"""Port {port}
ListenAddress 127.0.0.1
HostKey {workdir}/ssh_host_ed25519_key
PidFile {workdir}/sshd.pid
AuthorizedKeysFile {workdir}/authorized_keys
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitUserEnvironment yes
PermitRootLogin no
UseDNS no
MaxStartups 200:30:400
MaxSessions 100
LogLevel ERROR
"""


def ssh_client_command(key: Path, port: int) -> str:
    opts = [
        "-i", str(key), "-p", str(port),
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip
    return shlex.join(["ssh", *opts])


def prepare_sshd(workdir: Path, port: int, user: str) -> Path:
    """Write host key, client key, authorized_keys and sshd_config; return the client key."""
    generate_key(workdir / "ssh_host_ed25519_key", "och-bench-host")
    client_key = workdir / "client_ed25519"
    generate_key(client_key, "och-bench-client")
    public = (client_key.with_suffix(".pub")).read_text().strip()
    keys = workdir / "authorized_keys"
    keys.write_text(authorized_keys_line(public) + "\n")
    keys.chmod(0o644)
    (workdir / "sshd_config").write_text(sshd_conf(workdir, port, user))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    return client_key


@contextlib.contextmanager
def sshd_git_shell(root: Path, user: str = SSH_USER) -> Iterator[Peer]:
    """Serve the bare repos under `root` at ssh://ochbench@127.0.0.1:PORT/<abs path>."""
    ensure_ssh_user(user)
    workdir = make_workdir("och-sshd-")
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        client_key = prepare_sshd(workdir, port, user)
        cmd = ["/usr/sbin/sshd", "-D", "-e", "-f", str(workdir / "sshd_config")]
        proc = spawn(cmd, workdir / "sshd.log")
        wait_for_path(workdir / "sshd.pid", proc)  # written once sshd listens
        yield Peer(
            name="sshd+git-shell",
            root=root.resolve(),
            base_url=f"ssh://{user}@127.0.0.1:{port}{root.resolve()}",
            env={"GIT_SSH_COMMAND": ssh_client_command(client_key, port)},
            pids=[proc.pid],
            workdir=workdir,
            push_owner=user,
        )
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def reference_peers(root: Path, http_children: int = 16) -> Iterator[list[Peer]]:
    """Both reference peers serving `root`."""
    with nginx_http_backend(root, http_children) as http, sshd_git_shell(root) as ssh:
        yield [http, ssh]
