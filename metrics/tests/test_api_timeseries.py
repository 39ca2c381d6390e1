"""GET /api/v1/metrics/timeseries: windows, steps, filters, bad parameters, isolation."""
from datetime import datetime, timedelta, timezone

from tests.helpers import event

URL = "/api/v1/metrics/timeseries"


def _minutes(owner, count, end, **kw):
    events = [event(float(i), end - timedelta(minutes=count - 1 - i), **kw) for i in range(count)]
    for start in range(0, count, 1000):
        assert owner.ingest(events[start:start + 1000]).status_code == 202


def test_minutes_60_returns_the_last_60_points(owner):
    end = datetime.now(timezone.utc).replace(microsecond=0)
    _minutes(owner, 200, end)
    body = owner.get(URL, {"service": "ec2", "metric_name": "cpu_utilization", "minutes": 60}).json()
    points = body["series"][0]["points"]
    assert len(points) == 60
    assert points[-1]["value"] == 199.0 and points[0]["value"] == 140.0
    assert points[-1]["timestamp"].endswith("Z")
    series = body["series"][0]
    assert (series["service"], series["resource_id"], series["metric_name"], series["tags"]) == (
        "ec2", "i-test123", "cpu_utilization", {"env": "dev"})


def test_step_and_agg_aggregate_into_buckets(owner):
    end = datetime(2025, 1, 1, 1, 0, tzinfo=timezone.utc)
    _minutes(owner, 120, end - timedelta(minutes=1))  # 23:00 .. 00:59, values 0 .. 119
    params = {"service": "ec2", "metric_name": "cpu_utilization", "start": "2024-12-31T22:00:00Z",
              "end": "2025-01-01T01:00:00Z", "step": "1h"}
    avg = owner.get(URL, {**params, "agg": "avg"}).json()["series"][0]["points"]
    count = owner.get(URL, {**params, "agg": "count"}).json()["series"][0]["points"]
    maximum = owner.get(URL, {**params, "agg": "max"}).json()["series"][0]["points"]
    assert [p["timestamp"] for p in count] == ["2024-12-31T23:00:00Z", "2025-01-01T00:00:00Z"]
    assert [p["value"] for p in count] == [60.0, 60.0]
    assert [p["value"] for p in avg] == [29.5, 89.5]
    assert [p["value"] for p in maximum] == [59.0, 119.0]


def test_timeseries_filters_by_resource_and_series_id(owner):
    end = datetime.now(timezone.utc)
    _minutes(owner, 5, end, resource_id="a")
    _minutes(owner, 5, end, resource_id="b")
    body = owner.get(URL, {"service": "ec2", "metric_name": "cpu_utilization", "resource_id": "b"}).json()
    assert [s["resource_id"] for s in body["series"]] == ["b"]
    series_id = body["series"][0]["series_id"]
    by_id = owner.get(URL, {"series_id": series_id}).json()
    assert [s["series_id"] for s in by_id["series"]] == [series_id]


def test_timeseries_rejects_bad_parameters_naming_them(owner):
    response = owner.get(URL, {"service": "ec2", "metric_name": "x", "step": "5 minutes"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"step": ["must look like 30s, 5m, 1h or 1d"]}
    response = owner.get(URL, {"service": "ec2", "metric_name": "x", "start": "2025-01-01T00:00:00"})
    assert response.json()["errors"]["start"] == ["needs a time zone: add 'Z' or an offset such as +00:00"]
    assert owner.get(URL, {}).status_code == 400


def test_another_tenant_reads_nothing(owner, outsider):
    _minutes(owner, 5, datetime.now(timezone.utc))
    series_id = owner.get("/api/v1/series").json()["results"][0]["series_id"]
    assert outsider.get(URL, {"service": "ec2", "metric_name": "cpu_utilization"}).json() == {"series": []}
    assert outsider.get(URL, {"series_id": series_id}).json() == {"series": []}
    assert outsider.get("/api/v1/series").json()["results"] == []


def test_fn_reads_a_counter_by_its_increase_or_rate_with_restarts_and_steps(owner):
    end = datetime(2025, 1, 1, 1, 0, tzinfo=timezone.utc)
    values = [100.0, 160.0, 220.0, 10.0, 70.0, 130.0]  # one a minute; the process restarted before the 4th
    owner.ingest([event(v, end + timedelta(minutes=k), metric_name="requests_total", kind="counter")
                  for k, v in enumerate(values)])
    query = {"service": "ec2", "metric_name": "requests_total", "start": "2025-01-01T01:00:00Z",
             "end": "2025-01-01T01:05:00Z"}
    increase = owner.get(URL, {**query, "fn": "increase"}).json()["series"][0]
    # (start, end]: the 01:00 point is before the window and only the base of the first increase.
    assert [p["value"] for p in increase["points"]] == [60.0, 60.0, 10.0, 60.0, 60.0]
    assert (increase["kind"], increase["fn"]) == ("counter", "increase")
    rate = owner.get(URL, {**query, "fn": "rate"}).json()["series"][0]["points"]
    assert [p["value"] for p in rate] == [1.0, 1.0, 10.0 / 60, 1.0, 1.0]
    stepped = owner.get(URL, {**query, "fn": "increase", "step": "2m"}).json()["series"][0]["points"]
    assert [(p["timestamp"], p["value"]) for p in stepped] == [
        ("2025-01-01T01:00:00Z", 60.0), ("2025-01-01T01:02:00Z", 70.0), ("2025-01-01T01:04:00Z", 120.0)]
    per_second = owner.get(URL, {**query, "fn": "rate", "step": "2m"}).json()["series"][0]["points"]
    assert [p["value"] for p in per_second] == [0.5, 70.0 / 120, 1.0]


def test_fn_on_a_gauge_is_a_400_naming_the_series(owner):
    _minutes(owner, 5, datetime(2025, 1, 1, tzinfo=timezone.utc))
    response = owner.get(URL, {"service": "ec2", "metric_name": "cpu_utilization", "start": "2024-12-31T00:00:00Z",
                               "end": "2025-01-01T00:00:00Z", "fn": "rate"})
    assert response.status_code == 400
    assert response.json()["errors"]["fn"][0].endswith("is not a counter")
