"""Compressed chunks: the codec, compaction changing no answer, late writes into compacted days,
compaction while ingest and detection run, retention, and the command."""
import json
import threading
from datetime import datetime, timedelta, timezone
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from anomalies.runs import detection_run
from metrics.services import points_ingest
from metrics.storage import (
    codec,
    points_compact,
    points_count_since,
    points_maintain,
    points_per_day,
    rollups_refresh,
)
from metrics.storage.compaction import SAFETY_MARGIN_US, late_window_us
from tests.helpers import event, iso

TIMESERIES = "/api/v1/metrics/timeseries"


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.integers(1, 10**9), min_size=0, max_size=300),
    values=st.data(),
)
def test_the_codec_gives_back_every_bit(steps, values):
    ts_us = 1_700_000_000_000_000 + np.cumsum(np.array(steps, np.int64))
    floats = values.draw(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64),
                                  min_size=len(steps), max_size=len(steps)))
    array = np.array(floats, np.float64)
    decoded_ts, decoded_values = codec.decode(codec.encode(ts_us, array))
    assert decoded_ts.tolist() == ts_us.tolist()
    assert decoded_values.view(np.uint64).tolist() == array.view(np.uint64).tolist()  # -0.0 and NaN too


@hypothesis_settings(max_examples=100, deadline=None)
@given(first=st.integers(-10**15, 4 * 10**15), step=st.integers(1, 10**9), count=st.integers(1, 2000))
def test_regular_timestamps_come_back_from_first_and_step(first, step, count):
    ts_us = first + np.arange(count, dtype=np.int64) * step
    values = np.linspace(-1.0, 1.0, count)
    blob = codec.encode(ts_us, values)
    assert blob[0] == codec.PCO_REGULAR
    decoded_ts, decoded_values = codec.decode(blob)
    assert decoded_ts.tolist() == ts_us.tolist()
    assert decoded_values.view(np.uint64).tolist() == values.view(np.uint64).tolist()


def test_regular_timestamps_cost_16_bytes_and_pco_chunks_stay_readable():
    from pcodec import standalone

    ts_us = 1_700_000_000_000_000 + np.arange(1000, dtype=np.int64) * 60_000_000
    values = np.round(np.random.default_rng(4).normal(40, 6, 1000), 2)
    value_part = standalone.simple_compress(values, codec._PCO_CONFIG)
    assert len(codec.encode(ts_us, values)) == codec._HEADER.size + 16 + len(value_part)
    ts_part = standalone.simple_compress(ts_us, codec._PCO_CONFIG)  # a chunk written before codec byte 3
    written_before = codec._HEADER.pack(codec.PCO, 1000, len(ts_part)) + ts_part + value_part
    decoded_ts, decoded_values = codec.decode(written_before)
    assert decoded_ts.tolist() == ts_us.tolist() and decoded_values.tolist() == values.tolist()
    irregular = ts_us.copy()
    irregular[500] += 1
    assert codec.encode(irregular, values)[0] == codec.PCO
    assert codec.decode(codec.encode(irregular, values))[0].tolist() == irregular.tolist()


def test_a_regular_series_costs_about_a_byte_a_point_with_pco():
    ts_us = 1_700_000_000_000_000 + np.arange(1440, dtype=np.int64) * 60_000_000
    rng = np.random.default_rng(3)
    cpu = np.round(rng.normal(40, 6, 1440), 2)  # a percentage reported with two decimals
    assert len(codec.encode(ts_us, cpu)) / 1440 < 2.0


# --- compaction changes nothing ---------------------------------------------------------------

