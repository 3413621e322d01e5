"""The OAuth 2 authorization-code grant with PKCE (RFC 6749, RFC 7636), shared by the GitHub and
GitLab stand-ins: codes are single use, bound to the client, the redirect URI and the PKCE
challenge; access tokens name the account that authorized them."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode


@dataclass
class Grant:
    login: str
    redirect_uri: str
    code_challenge: str
    used: bool = False
    scope: str = ""
    nonce: str = ""
    auth_time: int = 0


@dataclass
class OAuthState:
    client_id: str
    client_secret: str
    users: dict[str, dict[str, Any]]
    # The account "signed in at the provider" in the browser: authorization answers for it.
    current_login: str = ""
    # When that account signed in at the provider (epoch seconds; 0: at its first request).
    signed_in_at: float = 0.0
    # Whether `prompt=login` / `max_age=0` make the account sign in again (a provider may
    # ignore them), and how many times they did.
    honour_prompt: bool = True
    forced_logins: int = 0
    grants: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    token_grants: dict[str, Grant] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authorize(self, params: dict[str, str]) -> tuple[int, str]:
        """(status, redirect location or error text) for an authorization request."""
        if params.get("client_id") != self.client_id:
            return 404, "unknown client_id"
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri:
            return 400, "redirect_uri is required"
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method") != "S256" or not challenge:
            return 400, "PKCE with S256 is required"
        state = params.get("state", "")
        separator = "&" if "?" in redirect_uri else "?"
        if not self.current_login:
            query = {"error": "access_denied", "state": state}
            return 302, f"{redirect_uri}{separator}{urlencode(query)}"
        code = secrets.token_hex(10)
        with self.lock:
            now = time.time()
            if not self.signed_in_at:
                self.signed_in_at = now
            if self.honour_prompt and (
                params.get("prompt") == "login" or params.get("max_age") == "0"
            ):
                # The login form, filled in: a fresh sign-in at the provider.
                self.forced_logins += 1
                self.signed_in_at = now
            self.grants[code] = Grant(
                self.current_login,
                redirect_uri,
                challenge,
                scope=params.get("scope", ""),
                nonce=params.get("nonce", ""),
                auth_time=int(self.signed_in_at),
            )
        return 302, f"{redirect_uri}{separator}{urlencode({'code': code, 'state': state})}"

    def exchange(self, form: dict[str, str]) -> tuple[str, str]:
        """(access token, "") or ("", error code) for a token request."""
        if form.get("client_id") != self.client_id or not secrets.compare_digest(
            form.get("client_secret", ""), self.client_secret
        ):
            return "", "incorrect_client_credentials"
        with self.lock:
            grant = self.grants.get(form.get("code", ""))
            if grant is None or grant.used:
                return "", "bad_verification_code"
            grant.used = True
        if form.get("redirect_uri") != grant.redirect_uri:
            return "", "redirect_uri_mismatch"
        verifier = form.get("code_verifier", "").encode()
        computed = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if not secrets.compare_digest(computed.decode(), grant.code_challenge):
            return "", "bad_verification_code"
        token = secrets.token_hex(20)
        with self.lock:
            self.tokens[token] = grant.login
            self.token_grants[token] = grant
        return token, ""

    def user_for(self, authorization: str) -> dict[str, Any] | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        login = self.tokens.get(token.strip())
        return self.users.get(login) if login else None
