"""GET /api/v1/series: what exists, with counts, paged."""
from datetime import datetime, timedelta, timezone

from tests.helpers import event


def _minutes(owner, count, end, **kw):
    events = [event(float(i), end - timedelta(minutes=count - 1 - i), **kw) for i in range(count)]
    for start in range(0, count, 1000):
        assert owner.ingest(events[start:start + 1000]).status_code == 202


def test_series_lists_what_exists_with_counts_and_pages(owner):
    end = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for name in ("a", "b", "c"):
        _minutes(owner, 3, end, resource_id=name)
    first = owner.get("/api/v1/series", {"limit": 2}).json()
    assert [s["resource_id"] for s in first["results"]] == ["a", "b"]
    assert first["results"][0]["point_count"] == 3
    assert first["results"][0]["first_timestamp"] == "2024-12-31T23:58:00Z"
    assert first["results"][0]["last_timestamp"] == "2025-01-01T00:00:00Z"
    rest = owner.client.get(first["next"], HTTP_AUTHORIZATION=f"Bearer {owner.key}").json()
    assert [s["resource_id"] for s in rest["results"]] == ["c"] and rest["next"] is None
    assert [s["resource_id"] for s in owner.get("/api/v1/series", {"resource_id": "b"}).json()["results"]] == ["b"]


def test_series_point_counts_combine_rollups_with_newer_raw_points(owner):
    from metrics.storage import rollups_refresh

    end = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
    _minutes(owner, 180, end)  # three hours, rolled up below
    rollups_refresh()
    _minutes(owner, 30, end + timedelta(hours=1))  # 30 newer minutes, not rolled up yet
    (series,) = owner.get("/api/v1/series").json()["results"]
    assert series["point_count"] == 210
    assert series["last_timestamp"] == "2025-01-01T13:00:00Z"
