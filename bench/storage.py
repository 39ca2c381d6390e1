"""Storage density and speed on compacted data (issue 14): bytes per point, compaction throughput,
reads and detection on rows against the same points in chunks, and the codec's bytes and speed.

usage: .venv/bin/python bench/storage.py [--series 1000] [--points 10000] [--reads 200] [--skip-detection] [--wide-read]

Works in a database of its own (`cloudwatchdog_bench_storage` on the project's server, created
fresh and migrated), so sizes are the benchmark's alone. Loads --series series × --points points
at 60 s (the mix of bench/storage_data.py: NAB series replayed and scaled, integer counters,
constants) ending before yesterday, with a binary COPY, refreshes the rollups, VACUUMs and measures;
compacts everything (`--older-than 0s`), VACUUMs and measures again, with a breakdown per relation
and fork (heap, free-space and visibility maps, TOAST and its index, each index) beside the codec's
own output, then once more after a REINDEX of the rollups (compaction folds the compacted days' rollup
rows into the chunks and deletes them; when it folded COMPACTION_REINDEX_MIN_FOLDED rows or more, as here,
it rebuilt the rollup index itself, and the two figures agree). The 60-minute and 30-day reads' answers are hashed before and after compaction: the
hashes must match each other, and across commits for the same arguments run on the same UTC day (the
data is seeded; its times end before yesterday). The database stays until the
next run, for a look with psql. Reads go through the API's
view stack in-process (Django's test client: middleware, auth, serialization; no socket).
--wide-read: one read of every series over the last 30 days at step=1h (timeseries_read, the selector
the API calls; median of 3 ms, and a hash of its answer) on rows and rollups, then on chunks and their hours.
Detection: a second tenant of 1,000 series × 1,000 points; `fetchall` of them from the row table,
a first detection pass and a whole replay on rows, then the same on a copy compacted first.
"""
import argparse
import hashlib
import io
import os
import statistics
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from bench_db import fresh_database, plain_connection  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from storage_data import ShapeMix  # noqa: E402

BENCH_DB = "cloudwatchdog_bench_storage"
STEP_US = 60_000_000
DAY_US = 86_400_000_000


