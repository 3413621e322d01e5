"""The wire side of each provider: the authorization URL, the code exchange, who signed in.

Every provider uses the authorization-code flow with PKCE (S256). OpenID Connect providers also
get a `nonce`, and their ID token is verified against the provider's published keys: signature,
issuer, audience, expiry and nonce. Only asymmetric algorithms are accepted, so `alg: none` and
an HMAC "signed" with the provider's public key are refused.

A GitLab source whose scopes include `openid` is signed in to with GitLab's OpenID Connect
side: GitLab then sends an ID token too (keys at `/oauth/discovery/keys`, issuer the instance
address), verified the same way, whose `sub` must be the user id `/api/v4/user` names.

A re-authentication (sudo mode) asks an OpenID Connect provider (or GitLab with `openid`) for
a fresh sign-in (`prompt=login`, `max_age=0`) and then checks the ID token's `auth_time`
itself (`check_fresh_sign_in`), since a provider is free to ignore both parameters. GitHub's
OAuth, and GitLab's without `openid`, have no such parameter and no `auth_time`: they cannot
prove a fresh sign-in (`proves_fresh_sign_in`).

Nothing here touches the database; `service.py` decides what a profile may do.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from opencodehub.accounts.sso.models import AuthSource, AuthSourceKind
from opencodehub.core.crypto import pkce_s256_challenge

if TYPE_CHECKING:
    # httpx and joserfc are imported by the functions that talk to a provider or check its
    # tokens: a server nobody signs in to through a provider does not load them.
    import httpx

HTTP_TIMEOUT = 10.0
ID_TOKEN_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
CLOCK_LEEWAY_SECONDS = 60
# How long ago a re-authentication at the provider may have happened for sudo mode.
REAUTH_MAX_AGE_SECONDS = 300
DISCOVERY_TTL_SECONDS = 300
MAX_RESPONSE_BYTES = 1024 * 1024

DEFAULT_SCOPES = {
    AuthSourceKind.GITHUB: "read:user user:email",
    AuthSourceKind.GITLAB: "read_user",
    AuthSourceKind.OIDC: "openid email profile",
}
GITHUB_DEFAULT_BASE = "https://github.com"
GITHUB_DEFAULT_API = "https://api.github.com"
GITLAB_DEFAULT_BASE = "https://gitlab.com"


class ProviderError(Exception):
    """The provider refused, answered something we cannot trust, or could not be reached.
    The message is shown to the person signing in, so it never carries a secret."""


@dataclass
class Profile:
    """Who signed in at the provider."""

    subject: str
    login: str = ""
    email: str = ""
    email_verified: bool = False
    name: str = ""
    groups: list[str] = field(default_factory=list)
    # The ID token's `auth_time` as sent (OpenID Connect only; None when absent).
    auth_time: object = None


@dataclass
class Endpoints:
    authorize: str
    token: str
    userinfo: str = ""
    jwks_uri: str = ""
    issuer: str = ""
    auth_methods: tuple[str, ...] = ()


def scopes_of(source: AuthSource) -> str:
    """The configured scopes, plus what the group checks need."""
    scopes = (source.scopes or DEFAULT_SCOPES[source.kind]).split()
    needs_groups = bool(source.required_group or source.org_mapping)
    if source.kind == AuthSourceKind.GITHUB and needs_groups and "read:org" not in scopes:
        scopes.append("read:org")
    if source.kind == AuthSourceKind.GITLAB and needs_groups and "read_api" not in scopes:
        scopes.append("read_api")
    if source.kind == AuthSourceKind.OIDC and "openid" not in scopes:
        scopes.insert(0, "openid")
    return " ".join(scopes)


def _github_base(source: AuthSource) -> str:
    return (source.base_url or GITHUB_DEFAULT_BASE).rstrip("/")


def _github_api(source: AuthSource) -> str:
    return (source.api_url or GITHUB_DEFAULT_API).rstrip("/")


def _gitlab_base(source: AuthSource) -> str:
    return (source.base_url or GITLAB_DEFAULT_BASE).rstrip("/")


# HTTP ------------------------------------------------------------------------------------------


def _client() -> httpx.Client:
    import httpx

    # No redirects: a token or user endpoint that redirects is misconfigured or hostile.
    return httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False)


def _json(response: httpx.Response, what: str) -> Any:
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise ProviderError(f"The provider's {what} answer was too large.")
    try:
        return response.json()
    except ValueError:
        raise ProviderError(f"The provider's {what} answer was not JSON.") from None


def _get_json(client: httpx.Client, url: str, what: str, token: str = "", **headers: str) -> Any:
    import httpx

    if token:
        headers["Authorization"] = f"Bearer {token}"
    headers.setdefault("Accept", "application/json")
    try:
        response = client.get(url, headers=headers)
    except httpx.HTTPError:
        raise ProviderError(f"Could not reach the provider ({what}).") from None
    if response.status_code != 200:
        raise ProviderError(f"The provider refused the {what} request ({response.status_code}).")
    return _json(response, what)


# OpenID Connect discovery, cached briefly per URL --------------------------------------------

_discovery_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_jwks_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_cache_lock = threading.Lock()


def _cached(cache: dict[str, tuple[float, dict[str, Any]]], url: str, what: str) -> dict[str, Any]:
    now = time.monotonic()
    with _cache_lock:
        hit = cache.get(url)
        if hit is not None and now - hit[0] < DISCOVERY_TTL_SECONDS:
            return hit[1]
    with _client() as client:
        document = _get_json(client, url, what)
    if not isinstance(document, dict):
        raise ProviderError(f"The provider's {what} is not a JSON object.")
    with _cache_lock:
        cache[url] = (now, document)
    return document


def clear_caches() -> None:
    with _cache_lock:
        _discovery_cache.clear()
        _jwks_cache.clear()


def oidc_endpoints(source: AuthSource) -> Endpoints:
    document = _cached(_discovery_cache, source.discovery_url, "discovery document")
    try:
        endpoints = Endpoints(
            authorize=str(document["authorization_endpoint"]),
            token=str(document["token_endpoint"]),
            userinfo=str(document.get("userinfo_endpoint") or ""),
            jwks_uri=str(document["jwks_uri"]),
            issuer=str(document["issuer"]),
            auth_methods=tuple(
                document.get("token_endpoint_auth_methods_supported") or ("client_secret_basic",)
            ),
        )
    except KeyError as exc:
        raise ProviderError(f"The provider's discovery document lacks {exc.args[0]}.") from None
    return endpoints


def endpoints_for(source: AuthSource) -> Endpoints:
    if source.kind == AuthSourceKind.GITHUB:
        base = _github_base(source)
        return Endpoints(f"{base}/login/oauth/authorize", f"{base}/login/oauth/access_token")
    if source.kind == AuthSourceKind.GITLAB:
        base = _gitlab_base(source)
        return Endpoints(f"{base}/oauth/authorize", f"{base}/oauth/token")
    return oidc_endpoints(source)


# The flow --------------------------------------------------------------------------------------


def _gitlab_openid(source: AuthSource) -> bool:
    return source.kind == AuthSourceKind.GITLAB and "openid" in scopes_of(source).split()


def proves_fresh_sign_in(source: AuthSource) -> bool:
    """Whether a re-authentication through `source` can be made to, and shown to, include a
    fresh sign-in at the provider (`prompt=login`, `max_age`, a signed `auth_time`): OpenID
    Connect, and GitLab when its scopes include `openid`. GitHub's OAuth has no way to ask for
    one and says nothing about when the person signed in; neither does GitLab's plain OAuth."""
    return source.kind == AuthSourceKind.OIDC or _gitlab_openid(source)


