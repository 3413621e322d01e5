"""The app's storage transfer route (`/-/storage/{key}`): signed, expiring, streamed."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opencodehub.config import Settings
from opencodehub.storage import AppURLSigner
from opencodehub.storage.local import LocalStorage
from opencodehub.storage.views import router
from tests.storage.conftest import BASE_URL, SECRET


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "objects", signer=AppURLSigner(SECRET, BASE_URL))


@pytest.fixture
def http(storage: LocalStorage, tmp_path: Path) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.settings = Settings(
        data_dir=tmp_path, secret_key=SECRET.decode(), base_url=BASE_URL, _env_file=None
    )
    app.state.storage = storage
    app.include_router(router)
    with TestClient(app, base_url=BASE_URL) as client:
        yield client


def test_get_head_ranges_and_conditional_requests(storage: LocalStorage, http: TestClient) -> None:
    storage.put("avatars/user/1", io.BytesIO(b"0123456789"), content_type="image/png")
    url = storage.signed_url("avatars/user/1", "GET", 60)
    assert url is not None
    response = http.get(url.url)
    assert response.status_code == 200
    assert response.content == b"0123456789"
    assert response.headers["content-type"] == "image/png"
    etag = response.headers["etag"]
    assert http.get(url.url, headers={"If-None-Match": etag}).status_code == 304
    head = http.head(url.url)
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "10", b"")
    ranged = http.get(url.url, headers={"Range": "bytes=-3"})
    assert (ranged.status_code, ranged.content) == (206, b"789")
    assert ranged.headers["content-range"] == "bytes 7-9/10"
    unsatisfiable = http.get(url.url, headers={"Range": "bytes=10-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == "bytes */10"
    # Several ranges may be answered with the whole object.
    assert http.get(url.url, headers={"Range": "bytes=0-1,4-5"}).status_code == 200


def test_put_streams_into_the_adapter(storage: LocalStorage, http: TestClient) -> None:
    url = storage.signed_url("lfs/ab/cd/object", "PUT", 60)
    assert url is not None
    body = (b"chunk-" * 100_000 for _ in range(5))
    response = http.put(url.url, content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 200
    assert response.json()["size"] == 3_000_000
    assert storage.stat("lfs/ab/cd/object").content_type == "text/plain"


def test_links_are_bound_to_key_method_and_time(storage: LocalStorage, http: TestClient) -> None:
    storage.put("lfs/secret", io.BytesIO(b"secret"))
    get_url = storage.signed_url("lfs/secret", "GET", 60)
    put_url = storage.signed_url("lfs/secret", "PUT", 60)
    assert get_url is not None and put_url is not None
    assert http.put(get_url.url, content=b"overwrite").status_code == 403
    assert http.get(put_url.url).status_code == 403
    assert http.get(get_url.url.replace("signature=", "signature=x")).status_code == 403
    assert http.get(get_url.url.split("?")[0]).status_code == 403
    other = get_url.url.replace("/lfs/secret?", "/lfs/other?")
    assert http.get(other).status_code == 403
    # Signed properly, by a clock a minute behind: the link expired 59 seconds ago.
    behind = AppURLSigner(SECRET, BASE_URL, clock=lambda: time.time() - 60)
    expired = behind.sign("lfs/secret", "GET", 1)
    assert http.get(expired.url).status_code == 403
    # The same clock's link that lasts two minutes still has one to go: only the time differs.
    assert http.get(behind.sign("lfs/secret", "GET", 120).url).status_code == 200
    assert storage.get("lfs/secret").read() == b"secret"


@pytest.mark.parametrize(
    "path",
    [
        "/-/storage/%2e%2e/secret.key",
        "/-/storage/../secret.key",
        "/-/storage/a%00b",
        "/-/storage/.och-tmp/x",
        "/-/storage/" + "x" * 10_000,
        "/-/storage/lfs/%27%3B--",
    ],
)
def test_hostile_paths_get_nothing(http: TestClient, path: str) -> None:
    response = http.get(f"{path}?expires=9999999999&signature=forged")
    assert response.status_code in (403, 404)
    response = http.put(f"{path}?expires=9999999999&signature=forged", content=b"x")
    assert response.status_code in (403, 404)
