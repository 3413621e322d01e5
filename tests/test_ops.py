import subprocess
import sys

from fastapi.testclient import TestClient


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["x-request-id"]


def test_readyz_reports_database(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_metrics_exposes_request_counters(client: TestClient) -> None:
    client.get("/healthz")
    client.get("/api/v3/users/nobody-here")
    client.get("/nobody-here/nothing-here")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "och_http_requests_total" in response.text
    # Labelled by the route's template, with the prefix it is served under.
    assert 'route="/healthz",status="200"' in response.text
    assert 'route="/api/v3/users/{username}",status="404"' in response.text
    assert 'route="/{owner}/{repo}",status="404"' in response.text


def test_request_id_is_echoed_when_sane(client: TestClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    bogus = client.get("/healthz", headers={"X-Request-Id": "a b\x7f"}).headers["x-request-id"]
    assert bogus != "a b\x7f" and len(bogus) == 32


def test_openapi_is_served_under_api_prefix(client: TestClient) -> None:
    response = client.get("/api/v3/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "OpenCodeHub"


def test_request_ids_are_fresh_in_every_forked_worker() -> None:
    """Workers are forked from one parent (`supervisor.py`): each must draw its own ids, not
    repeat its siblings' sequence."""
    script = (
        "import os\n"
        "from opencodehub.ops import new_request_id\n"
        "new_request_id()\n"
        "read, write = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.write(write, new_request_id().encode())\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "print(new_request_id(), os.read(read, 64).decode())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    parent, child = result.stdout.split()
    assert len(parent) == len(child) == 32
    assert parent != child