def authorization_url(
    source: AuthSource,
    redirect_uri: str,
    state: str,
    code_verifier: str,
    nonce: str,
    *,
    reauthenticate: bool = False,
) -> str:
    endpoints = endpoints_for(source)
    params = {
        "response_type": "code",
        "client_id": source.client_id,
        "redirect_uri": redirect_uri,
        "scope": scopes_of(source),
        "state": state,
        "code_challenge": pkce_s256_challenge(code_verifier),
        "code_challenge_method": "S256",
    }
    if source.kind == AuthSourceKind.OIDC or _gitlab_openid(source):
        params["nonce"] = nonce
        if reauthenticate:
            # OIDC Core 3.1.2.1: show the login form even to someone signed in there, and
            # put `auth_time` in the ID token (which `check_fresh_sign_in` then checks).
            params["prompt"] = "login"
            params["max_age"] = "0"
    if source.kind == AuthSourceKind.GITHUB:
        params["allow_signup"] = "false"
    separator = "&" if "?" in endpoints.authorize else "?"
    return f"{endpoints.authorize}{separator}{urlencode(params)}"


def _exchange_code(
    client: httpx.Client,
    source: AuthSource,
    client_secret: str,
    endpoints: Endpoints,
    code: str,
    redirect_uri: str,
    code_verifier: str,
) -> dict[str, Any]:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    import httpx

    auth: httpx.BasicAuth | None = None
    if source.kind == AuthSourceKind.OIDC and "client_secret_basic" in endpoints.auth_methods:
        # RFC 6749 2.3.1: both parts are form-encoded before they are joined.
        auth = httpx.BasicAuth(quote(source.client_id, safe=""), quote(client_secret, safe=""))
    else:
        data["client_id"] = source.client_id
        data["client_secret"] = client_secret
    try:
        response = client.post(
            endpoints.token, data=data, auth=auth, headers={"Accept": "application/json"}
        )
    except httpx.HTTPError:
        raise ProviderError("Could not reach the provider to finish signing in.") from None
    body = _json(response, "token") if response.content else {}
    # GitHub answers errors with 200 and an `error` member; the others with 400/401.
    if not isinstance(body, dict) or response.status_code != 200 or "error" in body:
        reason = ""
        if isinstance(body, dict):
            reason = str(body.get("error_description") or body.get("error") or "")[:200]
        raise ProviderError(
            "The provider refused the authorization code"
            + (f": {reason}" if reason else f" ({response.status_code}).")
        )
    if not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise ProviderError("The provider's token answer has no access token.")
    return body


