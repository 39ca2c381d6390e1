"""GET /api/v1/anomalies: filters, cursor paging, isolation."""
from datetime import datetime, timezone

from conftest import steady_then_spike


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