def _mixed_history(owner, seed: int, end: datetime) -> datetime:
    """Four days of series in several shapes, ending at `end`; returns the start."""
    rng = np.random.default_rng(seed)
    start = end - timedelta(days=4)
    events = []
    minutes = 4 * 1440
    cpu = 40 + 10 * np.sin(np.arange(minutes) / 200) + rng.normal(0, 2, minutes)
    cpu[rng.integers(1000, minutes, 3)] += 60  # spikes the detectors flag
    events += [event(round(float(v), 2), start + timedelta(minutes=i + 1), metric_name="cpu") for i, v in enumerate(cpu)]
    # irregular steps from 10 s to 7 min, values with full precision
    moment = start
    while moment < end - timedelta(minutes=7):
        moment += timedelta(seconds=int(rng.integers(10, 420)))
        events.append(event(float(rng.normal(1000, 300)), moment, metric_name="latency"))
    # a counter with a restart
    total = np.cumsum(rng.poisson(30, minutes)).astype(float)
    total[minutes // 2:] -= total[minutes // 2 - 1]
    events += [event(float(v), start + timedelta(minutes=i + 1), metric_name="requests", kind="counter")
               for i, v in enumerate(total)]
    # every 10 s for the last two days
    ten_seconds = 2 * 8640
    events += [event(float(v), end - timedelta(seconds=10 * (ten_seconds - i - 1)), metric_name="queue")
               for i, v in enumerate(np.round(rng.gamma(2, 5, ten_seconds), 1))]
    for first in range(0, len(events), 5000):
        result = points_ingest(tenant=owner.tenant, events=events[first:first + 5000], now=end)
        assert not result.rejected
    return start


def _answers(owner, start: datetime, end: datetime) -> list[bytes]:
    """Every read the API offers over the window, as the bytes it answers."""
    window = {"start": iso(start - timedelta(hours=3)), "end": iso(end)}
    inner = {"start": iso(start + timedelta(hours=29, minutes=13, seconds=7)),
             "end": iso(end - timedelta(hours=5, minutes=1))}
    series = owner.get("/api/v1/series").json()["results"]
    reads = [("/api/v1/series", {})]
    for each in series:
        metric = {"metric_name": each["metric_name"]}
        for span in (window, inner):
            reads.append((TIMESERIES, {**metric, **span}))
            for step in ("1m", "5m", "7m", "1h", "2h", "1d"):
                for agg in ("avg", "min", "max", "sum", "count"):
                    reads.append((TIMESERIES, {**metric, **span, "step": step, "agg": agg}))
            if each["kind"] == "counter":
                for fn in ("rate", "increase"):
                    reads.append((TIMESERIES, {**metric, **span, "fn": fn}))
                    reads.append((TIMESERIES, {**metric, **span, "fn": fn, "step": "1h"}))
        reads.append(("/api/v1/baselines", {"series_id": each["series_id"], **window}))
    answers = []
    for path, params in reads:
        response = owner.get(path, params)
        assert response.status_code == 200, (path, params, response.content)
        answers.append(response.content)
    return answers


def _anomalies(owner) -> str:
    listed = owner.get("/api/v1/anomalies", {"limit": 500}).json()
    assert listed["next"] is None
    for anomaly in listed["results"]:
        for volatile in ("id", "created_at", "run_id", "updated_at"):
            anomaly.pop(volatile, None)
    return json.dumps(listed["results"], sort_keys=True)


def _stored(tenant, table):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} WHERE tenant_id = %s", [tenant.id])
        return cursor.fetchone()[0]


def _first_open_day(tenant) -> datetime:
    """The UTC day compaction now keeps as rows: that of now less the late window and the safety margin."""
    cutoff = datetime.now(timezone.utc) - timedelta(microseconds=late_window_us(tenant) + SAFETY_MARGIN_US)
    return cutoff.replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.mark.parametrize("seed", [1, 2])
def test_compaction_changes_no_api_answer_and_no_detection_result(owner, seed):
    end = datetime.now(timezone.utc).replace(microsecond=0)
    start = _mixed_history(owner, seed, end)
    rollups_refresh()
    detection_run(tenant=owner.tenant, trigger="manual")
    detection_run(tenant=owner.tenant, trigger="replay", replay_since=start)
    before, anomalies_before = _answers(owner, start, end), _anomalies(owner)
    assert '"severity"' in anomalies_before  # the history has anomalies to compare

    # Where compaction stops depends on the hour: in the first hour after midnight (UTC) the late window
    # still covers yesterday, which then stays rows too.
    closed = _first_open_day(owner.tenant)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM metrics_point WHERE tenant_id = %s AND ts >= %s", [owner.tenant.id, closed])
        [open_rows] = cursor.fetchone()
    out = StringIO()
    call_command("compact_points", "--tenant", owner.tenant.slug, "--older-than", "0s", stdout=out)
    closed_days = (closed - start.replace(hour=0, minute=0, second=0)).days
    # cpu, latency and requests have points every day; queue only in the last two
    assert "compacted" in out.getvalue() and _stored(owner.tenant, "metrics_chunk") >= 3 * closed_days >= 9
    rows_left = _stored(owner.tenant, "metrics_point")
    assert 0 < rows_left == open_rows  # the open days (behind the late window) stay rows

    after = _answers(owner, start, end)
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    if changed:
        open("/tmp/changed.json", "w").write(changed[0][0].decode() + "\n" + changed[0][1].decode())
    assert changed == []
    detection_run(tenant=owner.tenant, trigger="replay", replay_since=start)  # evaluated from the chunks
    assert _anomalies(owner) == anomalies_before
    # a second compaction moves nothing
    again = points_compact(tenant=owner.tenant)
    assert again["points"] == 0 and _answers(owner, start, end) == before


