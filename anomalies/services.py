"""Writes for detection: `detection_run` (the one detection pass every trigger calls), the
late-point marker run by ingest, and anomaly triage.

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
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import numpy as np
import orjson
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from psycopg2.extras import execute_values

from anomalies import alerting
from anomalies import selectors as anomalies_selectors
from anomalies.engine import DetectionConfig, Finding, SeriesState, detect_many, reason_sentence, restart_at
from anomalies.models import (
    ANOMALY_TABLE, BASELINE_TABLE, DETECTION_STATE_TABLE, Anomaly, AnomalyEvent, Baseline, DetectionRule, DetectionRun,
    SeriesMute,
)
from cloudwatchdog import locks
from cloudwatchdog.locks import Lock
from cloudwatchdog import pgcopy, telemetry
from metrics import selectors as metrics_selectors
from metrics.counters import RATE_INPUT
from cloudwatchdog.timeutil import EPOCH, from_us, sql_at, sql_us, to_us
from metrics.services import IngestHook
from tenants.models import Tenant

logger = logging.getLogger(__name__)

# A shard's run holds the tenant's run lock shared (whole-tenant runs hold it exclusively) and its
# shard's lock (tenant id × 256 + shard) exclusively: shards of one tenant run side by side.
MAX_SHARDS = 256
_US = timedelta(microseconds=1)


class RunInProgress(Exception):
    """Another run of this tenant holds the run lock."""

    def __init__(self, running_run_id: UUID | None, run: DetectionRun):
        super().__init__("a detection run of this tenant is already going")
        self.running_run_id = running_run_id
        self.run = run


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


class QueueUnavailable(Exception):
    """The task queue (Redis) did not take a task."""


def detection_run_enqueue(*, tenant: Tenant, trigger: str = "api_async", replay_since: datetime | None = None,
                          ) -> DetectionRun:
    """Record a queued run (a replay from `replay_since` when given) and send its Celery task once
    committed; the task picks it up by run id.

    Raises QueueUnavailable when the broker does not take the task; the run is then closed as
    failed, so no run stays queued forever.
    """
    from anomalies.tasks import detection_run_task  # tasks import this module

    run = DetectionRun.objects.create(tenant=tenant, trigger=trigger, status=DetectionRun.STATUS_QUEUED,
                                      replay_since=replay_since)

    def send():
        try:
            detection_run_task.delay(tenant_id=tenant.id, run_id=str(run.run_id), trigger=trigger,
                                     replay_since=replay_since.isoformat() if replay_since else None)
        except Exception as error:  # kombu's OperationalError, redis-py's errors: the broker is down
            DetectionRun.objects.for_tenant(tenant).filter(id=run.id, status=DetectionRun.STATUS_QUEUED).update(
                status=DetectionRun.STATUS_FAILED, error="the task queue was unavailable", finished_at=timezone.now())
            run.status = DetectionRun.STATUS_FAILED
            raise QueueUnavailable(str(error)) from error

    transaction.on_commit(send)
    return run


def detection_run(
    *,
    tenant: Tenant,
    trigger: str,
    run_id: UUID | None = None,
    wait_seconds: float = 0.0,
    replay_since: datetime | None = None,
    settle_seconds: float = 0.0,
    shard: int | None = None,
) -> DetectionRun:
    """One detection pass over the tenant's new (and late, or replayed) points; safe to overlap.

    With `settle_seconds`, points newer than that are left for the next pass, so batches still
    in flight from agents are not turned into late points (scheduled runs use it). With `shard`,
    only the series whose id modulo DETECTION_SHARDS is `shard` (beat splits a large tenant so).
    Raises RunInProgress when another run of the tenant holds the lock past `wait_seconds`.
    """
    if run_id is not None:
        run = DetectionRun.objects.for_tenant(tenant).get(run_id=run_id)
    else:
        run = DetectionRun.objects.create(tenant=tenant, trigger=trigger, status=DetectionRun.STATUS_QUEUED, shard=shard)
    if replay_since is not None:
        run.replay_since = replay_since
    locked = _shard_lock_acquire(tenant.id, shard) if shard is not None else _run_lock_acquire(tenant.id, wait_seconds)
    if not locked:
        running = (
            DetectionRun.objects.for_tenant(tenant).filter(status=DetectionRun.STATUS_RUNNING)
            .order_by("-started_at").first()
        )
        run.status = DetectionRun.STATUS_SKIPPED
        run.error = f"another run of this tenant was going ({running.run_id if running else 'unknown'})"
        run.finished_at = timezone.now()
        run.save()
        raise RunInProgress(running.run_id if running else None, run)
    started = time.monotonic()
    try:
        _interrupted_runs_close(tenant=tenant, current=run)
        run.status = DetectionRun.STATUS_RUNNING
        run.started_at = timezone.now()
        run.save()
        _evaluate(tenant=tenant, run=run, replay_since=replay_since, settle_seconds=settle_seconds, shard=shard)
        run.status = DetectionRun.STATUS_SUCCEEDED
    except Exception as error:
        run.status = DetectionRun.STATUS_FAILED
        run.error = f"{type(error).__name__}: {error}"  # for support staff in the admin; the API says less
        logger.exception("detection run %s of tenant %s failed", run.run_id, tenant.slug)
        raise
    finally:
        try:
            run.finished_at = timezone.now()
            run.duration_ms = int((time.monotonic() - started) * 1000)
            if not connection.needs_rollback:  # inside a broken outer transaction nothing more can be written
                run.save()
        finally:
            # Even if the summary could not be saved: a lock left on a pooled connection would
            # skip the tenant's runs until that connection is recycled.
            _shard_lock_release(tenant.id, shard) if shard is not None else _run_lock_release(tenant.id)
            telemetry.detection_run_counted(tenant_slug=tenant.slug, trigger=trigger, status=run.status,
                                            seconds=time.monotonic() - started)
    return run


@dataclass(frozen=True)
class TenantRunOutcome:
    slug: str
    status: str  # the run's status, or "skipped" (a run was going) or "failed"
    run: DetectionRun | None


def detection_run_all(*, tenants, trigger: str, wait_seconds: float = 0.0, replay_since: datetime | None = None,
                      settle_seconds: float = 0.0) -> list[TenantRunOutcome]:
    """One pass for each of the tenants, in turn: a tenant whose run is going is skipped, and one
    whose run fails is logged and counted while the others go on."""
    outcomes = []
    for tenant in tenants:
        try:
            run = detection_run(tenant=tenant, trigger=trigger, wait_seconds=wait_seconds, replay_since=replay_since,
                                settle_seconds=settle_seconds)
            outcomes.append(TenantRunOutcome(tenant.slug, run.status, run))
        except RunInProgress as busy:
            outcomes.append(TenantRunOutcome(tenant.slug, "skipped", busy.run))
        except Exception:  # one tenant's failure must not stop the others; detection_run logged it
            outcomes.append(TenantRunOutcome(tenant.slug, "failed", None))
    return outcomes


def _interrupted_runs_close(*, tenant: Tenant, current: DetectionRun) -> None:
    """Mark as failed the tenant's runs still "running" whose process died (this one holds the lock,
    so no other can be going: of its shard, or any for a whole-tenant run); `evaluating_from`
    makes this run redo their work."""
    running = DetectionRun.objects.for_tenant(tenant).filter(status=DetectionRun.STATUS_RUNNING)
    if current.shard is not None:
        running = running.filter(shard=current.shard)
    running.exclude(id=current.id).update(
        status=DetectionRun.STATUS_FAILED, finished_at=timezone.now(),
        error=f"interrupted: its process ended before it finished; run {current.run_id} redid its work")


def _run_lock_acquire(tenant_id: int, wait_seconds: float) -> bool:
    """Take the tenant's run lock, waiting up to `wait_seconds` if this is the only caller waiting.

    A second caller that would wait gives up at once: each waiter holds a web thread (or a worker)
    for the whole wait, and a tenant sending many synchronous runs must not hold them all.
    """
    with connection.cursor() as cursor:
        if locks.try_lock(cursor, Lock.RUN, tenant_id):
            return True
        if wait_seconds <= 0:
            return False
        if not locks.try_lock(cursor, Lock.RUN_WAITER, tenant_id):
            return False
        try:
            with transaction.atomic():
                cursor.execute("SET LOCAL lock_timeout = %s", [f"{int(wait_seconds * 1000)}ms"])
                locks.lock(cursor, Lock.RUN, tenant_id)
            return True
        except OperationalError:
            return False
        finally:
            locks.unlock(cursor, Lock.RUN_WAITER, tenant_id)


def _shard_lock_acquire(tenant_id: int, shard: int) -> bool:
    """The tenant's run lock shared, then its shard's lock; never waits (beat's next pass comes)."""
    if not 0 <= shard < MAX_SHARDS:
        raise ValueError(f"shard must be from 0 to {MAX_SHARDS - 1}")
    with connection.cursor() as cursor:
        if not locks.try_lock(cursor, Lock.RUN, tenant_id, shared=True):
            return False
        if locks.try_lock(cursor, Lock.RUN_SHARD, tenant_id * MAX_SHARDS + shard):
            return True
        locks.unlock(cursor, Lock.RUN, tenant_id, shared=True)
        return False


def _shard_lock_release(tenant_id: int, shard: int) -> None:
    with connection.cursor() as cursor:
        locks.unlock(cursor, Lock.RUN_SHARD, tenant_id * MAX_SHARDS + shard)
        locks.unlock(cursor, Lock.RUN, tenant_id, shared=True)


def _run_lock_release(tenant_id: int) -> None:
    with connection.cursor() as cursor:
        locks.unlock(cursor, Lock.RUN, tenant_id)


@dataclass
class _Plan:
    series_id: int
    baseline: Baseline | None
    restart_us: int | None  # evaluate from this time inclusive, state rebuilt from history
    consumes_late: bool


def _plan(tenant: Tenant, baselines: dict[int, Baseline], series_ids: list[int], replay_us: int | None) -> list[_Plan]:
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


def _evaluate(*, tenant: Tenant, run: DetectionRun, replay_since: datetime | None, settle_seconds: float,
              shard: int | None = None) -> None:
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
    from anomalies.tasks import notifications_deliver_task  # tasks import this module

    try:
        notifications_deliver_task.delay()
    except Exception as error:  # the broker is down: the rows wait in the outbox
        logger.warning("notifications queued, not signalled (beat's sweep will send them): %s", error)


def _watermarks_fix(*, tenant: Tenant, replay_us: int | None, cutoff_us: int | None,
                    shard: int | None = None) -> tuple[list[_Plan], dict]:
    """Phase 1, while ingest of this tenant waits (milliseconds): fix each series' new watermark at
    its newest committed point. A point committed later at or behind it is marked late by
    late_points_hook; a newer one is read by the next run. Returns the plans and newest points."""
    with transaction.atomic(), connection.cursor() as cursor:
        locks.xact_lock(cursor, Lock.INGEST, tenant.id)
        baselines = {b.series_id: b for b in Baseline.objects.for_tenant(tenant).defer("checkpoint")}
        newest = metrics_selectors.series_newest_ts(tenant=tenant, until_us=cutoff_us)
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
    points = _group(*metrics_selectors.points_after(tenant=tenant, after_us=after_us, until_us=until_us))
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
    execute_values(
        cursor.cursor,
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
    inserted = execute_values(
        cursor.cursor,
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
    cursor.cursor.copy_expert(
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


def anomaly_status_set(*, tenant: Tenant, anomaly_ids: list[int], status: str, actor: str, note: str = "") -> int:
    """Set the triage status of the tenant's anomalies, recording an event (who, from, to, note) for each
    one changed; returns how many changed. A note on an anomaly already in that status is recorded too."""
    if status not in dict(Anomaly.STATUSES):
        raise ValueError(f"unknown status {status!r}")
    with transaction.atomic():
        anomalies = list(Anomaly.objects.for_tenant(tenant).filter(id__in=anomaly_ids).select_for_update()
                         .only("id", "status"))
        changed = [a for a in anomalies if a.status != status]
        noted = changed if not note else anomalies
        AnomalyEvent.objects.bulk_create([
            AnomalyEvent(tenant=tenant, anomaly_id=a.id, actor=actor[:200], from_status=a.status, to_status=status,
                         note=note)
            for a in noted
        ])
        Anomaly.objects.for_tenant(tenant).filter(id__in=[a.id for a in changed]).update(status=status)
    return len(changed)


def tenant_detection_config_set(*, tenant: Tenant, overrides: dict) -> None:
    """Save a tenant's detection overrides after the engine accepted them (ValueError says why not)."""
    if not isinstance(overrides, dict):
        raise ValueError("give an object of setting: value pairs")
    DetectionConfig.from_overrides(overrides)
    tenant.detection_config = overrides
    tenant.save(update_fields=["detection_config"])


def series_mute(*, tenant: Tenant, series_id: int, start: datetime, end: datetime, actor: str, note: str = "") -> SeriesMute:
    """Mute one of the tenant's series over [start, end): its anomalies there are stored, marked muted
    (those already stored in the period too)."""
    if end <= start:
        raise ValueError("the end of a mute must be after its start")
    series = metrics_selectors.series_get(tenant=tenant, series_id=series_id)
    if series is None:
        raise ValueError("no such series")
    with transaction.atomic():
        mute = SeriesMute.objects.create(tenant=tenant, series=series, start=start, end=end, actor=actor[:200],
                                         note=note)
        Anomaly.objects.for_tenant(tenant).filter(series=series, ts__gte=start, ts__lt=end).update(muted=True)
    return mute


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


def detection_runs_prune(*, older_than: timedelta = timedelta(days=7), now: datetime | None = None) -> int:
    """Delete finished runs older than `older_than` (beat makes one per tenant a minute); returns how many."""
    cutoff = (now or timezone.now()) - older_than
    deleted, _ = (
        DetectionRun.objects.unscoped()
        .filter(requested_at__lt=cutoff, status__in=[DetectionRun.STATUS_SUCCEEDED, DetectionRun.STATUS_SKIPPED,
                                                      DetectionRun.STATUS_FAILED])
        .delete()
    )
    return deleted


RULE_FIELDS = ("name", "service", "metric_name", "resource_id", "tags", "overrides")
# No series has more tags, or longer tag names or values, than a tenant's limits may ever allow, so a
# rule beyond these could match nothing.
RULE_MAX_TAGS = settings.TENANT_LIMIT_CEILINGS["MAX_TAGS"]
RULE_MAX_TAG_NAME = settings.TENANT_LIMIT_CEILINGS["MAX_NAME_BYTES"]
RULE_MAX_TAG_VALUE = settings.TENANT_LIMIT_CEILINGS["MAX_VALUE_BYTES"]


class DetectionRuleInvalid(ValueError):
    """A rule refused: `errors` names each field at fault and why."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{field}: {', '.join(reasons)}" for field, reasons in errors.items()))
        self.errors = errors


def _text_problem(text: str) -> str | None:
    # PostgreSQL stores neither NUL (in jsonb or text) nor a lone surrogate (not UTF-8).
    if "\x00" in text:
        return "must not contain NUL characters"
    if any("\ud800" <= c <= "\udfff" for c in text):
        return "must not contain lone surrogates (not UTF-8)"
    return None


def _printable(text: str) -> str:
    """`text` safe to answer with: a lone surrogate of the input would break the JSON answer's UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def tags_problem(tags) -> str | None:
    """Why tags to match series by (a rule's, a silence's) cannot be stored, or None: a flat object of at
    most MAX_TAGS bounded strings, none holding what PostgreSQL refuses."""
    if not isinstance(tags, dict):
        return "must be an object of tag name: value strings"
    if len(tags) > RULE_MAX_TAGS:
        return f"has {len(tags)} tags; the most is {RULE_MAX_TAGS}"
    for key, value in tags.items():
        if not isinstance(key, str) or not key:
            return "tag names must be non-empty strings"
        if not isinstance(value, str):
            return "tag values must be strings"
        if len(key) > RULE_MAX_TAG_NAME or len(value) > RULE_MAX_TAG_VALUE:
            return f"tag names may have at most {RULE_MAX_TAG_NAME} characters, values {RULE_MAX_TAG_VALUE}"
        problem = _text_problem(key) or _text_problem(value)
        if problem:
            return problem
    return None


def detection_rule_errors(*, tags, overrides) -> dict[str, list[str]]:
    """Why a rule's tags or overrides cannot be stored, by field (empty: they can): tags a flat object
    of bounded strings, overrides settings the engine accepts."""
    errors = {}
    problem = tags_problem(tags)
    if problem:
        errors["tags"] = [problem]
    if not isinstance(overrides, dict) or not overrides:
        errors["overrides"] = ["must be an object of at least one setting: value pair, e.g. {\"direction\": \"above\"}"]
    elif not all(isinstance(name, str) for name in overrides):
        errors["overrides"] = ["setting names must be strings"]
    else:
        try:
            DetectionConfig.from_overrides(overrides)
        except ValueError as error:
            errors["overrides"] = [_printable(str(error))]
    return errors


def detection_rule_create(*, tenant: Tenant, data: dict) -> DetectionRule:
    """A tenant's new rule, if its tags and overrides are valid and the tenant is under
    DETECTION_RULES_PER_TENANT (DetectionRuleInvalid says why not); it applies from the next run."""
    values = {name: data[name] for name in RULE_FIELDS if name in data}
    errors = detection_rule_errors(tags=values.get("tags", {}), overrides=values.get("overrides", {}))
    if errors:
        raise DetectionRuleInvalid(errors)
    most_rules = settings.CLOUDWATCHDOG["DETECTION_RULES_PER_TENANT"]
    with transaction.atomic():
        with connection.cursor() as cursor:
            locks.xact_lock(cursor, Lock.RULES, tenant.id)
        if DetectionRule.objects.for_tenant(tenant).count() >= most_rules:
            raise DetectionRuleInvalid({"detection_rules": [
                f"this tenant has {most_rules} rules, the most it may have (DETECTION_RULES_PER_TENANT); "
                "delete or widen one first"]})
        return DetectionRule.objects.create(tenant=tenant, **values)


def detection_rule_update(*, rule: DetectionRule, data: dict) -> DetectionRule:
    """Change the fields given (overrides and tags are replaced whole, not merged); DetectionRuleInvalid
    says why not. It applies from the next run."""
    changes = {name: data[name] for name in RULE_FIELDS if name in data}
    errors = detection_rule_errors(tags=changes.get("tags", rule.tags), overrides=changes.get("overrides", rule.overrides))
    if errors:
        raise DetectionRuleInvalid(errors)
    for name, value in changes.items():
        setattr(rule, name, value)
    rule.save()
    return rule


def detection_rule_delete(*, rule: DetectionRule) -> None:
    rule.delete()
