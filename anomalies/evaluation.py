"""One evaluation pass of a detection run (`run_evaluate`, called by `anomalies.runs.detection_run`
with the run lock held), the late-point hook ingest runs, and the gauges of how far detection got.

How a run stays correct while ingest goes on:
1. Runs of one tenant are serialized by a session advisory lock (cron and beat may overlap).
2. Phase 1 holds the tenant's ingest lock exclusively (ingest holds it shared) while it reads
   the new points and moves each series' watermark, so a point is either read now or, if
   committed later behind the watermark, marked late by `late_points_hook`.
3. Phase 2 evaluates and writes anomalies, baselines and checkpoints in one transaction;
   `evaluating_from` stays set if a run dies in between, and the next run redoes that range.
A late point within the tenant's late window re-evaluates its series from that point (state
rebuilt from history), so the outcome equals in-order arrival; older ones wait for a replay.
"""
from __future__ import annotations

import dataclasses
import io
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np
import orjson
from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from psycopg2.extras import execute_values

from anomalies import alerting
from anomalies import selectors as anomalies_selectors
from anomalies.engine import DetectionConfig, Finding, SeriesState, detect_many, reason_sentence, restart_at
from anomalies.models import ANOMALY_TABLE, BASELINE_TABLE, DETECTION_STATE_TABLE, Anomaly, Baseline, DetectionRun
from cloudwatchdog import locks, pgcopy
from cloudwatchdog.locks import Lock
from cloudwatchdog.timeutil import EPOCH, from_us, sql_at, sql_us, to_us
from metrics import selectors as metrics_selectors
from metrics import storage as metrics_storage
from metrics.counters import RATE_INPUT
from metrics.storage import IngestHook
from tenants.models import Tenant

logger = logging.getLogger(__name__)

# The task a pass that queued notifications sends (anomalies.tasks.notifications_deliver_task).
NOTIFICATIONS_DELIVER_TASK = "anomalies.tasks.notifications_deliver_task"


def _execute_values(cursor, sql: str, rows: list, **options):
    """psycopg2's execute_values on a Django cursor, raising Django's database errors as every other query does."""
    with cursor.db.wrap_database_errors:
        return execute_values(cursor.cursor, sql, rows, **options)


def _watermark_query(tenant_id: int) -> tuple[str, list]:
    return (
        f"SELECT (SELECT {sql_us('watermark_max')} FROM {DETECTION_STATE_TABLE} "
        "WHERE tenant_id = %s)",
        [tenant_id],
    )


def _late_points_mark(cursor, tenant_id: int, rows, watermark_row) -> None:
    """Note points that arrived at or behind their series' watermark.

    The tenant's newest watermark was read under the shared ingest lock, in the transaction's
    opening round trip, so it is final until commit; the baselines are touched only when a point
    may be late.
    """
    watermark_max = watermark_row[0] if watermark_row else None
    if watermark_max is None:
        return
    maybe_late = rows.ts_us <= watermark_max
    if not maybe_late.any():
        return
    cursor.execute(
        f"""
        UPDATE {BASELINE_TABLE} b
        SET late_from = LEAST(COALESCE(b.late_from, l.min_ts), l.min_ts), late_points = b.late_points + l.n
        FROM (
            SELECT bb.id, min(p.ts) AS min_ts, count(*) AS n
            FROM (SELECT series_id, {sql_at('ts_us')} AS ts
                  FROM unnest(%s::bigint[], %s::bigint[]) AS u(series_id, ts_us)) p
            JOIN {BASELINE_TABLE} bb ON bb.tenant_id = %s AND bb.series_id = p.series_id
            WHERE p.ts <= bb.watermark
            GROUP BY bb.id
        ) l
        WHERE b.id = l.id
        """,
        [rows.series_ids[maybe_late].tolist(), rows.ts_us[maybe_late].tolist(), tenant_id],
    )


# Registered with metrics' ingest by AnomaliesConfig.ready.
late_points_hook = IngestHook(query=_watermark_query, apply=_late_points_mark)