def test_late_points_into_a_compacted_day_are_read_at_once_and_merged_later_first_write_wins(owner):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    day = (now - timedelta(days=3)).replace(hour=0, minute=0, second=0)
    points_ingest(tenant=owner.tenant, events=[event(float(i), day + timedelta(minutes=i)) for i in range(1440)])
    rollups_refresh()
    compacted = points_compact(tenant=owner.tenant)
    assert (compacted["points"], compacted["hours_folded"], compacted["rollups_kept"]) == (1440, 24, 0)
    assert _stored(owner.tenant, "metrics_point") == 0 and _stored(owner.tenant, "metrics_rollup_1h") == 0

    late = [event(1000.0 + i, day + timedelta(minutes=i, seconds=30)) for i in range(0, 1440, 60)]  # 24 new
    repeats = [event(-1.0, day + timedelta(minutes=i)) for i in range(0, 1440, 120)]  # 12 already compacted
    result = owner.ingest(late + repeats).json()
    assert (result["accepted"], result["duplicates"]) == (24, 12)
    assert owner.ingest(late).json()["duplicates"] == 24  # a retry stores nothing twice

    window = {"metric_name": "cpu_utilization", "start": iso(day), "end": iso(day + timedelta(days=1))}
    points = owner.get(TIMESERIES, window).json()["series"][0]["points"]
    assert len(points) == 1440 - 1 + 24  # (start, end]: minute 0 is outside
    values = {p["timestamp"]: p["value"] for p in points}
    assert values[iso(day + timedelta(minutes=120))] == 120.0  # the first write won
    assert values[iso(day + timedelta(minutes=60, seconds=30))] == 1060.0
    rollups_refresh()
    # the refreshed rollup rows (chunk points and the late row) override the chunk's stored hours
    assert _stored(owner.tenant, "metrics_rollup_1h") == 24
    hourly = owner.get(TIMESERIES, {**window, "step": "1h", "agg": "count"}).json()["series"][0]["points"]
    # every hour: its 60 compacted points and a late one (the first lacks 00:00, outside the window)
    assert [p["value"] for p in hourly] == [60.0] + [61.0] * 23
    two_hours = {**window, "start": iso(day - timedelta(hours=1)), "step": "2h", "agg": "sum"}
    summed = owner.get(TIMESERIES, two_hours).json()["series"][0]["points"]
    assert summed[1]["value"] == sum(range(120, 240)) + 1120.0 + 1180.0
    series = owner.get("/api/v1/series").json()["results"][0]
    assert series["point_count"] == 1440 + 24  # late rows of a compacted day count at once

    merged = points_compact(tenant=owner.tenant)
    assert (merged["points"], merged["merged_chunks"], merged["hours_folded"]) == (24, 1, 24)
    assert _stored(owner.tenant, "metrics_point") == 0 and _stored(owner.tenant, "metrics_rollup_1h") == 0
    assert owner.get(TIMESERIES, {**window, "step": "1h", "agg": "count"}).json()["series"][0]["points"] == hourly
    assert owner.get(TIMESERIES, two_hours).json()["series"][0]["points"] == summed
    assert owner.get("/api/v1/series").json()["results"][0]["point_count"] == 1440 + 24
    assert owner.get(TIMESERIES, window).json()["series"][0]["points"] == points
    assert owner.ingest(repeats).json()["duplicates"] == 12


