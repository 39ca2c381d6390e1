"""The point store: where a series' points are written, kept and read. Everything outside this
package goes through the names below; only this package (with metrics/models.py and the migrations)
names the point, chunk, NaN-sample, rollup and ingest-log tables (tests/test_layering.py checks both).

Write
    points_write(tenant_id, rows, late_before_us)  a request's accepted PointRows, once, first write wins
    PointRows                                      accepted points as arrays (series id, µs, value)
    nan_samples_write(tenant_id, ...)              NaN samples and staleness markers (is_stale, STALE_NAN[_BITS]),
                                                   kept apart for PromQL, first write wins (nans.py)
    partitions_ensure(ts_us, now_us, max_new)      the partitions those times need; PartitionsBusy if DDL waits
    late_before_us(tenant, now_us)                 the write path's question to compaction: points before
                                                   it may already be in a chunk, so they are checked there

Read (rows and compacted chunks as one store)
    timeseries_read, counter_read, chart_points    windows raw or stepped (AGGREGATES, COUNTER_FUNCTIONS)
    points_page                                    one series' points before a time, newest first
    points_after, points_before, counters_previous per-series point sets, as detection reads them
    points_window (TooManyPoints)                  many series' points in one window, capped in all, with
                                                   their NaN samples and staleness markers (PromQL's read)
    series_with_points                             which series have points (or NaN samples) in a window
    series_stats (SeriesStats), series_first_ts,   first and last times and point counts of series
    series_newest_ts, series_extremes_before       ... and their lowest and highest values
    points_per_day, points_count_since             counts from the hourly rollups
    rollup_backlog                                 ingest-log rows the rollup refresh has yet to fold in

Lifecycle (beat runs these; so do `manage.py maintain_points` and `compact_points`)
    points_maintain                                partitions ahead, then retention
    points_retention_apply                         global and per-tenant retention, rows and chunks
    points_compact                                 closed UTC days into compressed chunks (pcodec)
    rollups_refresh                                the hourly rollups of the ranges ingest touched
    tenant_points_delete                           a deleted tenant's points (a pre_delete receiver)
    forget_known_partitions                        this process's copy of the partition bounds, cleared

Hooks (other apps register at start-up, so the store never imports them)
    post_ingest_hooks: [IngestHook]                work inside every ingest transaction
    compaction_horizons: [tenant -> {series: µs}]  how far each series may be compacted

Inside: write.py and read.py (the two paths), nans.py (NaN samples, read by points_window only), chunks.py (chunks read with the rows, and the
write path's duplicate check against them), codec.py (pcodec, no Django), partitions.py,
compaction.py, rollups.py, retention.py (maintenance: partitions ahead, then retention).

Where the line runs: the store keeps and finds points by series id (it joins the series table
only for a tenant's series and their kind, and a chart is given its Series). What a series is (the Series model,
its identity hash, kind and unit, discovery, the per-tenant series limit and cache) and what a
request may send (ingest validation in metrics/ingest.py and protocols/, rate limits, rejection
counts) stay in metrics.services and metrics.selectors, which turn events into PointRows and call
the store; detection (anomalies) reads points here and series there.
"""
from metrics.storage.compaction import compaction_horizons, late_before_us, points_compact
from metrics.storage.nans import STALE_NAN, STALE_NAN_BITS, is_stale, nan_samples_write
from metrics.storage.partitions import PartitionsBusy, forget_known_partitions, partitions_ensure
from metrics.storage.read import (
    AGGREGATES,
    COUNTER_FUNCTIONS,
    SeriesStats,
    TooManyPoints,
    chart_points,
    counter_read,
    counters_previous,
    points_after,
    points_before,
    points_count_since,
    points_page,
    points_per_day,
    points_window,
    rollup_backlog,
    series_extremes_before,
    series_first_ts,
    series_newest_ts,
    series_stats,
    series_with_points,
    timeseries_read,
)
from metrics.storage.retention import points_maintain, points_retention_apply, tenant_points_delete
from metrics.storage.rollups import rollups_refresh
from metrics.storage.write import IngestHook, PointRows, points_write, post_ingest_hooks

__all__ = [
    # write
    "points_write", "PointRows", "nan_samples_write", "is_stale", "STALE_NAN", "STALE_NAN_BITS", "partitions_ensure", "PartitionsBusy", "late_before_us",
    # read
    "timeseries_read", "counter_read", "chart_points", "AGGREGATES", "COUNTER_FUNCTIONS", "points_page",
    "points_after", "points_before", "counters_previous",
    "points_window", "TooManyPoints", "series_with_points", "series_stats", "SeriesStats", "series_first_ts",
    "series_newest_ts", "series_extremes_before", "points_per_day", "points_count_since", "rollup_backlog",
    # lifecycle
    "points_maintain", "points_retention_apply", "points_compact", "rollups_refresh", "tenant_points_delete",
    "forget_known_partitions",
    # hooks
    "post_ingest_hooks", "IngestHook", "compaction_horizons",
]
