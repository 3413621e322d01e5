"""A stand-in for GitLab's OAuth 2 provider and the REST endpoints sign-in reads.

No real GitLab can run here, so this small server speaks the documented wire protocol
(docs.gitlab.com: "OAuth 2.0 identity provider API", "Users API", "Groups API"):

- `GET /oauth/authorize` — answers for the account the test "signed in" at GitLab
  (`state.current_login`), redirecting with `code` and `state`; PKCE S256 required.
- `POST /oauth/token` — `grant_type=authorization_code`; errors are 400 with `error`
  (`invalid_grant` for a used or unknown code), 401 `invalid_client` for bad credentials.
- `GET /api/v4/user` (with `confirmed_at`) and `GET /api/v4/groups`.
- OpenID Connect ("OpenID Connect provider"): with the `openid` scope the token answer carries
  an RS256 ID token (`iss` the instance address, `sub` the user id, `nonce`, `auth_time`), its
  key published at `GET /oauth/discovery/keys`; `prompt=login` / `max_age=0` sign the account
  in again (`OAuthState.honour_prompt`).
"""

from __future__ import annotations

import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.peers._oauth import OAuthState


def gitlab_user(
    user_id: int,
    username: str,
    *,
    email: str,
    confirmed: bool = True,
    name: str = "",
    groups: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "id": user_id,
        "username": username,
        "email": email,
        "confirmed_at": "2024-01-01T00:00:00.000Z" if confirmed else None,
        "name": name,
        "groups": groups or [],
    }


def build_app(state: OAuthState) -> Starlette:
    signing_key = RSAKey.generate_key(2048, parameters={"kid": "gitlab-test", "use": "sig"})

    def keys(request: Request) -> Response:
        return JSONResponse(KeySet([signing_key]).as_dict(private=False))

    def _id_token(request: Request, access_token: str) -> str | None:
        grant = state.token_grants.get(access_token)
        if grant is None or "openid" not in grant.scope.split():
            return None
        now = int(time.time())
        claims = {
            "iss": str(request.base_url).rstrip("/"),
            "sub": str(state.users[grant.login]["id"]),
            "aud": state.client_id,
            "exp": now + 120,
            "iat": now,
            "auth_time": grant.auth_time,
            "sub_legacy": "0" * 64,
        }
        if grant.nonce:
            claims["nonce"] = grant.nonce
        return jwt.encode({"alg": "RS256", "kid": "gitlab-test"}, claims, signing_key)

    def authorize(request: Request) -> Response:
        params = dict(request.query_params)
        if params.get("response_type") != "code":
            return PlainTextResponse("unsupported_response_type", status_code=400)
        status, result = state.authorize(params)
        if status != 302:
            return PlainTextResponse(result, status_code=status)
        return RedirectResponse(result, status_code=302)

    async def token(request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        access_token, error = state.exchange(form)
        if error == "incorrect_client_credentials":
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                status_code=401,
            )
        if error:
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": "The provided authorization grant is invalid, expired, "
                    "revoked, does not match the redirection URI used in the authorization "
                    "request, or was issued to another client.",
                },
                status_code=400,
            )
        answer: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 7200,
            "scope": "read_user",
            "created_at": 1700000000,
        }
        id_token = _id_token(request, access_token)
        if id_token is not None:
            answer["id_token"] = id_token
        return JSONResponse(answer)

    def _authenticated(request: Request) -> dict[str, Any] | None:
        return state.user_for(request.headers.get("authorization", ""))

    def user(request: Request) -> Response:
        found = _authenticated(request)
        if found is None:
            return JSONResponse({"message": "401 Unauthorized"}, status_code=401)
        return JSONResponse(
            {
                "id": found["id"],
                "username": found["username"],
                "name": found["name"],
                "state": "active",
                "email": found["email"],
                "confirmed_at": found["confirmed_at"],
            }
        )

    def groups(request: Request) -> Response:
        found = _authenticated(request)
        if found is None:
            return JSONResponse({"message": "401 Unauthorized"}, status_code=401)
        return JSONResponse(
            [
                {
                    "id": 500 + index,
                    "name": path.rsplit("/", 1)[-1],
                    "path": path.rsplit("/", 1)[-1],
                    "full_path": path,
                }
                for index, path in enumerate(found["groups"])
            ]
        )

    return Starlette(
        routes=[
            Route("/oauth/authorize", authorize),
            Route("/oauth/token", token, methods=["POST"]),
            Route("/oauth/discovery/keys", keys),
            Route("/api/v4/user", user),
            Route("/api/v4/groups", groups),
        ]
    )
