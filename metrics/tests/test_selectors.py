"""The raw-SQL reads of metrics.storage, on points stored through the ingest service: each series
by its own range, in order, and only the asking tenant's."""
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from cloudwatchdog.timeutil import to_us
from metrics import selectors, storage
from metrics.services import points_ingest
from metrics.storage import rollups_refresh
from tests.helpers import event

START = datetime(2026, 3, 2, tzinfo=timezone.utc)


@pytest.fixture
def two_series(owner, outsider):
    for client in (owner, outsider):  # the outsider's identical series must never show up
        points_ingest(tenant=client.tenant, events=[event(float(i), START + timedelta(minutes=i), resource_id="a")
                                                    for i in range(10)]
                      + [event(100.0 + i, START + timedelta(minutes=2 * i), resource_id="b") for i in range(5)])
    ids = {s.resource_id: s.id for s in selectors.series_list(tenant=owner.tenant)}
    return owner.tenant, ids["a"], ids["b"]


def test_points_after_reads_each_series_from_its_own_time_in_order(two_series):
    tenant, a, b = two_series
    series, ts, values = storage.points_after(
        tenant=tenant, after_us={a: to_us(START + timedelta(minutes=6)), b: None},
        until_us={a: to_us(START + timedelta(minutes=8)), b: to_us(START + timedelta(minutes=4))})
    assert series.tolist() == [a, a, b, b, b]
    assert values.tolist() == [7.0, 8.0, 100.0, 101.0, 102.0]
    assert np.all(np.diff(ts[:2]) > 0)


def test_points_before_gives_the_last_points_before_each_time(two_series):
    tenant, a, b = two_series
    rows = storage.points_before(tenant=tenant, before_us={a: to_us(START + timedelta(minutes=5)),
                                                           b: to_us(START + timedelta(minutes=3))}, count=2)
    assert [(sid, value) for sid, _, value in rows] == [(a, 3.0), (a, 4.0), (b, 100.0), (b, 101.0)]


def test_extremes_first_and_newest_times(two_series):
    tenant, a, b = two_series
    assert storage.series_extremes_before(tenant=tenant, before_us={a: to_us(START + timedelta(minutes=4)),
                                                                    b: to_us(START)}) == {a: (0.0, 3.0)}
    assert storage.series_first_ts(tenant=tenant, series_ids=[a, b]) == {a: to_us(START), b: to_us(START)}
    assert storage.series_newest_ts(tenant=tenant) == {a: to_us(START + timedelta(minutes=9)),
                                                       b: to_us(START + timedelta(minutes=8))}


def test_series_stats_count_from_rollups_and_newer_raw_points(two_series):
    tenant, a, b = two_series
    rollups_refresh()
    points_ingest(tenant=tenant, events=[event(1.0, START + timedelta(hours=3), resource_id="a")])
    stats = storage.series_stats(tenant=tenant, series_ids=[a, b])
    assert (stats[a].point_count, stats[b].point_count) == (11, 5)
    assert stats[a].first_ts == START and stats[a].last_ts == START + timedelta(hours=3)
