"""A stand-in for GitHub's OAuth app endpoints and the few REST endpoints sign-in reads.

No real GitHub can run here, so this small server speaks the documented wire protocol
(docs.github.com: "Authorizing OAuth apps", "Users", "Emails", "Organizations"):

- `GET /login/oauth/authorize` — answers for the account the test "signed in" at GitHub
  (`state.current_login`), redirecting to `redirect_uri` with `code` and `state`.
- `POST /login/oauth/access_token` — JSON with `Accept: application/json`, form-encoded
  otherwise; errors are answered with 200 and an `error` member, as GitHub does
  (`bad_verification_code` for a used or unknown code).
- `GET /api/v3/user`, `/api/v3/user/emails`, `/api/v3/user/orgs` — GitHub's shapes, under the
  GitHub Enterprise Server API prefix.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.peers._oauth import OAuthState


def github_user(
    user_id: int,
    login: str,
    *,
    name: str = "",
    emails: list[dict[str, Any]] | None = None,
    orgs: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "id": user_id,
        "login": login,
        "name": name,
        "emails": emails if emails is not None else [],
        "orgs": orgs or [],
    }


def build_app(state: OAuthState) -> Starlette:
    def authorize(request: Request) -> Response:
        status, result = state.authorize(dict(request.query_params))
        if status != 302:
            return PlainTextResponse(result, status_code=status)
        return RedirectResponse(result, status_code=302)

    async def access_token(request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        token, error = state.exchange(form)
        body: dict[str, str]
        if error:
            body = {"error": error, "error_description": error.replace("_", " ")}
        else:
            body = {"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(body)
        return PlainTextResponse(urlencode(body), media_type="application/x-www-form-urlencoded")

    def _authenticated(request: Request) -> dict[str, Any] | None:
        return state.user_for(request.headers.get("authorization", ""))

    def _unauthorized() -> Response:
        return JSONResponse(
            {
                "message": "Requires authentication",
                "documentation_url": "https://docs.github.com/rest",
            },
            status_code=401,
        )

    def user(request: Request) -> Response:
        found = _authenticated(request)
        if found is None:
            return _unauthorized()
        primary = next((e["email"] for e in found["emails"] if e.get("primary")), None)
        return JSONResponse(
            {
                "login": found["login"],
                "id": found["id"],
                "node_id": f"U_{found['id']}",
                "type": "User",
                "site_admin": False,
                "name": found["name"] or None,
                "email": primary,
            }
        )

    def emails(request: Request) -> Response:
        found = _authenticated(request)
        if found is None:
            return _unauthorized()
        return JSONResponse(
            [
                {
                    "email": entry["email"],
                    "primary": bool(entry.get("primary")),
                    "verified": bool(entry.get("verified")),
                    "visibility": "private",
                }
                for entry in found["emails"]
            ]
        )

    def orgs(request: Request) -> Response:
        found = _authenticated(request)
        if found is None:
            return _unauthorized()
        return JSONResponse(
            [{"login": org, "id": 1000 + index} for index, org in enumerate(found["orgs"])]
        )

    return Starlette(
        routes=[
            Route("/login/oauth/authorize", authorize),
            Route("/login/oauth/access_token", access_token, methods=["POST"]),
            Route("/api/v3/user", user),
            Route("/api/v3/user/emails", emails),
            Route("/api/v3/user/orgs", orgs),
        ]
    )