def sizes() -> dict[str, int]:
    """Bytes of each point-store relation, indexes and TOAST included, after a VACUUM."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute(
            """
            SELECT 'rows', COALESCE(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i
            WHERE i.inhparent = 'metrics_point'::regclass
            UNION ALL SELECT 'rollup_1h', pg_total_relation_size('metrics_rollup_1h')
            UNION ALL SELECT 'chunks', pg_total_relation_size('metrics_chunk')
            UNION ALL SELECT 'series', pg_total_relation_size('metrics_series')
            """
        )
        return dict(cursor.fetchall())


def fork_sizes(table: str) -> list[tuple[str, int]]:
    """Bytes of a table's forks (main, fsm, vm), of its TOAST table and TOAST index, and of each index:
    what row overhead, free-space maps and out-of-line storage cost beside the data itself."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT 'heap ' || f, pg_relation_size(%(t)s::regclass, f) FROM unnest(ARRAY['main', 'fsm', 'vm']) f
            UNION ALL SELECT 'toast ' || f, COALESCE(pg_relation_size(NULLIF(c.reltoastrelid, 0), f), 0)
              FROM pg_class c, unnest(ARRAY['main', 'fsm', 'vm']) f WHERE c.oid = %(t)s::regclass
            UNION ALL SELECT 'toast index', COALESCE(sum(pg_relation_size(i.indexrelid)), 0)
              FROM pg_class c JOIN pg_index i ON i.indrelid = c.reltoastrelid WHERE c.oid = %(t)s::regclass
            UNION ALL SELECT 'index ' || i.indexrelid::regclass::text, pg_relation_size(i.indexrelid)
              FROM pg_index i WHERE i.indrelid = %(t)s::regclass
            """,
            {"t": table},
        )
        return [(name, size) for name, size in cursor.fetchall() if size]


def print_breakdown(total: int, encoded_bytes: int, rows: int) -> None:
    print(f"\n{'breakdown (bytes/point)':40} {'compacted':>10}")
    print(f"{'  codec output (chunk data alone)':40} {encoded_bytes / total:10.2f}")
    for table in ("metrics_chunk", "metrics_rollup_1h", "metrics_series"):
        print(f"  {table}")
        for name, size in fork_sizes(table):
            print(f"{'    ' + name:40} {size / total:10.2f}")
    # Compaction truncates a partition it emptied only once its week is over (partitions.py): on the
    # benchmark's days inside the current week the emptied pages stay, reused by the next ingest.
    print(f"{'  metrics_point (emptied, until truncated)':40} {rows / total:10.2f}")


def answers_hash(contents: list[bytes]) -> str:
    """One hash of the read answers, so 'the same answers' can be checked across runs and commits."""
    digest = hashlib.sha256()
    for content in contents:
        digest.update(len(content).to_bytes(8, "little"))
        digest.update(content)
    return digest.hexdigest()[:16]


def load(tenant, series: int, points: int, start_us: int, mix: ShapeMix) -> tuple[list[int], float]:
    """Create the series (one ingest request), COPY every point, refresh the rollups; returns ids and seconds."""
    from cloudwatchdog import pgcopy
    from metrics.ingest import Event
    from metrics.models import Series
    from metrics.services import points_ingest
    from metrics.storage import partitions_ensure, rollups, rollups_refresh

    first = datetime.fromtimestamp(start_us / 1e6, timezone.utc).isoformat()
    events = [Event(service="bench", resource_id=f"r{k:04d}", metric_name=mix.kind(k), value=0.0, timestamp=first,
                    kind="counter" if mix.kind(k) == "counter" else "gauge") for k in range(series)]
    tenant.limits = {"MAX_EVENTS_PER_REQUEST": series}
    tenant.save()
    for begin in range(0, series, 1000):
        points_ingest(tenant=tenant, events=events[begin:begin + 1000])
    ids = {s.resource_id: s.id for s in Series.objects.for_tenant(tenant)}
    series_ids = [ids[f"r{k:04d}"] for k in range(series)]
    ts_us = start_us + np.arange(points, dtype=np.int64) * STEP_US
    partitions_ensure(ts_us=ts_us[::1440], now_us=int(time.time() * 1e6))
    partitions_ensure(ts_us=ts_us[-1:], now_us=int(time.time() * 1e6))
    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM metrics_point WHERE tenant_id = %s", [tenant.id])  # the creating points
        for begin in range(0, series, 100):
            block = range(begin, min(series, begin + 100))
            stream = pgcopy.encode_points(np.repeat(np.array([series_ids[k] for k in block]), points),
                                          np.tile(ts_us, len(block)),
                                          np.concatenate([mix.values(k, points) for k in block]), tenant_id=tenant.id)
            cursor.cursor.copy_expert("COPY metrics_point (tenant_id, series_id, ts, value) FROM STDIN WITH (FORMAT binary)",
                                      io.BytesIO(stream))
        sql, params = rollups.ingest_log_statement(tenant_id=tenant.id, min_us=int(ts_us[0]), max_us=int(ts_us[-1]))
        cursor.execute(sql, params)
    rollups_refresh()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM metrics_ingest_log")
        if cursor.fetchone()[0]:
            # Reads of hours still in the log aggregate raw points: other float bits, another answer hash.
            print("warning: the rollup refresh left ingest-log rows; the answer hashes will differ")
    return series_ids, time.perf_counter() - began


def time_reads(client: Client, key: str, queries: list[dict]) -> tuple[float, float, str]:
    """Median and p95 milliseconds of these reads, and the hash of their answers."""
    elapsed, contents = [], []
    for query in queries:
        began = time.perf_counter()
        response = client.get("/api/v1/metrics/timeseries", query, HTTP_AUTHORIZATION=f"Bearer {key}",
                              HTTP_HOST="127.0.0.1")
        elapsed.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.content[:300]
        contents.append(response.content)
    return statistics.median(elapsed), float(np.percentile(elapsed, 95)), answers_hash(contents)


def read_queries(mix: ShapeMix, series: int, start_us: int, points: int, count: int) -> tuple[list, list]:
    rng = np.random.default_rng(5)
    end_us = start_us + points * STEP_US
    iso = lambda us: datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat().replace("+00:00", "Z")  # noqa: E731
    hour, month = [], []
    for _ in range(count):
        k = int(rng.integers(0, series))
        at = int(rng.integers(start_us + 3600 * 10**6, end_us))
        which = {"service": "bench", "metric_name": mix.kind(k), "resource_id": f"r{k:04d}"}
        hour.append({**which, "start": iso(at - 3600 * 10**6), "end": iso(at)})
        month.append({**which, "start": iso(end_us - 30 * DAY_US), "end": iso(end_us), "step": "1h"})
    return hour, month


def time_wide_read(tenant, series_ids: list[int], start_us: int, points: int) -> tuple[float, str]:
    """Median of 3 milliseconds of one 30-day step=1h read of all these series, and its answer's hash."""
    from metrics.storage import timeseries_read

    end = datetime.fromtimestamp((start_us + points * STEP_US) / 1e6, timezone.utc)
    start = datetime.fromtimestamp((start_us + points * STEP_US - 30 * DAY_US) / 1e6, timezone.utc)
    elapsed = []
    for _ in range(3):
        began = time.perf_counter()
        answer = timeseries_read(tenant=tenant, series_ids=series_ids, start=start, end=end, step_seconds=3600,
                                 agg="avg", max_points=10**8)
        elapsed.append((time.perf_counter() - began) * 1000)
    text = repr(sorted((series_id, [(ts.isoformat(), value) for ts, value in rows]) for series_id, rows in answer.items()))
    return statistics.median(elapsed), answers_hash([text.encode()])


def detection_figures(mix: ShapeMix, compacted: bool) -> dict:
    """fetchall from rows, then a first detection pass and a whole replay (on chunks when `compacted`)."""
    from anomalies.runs import detection_run
    from metrics.storage import points_compact
    from tenants.services import tenant_create

    tenant = tenant_create(slug=f"detect-{'chunks' if compacted else 'rows'}")
    start_us = (int(time.time() * 1e6) // DAY_US - 5) * DAY_US
    load(tenant, 1000, 1000, start_us, mix)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE metrics_point")
    plain = plain_connection()
    fetch = []
    for _ in range(3):
        began = time.perf_counter()
        with plain.cursor() as cursor:
            cursor.execute("SELECT series_id, ts, value FROM metrics_point WHERE tenant_id = %s", [tenant.id])
            count = len(cursor.fetchall())
        fetch.append(time.perf_counter() - began)
    plain.close()
    figures = {"points": count, "fetchall_s": statistics.median(fetch)}
    if compacted:
        figures["compact"] = points_compact(tenant=tenant)
    began = time.perf_counter()
    run = detection_run(tenant=tenant, trigger="manual")
    figures["detection_s"] = time.perf_counter() - began
    figures["evaluated"] = run.points_processed
    began = time.perf_counter()
    detection_run(tenant=tenant, trigger="replay", replay_since=datetime.fromtimestamp(start_us / 1e6, timezone.utc))
    figures["replay_s"] = time.perf_counter() - began
    return figures


def codec_table(mix: ShapeMix, series: int, points: int) -> None:
    from metrics.storage import codec

    ts_us = 1_700_000_000_000_000 + np.arange(points, dtype=np.int64) * STEP_US
    print("\ncodec (pco; one chunk per series and UTC day, 1,440 points):")
    print(f"{'shape':9} {'bytes/point':>11} {'encode Mpt/s':>13} {'decode Mpt/s':>13}")
    totals = {}
    for k in range(0, series, max(1, series // 300)):
        values = mix.values(k, points)
        for begin in range(0, points, 1440):
            t, v = ts_us[begin:begin + 1440], values[begin:begin + 1440]
            began = time.perf_counter()
            blob = codec.encode(t, v)
            encoded = time.perf_counter() - began
            began = time.perf_counter()
            codec.decode(blob)
            decoded = time.perf_counter() - began
            for shape in (mix.kind(k), "all"):
                row = totals.setdefault(shape, [0, 0, 0.0, 0.0])
                row[0] += len(blob)
                row[1] += len(t)
                row[2] += encoded
                row[3] += decoded
    for shape, (size, count, encoded, decoded) in sorted(totals.items()):
        print(f"{shape:9} {size / count:11.2f} {count / encoded / 1e6:13.1f} {count / decoded / 1e6:13.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=10_000, help="per series, one a minute")
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument("--wide-read", action="store_true", help="time a 30-day step=1h read of every series")
    args = parser.parse_args()
    mix = ShapeMix()
    codec_table(mix, args.series, args.points)
    fresh_database(BENCH_DB)
    from metrics.storage import points_compact
    from tenants.services import api_key_issue, tenant_create

    tenant = tenant_create(slug="storage")
    key = api_key_issue(tenant=tenant, scope="all").plaintext
    total = args.series * args.points
    days = -(-args.points * STEP_US // DAY_US)
    start_us = (int(time.time() * 1e6) // DAY_US - days - 2) * DAY_US
    series_ids, loaded = load(tenant, args.series, args.points, start_us, mix)
    print(f"\nloaded {total:,} points (COPY + rollup refresh) in {loaded:.1f} s")
    rows = sizes()
    client = Client()
    hour, month = read_queries(mix, args.series, start_us, args.points, args.reads)
    rows_reads = time_reads(client, key, hour), time_reads(client, key, month)
    wide = [time_wide_read(tenant, series_ids, start_us, args.points)] if args.wide_read else []

    began = time.perf_counter()
    report = points_compact(tenant=tenant)
    compaction = time.perf_counter() - began
    compacted = sizes()
    chunk_reads = time_reads(client, key, hour), time_reads(client, key, month)
    if args.wide_read:
        wide.append(time_wide_read(tenant, series_ids, start_us, args.points))

    print(f"compaction: {report['points']:,} points into {report['chunks']:,} chunks in {compaction:.1f} s "
          f"= {report['points'] / compaction:,.0f} points/s (encoded data {report['chunk_bytes'] / report['points']:.2f} B/point)")
    print(f"\n{'bytes per point':24} {'rows':>10} {'compacted':>10}")
    for name in ("rows", "chunks", "rollup_1h", "series"):
        print(f"{name:24} {rows[name] / total:10.2f} {compacted[name] / total:10.2f}")
    print(f"{'everything':24} {sum(rows.values()) / total:10.2f} {sum(compacted.values()) / total:10.2f}")
    print(f"{'compressed history alone':24} {'':10} {compacted['chunks'] / total:10.2f}")
    stored = compacted["chunks"] + compacted["rollup_1h"] + compacted["series"]
    print(f"{'chunks+rollups+series':24} {'':10} {stored / total:10.2f}")
    print_breakdown(total, report["chunk_bytes"], compacted["rows"])
    # Compaction folded the rollups of the compacted days into the chunks and deleted them, and rebuilt
    # the rollup index if it folded many (COMPACTION_REINDEX_MIN_FOLDED); this REINDEX shows what a
    # rebuild gives back when compaction did not.
    with connection.cursor() as cursor:
        cursor.execute("REINDEX TABLE metrics_rollup_1h")
    reindexed = sizes()
    live = reindexed["chunks"] + reindexed["rollup_1h"] + reindexed["series"]
    print(f"{'  chunks+rollups+series once the emptied rollup pages are given back (REINDEX)':40} {live / total:.2f}")
    print(f"\n{'read (ms)':24} {'rows p50':>9} {'p95':>7} {'chunks p50':>11} {'p95':>7}  answers (rows, chunks)")
    for label, on_rows, on_chunks in (("60-minute", rows_reads[0], chunk_reads[0]),
                                      ("30-day step=1h", rows_reads[1], chunk_reads[1])):
        same = "same" if on_rows[2] == on_chunks[2] else "DIFFERENT"
        print(f"{label:24} {on_rows[0]:9.1f} {on_rows[1]:7.1f} {on_chunks[0]:11.1f} {on_chunks[1]:7.1f}  "
              f"{on_rows[2]} {on_chunks[2]} {same}")
    if wide:
        (rows_ms, rows_hash), (chunks_ms, chunks_hash) = wide
        print(f"{'wide: %d series 30 days 1h' % args.series:24} {rows_ms:9.1f} {'':7} {chunks_ms:11.1f} {'':7}  "
              f"{rows_hash} {chunks_hash} {'same' if rows_hash == chunks_hash else 'DIFFERENT'}  (median of 3)")
    if not args.skip_detection:
        print("\ndetection over 1,000 series × 1,000 points:")
        for compacted_first in (False, True):
            figures = detection_figures(mix, compacted_first)
            print(f"  {'chunks' if compacted_first else 'rows  '}: fetchall {figures['fetchall_s']:.2f} s, first pass "
                  f"{figures['detection_s']:.2f} s ({figures['detection_s'] / figures['fetchall_s']:.2f}× fetchall, "
                  f"{figures['evaluated']:,} points), replay {figures['replay_s']:.2f} s")


if __name__ == "__main__":
    main()
