"""/healthz, /readyz, the OpenAPI schema and JSON 404s."""
from django.test import Client


def test_healthz_answers_when_postgres_does(db):
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_readyz_checks_postgres_and_redis(db):
    body = Client().get("/readyz").json()
    assert body["status"] == "ready" and body["checks"] == {"postgres": "ok", "redis": "ok"}


def test_the_schema_documents_every_endpoint(db):
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/v1/ingest/metrics", "/api/v1/process/run", "/api/v1/process/runs/{run_id}", "/api/v1/series",
                 "/api/v1/metrics/timeseries", "/api/v1/anomalies", "/api/v1/baselines"):
        assert path in paths, path
    assert Client().get("/api/docs/").status_code == 200


def test_an_unknown_path_is_a_json_404(db):
    response = Client().get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}
