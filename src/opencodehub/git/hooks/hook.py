# OpenCodeHub server-side git hook (pre-receive and post-receive; the name it runs under decides).
#
# Standard library only and started with -IS, so it costs a few tens of milliseconds. It relays
# the ref updates git gives on stdin to the app's internal channel and prints the app's answer;
# every decision is the app's. Installed by opencodehub.git.hooks.ensure_hooks: do not edit the
# copies under the data directory.
import json
import os
import sys
import urllib.error
import urllib.request

TIMEOUTS = {"pre-receive": 300, "post-receive": 900}


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
    if not base_url.startswith(("http://", "https://")):
        sys.stderr.write("opencodehub: the internal URL must be http(s)\n")
        return 1
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        f"{base_url}/internal/git/hooks/{hook}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    # No proxies: the internal channel is a direct connection by design.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=TIMEOUTS[hook]) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            answer = json.loads(error.read() or b"{}")
        except ValueError:
            answer = {}
        answer.setdefault("ok", False)
        answer.setdefault("message", f"the server refused the push hook ({error.code})")
    except (OSError, ValueError) as error:
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
