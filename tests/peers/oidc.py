"""Start panva's `oidc-provider` (a certified OpenID Provider, run by Node.js) on loopback.

`tests/peers/install-oidc-provider.sh` installs it into `.cache/oidc-provider/`; the launcher
`oidc_provider.mjs` configures the client and the accounts this module passes in.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent
MODULES = ROOT / ".cache" / "oidc-provider"
LAUNCHER = Path(__file__).with_name("oidc_provider.mjs")
INSTALLER = Path(__file__).with_name("install-oidc-provider.sh")
START_TIMEOUT = 20.0

_install_lock = threading.Lock()


def ensure_installed() -> None:
    """Run the idempotent installer once (a no-op when the package is already there)."""
    with _install_lock:
        subprocess.run(["sh", str(INSTALLER)], check=True, timeout=300)


@dataclass
class OIDCProvider:
    issuer: str
    client_id: str
    client_secret: str
    process: subprocess.Popen[bytes]

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


_FORM_ACTION_RE = re.compile(r'<form[^>]*action="([^"]+)"')


def sign_in_at_provider(peer: httpx.Client, authorize_url: str, account: str) -> str:
    """Drive the provider from its authorization URL as a browser would: sign in at the
    development login form as `account` (any password), consent, and return the URL the
    provider sends the browser back to (the client's redirect URI with `code` and `state`)."""
    response = peer.get(authorize_url, follow_redirects=False)
    for _ in range(10):
        if response.status_code in (302, 303):
            target = response.url.join(response.headers["location"])
            if (target.host, target.port) != (response.url.host, response.url.port):
                return str(target)
            response = peer.get(target, follow_redirects=False)
            continue
        assert response.status_code == 200, response.text
        match = _FORM_ACTION_RE.search(response.text)
        assert match, response.text
        action = response.url.join(match.group(1))
        if 'name="login"' in response.text:
            data = {"prompt": "login", "login": account, "password": "any-password"}
        else:
            data = {"prompt": "consent"}
        response = peer.post(action, data=data, follow_redirects=False)
    raise AssertionError("the provider's interaction did not finish")


@contextmanager
def run_oidc_provider(
    port: int,
    redirect_uris: list[str],
    accounts: dict[str, dict[str, Any]],
    *,
    client_id: str = "opencodehub-test",
    client_secret: str = "",
) -> Iterator[OIDCProvider]:
    ensure_installed()
    client_secret = client_secret or secrets.token_hex(24)
    issuer = f"http://127.0.0.1:{port}"
    config = {
        "port": port,
        "issuer": issuer,
        "clients": [
            {
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uris": redirect_uris,
            }
        ],
        "accounts": accounts,
    }
    env = {
        **os.environ,
        "OIDC_PROVIDER_CONFIG": json.dumps(config),
        "OIDC_PROVIDER_MODULES": str(MODULES),
    }
    # The provider's own log (warnings, server errors) goes to a file for post-mortems.
    log_dir = Path(os.environ.get("OCH_TEST_OUTPUT", ROOT / "test-output"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / f"oidc-provider-{port}.log").open("wb")
    process = subprocess.Popen(
        ["node", str(LAUNCHER)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        assert process.stdout is not None
        # The launcher prints one line once it listens; readline blocks, so a watchdog kills a
        # launcher that never gets there.
        watchdog = threading.Timer(START_TIMEOUT, process.kill)
        watchdog.start()
        try:
            line = process.stdout.readline().decode()
        finally:
            watchdog.cancel()
        if not line.startswith("ready "):
            raise RuntimeError(f"oidc-provider did not start (exit code {process.poll()})")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("oidc-provider does not answer")
            time.sleep(0.05)
        yield OIDCProvider(issuer, client_id, client_secret, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