def _hour_answers(owner, start: datetime, end: datetime) -> list:
    reads = [owner.get("/api/v1/series").json()]
    for step in ("1h", "2h", "1d"):
        for agg in ("sum", "count", "min", "max"):
            reads.append(owner.get(TIMESERIES, {"metric_name": "cpu_utilization", "start": iso(start), "end": iso(end),
                                                "step": step, "agg": agg}).json())
    return reads


def test_chunks_compacted_before_their_hours_are_read_from_the_rollups_then_folded(owner):
    """Chunks written before migration 0011 (no hours, rollup rows kept) answer the same, and the next
    compaction folds their rollups in."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    day = (now - timedelta(days=3)).replace(hour=0, minute=0, second=0)
    rng = np.random.default_rng(8)
    points_ingest(tenant=owner.tenant, events=[event(float(v), day + timedelta(minutes=7 * i))
                                               for i, v in enumerate(rng.normal(50, 9, 400))])
    rollups_refresh()
    start, end = day - timedelta(hours=5), now
    before = _hour_answers(owner, start, end)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM metrics_rollup_1h WHERE tenant_id = %s", [owner.tenant.id])
        [hourly_rows] = cursor.fetchone()
    assert points_compact(tenant=owner.tenant)["hours_folded"] == hourly_rows
    assert _hour_answers(owner, start, end) == before
    with connection.cursor() as cursor:  # as migration 0011 leaves a chunk: no hours, its rollup rows stay
        cursor.execute("UPDATE metrics_chunk SET hours = NULL WHERE tenant_id = %s", [owner.tenant.id])
        cursor.execute("INSERT INTO metrics_ingest_log (tenant_id, min_ts, max_ts) VALUES (%s, %s, %s)",
                       [owner.tenant.id, day, day + timedelta(days=2)])
    rollups_refresh()
    assert _stored(owner.tenant, "metrics_rollup_1h") == hourly_rows
    assert _hour_answers(owner, start, end) == before
    report = points_compact(tenant=owner.tenant)
    assert (report["points"], report["hours_folded"]) == (0, hourly_rows)
    assert _stored(owner.tenant, "metrics_rollup_1h") == 0
    assert _hour_answers(owner, start, end) == before


def test_console_counts_are_the_same_after_compaction_and_count_late_points(owner):
    end = datetime.now(timezone.utc).replace(microsecond=0)
    start = _mixed_history(owner, 3, end)
    rollups_refresh()
    since = start + timedelta(hours=30, minutes=20)

    def counts():
        return (points_per_day(tenant=owner.tenant, days=6, now=end), points_count_since(tenant=owner.tenant, since=since))

    before = counts()
    assert sum(n for _, n in before[0]) == _stored(owner.tenant, "metrics_point") and before[1][1] > 0
    points_compact(tenant=owner.tenant)
    assert _stored(owner.tenant, "metrics_chunk") > 0
    assert counts() == before
    late_day = start.replace(hour=0, minute=0, second=0) + timedelta(days=1)
    # half a second off: the history's points fall on whole seconds (at :01 when the test starts at second 1)
    late_moment = late_day + timedelta(hours=3, seconds=1, milliseconds=500)
    assert owner.ingest([event(1.0, late_moment, metric_name="cpu")]).json()["accepted"] == 1
    days, (series, points) = counts()
    assert dict(days)[late_day.date().isoformat()] == dict(before[0])[late_day.date().isoformat()] + 1


def test_retention_drops_whole_chunks_and_cuts_the_one_holding_the_cutoff(owner, outsider):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    first_day = (now - timedelta(days=6)).replace(hour=0, minute=0, second=0)
    for client in (owner, outsider):
        points_ingest(tenant=client.tenant, events=[event(float(i), first_day + timedelta(hours=i)) for i in range(96)])
    rollups_refresh()
    points_compact()
    assert _stored(owner.tenant, "metrics_chunk") == 4
    owner.tenant.retention_days = 5
    owner.tenant.save()
    cutoff = now - timedelta(days=5)
    report = points_maintain(now=now)
    kept = [p for p in range(96) if first_day + timedelta(hours=p) >= cutoff]
    assert report["deleted_points"] == 96 - len(kept)
    points = owner.get(TIMESERIES, {"metric_name": "cpu_utilization", "start": iso(first_day - timedelta(days=1)),
                                    "end": iso(now)}).json()["series"][0]["points"]
    assert [p["value"] for p in points] == [float(p) for p in kept]
    hourly = owner.get(TIMESERIES, {"metric_name": "cpu_utilization", "start": iso(first_day - timedelta(days=1)),
                                    "end": iso(now), "step": "1h", "agg": "sum"}).json()["series"][0]["points"]
    # the chunk's hours before the cutoff went with its points
    assert [p["value"] for p in hourly] == [float(p) for p in kept]
    assert _stored(outsider.tenant, "metrics_chunk") == 4
    owner.tenant.delete()
    assert _stored(owner.tenant, "metrics_chunk") == 0


def test_the_command_refuses_a_bad_duration_and_an_unknown_tenant(owner):
    with pytest.raises(CommandError, match="--older-than: '3 days' is not a duration"):
        call_command("compact_points", "--older-than", "3 days")
    with pytest.raises(CommandError, match="no tenant with slug 'nobody'"):
        call_command("compact_points", "--tenant", "nobody")


def test_older_than_keeps_recent_days_as_rows(owner):
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    noons = [today - timedelta(days=k) + timedelta(hours=12) for k in range(1, 6)]
    points_ingest(tenant=owner.tenant, events=[event(1.0, noon) for noon in noons])
    out = StringIO()
    call_command("compact_points", "--older-than", "3d", stdout=out)
    # The day of the cutoff (now - 3 days) is not closed behind it: only the two days before it move.
    assert "compacted 2 points of 1 series into 2 chunks" in out.getvalue()
    assert (_stored(owner.tenant, "metrics_point"), _stored(owner.tenant, "metrics_chunk")) == (3, 2)


# --- concurrency --------------------------------------------------------------------------------

def test_compaction_while_late_points_arrive_and_detection_runs_loses_and_repeats_nothing(transactional_db, make_tenant):
    owner = make_tenant("busy")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    day = (now - timedelta(days=3)).replace(hour=0, minute=0, second=0)
    original = {day + timedelta(minutes=i): float(i) for i in range(0, 2 * 1440)}
    series_names = ("a", "b", "c")
    for name in series_names:
        points_ingest(tenant=owner.tenant, events=[event(v, ts, resource_id=name) for ts, v in original.items()])
    detection_run(tenant=owner.tenant, trigger="manual")
    rollups_refresh()

    accepted, duplicates, merged, failures = [0], [0], [0], []
    done = threading.Event()

    def in_thread(work):
        def run():
            try:
                work()
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                failures.append(repr(error))
            finally:
                connections.close_all()
        return threading.Thread(target=run)

    def ingest_late():
        rng = np.random.default_rng(7)
        for round_number in range(40):
            seconds = rng.integers(1, 59, 30)
            minutes = rng.integers(0, 2 * 1440, 30)
            events = [event(5000.0 + round_number, day + timedelta(minutes=int(m), seconds=int(s)),
                            resource_id=series_names[k % 3]) for k, (m, s) in enumerate(zip(minutes, seconds))]
            events += [event(-1.0, day + timedelta(minutes=int(m)), resource_id=series_names[int(m) % 3])
                       for m in minutes[:10]]  # already stored: duplicates
            result = points_ingest(tenant=owner.tenant, events=events)
            accepted[0] += result.accepted
            duplicates[0] += result.duplicates
        done.set()

    def compact():
        while not done.is_set():
            merged[0] += points_compact(tenant=owner.tenant, batch_series=1)["merged_chunks"]

    def detect():
        while not done.is_set():
            detection_run(tenant=owner.tenant, trigger="manual")

    threads = [in_thread(ingest_late), in_thread(compact), in_thread(detect)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert failures == []
    assert duplicates[0] >= 400  # the repeats, and any random time drawn twice
    assert merged[0] > 0  # compaction did merge late points into chunks while they arrived
    points_compact(tenant=owner.tenant)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM metrics_point WHERE tenant_id = %s AND ts < %s", [owner.tenant.id, day + timedelta(days=2)])
        assert cursor.fetchone()[0] == 0
    body = owner.get(TIMESERIES, {"metric_name": "cpu_utilization", "start": iso(day - timedelta(seconds=1)),
                                  "end": iso(day + timedelta(days=2))}).json()
    stored = sum(len(s["points"]) for s in body["series"])
    assert stored == 3 * len(original) + accepted[0]
    for each in body["series"]:
        timestamps = [p["timestamp"] for p in each["points"]]
        assert len(timestamps) == len(set(timestamps))
        whole_minutes = [p for p in each["points"] if p["timestamp"].endswith(":00Z")]
        assert [p["value"] for p in whole_minutes] == list(original.values())  # first writes won


def test_partitions_compaction_emptied_are_truncated_and_others_kept(owner, outsider):
    from metrics.storage.partitions import partitions_truncate_emptied

    old = datetime(2025, 3, 3, tzinfo=timezone.utc)  # a Monday long ago: its month's partition
    points_ingest(tenant=owner.tenant, events=[event(float(i), old + timedelta(minutes=i)) for i in range(3000)])
    points_ingest(tenant=outsider.tenant, events=[event(1.0, datetime(2025, 5, 5, tzinfo=timezone.utc))])

    def size(name):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_relation_size(%s)", [name])
            return cursor.fetchone()[0]

    assert size("metrics_point_p20250301") > 0
    points_compact(tenant=owner.tenant)
    truncated = partitions_truncate_emptied(before=datetime.now(timezone.utc), min_bytes=0)
    assert "metrics_point_p20250301" in truncated and size("metrics_point_p20250301") == 0
    assert "metrics_point_p20250501" not in truncated  # the other tenant's point is still a row there
    points = owner.get(TIMESERIES, {"metric_name": "cpu_utilization", "start": iso(old - timedelta(seconds=1)),
                                    "end": iso(old + timedelta(days=3))}).json()["series"][0]["points"]
    assert len(points) == 3000  # all in chunks now


def test_a_read_of_compacted_days_cancelled_or_cut_in_its_copy_is_503_with_retry_after(transactional_db, make_tenant):
    """With chunks in the window the raw read is a COPY (psycopg2's own call): a statement timeout there is 503
    with Retry-After, as every other query's, not 500."""
    import psycopg2

    owner = make_tenant("copy-cancelled")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    day = (now - timedelta(days=3)).replace(hour=0, minute=0, second=0)
    points_ingest(tenant=owner.tenant, events=[event(float(i), day + timedelta(minutes=i)) for i in range(1440)])
    assert points_compact(tenant=owner.tenant)["points"] == 1440
    window = {"metric_name": "cpu_utilization", "start": iso(day), "end": iso(day + timedelta(days=1))}
    assert owner.get(TIMESERIES, window).status_code == 200  # the key is cached now
    locker = psycopg2.connect(**connection.get_connection_params())
    try:
        locker.cursor().execute("LOCK TABLE metrics_point IN ACCESS EXCLUSIVE MODE")  # only the COPY reads it
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '300ms'")
        response = owner.get(TIMESERIES, window)
        assert response.status_code == 503, response.content
        assert response["Retry-After"] == "5" and "longer than the server allows" in response.json()["detail"]
    finally:
        locker.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
    assert len(owner.get(TIMESERIES, window).json()["series"][0]["points"]) == 1439


def _rollup_index() -> tuple:
    """(file node, valid, leftover copies of an interrupted rebuild) of the rollup table's primary key."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_filenode('metrics_rollup_1h_pkey'), indisvalid FROM pg_index "
                       "WHERE indexrelid = 'metrics_rollup_1h_pkey'::regclass")
        node, valid = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'metrics_rollup_1h_pkey_cc%%'")
        return node, valid, cursor.fetchone()[0]


def test_a_compaction_that_folds_many_rollup_rows_rebuilds_their_index_and_changes_no_answer(transactional_db,
                                                                                              make_tenant, settings):
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "COMPACTION_REINDEX_MIN_FOLDED": 100}
    owner = make_tenant("folding")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    day = (now - timedelta(days=4)).replace(hour=0, minute=0, second=0)
    for name in ("a", "b", "c"):
        points_ingest(tenant=owner.tenant, events=[event(float(i % 97), day + timedelta(minutes=i), resource_id=name)
                                                   for i in range(2 * 1440)])
    rollups_refresh()
    query = {"metric_name": "cpu_utilization", "start": iso(day - timedelta(hours=1)), "end": iso(now), "step": "1h"}
    before = [owner.get(TIMESERIES, {**query, "resource_id": name}).content for name in ("a", "b", "c")]
    node, _, _ = _rollup_index()

    report = points_compact(tenant=owner.tenant)
    assert report["hours_folded"] == 3 * 48 and report["rollup_index_rebuilt"] is True
    rebuilt, valid, leftovers = _rollup_index()
    assert rebuilt != node and valid and leftovers == 0  # a new file, in use, nothing left behind
    assert [owner.get(TIMESERIES, {**query, "resource_id": name}).content for name in ("a", "b", "c")] == before
    # Nothing more to fold: nothing to rebuild.
    assert points_compact(tenant=owner.tenant)["rollup_index_rebuilt"] is False
    assert _rollup_index()[0] == rebuilt


def test_a_compaction_inside_a_transaction_keeps_the_rollup_index(owner, settings):
    # REINDEX CONCURRENTLY cannot run in a transaction (this test's): the pages wait for a later compaction.
    day = (datetime.now(timezone.utc) - timedelta(days=4)).replace(hour=0, minute=0, second=0, microsecond=0)
    points_ingest(tenant=owner.tenant, events=[event(1.0, day + timedelta(minutes=i)) for i in range(1440)])
    rollups_refresh()
    node = _rollup_index()[0]
    settings.CLOUDWATCHDOG = {**settings.CLOUDWATCHDOG, "COMPACTION_REINDEX_MIN_FOLDED": 1}
    report = points_compact(tenant=owner.tenant)
    assert report["hours_folded"] == 24 and report["rollup_index_rebuilt"] is False and _rollup_index()[0] == node


def test_a_step_of_one_hour_answers_each_hour_from_its_points_whether_rollup_row_or_chunk_hour(owner, outsider):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    day = (now - timedelta(days=3)).replace(hour=0, minute=0, second=0)
    rng = np.random.default_rng(3)
    stored = {}  # (resource, µs) -> value: what every hour is computed from, in time order
    for name in ("a", "b"):
        moments = [day + timedelta(seconds=int(s)) for s in np.sort(rng.choice(3 * 86400, 2000, replace=False))]
        values = rng.normal(100, 30, len(moments)).tolist()
        points_ingest(tenant=owner.tenant, events=[event(v, t, resource_id=name) for t, v in zip(moments, values)])
        stored.update({(name, t): v for t, v in zip(moments, values)})
    points_ingest(tenant=outsider.tenant, events=[event(1e9, day + timedelta(hours=5))])
    rollups_refresh()
    points_compact(tenant=owner.tenant)  # the closed days: chunk hours; the open day: rollup rows
    late = day + timedelta(hours=7, minutes=30, seconds=1)  # a late point: its hour's rollup row overrides
    assert owner.ingest([event(-5.5, late, resource_id="a")]).json()["accepted"] == 1
    stored[("a", late)] = -5.5
    rollups_refresh()
    start, end = day - timedelta(minutes=17), now
    for agg in ("avg", "sum", "min", "max", "count"):
        for name in ("a", "b"):
            buckets = {}
            for (resource, moment), value in sorted(stored.items()):
                if resource == name and start < moment <= end:
                    buckets.setdefault(moment.replace(minute=0, second=0), []).append(value)
            expected = []
            for bucket, values in sorted(buckets.items()):
                total = values[0]
                for value in values[1:]:
                    total += value  # in time order, as SQL's sum(value ORDER BY ts)
                expected.append({"avg": total / len(values), "sum": total, "min": min(values), "max": max(values),
                                 "count": float(len(values))}[agg])
            answer = owner.get(TIMESERIES, {"metric_name": "cpu_utilization", "resource_id": name, "start": iso(start), "end": iso(end), "step": "1h",
                                            "agg": agg}).json()["series"][0]["points"]
            assert [p["value"] for p in answer] == expected, (agg, name)
