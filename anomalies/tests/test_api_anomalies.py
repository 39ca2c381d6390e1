"""GET /api/v1/anomalies: filters, cursor paging, isolation."""
from datetime import datetime, timedelta, timezone

import numpy as np

from tests.helpers import event, iso, steady_then_spike


def _ingest_all(client, events, chunk=1000):
    for start in range(0, len(events), chunk):
        response = client.ingest(events[start:start + chunk])
        assert response.status_code == 202, response.content


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


def test_a_drift_says_since_when_and_the_api_gives_its_start(owner):
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    rng = np.random.default_rng(3)
    values = 10 + rng.normal(0, 1, 900)
    values[:20] = [40, -20] * 10
    values[700:] += 2.5  # a shift no single point shows
    events = [event(float(v), start + timedelta(minutes=5 * i)) for i, v in enumerate(values)]
    for first in range(0, 900, 500):
        assert owner.ingest(events[first:first + 500]).status_code == 202
    owner.post("/api/v1/process/run")
    anomalies = owner.get("/api/v1/anomalies").json()["results"]
    drift = min((a for a in anomalies if a["detector"] == "cusum"), key=lambda a: a["timestamp"])  # the first one
    assert drift["drift_started_at"] == iso(start + timedelta(minutes=5 * 700))
    assert "since 10:20 UTC" in drift["reason"] and drift["baseline"]["drift_points"] > 1
    assert all(a["drift_started_at"] is None for a in anomalies if a["detector"] in ("range", "residual"))
