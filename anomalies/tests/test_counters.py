"""Counters are evaluated by their rate: a restart is no anomaly, a change of rate is, and says so."""
from datetime import datetime, timedelta, timezone

import numpy as np

from anomalies.models import Anomaly
from anomalies.runs import detection_run
from metrics import counters
from tests.helpers import event

END = datetime(2026, 1, 10, tzinfo=timezone.utc)


def _requests_counter(kind: str, *, count=2400, restart_at=1800, burst_at=None):
    """A request counter scraped every minute: about 600 requests a minute (a small weekly-ish ripple),
    its process restarted at `restart_at` (the count starts again from zero), and, when given,
    ten times the traffic for one minute at `burst_at`."""
    total, events = 0.0, []
    for i in range(count):
        per_minute = 600 + (i % 7) * 5 + (5400 if i == burst_at else 0)
        total = per_minute if i == restart_at else total + per_minute
        events.append(event(total, END - (count - 1 - i) * timedelta(minutes=1), metric_name="requests", kind=kind))
    return events


def test_a_counter_with_a_restart_raises_no_anomaly_where_the_same_values_as_a_gauge_do(make_tenant):
    counter, gauge = make_tenant("counter"), make_tenant("gauge")
    assert counter.ingest(_requests_counter("counter")).json()["accepted"] == 2400
    assert gauge.ingest(_requests_counter("gauge")).json()["accepted"] == 2400
    detection_run(tenant=counter.tenant, trigger="command")
    detection_run(tenant=gauge.tenant, trigger="command")
    assert list(Anomaly.objects.for_tenant(counter.tenant).values_list("ts", "reason")) == []
    # Read as a level, an ever-growing count that falls to zero is anything but steady.
    assert Anomaly.objects.for_tenant(gauge.tenant).exists()


def test_a_burst_of_traffic_is_an_anomaly_explained_as_a_rate(make_tenant):
    client = make_tenant("burst")
    client.ingest(_requests_counter("counter", burst_at=2100))
    detection_run(tenant=client.tenant, trigger="command")
    [anomaly] = Anomaly.objects.for_tenant(client.tenant)
    assert anomaly.ts == END - 299 * timedelta(minutes=1)
    assert 95 < anomaly.value < 105  # 6,000 requests in that minute: 100 a second
    assert anomaly.reason.startswith("The rate of increase, ")
    assert anomaly.baseline_stats["input"] == counters.RATE_INPUT
    response = client.get("/api/v1/anomalies", {"metric_name": "requests"})
    assert response.json()["results"][0]["reason"] == anomaly.reason


def test_evaluating_in_batches_continues_from_the_stored_point_before(make_tenant):
    whole, split = make_tenant("whole-counter"), make_tenant("split-counter")
    events = _requests_counter("counter", burst_at=2100)
    whole.ingest(events)
    detection_run(tenant=whole.tenant, trigger="command")
    for start in range(0, len(events), 700):
        split.ingest(events[start:start + 700])
        detection_run(tenant=split.tenant, trigger="command")

    def rows(tenant):
        return list(Anomaly.objects.for_tenant(tenant).values_list("ts", "value", "expected", "reason"))

    assert rows(whole.tenant) == rows(split.tenant) != []


def test_increases_count_a_drop_as_a_restart():
    ts, increase, seconds = counters.increases(np.array([60, 120, 180, 240]) * 1_000_000, np.array([5.0, 8.0, 2.0, 4.0]),
                                               previous=(0, 1.0))
    assert increase.tolist() == [4.0, 3.0, 2.0, 2.0]
    assert seconds.tolist() == [60.0] * 4
    assert counters.rates(np.array([1, 2]) * 1_000_000, np.array([1.0, 1.0]))[1].tolist() == [0.0]
