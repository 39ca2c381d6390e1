"""The cwd_* series (promql/virtual.py) on real stored points after a real detection run: the band is the
one the console draws, anomalies sit at their times with their scores, incidents read as 1 while open, every
read is the tenant's own, and a band selector is capped."""
from datetime import datetime, timezone

import numpy as np
import pytest

from anomalies.selectors import baseline_band
from cloudwatchdog.timeutil import from_us, parse_iso, to_us
from metrics.services import points_ingest
from promql.engine import BadData, ExecutionError, Matcher, query_range
from promql.selectors import tenant_fetch
from promql.virtual import names_selected, virtual_series
from tests.helpers import steady_then_spike

END = datetime(2026, 1, 10, tzinfo=timezone.utc)
# From 05:00 on the day before END: the replay starts at that UTC day, after a day of history.
END_MS = to_us(END) // 1000
LOW_MS, HIGH_MS = to_us(datetime(2026, 1, 9, 5, tzinfo=timezone.utc)) // 1000, END_MS + 600_000
BAND_FIELDS = {"cwd_value": "value", "cwd_expected": "expected", "cwd_band_lower": "lower", "cwd_band_upper": "upper",
               "cwd_alert_lower": "alert_lower", "cwd_alert_upper": "alert_upper"}


def _history(resource_id: str, spikes=(1500, 1950)) -> list[dict]:
    """2,600 one-minute points ending at END, spiking at `spikes` and at the last point."""
    events = steady_then_spike(count=2600, end=END, resource_id=resource_id, tags={"env": "prod"})
    for index in spikes:
        events[index]["value"] = 700.0
    return events


def _detected(client, *resource_ids, spikes=(1500, 1950)):
    for resource_id in resource_ids:
        points_ingest(tenant=client.tenant, events=_history(resource_id, spikes))
    assert client.post("/api/v1/process/run").status_code == 200


def _select(client, name_op, name, low_ms=LOW_MS, high_ms=HIGH_MS, **labels):
    matchers = (Matcher("__name__", name_op, name), *(Matcher(k, "=", v) for k, v in labels.items()))
    return virtual_series(client.tenant, matchers, low_ms, high_ms)


def _series_id(client, resource_id):
    return next(s["series_id"] for s in client.get("/api/v1/series").json()["results"]
                if s["resource_id"] == resource_id)


def _by_name(found):
    return {dict(series.labels)["__name__"]: series for series in found}


