"""GET /api/v1/baselines: each series' baseline and the band of one."""
from datetime import datetime, timedelta, timezone

from tests.helpers import steady_then_spike


def _ingest_all(client, events, chunk=1000):
    for start in range(0, len(events), chunk):
        response = client.ingest(events[start:start + chunk])
        assert response.status_code == 202, response.content


def test_baselines_give_the_band_of_one_series(owner):
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    _ingest_all(owner, steady_then_spike(count=2000, end=end))
    owner.post("/api/v1/process/run")
    series_id = owner.get("/api/v1/series").json()["results"][0]["series_id"]
    body = owner.get("/api/v1/baselines", {"series_id": series_id, "start": (end - timedelta(minutes=30)).isoformat()}).json()
    baseline = body["results"][0]
    assert baseline["status"] == "ready" and baseline["sample_count"] > 0
    assert baseline["lower"] < baseline["median"] < baseline["upper"]
    assert baseline["recurring"] == []  # no nightly pattern in two days of a steady series
    assert len(body["band"]) == 30
    spike = body["band"][-1]
    assert spike["value"] == 500.0 and spike["upper"] < 500.0 and spike["status"] == "ready"


def test_every_anomaly_carries_the_band_the_baselines_endpoint_draws_at_its_time(owner):
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    events = steady_then_spike(count=3000, end=end)
    for index, value in ((1500, 120.0), (2000, 3.0), (2500, 160.0)):  # hours apart: more alerts, a higher gain
        events[index]["value"] = value
    _ingest_all(owner, events)
    owner.post("/api/v1/process/run")
    anomalies = owner.get("/api/v1/anomalies", {"limit": 100}).json()["results"]
    assert len(anomalies) >= 3
    series_id = anomalies[0]["series_id"]
    band = owner.get("/api/v1/baselines", {"series_id": series_id, "start": events[0]["timestamp"],
                                           "end": end.isoformat()}).json()["band"]
    at = {point["timestamp"]: point for point in band}
    for anomaly in anomalies:
        drawn = at[anomaly["timestamp"]]
        assert (anomaly["lower"], anomaly["upper"]) == (drawn["lower"], drawn["upper"])
        assert not anomaly["lower"] <= anomaly["value"] <= anomaly["upper"]
        assert anomaly["lower"] >= 0  # the series was never negative