class _Marks(NamedTuple):
    """The part of a series' baseline that planning reads. Loaded as plain rows: phase 1 holds the tenant's
    ingest up while it reads them, and model instances took 196 ms for 8,000 series where rows take 11."""
    series_id: int
    watermark: datetime | None
    evaluating_from: datetime | None
    late_from: datetime | None


@dataclass
class _Plan:
    series_id: int
    baseline: _Marks | None
    restart_us: int | None  # evaluate from this time inclusive, state rebuilt from history
    consumes_late: bool


def _plan(tenant: Tenant, baselines: dict[int, _Marks], series_ids: list[int], replay_us: int | None) -> list[_Plan]:
    late_window_us = (tenant.late_window_seconds or settings.CLOUDWATCHDOG["LATE_WINDOW_SECONDS"]) * 1_000_000
    plans = []
    for series_id in series_ids:
        baseline = baselines.get(series_id)
        if baseline is None or baseline.watermark is None:
            plans.append(_Plan(series_id, baseline, None, False))
            continue
        watermark_us = to_us(baseline.watermark)
        candidates = []
        consumes_late = False
        if replay_us is not None and replay_us <= watermark_us:
            candidates.append(replay_us)
        if baseline.evaluating_from is not None:
            candidates.append(to_us(baseline.evaluating_from))
        if baseline.late_from is not None:
            late_us = to_us(baseline.late_from)
            if late_us >= watermark_us - late_window_us or (replay_us is not None and late_us >= replay_us):
                candidates.append(late_us)
                consumes_late = True
        restart = restart_at(min(candidates)) if candidates else None
        plans.append(_Plan(series_id, baseline, restart, consumes_late))
    return plans


def run_evaluate(*, tenant: Tenant, run: DetectionRun, replay_since: datetime | None, settle_seconds: float,
                 shard: int | None = None) -> None:
    """The run's pass over the tenant's new, late or replayed points (of one shard, with `shard`); the
    caller holds the run lock."""
    replay_us = to_us(replay_since) if replay_since is not None else None
    cutoff_us = to_us(timezone.now()) - int(settle_seconds * 1_000_000) if settle_seconds else None
    plans, newest = _watermarks_fix(tenant=tenant, replay_us=replay_us, cutoff_us=cutoff_us, shard=shard)
    new_points = _new_points_read(tenant=tenant, plans=plans, newest=newest)
    configs = _configs_of(tenant, plans)

    # Phase 2: evaluate, then write anomalies, baselines and the run summary together.
    rebuild = {p.series_id: p.restart_us for p in plans if p.restart_us is not None}
    findings_by_series, states, points_processed = _detect(tenant=tenant, plans=plans, new_points=new_points,
                                                           rebuild=rebuild, configs=configs)
    # Re-evaluation starts at a day boundary; a replay since T still only replaces anomalies from T on.
    replace_from = {sid: max(restart, replay_us) if replay_us is not None else restart for sid, restart in rebuild.items()}
    for series_id, since in replace_from.items():
        findings_by_series[series_id] = [f for f in findings_by_series.get(series_id, []) if f.ts_us >= since]
    with transaction.atomic(), connection.cursor() as cursor:
        created = _anomalies_write(cursor, tenant=tenant, run=run, findings_by_series=findings_by_series,
                                   rebuild=replace_from)
        _baselines_write(cursor, tenant=tenant, states=states, configs=configs)
        # Incidents and their notifications commit with the anomalies that make them (the outbox).
        queued = alerting.incidents_sync(
            tenant=tenant, watermarks_us={p.series_id: newest[p.series_id] for p in plans},
            found={sid for sid, findings in findings_by_series.items() if findings}, replaced_from_us=replace_from,
            alarms={series_id: snapshot for series_id, (_, snapshot) in states.items()})
        queued += alerting.no_data_sync(tenant=tenant, now=timezone.now(), shard=shard)
        if queued:
            transaction.on_commit(_notifications_send_soon)
        run.series_processed = sum(1 for p in plans if p.series_id in new_points)
        run.points_processed = points_processed
        run.anomalies_created = created
        run.save()