def test_the_band_series_are_the_band_the_console_draws_with_the_series_labels(owner):
    _detected(owner, "i-a", "i-b")
    found = _by_name(_select(owner, "=~", "cwd_value|cwd_expected|cwd_band_.*|cwd_alert_.*", cwd_metric="cpu_utilization",
                             instance="i-a"))
    assert set(found) == set(BAND_FIELDS)
    drawn = baseline_band(tenant=owner.tenant, series_id=_series_id(owner, "i-a"),
                          start=from_us(LOW_MS * 1000 - 1), end=from_us(HIGH_MS * 1000))
    assert len(drawn) > 1000
    for name, field in BAND_FIELDS.items():
        series = found[name]
        assert dict(series.labels) == {"__name__": name, "cwd_metric": "cpu_utilization", "job": "ec2",
                                       "instance": "i-a", "env": "prod"}
        assert series.ts_ms.dtype == np.int64 and series.values.dtype == np.float64
        assert dict(zip(series.ts_ms.tolist(), series.values.tolist())) == {
            to_us(point["timestamp"]) // 1000: point[field] for point in drawn if point[field] is not None}
    # Each anomaly was judged against this very band.
    lower, upper = (dict(zip(found[n].ts_ms.tolist(), found[n].values.tolist())) for n in ("cwd_band_lower",
                                                                                         "cwd_band_upper"))
    anomalies = owner.get("/api/v1/anomalies").json()["results"]
    assert len(anomalies) == 6
    for anomaly in anomalies:
        at_ms = parse_iso(anomaly["timestamp"]) // 1000
        if anomaly["resource_id"] == "i-a" and LOW_MS <= at_ms:
            assert (lower[at_ms], upper[at_ms]) == (anomaly["lower"], anomaly["upper"])
            assert not lower[at_ms] <= anomaly["value"] <= upper[at_ms]


def test_anomaly_series_sit_at_each_anomaly_with_its_score(owner):
    _detected(owner, "i-a", "i-b")
    anomalies = owner.get("/api/v1/anomalies").json()["results"]
    found = _select(owner, "=~", "cwd_anomaly.*", cwd_metric="cpu_utilization")
    assert sorted((dict(s.labels)["__name__"], dict(s.labels)["instance"]) for s in found) == [
        ("cwd_anomaly", "i-a"), ("cwd_anomaly", "i-b"), ("cwd_anomaly_score", "i-a"), ("cwd_anomaly_score", "i-b")]
    for series in found:
        labels = dict(series.labels)
        mine = sorted((parse_iso(a["timestamp"]) // 1000, a["score"]) for a in anomalies
                      if a["resource_id"] == labels["instance"] and parse_iso(a["timestamp"]) // 1000 >= LOW_MS)
        assert len(mine) == 3
        assert series.ts_ms.tolist() == [at for at, _ in mine]
        expected = [score for _, score in mine] if labels["__name__"] == "cwd_anomaly_score" else [1.0] * 3
        assert series.values.tolist() == expected
    # A label matcher on the described series narrows; cwd_metric of another metric selects nothing.
    assert [dict(s.labels)["instance"] for s in _select(owner, "=", "cwd_anomaly", instance="i-b")] == ["i-b"]
    assert _select(owner, "=", "cwd_anomaly", cwd_metric="memory") == []


def test_incident_open_is_1_from_each_incident_start_until_its_resolution(owner):
    _detected(owner, "i-a")
    incidents = owner.get("/api/v1/incidents").json()["results"]
    spans = [(parse_iso(i["started_at"]) // 1000,
              parse_iso(i["resolved_at"]) // 1000 if i["resolved_at"] else None) for i in incidents]
    assert len(spans) == 3 and sum(resolved is None for _, resolved in spans) == 1
    [series] = _select(owner, "=", "cwd_incident_open", instance="i-a")
    assert dict(series.labels)["cwd_metric"] == "cpu_utilization"
    times = series.ts_ms.tolist()
    assert times == sorted(set(times)) and times[0] >= LOW_MS and times[-1] <= HIGH_MS
    assert max(np.diff(series.ts_ms)) <= 60_000  # a point each minute at least: any 5-minute lookback sees one
    for started, resolved in spans:
        assert started in times and (resolved is None or resolved in times)
    for at, value in zip(times, series.values.tolist()):
        assert value == float(any(started <= at and (resolved is None or at < resolved) for started, resolved in spans))
    # Before the first incident of the window, no series has one open.
    assert _select(owner, "=", "cwd_incident_open", low_ms=LOW_MS, high_ms=min(s for s, _ in spans) - 3_600_000) == []


def test_every_cwd_series_is_the_tenants_own(owner, outsider):
    _detected(owner, "i-a")
    _detected(outsider, "i-a", spikes=())  # the same series, steady: its only anomaly is the last point
    for client in (owner, outsider):
        found = _select(client, "=~", "cwd_.*", instance="i-a")
        names = [dict(series.labels)["__name__"] for series in found]
        assert sorted(names) == sorted(set(names))  # one series per name: no other tenant's
        drawn = baseline_band(tenant=client.tenant, series_id=_series_id(client, "i-a"),
                              start=from_us(LOW_MS * 1000 - 1), end=from_us(HIGH_MS * 1000))
        upper = _by_name(found)["cwd_band_upper"]
        assert upper.values.tolist() == [p["upper"] for p in drawn if p["upper"] is not None]
        anomalies = client.get("/api/v1/anomalies").json()["results"]
        assert _by_name(found)["cwd_anomaly"].ts_ms.tolist() == sorted(
            parse_iso(a["timestamp"]) // 1000 for a in anomalies if parse_iso(a["timestamp"]) // 1000 >= LOW_MS)
    assert len(_by_name(_select(outsider, "=", "cwd_anomaly"))["cwd_anomaly"].ts_ms) == 1


def test_a_band_selector_touches_at_most_the_capped_number_of_series(owner, settings):
    _detected(owner, "i-a", "i-b")
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "PROMQL_BAND_MAX_SERIES": 1}
    with pytest.raises(BadData, match=r"cwd_band_upper selects 2 series.*at most 1 \(PROMQL_BAND_MAX_SERIES\)"):
        _select(owner, "=", "cwd_band_upper", cwd_metric="cpu_utilization")
    assert len(_select(owner, "=", "cwd_band_upper", cwd_metric="cpu_utilization", instance="i-b")) == 1
    # Anomalies and incidents are rows, not replays: no cap on the series they describe.
    assert len(_select(owner, "=", "cwd_anomaly")) == 2
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "PROMQL_BAND_MAX_POINTS": 1000}
    with pytest.raises(ExecutionError, match=r"more than 1000 points .*PROMQL_BAND_MAX_POINTS"):
        _select(owner, "=", "cwd_band_upper", instance="i-b")


@pytest.mark.parametrize("matchers", [
    (Matcher("__name__", "=", "cpu_utilization"),),
    (Matcher("job", "=", "ec2"),),  # no name: stored series only, however many
    (Matcher("__name__", "=~", ".+"),),
    (Matcher("__name__", "!=", "cwd_band_upper"), Matcher("job", "=", "ec2")),
    (Matcher("__name__", "=~", "cwd_nothing_such"),),
])
def test_a_selector_naming_no_cwd_series_answers_at_once_without_reading(db, django_assert_num_queries, matchers):
    assert names_selected(matchers) == []
    with django_assert_num_queries(0):
        assert virtual_series(None, matchers, LOW_MS, HIGH_MS) == []


def test_names_are_selected_by_every_name_matcher():
    assert names_selected((Matcher("__name__", "=~", "cwd_band_.*"),)) == ["cwd_band_lower", "cwd_band_upper"]
    assert names_selected((Matcher("__name__", "=~", "cwd_.*"), Matcher("__name__", "!~", ".*band.*|.*alert.*"))) == [
        "cwd_value", "cwd_expected", "cwd_anomaly", "cwd_anomaly_score", "cwd_incident_open"]


def test_the_tenants_fetch_unions_them_and_promql_compares_a_series_with_its_band(owner):
    _detected(owner, "i-a", "i-b")
    fetch = tenant_fetch(tenant=owner.tenant)
    both = fetch((Matcher("__name__", "=~", "cpu_utilization|cwd_band_upper"), Matcher("instance", "=", "i-a")),
                 LOW_MS, HIGH_MS)
    assert sorted(dict(series.labels)["__name__"] for series in both) == ["cpu_utilization", "cwd_band_upper"]
    stored, upper = sorted(both, key=lambda series: dict(series.labels)["__name__"])
    band_at = dict(zip(upper.ts_ms.tolist(), upper.values.tolist()))
    # The band has another __name__ and a cwd_metric label: one-to-one matching ignores cwd_metric.
    result = query_range('cpu_utilization > ignoring(cwd_metric) cwd_band_upper{cwd_metric="cpu_utilization"}', fetch,
                         start_ms=LOW_MS, end_ms=END_MS, step_ms=60_000)
    above = {dict(series.labels)["instance"]: dict(zip(series.ts_ms.tolist(), series.values.tolist()))
             for series in result.series}
    # A filter keeps the left side's labels, its name included.
    assert [dict(series.labels) for series in result.series] == [
        {"__name__": "cpu_utilization", "env": "prod", "instance": instance, "job": "ec2"} for instance in ("i-a", "i-b")]
    assert above["i-a"] == {
        t: v for t, v in zip(stored.ts_ms.tolist(), stored.values.tolist()) if t in band_at and v > band_at[t]}
    anomalies = {parse_iso(a["timestamp"]) // 1000 for a in owner.get("/api/v1/anomalies").json()["results"]
                 if a["resource_id"] == "i-a"}
    assert {t for t in anomalies if t >= LOW_MS} <= set(above["i-a"])
