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
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "och_http_requests_total" in response.text


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