def _configs_of(tenant: Tenant, plans: list[_Plan]) -> dict[int, DetectionConfig]:
    """Each planned series' settings: the tenant's, with the detection rules that match it."""
    configs = anomalies_selectors.detection_configs_for_ids(tenant=tenant, series_ids=[p.series_id for p in plans])
    missing = [p.series_id for p in plans if p.series_id not in configs]  # deleted while the run went on
    if missing:
        configs.update(dict.fromkeys(missing, anomalies_selectors.detection_config_for(tenant=tenant)))
    return configs


def _notifications_send_soon() -> None:
    """Ask a worker to deliver what this run queued now; if Redis is down, beat's sweep sends it later."""
    try:
        current_app.send_task(NOTIFICATIONS_DELIVER_TASK)
    except Exception as error:  # the broker is down: the rows wait in the outbox
        logger.warning("notifications queued, not signalled (beat's sweep will send them): %s", error)


def _watermarks_fix(*, tenant: Tenant, replay_us: int | None, cutoff_us: int | None,
                    shard: int | None = None) -> tuple[list[_Plan], dict]:
    """Phase 1, while ingest of this tenant waits (milliseconds): fix each series' new watermark at
    its newest committed point. A point committed later at or behind it is marked late by
    late_points_hook; a newer one is read by the next run. Returns the plans and newest points."""
    with transaction.atomic(), connection.cursor() as cursor:
        locks.xact_lock(cursor, Lock.INGEST, tenant.id)
        baselines = {row[0]: _Marks(*row) for row in Baseline.objects.for_tenant(tenant).values_list(*_Marks._fields)}
        newest = metrics_storage.series_newest_ts(tenant=tenant, until_us=cutoff_us)
        if shard is not None:
            shards = settings.CLOUDWATCHDOG["DETECTION_SHARDS"]
            newest = {series_id: ts for series_id, ts in newest.items() if series_id % shards == shard}
        plans = [
            plan for plan in _plan(tenant, baselines, list(newest), replay_us)
            if plan.restart_us is not None or plan.baseline is None or plan.baseline.watermark is None
            or newest[plan.series_id] > to_us(plan.baseline.watermark)
        ]
        _watermarks_advance(cursor, tenant=tenant, plans=plans, newest=newest)
    return plans, newest


def _new_points_read(*, tenant: Tenant, plans: list[_Plan], newest: dict) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The points each plan evaluates, up to the fixed watermarks, read without holding ingest up."""
    after_us, until_us = {}, {}
    for plan in plans:
        if plan.restart_us is not None:
            after_us[plan.series_id] = plan.restart_us - 1
        elif plan.baseline is not None and plan.baseline.watermark is not None:
            after_us[plan.series_id] = to_us(plan.baseline.watermark)
        else:
            after_us[plan.series_id] = None
        until_us[plan.series_id] = newest[plan.series_id]
    points = _group(*metrics_storage.points_after(tenant=tenant, after_us=after_us, until_us=until_us))
    return anomalies_selectors.detection_input(tenant=tenant, points=points, after_us=after_us)


def _detect(*, tenant: Tenant, plans: list[_Plan], new_points: dict, rebuild: dict[int, int],
            configs: dict[int, DetectionConfig]) -> tuple[dict, dict, int]:
    """Run the engine over each plan's points from its checkpoint (or its state rebuilt from history);
    returns the findings and (state, snapshot) by series, and how many points were evaluated."""
    rebuilt = anomalies_selectors.states_at(tenant=tenant, restart_us=rebuild, configs=configs)
    baselines = {b.series_id: b for b in Baseline.objects.for_tenant(tenant).filter(series_id__in=[p.series_id for p in plans])}
    jobs = []
    for plan in plans:
        ts, values = new_points.get(plan.series_id, (np.empty(0, np.int64), np.empty(0)))
        if plan.restart_us is not None:
            state = rebuilt[plan.series_id]
        else:
            baseline = baselines.get(plan.series_id)
            state = SeriesState.from_bytes(baseline.checkpoint if baseline else None)
        jobs.append((state, ts, values))
    limits = settings.CLOUDWATCHDOG
    results = detect_many(jobs, [configs[p.series_id] for p in plans], processes=limits["DETECTION_PROCESSES"],
                          min_points=limits["DETECTION_PARALLEL_MIN_POINTS"])
    findings_by_series, states = {}, {}
    counter_ids = metrics_selectors.counter_series_ids(tenant=tenant, series_ids=[p.series_id for p in plans])
    percentage_ids = metrics_selectors.percentage_series_ids(tenant=tenant, series_ids=[p.series_id for p in plans])
    for plan, (findings, state, snapshot) in zip(plans, results):
        if plan.series_id in counter_ids:
            findings = [_as_rate(f) for f in findings]
        elif plan.series_id in percentage_ids:
            findings = [_within_percent(f) for f in findings]
        findings_by_series[plan.series_id] = findings
        states[plan.series_id] = (state, snapshot)
    return findings_by_series, states, sum(len(ts) for _, ts, _ in jobs)


def _as_rate(finding: Finding) -> Finding:
    """A counter's finding, explained as what it is: its rate, not its stored value."""
    return _explained_again(finding, baseline={**finding.baseline, "input": RATE_INPUT})


