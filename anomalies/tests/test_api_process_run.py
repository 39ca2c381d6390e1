"""POST /api/v1/process/run: a detection pass through the API, its summary, scope."""
from datetime import datetime, timedelta, timezone

from tests.helpers import event, steady_then_spike


def _ingest_all(client, events, chunk=1000):
    for start in range(0, len(events), chunk):
        response = client.ingest(events[start:start + chunk])
        assert response.status_code == 202, response.content


def test_process_run_flags_the_spike_after_2000_steady_points(owner):
    _ingest_all(owner, steady_then_spike(count=2001))
    response = owner.post("/api/v1/process/run")
    assert response.status_code == 200, response.content
    summary = response.json()
    assert summary["points_processed"] >= 2000
    assert summary["series_processed"] == 1
    assert summary["anomalies_created"] >= 1
    assert set(summary) >= {"run_id", "series_processed", "points_processed", "anomalies_created", "duration_ms"}
    anomalies = owner.get("/api/v1/anomalies").json()["results"]
    spike = anomalies[0]
    assert spike["value"] == 500.0
    assert spike["lower"] < spike["expected"] < spike["upper"] < 500.0
    assert spike["score"] > 0 and spike["severity"] in {"low", "medium", "high"}
    assert spike["detector"] == "range" and spike["parameters"]["range_tolerance"] > 0
    assert spike["status"] == "open"
    assert spike["reason"].startswith("Value 500 is ") and spike["reason"].endswith(".")
    assert "above the highest value seen so far (51.5)" in spike["reason"]


def test_a_second_run_creates_nothing(owner):
    _ingest_all(owner, steady_then_spike(count=2000))
    first = owner.post("/api/v1/process/run").json()
    second = owner.post("/api/v1/process/run").json()
    assert first["anomalies_created"] >= 1
    assert second["points_processed"] == 0 and second["anomalies_created"] == 0
    assert len(owner.get("/api/v1/anomalies").json()["results"]) == first["anomalies_created"]


def test_a_series_of_five_points_raises_nothing_and_says_warming(owner):
    now = datetime.now(timezone.utc)
    owner.ingest([event(v, now - timedelta(minutes=5 - i)) for i, v in enumerate([1, 1, 1, 1, 1000])])
    summary = owner.post("/api/v1/process/run").json()
    assert summary["points_processed"] == 5 and summary["anomalies_created"] == 0
    baseline = owner.get("/api/v1/baselines").json()["results"][0]
    assert baseline["status"] == "warming"


def test_process_run_needs_an_all_scope_key(make_tenant):
    for scope in ("read", "ingest"):
        client = make_tenant(f"only-{scope}", scope=scope)
        response = client.post("/api/v1/process/run")
        assert response.status_code == 403
        assert f"scope '{scope}'" in response.json()["detail"]
