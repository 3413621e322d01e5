# OpenCodeHub server-side git hook (pre-receive and post-receive; the name it runs under decides).
#
# Standard library only and started with -IS, so it costs a few tens of milliseconds. It relays
# the ref updates git gives on stdin to the app's internal channel and prints the app's answer;
# every decision is the app's. Installed by opencodehub.git.hooks.ensure_hooks: do not edit the
# copies under the data directory.
#
# The request is one HTTP/1.1 POST written on a plain socket: `urllib.request` would import
# `http.client`, `email`, `ssl` and more, about 8 MB of resident memory in every hook process
# for a request this simple (git runs one hook process per push, and each counts against the
# server's memory while the push lasts). `ssl` is imported only for an https internal URL.
import json
import os
import socket
import sys

TIMEOUTS = {"pre-receive": 300, "post-receive": 900}
MAX_ANSWER_BYTES = 1024 * 1024


class HookError(Exception):
    pass


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix) of an http(s) URL; HookError for anything else."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise HookError("the internal URL must be http(s)")
    authority, slash, prefix = rest.partition("/")
    prefix = (slash + prefix).rstrip("/")
    if "@" in authority or not authority:
        raise HookError("the internal URL must be http(s) with a host")
    if authority.startswith("["):  # [IPv6]:port
        host, _, after = authority[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else ""
    else:
        host, _, port_text = authority.partition(":")
    default_port = 443 if scheme == "https" else 80
    if port_text and not port_text.isdigit():
        raise HookError("the internal URL has an invalid port")
    port = int(port_text) if port_text else default_port
    return scheme, host, port, prefix


def read_chunked(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            raise HookError("truncated chunked answer")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return body
        body += data[:size]
        data = data[size + 2 :]


def post(url: str, path: str, token: str, payload: bytes, timeout: float) -> tuple[int, bytes]:
    """POST `payload` (bytes, JSON) to `url` + `path`; returns (status, body bytes)."""
    scheme, host, port, prefix = split_url(url)
    # No proxies: the internal channel is a direct connection by design.
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        if scheme == "https":
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        host_header = f"[{host}]" if ":" in host else host
        head = (
            f"POST {prefix}{path} HTTP/1.1\r\n"
            f"Host: {host_header}:{port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Connection: close\r\n"
            "\r\n"
        )
        sock.sendall(head.encode("latin-1") + payload)
        received = bytearray()
        while len(received) <= MAX_ANSWER_BYTES:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    finally:
        sock.close()
    head, sep, body = bytes(received).partition(b"\r\n\r\n")
    if not sep:
        raise HookError("the server sent an incomplete answer")
    lines = head.decode("latin-1").split("\r\n")
    status_parts = lines[0].split(" ", 2)
    if len(status_parts) < 2 or not status_parts[0].startswith("HTTP/"):
        raise HookError("the server sent an invalid answer")
    status = int(status_parts[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = read_chunked(body)
    elif headers.get("content-length", "").isdigit():
        body = body[: int(headers["content-length"])]
    return status, body


def main() -> int:
    hook = os.path.basename(sys.argv[0])
    if hook not in TIMEOUTS:
        sys.stderr.write(f"opencodehub: unknown hook {hook}\n")
        return 1
    token = os.environ.get("OCH_HOOK_TOKEN", "")
    base_url = os.environ.get("OCH_INTERNAL_URL", "").rstrip("/")
    if not token or not base_url:
        sys.stderr.write("opencodehub: this repository only accepts pushes through the server\n")
        return 1
    if "\r" in token or "\n" in token:
        sys.stderr.write("opencodehub: invalid hook token\n")
        return 1

    updates = []
    for line in sys.stdin.buffer.read().decode("utf-8", "surrogateescape").splitlines():
        old_sha, new_sha, ref = line.split(" ", 2)
        updates.append({"old_sha": old_sha, "new_sha": new_sha, "ref": ref})
    push_options = []
    try:
        option_count = int(os.environ.get("GIT_PUSH_OPTION_COUNT", "0"))
    except ValueError:
        option_count = 0
    for index in range(min(option_count, 100)):
        push_options.append(os.environ.get(f"GIT_PUSH_OPTION_{index}", ""))
    body = {
        "updates": updates,
        "push_options": push_options,
        # During pre-receive the pushed objects wait in a quarantine directory inside the
        # repository; the app reads them from there (it checks the path is the repository's).
        "quarantine_path": os.environ.get("GIT_QUARANTINE_PATH", ""),
        "transport": os.environ.get("OCH_TRANSPORT", ""),
    }
    try:
        split_url(base_url)
    except HookError as error:
        sys.stderr.write(f"opencodehub: {error}\n")
        return 1
    payload = json.dumps(body).encode()  # ASCII: json escapes the rest
    try:
        status, answer_bytes = post(
            base_url, f"/internal/git/hooks/{hook}", token, payload, TIMEOUTS[hook]
        )
        try:
            answer = json.loads(answer_bytes or b"{}")
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if status != 200:
            answer.setdefault("ok", False)
            answer.setdefault("message", f"the server refused the push hook ({status})")
    except (OSError, ValueError, HookError) as error:
        answer = {"ok": False, "message": f"the server could not be reached ({error})"}

    message = str(answer.get("message") or "")
    if message:
        sys.stderr.write(message.rstrip("\n") + "\n")
    if hook == "post-receive":
        # The refs are already updated; a failure here only loses bookkeeping, never data.
        return 0
    return 0 if answer.get("ok") is True else 1


if __name__ == "__main__":
    sys.exit(main())