def _within_percent(finding: Finding) -> Finding:
    """A percentage's band (and alert threshold) goes no higher than 100, unless the series went higher."""
    if finding.baseline["highest_seen"] > 100:
        return finding
    suppression = {**finding.suppression, "alert_upper": min(finding.suppression["alert_upper"], 100.0)}
    return _explained_again(finding, upper=min(finding.upper, 100.0), suppression=suppression)


def _explained_again(finding: Finding, **changes) -> Finding:
    """The finding with `changes`, its sentence rebuilt from them."""
    changed = dataclasses.replace(finding, **changes)
    reason = reason_sentence(value=changed.value, expected=changed.expected, lower=changed.lower, upper=changed.upper,
                             at_us=changed.ts_us, detector=changed.detector, baseline=changed.baseline,
                             parameters=changed.parameters, suppression=changed.suppression)
    return dataclasses.replace(changed, reason=reason)


def _group(series_arr: np.ndarray, ts_arr: np.ndarray, value_arr: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Arrays sorted by series then time -> {series_id: (ts array, value array)}."""
    if len(series_arr) == 0:
        return {}
    boundaries = np.flatnonzero(np.diff(series_arr)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(series_arr)]])
    return {int(series_arr[s]): (ts_arr[s:e], value_arr[s:e]) for s, e in zip(starts, ends)}


# Evaluation owed "from the beginning" for a series that has no watermark yet.
_BEGINNING = datetime(1, 1, 2, tzinfo=EPOCH.tzinfo)


def _watermarks_advance(cursor, *, tenant: Tenant, plans: list[_Plan], newest: dict[int, int]) -> None:
    """Move each planned series' watermark to its newest point and mark the range being evaluated."""
    rows = []
    for plan in plans:
        old = to_us(plan.baseline.watermark) if plan.baseline is not None else None
        watermark = max(newest[plan.series_id], old) if old is not None else newest[plan.series_id]
        if plan.restart_us is not None:
            owed_from = from_us(plan.restart_us)
        elif old is not None:
            owed_from = from_us(old + 1)
        else:
            owed_from = _BEGINNING
        rows.append((plan.series_id, from_us(watermark), owed_from, plan.consumes_late))
    if not rows:
        return
    _execute_values(
        cursor,
        f"""
        INSERT INTO {BASELINE_TABLE} (tenant_id, series_id, method, status, window_points, sample_count,
                                        watermark, evaluating_from, late_points, updated_at)
        SELECT {int(tenant.id)}, v.series_id, 'trailing_median', 'warming', 0, 0, v.watermark, v.evaluating_from, 0, now()
        FROM (VALUES %s) AS v(series_id, watermark, evaluating_from)
        ON CONFLICT (tenant_id, series_id) DO UPDATE SET
            watermark = EXCLUDED.watermark, evaluating_from = EXCLUDED.evaluating_from
        """,
        [r[:3] for r in rows],
        template="(%s::bigint, %s::timestamptz, %s::timestamptz)",
        page_size=1000,
    )
    newest = max((r[1] for r in rows if r[1] is not None), default=None)
    if newest is not None:
        cursor.execute(
            f"INSERT INTO {DETECTION_STATE_TABLE} (tenant_id, watermark_max) VALUES (%s, %s) "
            "ON CONFLICT (tenant_id) DO UPDATE SET watermark_max = "
            "GREATEST(anomalies_detectionstate.watermark_max, EXCLUDED.watermark_max)",
            [tenant.id, newest],
        )
    consumed = [r[0] for r in rows if r[3]]
    if consumed:
        cursor.execute(
            f"UPDATE {BASELINE_TABLE} SET late_from = NULL, late_points = 0 WHERE tenant_id = %s AND series_id = ANY(%s)",
            [tenant.id, consumed],
        )


def _anomalies_write(cursor, *, tenant: Tenant, run: DetectionRun, findings_by_series, rebuild: dict[int, int]) -> int:
    """Replace re-evaluated ranges and insert findings; returns how many anomalies are new."""
    if rebuild:
        # One statement for every re-evaluated series; anomalies found again stay (with their triage status).
        kept = [(series_id, from_us(f.ts_us)) for series_id in rebuild
                for f in findings_by_series.get(series_id, [])]
        cursor.execute(
            f"""
            DELETE FROM {ANOMALY_TABLE} a
            USING unnest(%s::bigint[], %s::timestamptz[]) AS r(series_id, since)
            WHERE a.tenant_id = %s AND a.series_id = r.series_id AND a.ts >= r.since
              AND NOT EXISTS (SELECT 1 FROM unnest(%s::bigint[], %s::timestamptz[]) AS k(series_id, ts)
                              WHERE k.series_id = a.series_id AND k.ts = a.ts)
            """,
            [list(rebuild), [from_us(us) for us in rebuild.values()], tenant.id,
             [series_id for series_id, _ in kept], [ts for _, ts in kept]],
        )
    rows = []
    now = timezone.now()
    mutes = anomalies_selectors.mute_windows(
        tenant=tenant, series_ids=[sid for sid, findings in findings_by_series.items() if findings])
    for series_id, findings in findings_by_series.items():
        windows = mutes.get(series_id, ())
        for f in findings:
            rows.append((
                tenant.id, series_id, from_us(f.ts_us), f.value, f.expected, f.lower, f.upper, f.score,
                Anomaly.severity_for(f.score), Anomaly.STATUS_OPEN, f.detector,
                orjson.dumps(f.parameters).decode(), orjson.dumps(f.baseline).decode(),
                orjson.dumps(f.suppression).decode(), f.reason, run.id, now,
                any(start <= f.ts_us < end for start, end in windows),
                from_us(f.baseline["drift_started_us"]) if f.baseline.get("drift_started_us") is not None else None,
                f.escalation, from_us(f.alarm_since_us) if f.alarm_since_us is not None else None,
            ))
    if not rows:
        return 0
    inserted = _execute_values(
        cursor,
        f"""
        INSERT INTO {ANOMALY_TABLE} (tenant_id, series_id, ts, value, expected, lower, upper, score, severity,
            status, detector, parameters, baseline_stats, suppression, reason, run_id, created_at, muted,
            drift_started_at, escalation, alarm_started_at)
        VALUES %s
        ON CONFLICT (tenant_id, series_id, ts) DO UPDATE SET
            value = EXCLUDED.value, expected = EXCLUDED.expected, lower = EXCLUDED.lower, upper = EXCLUDED.upper,
            score = EXCLUDED.score, severity = EXCLUDED.severity, detector = EXCLUDED.detector,
            parameters = EXCLUDED.parameters, baseline_stats = EXCLUDED.baseline_stats,
            suppression = EXCLUDED.suppression, reason = EXCLUDED.reason, muted = EXCLUDED.muted,
            drift_started_at = EXCLUDED.drift_started_at, escalation = EXCLUDED.escalation,
            alarm_started_at = EXCLUDED.alarm_started_at
        RETURNING (xmax = 0)
        """,
        rows,
        template="(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, %s, "
                 "%s)",
        fetch=True,
        page_size=1000,
    )
    # xmax = 0 marks a freshly inserted row; an updated one was already there.
    return sum(1 for (is_new,) in inserted if is_new)


_BASELINE_COLUMNS = (
    ("series_id", "int8"), ("status", "text"), ("method", "text"), ("window_points", "int4"),
    ("sample_count", "int4"), ("median", "float8"), ("mad", "float8"), ("scale", "float8"), ("lower", "float8"),
    ("upper", "float8"), ("first_ts", "timestamptz_us"), ("recurring", "text"), ("checkpoint", "bytea"),
    ("state", "text"), ("state_since", "timestamptz_us"), ("out_of_band", "bool"), ("interval_seconds", "float8"),
)


def _baselines_write(cursor, *, tenant: Tenant, states: dict, configs: dict[int, DetectionConfig]) -> None:
    """Every evaluated series' baseline and checkpoint, through a binary COPY (a checkpoint is
    kilobytes; as a SQL literal it would be hex-escaped and parsed)."""
    rows = []
    for series_id, (state, snapshot) in states.items():
        rows.append((
            series_id, snapshot.status, "seasonal_median" if snapshot.seasonal else "trailing_median",
            configs[series_id].window_points, snapshot.samples, snapshot.median, snapshot.mad,
            snapshot.scale, snapshot.lower, snapshot.upper, state.first_ts_us, orjson.dumps(snapshot.recurring).decode(),
            state.to_bytes(), snapshot.state, snapshot.state_since_us, snapshot.out_of_band,
            snapshot.interval_us / 1_000_000 if snapshot.interval_us is not None else None,
        ))
    if not rows:
        return
    names = [name for name, _ in _BASELINE_COLUMNS]
    cursor.execute(
        "CREATE TEMP TABLE IF NOT EXISTS baseline_updates (series_id bigint, status text, method text, "
        "window_points int, sample_count int, median float8, mad float8, scale float8, lower float8, upper float8, "
        "first_ts timestamptz, recurring text, checkpoint bytea, state text, state_since timestamptz, "
        "out_of_band boolean, interval_seconds float8) ON COMMIT DELETE ROWS"
    )
    # Empty unless this runs inside a caller's longer transaction (ON COMMIT has not fired yet).
    cursor.execute("DELETE FROM baseline_updates")
    pgcopy.copy(cursor,
        f"COPY baseline_updates ({', '.join(names)}) FROM STDIN WITH (FORMAT binary)",
        io.BytesIO(pgcopy.encode_rows(rows, tuple(kind for _, kind in _BASELINE_COLUMNS))),
    )
    cursor.execute(
        f"""
        UPDATE {BASELINE_TABLE} b SET
            status = v.status, method = v.method, window_points = v.window_points, sample_count = v.sample_count,
            median = v.median, mad = v.mad, scale = v.scale, lower = v.lower, upper = v.upper, first_ts = v.first_ts,
            recurring = v.recurring::jsonb, checkpoint = v.checkpoint, state = v.state, state_since = v.state_since,
            out_of_band = v.out_of_band, interval_seconds = v.interval_seconds, evaluating_from = NULL, updated_at = now()
        FROM baseline_updates v
        WHERE b.tenant_id = %s AND b.series_id = v.series_id
        """,
        [tenant.id],
    )


def detection_figures() -> list:
    """Scrape-time gauges of detection for /metrics: lag, late points waiting and series per alarm state,
    per tenant."""
    lag = GaugeMetricFamily("cloudwatchdog_detection_lag_seconds", "Now minus the newest point detection has "
                            "evaluated for the tenant: every point after it is still unevaluated.", labels=["tenant"])
    late = GaugeMetricFamily("cloudwatchdog_late_points_waiting", "Points that arrived behind a series' watermark "
                             "and wait for re-evaluation or a replay.", labels=["tenant"])
    states = GaugeMetricFamily("cloudwatchdog_series_state", "Series of the tenant in each alarm state (ok, alarm, "
                               "no_data, warming).", labels=["tenant", "state"])
    now = timezone.now()
    for slug, watermark, late_points in anomalies_selectors.detection_progress():
        if watermark is not None:
            lag.add_metric([slug], max((now - watermark).total_seconds(), 0.0))
        late.add_metric([slug], late_points)
    for slug, state, count in anomalies_selectors.series_state_counts():
        states.add_metric([slug, state], count)
    return [lag, late, states]
