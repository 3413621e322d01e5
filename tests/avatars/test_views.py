"""Avatar routes: upload and remove through the settings forms, serving with caching headers,
organization avatars and their permissions, CSRF, and the API's avatar_url."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from PIL import Image

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import OrgRole, User
from opencodehub.app import create_app
from opencodehub.avatars import service as avatars
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.storage import build_storage
from tests.avatars.test_service import image_bytes, jpeg_with_gps, png_declaring
from tests.conftest import auth_header
from tests.web.forms import log_in, page_token

PNG_TYPE = "image/png"


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    avatars.clear_caches()
    yield
    avatars.clear_caches()


@pytest.fixture
def alice(client: TestClient, make_user: Callable[..., User]) -> User:
    user = make_user("alice")
    assert log_in(client).status_code == 303
    return user


def upload(
    client: TestClient,
    content: bytes,
    action: str = "/settings/avatar",
    page: str = "/settings/profile",
    token: str | None = "page",  # noqa: S107 - "page" means: take it from the page
    filename: str = "me.png",
    content_type: str = PNG_TYPE,
) -> Response:
    data = {}
    if token == "page":
        data["csrf_token"] = page_token(client, page)
    elif token is not None:
        data["csrf_token"] = token
    return client.post(
        action,
        data=data,
        files={"avatar": (filename, content, content_type)},
        follow_redirects=False,
    )


def stored_keys(settings: Settings) -> list[str]:
    return [info.key for info in build_storage(settings).list("avatars/")]


def avatar_key_of(db: Database, user_id: int) -> str | None:
    with db.session() as session:
        account = session.get(User, user_id)
        assert account is not None
        return account.avatar_key


def served(client: TestClient, account_id: int, size: int | None = None) -> Response:
    query = f"?s={size}" if size else ""
    response = client.get(f"/avatars/u/{account_id}{query}")
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"] == PNG_TYPE
    assert response.headers["x-content-type-options"] == "nosniff"
    return response


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_upload_round_trip(
    client: TestClient, alice: User, db: Database, settings: Settings, fmt: str
) -> None:
    before = served(client, alice.id).content  # the identicon
    response = upload(client, image_bytes(fmt), filename=f"me.{fmt.lower()}")
    assert response.status_code == 303
    assert response.headers["location"] == "/settings/profile"
    assert "The avatar was updated." in client.get("/settings/profile").text
    assert avatar_key_of(db, alice.id) == f"avatars/u/{alice.id}"
    assert stored_keys(settings) == [f"avatars/u/{alice.id}"]
    body = served(client, alice.id).content
    assert body != before
    with Image.open(io.BytesIO(body)) as image:
        assert image.format == "PNG" and image.size == (460, 460)
        red, _, blue, _ = image.getpixel((400, 230))
        assert red > 150 and blue < 100  # the right half of the test image is red
    small = served(client, alice.id, 40).content
    with Image.open(io.BytesIO(small)) as image:
        assert image.size == (40, 40)


def test_uploaded_jpeg_is_served_without_exif(
    client: TestClient, alice: User, settings: Settings
) -> None:
    assert upload(client, jpeg_with_gps(), content_type="image/jpeg").status_code == 303
    for size in (None, 80):
        body = served(client, alice.id, size).content
        with Image.open(io.BytesIO(body)) as image:
            assert not image.getexif()
            assert "exif" not in image.info
        assert b"SpyCam" not in body and b"Exif" not in body
    raw = build_storage(settings).get(f"avatars/u/{alice.id}").read()
    assert b"SpyCam" not in raw and b"Exif" not in raw


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"hello, I am text", "image/png"),
        (b"<html><script>alert(document.cookie)</script></html>", "text/html"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "image/svg+xml",
        ),
        (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "image/png"),
        (png_declaring(50_000, 50_000), "image/png"),
        (image_bytes("BMP"), "image/bmp"),
        (b"", "image/png"),
    ],
    ids=["text", "html", "svg", "pdf", "bomb", "bmp", "empty"],
)
def test_refused_uploads_store_nothing(
    client: TestClient,
    alice: User,
    db: Database,
    settings: Settings,
    content: bytes,
    content_type: str,
) -> None:
    response = upload(client, content, content_type=content_type)
    assert response.status_code == 303
    page = client.get("/settings/profile").text
    assert "The avatar was not changed" in page
    assert avatar_key_of(db, alice.id) is None
    assert stored_keys(settings) == []


def test_polyglot_is_re_encoded(client: TestClient, alice: User, settings: Settings) -> None:
    payload = b"PK\x03\x04" + b"zip-payload" * 20 + b"<script>alert(1)</script>"
    assert upload(client, image_bytes("GIF") + payload, content_type="image/gif").status_code == 303
    body = served(client, alice.id).content
    raw = build_storage(settings).get(f"avatars/u/{alice.id}").read()
    for blob in (body, raw):
        assert b"zip-payload" not in blob and b"<script" not in blob
        assert blob.startswith(b"\x89PNG\r\n\x1a\n")


def test_oversize_upload_is_refused(
    client: TestClient, alice: User, db: Database, settings: Settings
) -> None:
    # Declared too large: refused from Content-Length before the body is parsed.
    huge = b"\x00" * (avatars.MAX_UPLOAD_BYTES + 128 * 1024)
    response = upload(client, huge)
    assert response.status_code == 413
    # Within the envelope's allowance but over the file limit: refused while it is read.
    just_over = image_bytes("PNG") + b"\x00" * (avatars.MAX_UPLOAD_BYTES + 1)
    response = upload(client, just_over)
    assert response.status_code == 303
    assert "larger than 5 MB" in client.get("/settings/profile").text
    assert avatar_key_of(db, alice.id) is None
    assert stored_keys(settings) == []


def test_upload_without_length_is_refused(client: TestClient, alice: User) -> None:
    token = page_token(client, "/settings/profile")

    def body() -> Iterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        yield token.encode() + b"\r\n--x--\r\n"

    response = client.post(
        "/settings/avatar",
        content=body(),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
        follow_redirects=False,
    )
    assert response.status_code == 411


@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 10_000])
def test_missing_or_wrong_csrf_is_403_and_stores_nothing(
    client: TestClient,
    alice: User,
    db: Database,
    settings: Settings,
    token: str | None,
) -> None:
    response = upload(client, image_bytes("PNG"), token=token)
    assert response.status_code == 403
    assert avatar_key_of(db, alice.id) is None
    assert stored_keys(settings) == []


def test_remove_avatar(client: TestClient, alice: User, db: Database, settings: Settings) -> None:
    identicon = served(client, alice.id).content
    assert upload(client, image_bytes("PNG")).status_code == 303
    assert 'action="/settings/avatar/delete"' in client.get("/settings/profile").text
    token = page_token(client, "/settings/profile")
    response = client.post(
        "/settings/avatar/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert avatar_key_of(db, alice.id) is None
    assert stored_keys(settings) == []
    assert served(client, alice.id).content == identicon
    assert client.post("/settings/avatar/delete", data={}).status_code == 403


def test_caching_headers_and_304(client: TestClient, alice: User) -> None:
    for uploaded in (False, True):
        if uploaded:
            assert upload(client, image_bytes("WEBP")).status_code == 303
        first = served(client, alice.id, 80)
        etag = first.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"')
        assert first.headers["cache-control"] == "public, max-age=300"
        again = client.get(f"/avatars/u/{alice.id}?s=80", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        other = client.get(f"/avatars/u/{alice.id}?s=80", headers={"If-None-Match": '"nope"'})
        assert other.status_code == 200
        head = client.head(f"/avatars/u/{alice.id}?s=80")
        assert head.status_code == 200 and head.headers["etag"] == etag
    # A new upload changes the validator, so caches fetch it again.
    before = served(client, alice.id, 80).headers["etag"]
    assert upload(client, image_bytes("JPEG", size=(90, 300))).status_code == 303
    assert served(client, alice.id, 80).headers["etag"] != before


def test_identicon_is_served_and_stable(client: TestClient, make_user: Callable[..., User]) -> None:
    bob = make_user("bob")
    carol = make_user("carol")
    first = served(client, bob.id, 120).content
    avatars.clear_caches()
    assert served(client, bob.id, 120).content == first
    assert served(client, carol.id, 120).content != first
    with Image.open(io.BytesIO(first)) as image:
        assert image.format == "PNG" and image.size == (120, 120)


@pytest.mark.parametrize(
    "path",
    [
        "/avatars/u/999999",
        "/avatars/u/0",
        "/avatars/u/-1",
        "/avatars/u/1e3",
        "/avatars/u/%2e%2e",
        "/avatars/u/1%00",
        "/avatars/u/" + "9" * 40,
        "/avatars/u/\uff11",  # a full-width digit one
        "/avatars/u/1;DROP TABLE users",
    ],
)
def test_unknown_or_malformed_ids_are_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("size", ["0", "-5", "abc", "12345", "4.5", "9" * 1000])
def test_bad_sizes_are_400(client: TestClient, make_user: Callable[..., User], size: str) -> None:
    bob = make_user("bob")
    assert client.get(f"/avatars/u/{bob.id}", params={"s": size}).status_code == 400


def test_disabled_account_is_404(
    client: TestClient, make_user: Callable[..., User], db: Database
) -> None:
    bob = make_user("bob")
    with db.session() as session:
        account = session.get(User, bob.id)
        assert account is not None
        account.is_active = False
    assert client.get(f"/avatars/u/{bob.id}").status_code == 404


def test_avatar_url_from_the_api_resolves(
    client: TestClient, alice: User, make_token: Callable[..., str]
) -> None:
    assert upload(client, image_bytes("PNG")).status_code == 303
    token = make_token(alice)
    data = client.get("/api/v3/user", headers=auth_header(token)).json()
    url = urlsplit(data["avatar_url"])
    assert url.path == f"/avatars/u/{alice.id}"
    response = client.get(f"{url.path}?s=40")
    assert response.status_code == 200
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.size == (40, 40)


def test_macro_renders_the_image(client: TestClient, alice: User) -> None:
    page = client.get("/settings/profile").text
    assert f'src="/avatars/u/{alice.id}?s=64" alt="@alice" width="32" height="32"' in page


# Organizations ----------------------------------------------------------------------------------


@pytest.fixture
def acme(db: Database, make_user: Callable[..., User]) -> User:
    owner = make_user("olga")
    member = make_user("mike")
    make_user("otto")  # an outsider
    with db.session() as session:
        creator = session.get(User, owner.id)
        assert creator is not None
        org = accounts.create_organization(session, creator, "acme")
        accounts.add_org_member(session, org, session.get(User, member.id), OrgRole.MEMBER)  # type: ignore[arg-type]
        session.flush()
        return org


def test_org_avatar_by_owner(client: TestClient, acme: User, db: Database) -> None:
    assert log_in(client, "olga").status_code == 303
    page = client.get("/orgs/acme/people").text
    assert 'action="/orgs/acme/settings/avatar"' in page
    response = upload(
        client, image_bytes("PNG"), action="/orgs/acme/settings/avatar", page="/orgs/acme/people"
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/orgs/acme/people"
    assert avatar_key_of(db, acme.id) == f"avatars/u/{acme.id}"
    with Image.open(io.BytesIO(served(client, acme.id, 64).content)) as image:
        assert image.size == (64, 64)
    token = page_token(client, "/orgs/acme/people")
    response = client.post(
        "/orgs/acme/settings/avatar/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert avatar_key_of(db, acme.id) is None


@pytest.mark.parametrize(("login", "status"), [("mike", 403), ("otto", 404)])
def test_org_avatar_by_member_or_outsider_is_refused(
    client: TestClient, acme: User, db: Database, settings: Settings, login: str, status: int
) -> None:
    assert log_in(client, login).status_code == 303
    response = upload(client, image_bytes("PNG"), action="/orgs/acme/settings/avatar")
    assert response.status_code == status
    token = page_token(client, "/settings/profile")
    response = client.post("/orgs/acme/settings/avatar/delete", data={"csrf_token": token})
    assert response.status_code == status
    assert avatar_key_of(db, acme.id) is None
    assert stored_keys(settings) == []


@pytest.mark.parametrize(
    "name", ["nosuchorg", "%2e%2e", "acme%00", "-acme", "ACME\u0430", "a" * 300, "olga"]
)
def test_org_avatar_for_missing_or_non_org_is_404(
    client: TestClient, acme: User, name: str
) -> None:
    assert log_in(client, "olga").status_code == 303
    response = upload(client, image_bytes("PNG"), action=f"/orgs/{name}/settings/avatar")
    assert response.status_code == 404


# Gravatar ---------------------------------------------------------------------------------------


class _GravatarStandIn(BaseHTTPRequestHandler):
    """Stands in for gravatar.com / libravatar.org: `/avatar/{sha256}?s=…&d=404`."""

    known: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        digest = urlsplit(self.path).path.rsplit("/", 1)[-1]
        body = self.known.get(digest)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def gravatar_server() -> Iterator[str]:
    import hashlib

    digest = hashlib.sha256(b"alice@example.com").hexdigest()
    _GravatarStandIn.known = {digest: jpeg_with_gps()}
    _GravatarStandIn.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GravatarStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/avatar"
    finally:
        server.shutdown()
        server.server_close()


def test_gravatar_when_enabled(
    settings: Settings,
    db: Database,
    make_user: Callable[..., User],
    gravatar_server: str,
    data_dir: Path,
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    enabled = settings.model_copy(update={"avatar_gravatar": gravatar_server})
    with TestClient(create_app(enabled, db)) as client:
        body = served(client, alice.id, 80).content
        with Image.open(io.BytesIO(body)) as image:
            assert image.size == (80, 80)
            assert not image.getexif()
        assert b"SpyCam" not in body
        # No Gravatar for bob: his identicon.
        assert served(client, bob.id, 80).content == avatars.identicon(str(bob.id), 80)
        # Answers are remembered: a second page view does not ask again.
        asked = len(_GravatarStandIn.requests)
        served(client, alice.id, 80)
        assert len(_GravatarStandIn.requests) == asked
    # Off by default: the identicon, and the stand-in is never asked.
    avatars.clear_caches()
    _GravatarStandIn.requests.clear()
    with TestClient(create_app(settings, db)) as client:
        assert served(client, alice.id, 80).content == avatars.identicon(str(alice.id), 80)
    assert _GravatarStandIn.requests == []