def verify_id_token(
    id_token: str,
    jwks: dict[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: int | None = None,
) -> dict[str, Any]:
    """The ID token's claims, once signature, issuer, audience, expiry and nonce check out."""
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    try:
        key_set = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError):
        raise ProviderError("The provider's signing keys could not be read.") from None
    try:
        token = jwt.decode(id_token, key_set, algorithms=list(ID_TOKEN_ALGORITHMS))
    except JoseError as exc:
        raise ProviderError(f"The ID token was refused: {exc.error or 'bad token'}.") from None
    except ValueError:
        raise ProviderError("The ID token was refused: it is malformed.") from None
    claims = token.claims
    registry = jwt.JWTClaimsRegistry(
        now=now,
        leeway=CLOCK_LEEWAY_SECONDS,
        iss={"essential": True, "value": issuer},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise ProviderError(
            f"The ID token was refused: {exc.description or exc.error or 'bad claims'}."
        ) from None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if client_id not in audiences:
        raise ProviderError("The ID token was refused: it was issued for another client.")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise ProviderError("The ID token was refused: its authorized party is another client.")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise ProviderError("The ID token was refused: it names no subject.")
    return claims


def check_fresh_sign_in(auth_time: object, *, started_at: float, now: float | None = None) -> None:
    """Refuse unless `auth_time` (an ID token claim, seconds since the epoch) says the person
    signed in at the provider after the re-authentication began at `started_at` and at most
    `REAUTH_MAX_AGE_SECONDS` ago (both with `CLOCK_LEEWAY_SECONDS` for clock skew)."""
    # A JSON number only: not a string, not a boolean, and not NaN or infinity (which Python's
    # JSON parser accepts and every comparison below would let through).
    if (
        isinstance(auth_time, bool)
        or not isinstance(auth_time, int | float)
        or not math.isfinite(auth_time)
    ):
        raise ProviderError(
            "The provider did not say when you signed in there, so it did not prove a fresh "
            "sign-in. Use another way to confirm access."
        )
    now = time.time() if now is None else now
    if auth_time > now + CLOCK_LEEWAY_SECONDS:
        raise ProviderError("The provider's sign-in time lies in the future; it was refused.")
    if auth_time < started_at - CLOCK_LEEWAY_SECONDS or now - auth_time > REAUTH_MAX_AGE_SECONDS:
        raise ProviderError(
            "The provider let you through without signing in again (an earlier sign-in there "
            "was reused). Sign in at the provider again, or use another way to confirm access."
        )


def _oidc_profile(
    client: httpx.Client,
    source: AuthSource,
    endpoints: Endpoints,
    token: dict[str, Any],
    nonce: str,
) -> Profile:
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise ProviderError("The provider sent no ID token.")
    jwks = _cached(_jwks_cache, endpoints.jwks_uri, "signing keys")
    claims = verify_id_token(
        id_token, jwks, issuer=endpoints.issuer, client_id=source.client_id, nonce=nonce
    )
    merged = dict(claims)
    if endpoints.userinfo:
        info = _get_json(client, endpoints.userinfo, "user info", token["access_token"])
        # OIDC Core 5.3.2: a userinfo answer for someone else must not be used.
        if not isinstance(info, dict) or info.get("sub") != claims["sub"]:
            raise ProviderError("The provider's user info names a different subject.")
        merged.update(info)
    groups = merged.get("groups")
    return Profile(
        subject=claims["sub"],
        login=str(merged.get("preferred_username") or merged.get("nickname") or ""),
        email=str(merged.get("email") or ""),
        email_verified=merged.get("email_verified") is True,
        name=str(merged.get("name") or ""),
        groups=[str(group) for group in groups] if isinstance(groups, list) else [],
        auth_time=claims.get("auth_time"),
    )


def _github_profile(client: httpx.Client, source: AuthSource, access_token: str) -> Profile:
    api = _github_api(source)
    headers = {"Accept": "application/vnd.github+json"}
    user = _get_json(client, f"{api}/user", "user", access_token, **headers)
    if not isinstance(user, dict) or not isinstance(user.get("id"), int):
        raise ProviderError("The provider's user answer has no id.")
    emails = _get_json(client, f"{api}/user/emails", "emails", access_token, **headers)
    email, verified = "", False
    if isinstance(emails, list):
        for entry in emails:
            # Only the primary address, and only once GitHub has verified it, identifies anyone.
            if isinstance(entry, dict) and entry.get("primary") and entry.get("verified") is True:
                email, verified = str(entry.get("email") or ""), True
    groups: list[str] = []
    if source.required_group or source.org_mapping:
        orgs = _get_json(client, f"{api}/user/orgs?per_page=100", "organizations", access_token)
        if isinstance(orgs, list):
            groups = [str(org["login"]) for org in orgs if isinstance(org, dict) and "login" in org]
    return Profile(
        subject=str(user["id"]),
        login=str(user.get("login") or ""),
        email=email,
        email_verified=verified,
        name=str(user.get("name") or ""),
        groups=groups,
    )


def _gitlab_profile(
    client: httpx.Client, source: AuthSource, token: dict[str, Any], nonce: str
) -> Profile:
    base = _gitlab_base(source)
    access_token = token["access_token"]
    user = _get_json(client, f"{base}/api/v4/user", "user", access_token)
    if not isinstance(user, dict) or not isinstance(user.get("id"), int):
        raise ProviderError("The provider's user answer has no id.")
    auth_time: object = None
    if _gitlab_openid(source):
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderError("The provider sent no ID token.")
        jwks = _cached(_jwks_cache, f"{base}/oauth/discovery/keys", "signing keys")
        claims = verify_id_token(
            id_token, jwks, issuer=base, client_id=source.client_id, nonce=nonce
        )
        # The token and the user answer must be about the same person.
        if claims["sub"] != str(user["id"]):
            raise ProviderError("The provider's ID token names a different user.")
        auth_time = claims.get("auth_time")
    groups: list[str] = []
    if source.required_group or source.org_mapping:
        listed = _get_json(
            client,
            f"{base}/api/v4/groups?min_access_level=10&per_page=100",
            "groups",
            access_token,
        )
        if isinstance(listed, list):
            groups = [
                str(group["full_path"])
                for group in listed
                if isinstance(group, dict) and "full_path" in group
            ]
    # GitLab's `email` is the primary address; `confirmed_at` says whether it was confirmed.
    return Profile(
        subject=str(user["id"]),
        login=str(user.get("username") or ""),
        email=str(user.get("email") or ""),
        email_verified=bool(user.get("confirmed_at")) and bool(user.get("email")),
        name=str(user.get("name") or ""),
        groups=groups,
        auth_time=auth_time,
    )


def fetch_profile(
    source: AuthSource,
    client_secret: str,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    nonce: str,
) -> Profile:
    """Exchange the authorization code and find out who signed in."""
    endpoints = endpoints_for(source)
    with _client() as client:
        token = _exchange_code(
            client, source, client_secret, endpoints, code, redirect_uri, code_verifier
        )
        access_token = token["access_token"]
        if source.kind == AuthSourceKind.GITHUB:
            return _github_profile(client, source, access_token)
        if source.kind == AuthSourceKind.GITLAB:
            return _gitlab_profile(client, source, token, nonce)
        return _oidc_profile(client, source, endpoints, token, nonce)
