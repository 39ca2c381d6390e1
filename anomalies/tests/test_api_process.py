"""POST /api/v1/process/run, GET /api/v1/process/runs/{id}, GET /api/v1/anomalies and /baselines."""
from datetime import datetime, timedelta, timezone


from conftest import event, steady_then_spike


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


def test_run_status_is_readable_by_its_tenant_only(owner, outsider):
    run_id = owner.post("/api/v1/process/run").json()["run_id"]
    mine = owner.get(f"/api/v1/process/runs/{run_id}")
    assert mine.status_code == 200 and mine.json()["status"] == "succeeded"
    assert outsider.get(f"/api/v1/process/runs/{run_id}").status_code == 404
    missing = owner.get("/api/v1/process/runs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not found."}


def test_another_tenant_sees_no_anomalies_or_baselines(owner, outsider):
    _ingest_all(owner, steady_then_spike(count=2000))
    owner.post("/api/v1/process/run")
    assert owner.get("/api/v1/anomalies").json()["results"]
    assert outsider.get("/api/v1/anomalies").json()["results"] == []
    assert outsider.get("/api/v1/baselines").json()["results"] == []
    outsider_run = outsider.post("/api/v1/process/run").json()
    assert outsider_run["points_processed"] == 0
    series_id = owner.get("/api/v1/series").json()["results"][0]["series_id"]
    assert outsider.get("/api/v1/baselines", {"series_id": series_id}).status_code == 404


def test_process_run_needs_an_all_scope_key(make_tenant):
    for scope in ("read", "ingest"):
        client = make_tenant(f"only-{scope}", scope=scope)
        response = client.post("/api/v1/process/run")
        assert response.status_code == 403
        assert f"scope '{scope}'" in response.json()["detail"]


def test_anomalies_are_filtered_and_cursor_paged(owner):
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    events = steady_then_spike(count=3000, end=end, resource_id="a")
    for k in (420, 840, 1260):  # three spikes seven hours apart, beyond the six-hour cooldown
        events[-1 - k]["value"] = 900.0
    _ingest_all(owner, events + steady_then_spike(count=2000, end=end, resource_id="b"))
    owner.post("/api/v1/process/run")
    everything = owner.get("/api/v1/anomalies").json()["results"]
    only_b = owner.get("/api/v1/anomalies", {"resource_id": "b"}).json()["results"]
    assert {a["resource_id"] for a in only_b} == {"b"}
    seen = []
    page = owner.get("/api/v1/anomalies", {"limit": 2}).json()
    while True:
        seen += page["results"]
        if not page["next"]:
            break
        page = owner.client.get(page["next"], HTTP_AUTHORIZATION=f"Bearer {owner.key}").json()
    assert [a["id"] for a in seen] == [a["id"] for a in everything]
    assert len(seen) >= 4
    timestamps = [a["timestamp"] for a in seen]
    assert timestamps == sorted(timestamps, reverse=True)
    bad = owner.get("/api/v1/anomalies", {"cursor": "nonsense"})
    assert bad.status_code == 400 and "cursor" in bad.json()["errors"]


def test_baselines_give_the_band_of_one_series(owner):
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    _ingest_all(owner, steady_then_spike(count=2000, end=end))
    owner.post("/api/v1/process/run")
    series_id = owner.get("/api/v1/series").json()["results"][0]["series_id"]
    body = owner.get("/api/v1/baselines", {"series_id": series_id, "start": (end - timedelta(minutes=30)).isoformat()}).json()
    baseline = body["results"][0]
    assert baseline["status"] == "ready" and baseline["sample_count"] > 0
    assert baseline["lower"] < baseline["median"] < baseline["upper"]
    assert len(body["band"]) == 30
    spike = body["band"][-1]
    assert spike["value"] == 500.0 and spike["upper"] < 500.0 and spike["status"] == "ready"
