"""The engine's `fetch` for a tenant (promql/selectors.py): the series a selector matches with their points in a
window, closed at both ends, in ms, the same from rows and compacted chunks, capped in all per query."""
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from metrics.services import points_ingest
from metrics.storage import points_compact, rollups_refresh
from promql.engine import ExecutionError, Matcher
from promql.selectors import TOO_MANY_SAMPLES, tenant_fetch
from tests.helpers import event

DAY = (datetime.now(timezone.utc) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
DAY_MS = int(DAY.timestamp() * 1000)


def _minutes(count: int, **identity) -> list[dict]:
    return [event(float(i), DAY + timedelta(minutes=i), **identity) for i in range(count)]


@pytest.mark.django_db
@pytest.mark.parametrize("compacted", [False, True])
def test_fetch_reads_the_matching_series_in_a_closed_window_in_ms(make_tenant, compacted):
    client, other = make_tenant("fetch-a"), make_tenant("fetch-b")
    points_ingest(tenant=client.tenant, events=_minutes(30, service="api", tags={"env": "prod"})
                  + _minutes(30, service="db", tags={}))
    points_ingest(tenant=other.tenant, events=_minutes(30, service="api", tags={"env": "prod"}))
    # A point a fraction of a ms after another reads as that ms: the later one is the sample.
    points_ingest(tenant=client.tenant, events=[event(99.0, (DAY + timedelta(minutes=40, microseconds=300))
                                                      .isoformat(), service="api", tags={"env": "prod"}),
                                                event(100.0, (DAY + timedelta(minutes=40, microseconds=700))
                                                      .isoformat(), service="api", tags={"env": "prod"})])
    if compacted:
        rollups_refresh()
        assert points_compact(tenant=client.tenant)["points"] == 62
    fetch = tenant_fetch(tenant=client.tenant)
    [series] = fetch((Matcher("__name__", "=", "cpu_utilization"), Matcher("env", "=", "prod")),
                     DAY_MS + 10 * 60_000, DAY_MS + 40 * 60_000)
    assert series.labels == (("__name__", "cpu_utilization"), ("env", "prod"), ("instance", "i-test123"),
                             ("job", "api"))
    assert series.ts_ms.dtype == np.int64 and series.values.dtype == np.float64
    assert series.ts_ms.tolist() == [DAY_MS + k * 60_000 for k in range(10, 30)] + [DAY_MS + 40 * 60_000]
    assert series.values.tolist() == [float(k) for k in range(10, 30)] + [100.0]
    both = fetch((Matcher("job", "=~", "api|db"),), DAY_MS, DAY_MS + 5 * 60_000)
    assert sorted(dict(s.labels)["job"] for s in both) == ["api", "db"]
    assert fetch((Matcher("job", "=", "nobody"),), DAY_MS, DAY_MS + 60_000) == []


@pytest.mark.django_db
def test_fetch_stops_past_the_query_cap_with_prometheus_execution_error(make_tenant):
    client = make_tenant("fetch-cap")
    points_ingest(tenant=client.tenant, events=_minutes(30))
    selector = (Matcher("__name__", "=", "cpu_utilization"),)
    fetch = tenant_fetch(tenant=client.tenant, max_points=40)
    assert len(fetch(selector, DAY_MS, DAY_MS + 29 * 60_000)[0].ts_ms) == 30
    assert len(fetch(selector, DAY_MS, DAY_MS + 9 * 60_000)[0].ts_ms) == 10  # 40 in all: at the cap
    with pytest.raises(ExecutionError, match=TOO_MANY_SAMPLES):
        fetch(selector, DAY_MS, DAY_MS)
    rollups_refresh()
    points_compact(tenant=client.tenant)  # the cap holds for chunks too
    with pytest.raises(ExecutionError, match=TOO_MANY_SAMPLES):
        tenant_fetch(tenant=client.tenant, max_points=29)(selector, DAY_MS, DAY_MS + 29 * 60_000)


@pytest.mark.django_db
def test_the_sql_narrowing_never_drops_a_series_the_labels_match(make_tenant):
    from metrics.selectors import series_identities
    from promql.engine import labels_match
    from promql.labels import series_labels
    from promql.params import series_selector
    from promql.selectors import series_matching

    client = make_tenant("fetch-narrow")
    events = [event(1.0, DAY, metric_name=name, service=service, resource_id=resource, tags=tags)
              for name in ("cpu", "cpu-util", "http.server.duration", "up")
              for service in ("api", "unknown_service", "db")
              for resource, tags in (("unknown_resource", {}), ("i-1", {"job": "api"}), ("i-2", {"instance": "i-1"}))]
    points_ingest(tenant=client.tenant, events=events)
    every = [(series_id, series_labels(metric_name=name, service=service, resource_id=resource, tags=tags))
             for series_id, name, service, resource, tags in series_identities(tenant=client.tenant)]
    assert len(every) == 36
    for text in ['cpu', '{__name__=~"cpu|up"}', '{__name__=~"cpu-util|nothing"}', '{__name__="http.server.duration"}',
                 '{__name__=~"cpu.*"}', '{job="api"}', '{instance="i-1"}', '{job="unknown_service"}',
                 '{__name__=~"up", job=""}', 'up{instance="", job="db"}', '{exported_job="api"}',
                 '{exported_instance="i-1", instance!="i-2"}', '{__name__=~"up|cpu", __name__="up", job!="api"}']:
        matchers = series_selector(text)
        expected = [(series_id, labels) for series_id, labels in every if labels_match(matchers, labels)]
        assert series_matching(tenant=client.tenant, matchers=matchers) == expected, text
