"""Writes for metrics: series resolution and the points ingest hot path (validation, limits, the
series each point belongs to); the point store itself, retention included, is metrics.storage."""
from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec
import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from cloudwatchdog import locks, telemetry
from cloudwatchdog.locks import Lock
from cloudwatchdog.timeutil import format_iso, to_us
from metrics import storage
from metrics.ingest import MAX_ABS_VALUE, Event, EventChecker, Limits, series_key_hash, typed_events, value_error
from metrics.models import INGEST_REJECTION_TABLE, SERIES_TABLE
from tenants.models import Tenant

logger = logging.getLogger(__name__)
from tenants.ratelimit import inflight_admit, inflight_ended, inflight_finish


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)
    nans_kept: int = 0  # NaN samples stored apart, for PromQL (keep_nan)
    stale_kept: int = 0  # staleness markers stored apart, for PromQL (keep_nan)
    stale_dropped: int = 0  # staleness markers of series that do not exist: nothing to end


class _TenantSeries:
    __slots__ = ("ids", "get", "variants", "bytes")

    def __init__(self):
        self.ids: dict[tuple, int] = {}
        self.get = self.ids.get
        self.variants: dict[int, int] = {}
        self.bytes = 0


class _SeriesCache:
    """Per-process map of series identities as sent -> series id, one map per tenant, bounded in bytes.

    A known series costs one dict lookup: the key is the identity as sent (service, resource_id,
    metric_name, tags JSON bytes), and only an unknown one is validated, hashed and looked up in the
    database (the truth). What one tenant sends cannot grow it without bound: at most
    VARIANTS_PER_SERIES spellings of one series are kept (whitespace or key-order variants of a tag
    map are one series; further ones go to the database each time), a tenant's map that passes
    `tenant_bytes` starts over, and when all together pass `total_bytes` the largest one does.
    Starting over is cheaper on the hot path than LRU bookkeeping on every hit.
    """

    VARIANTS_PER_SERIES = 4
    _ENTRY_OVERHEAD = 320  # tuple, dict slot, str and int headers of one entry, in bytes

    def __init__(self, *, tenant_bytes: int = 64 << 20, total_bytes: int = 256 << 20):
        self.tenant_bytes = tenant_bytes
        self.total_bytes = total_bytes
        self._tenants: dict[int, _TenantSeries] = {}
        self._total = 0

    def for_tenant(self, tenant_id: int) -> _TenantSeries:
        entries = self._tenants.get(tenant_id)
        if entries is None:
            entries = self._tenants[tenant_id] = _TenantSeries()
        return entries

    def put(self, tenant_id: int, key: tuple, series_id: int) -> None:
        entries = self.for_tenant(tenant_id)
        if key in entries.ids or entries.variants.get(series_id, 0) >= self.VARIANTS_PER_SERIES:
            return
        size = self._ENTRY_OVERHEAD + sum(len(part) for part in key)
        if entries.bytes + size > self.tenant_bytes:
            self._forget(tenant_id)
            entries = self.for_tenant(tenant_id)
        while self._total + size > self.total_bytes and self._tenants:
            self._forget(max(self._tenants, key=lambda t: self._tenants[t].bytes))
            entries = self.for_tenant(tenant_id)
        entries.ids[key] = series_id
        entries.variants[series_id] = entries.variants.get(series_id, 0) + 1
        entries.bytes += size
        self._total += size

    def bytes_used(self) -> int:
        return self._total

    def _forget(self, tenant_id: int) -> None:
        entries = self._tenants.pop(tenant_id, None)
        if entries is not None:
            self._total -= entries.bytes

    def clear(self) -> None:
        self._tenants.clear()
        self._total = 0


series_cache = _SeriesCache()


def ingest_limits(*, tenant: Tenant) -> Limits:
    return Limits(
        max_events=tenant.limit("MAX_EVENTS_PER_REQUEST"),
        max_body_bytes=tenant.limit("MAX_BODY_BYTES"),
        max_future_seconds=tenant.limit("MAX_FUTURE_SECONDS"),
        max_tags=tenant.limit("MAX_TAGS"),
        max_name_bytes=tenant.limit("MAX_NAME_BYTES"),
        max_value_bytes=tenant.limit("MAX_VALUE_BYTES"),
        max_new_partitions=tenant.limit("MAX_NEW_PARTITIONS_PER_REQUEST"),
    )


def earliest_timestamp() -> datetime:
    """The earliest timestamp storage accepts (EARLIEST_TIMESTAMP)."""
    return settings.CLOUDWATCHDOG["EARLIEST_TIMESTAMP"]


def _oldest_allowed(tenant: Tenant, now: datetime) -> tuple[int, str]:
    """The earliest time (µs) this tenant's points may have now, and the reason given for older ones."""
    earliest = earliest_timestamp()
    limits = [(earliest, f"is before the earliest accepted timestamp, {format_iso(earliest)} (EARLIEST_TIMESTAMP)")]
    if tenant.retention_days:
        limits.append((now - timedelta(days=tenant.retention_days),
                       f"is older than this tenant's retention of {tenant.retention_days} days"))
    global_retention = settings.CLOUDWATCHDOG.get("RETENTION_DAYS")
    if global_retention:
        limits.append((now - timedelta(days=global_retention), f"is older than the retention of {global_retention} days"))
    if tenant.max_point_age_days:
        limits.append((now - timedelta(days=tenant.max_point_age_days),
                       f"is older than this tenant's maximum age of {tenant.max_point_age_days} days"))
    oldest, reason = max(limits, key=lambda limit: limit[0])
    return to_us(oldest), reason


def ingest_wait(*, tenant: Tenant) -> float | None:
    """Seconds this process knows the tenant's ingest must wait, from what its costly requests were charged
    (ingest_finish): checked before a body is read, at no cost."""
    until = _ingest_blocked_until.get(tenant.id)
    if until is None:
        return None
    wait = until - time.monotonic()
    if wait <= 0:
        _ingest_blocked_until.pop(tenant.id, None)
        return None
    return wait


@dataclass(frozen=True)
class Admission:
    """An ingest request's admission: `slot` when admitted, else why not (`refusal`: 'inflight' or 'rate')
    and the seconds to wait."""

    slot: str | None
    refusal: str = ""
    wait: float = 0.0


def ingest_admit(*, tenant: Tenant) -> Admission:
    """Admit an ingest request before its body is read, in one Redis call: one of the tenant's
    INGEST_INFLIGHT_PER_TENANT slots, a REQUESTS_PER_MINUTE token, and a points bucket not in debt (the
    request's points are charged when it ends, ingest_finish). Redis down: admitted by the process's buckets."""
    wait = ingest_wait(tenant=tenant)
    if wait is not None:
        return Admission(None, "rate", wait)
    slot = uuid.uuid4().hex
    per_minute = tenant.limit("REQUESTS_PER_MINUTE")
    refusal, wait = inflight_admit(
        tenant_id=tenant.id, requests=(per_minute / 60, per_minute),
        points=(tenant.limit("POINTS_PER_SECOND"), tenant.limit("POINTS_BURST")),
        cap=tenant.limit("INGEST_INFLIGHT_PER_TENANT"), ttl_seconds=settings.CLOUDWATCHDOG["INGEST_INFLIGHT_TTL_SECONDS"],
        member=slot)
    return Admission(None, refusal, wait) if refusal else Admission(slot)


def ingest_finish(*, tenant: Tenant, slot: str, cpu_seconds: float, points: int) -> None:
    """End an admitted ingest request, off its path (a thread of this process sends it): free its slot and
    charge its points, or its CPU at INGEST_POINTS_PER_CPU_SECOND when that is more (a refused or hostile
    request costs its tenant what the same CPU spent storing points would, and nobody else anything). A
    tenant left in debt waits (ingest_wait, and the next admission) until its bucket refills."""
    cost = max(points, cpu_seconds * settings.CLOUDWATCHDOG["INGEST_POINTS_PER_CPU_SECOND"])
    charges = [_points_bucket(tenant, cost)] if cost > 0 else []
    tenant_id = tenant.id

    def send() -> None:
        levels = inflight_finish(tenant_id=tenant_id, member=slot, charges=charges)
        waits = [(_NEXT_REQUEST_NEEDS[name] - level) / rate
                 for (name, rate, _, _), level in zip(charges, levels) if level < _NEXT_REQUEST_NEEDS[name]]
        if waits:
            if len(_ingest_blocked_until) > 10_000:  # tenants come and go
                _ingest_blocked_until.clear()
            _ingest_blocked_until[tenant_id] = time.monotonic() + max(waits)

    inflight_ended(tenant_id=tenant_id, member=slot)
    _finisher.submit(send)


class _Finisher:
    """Runs ingest_finish's Redis calls on a daemon thread of this process, in order. A worker that dies with
    some queued leaks their slots until INGEST_INFLIGHT_TTL_SECONDS and loses their charges."""

    MAX_QUEUED = 10_000  # past it (Redis slow or gone), the request sends its own: back pressure

    def __init__(self):
        self._queue: queue.Queue | None = None
        self._pid = None
        self._lock = threading.Lock()

    def submit(self, job) -> None:
        if not settings.INGEST_FINISH_IN_BACKGROUND:
            job()
            return
        if self._pid != os.getpid():  # first use in this process (gunicorn forks workers)
            with self._lock:
                if self._pid != os.getpid():
                    self._queue = queue.Queue()
                    threading.Thread(target=self._run, args=(self._queue,), name="ingest-finish", daemon=True).start()
                    self._pid = os.getpid()
        if self._queue.qsize() >= self.MAX_QUEUED:
            job()
            return
        self._queue.put(job)

    @staticmethod
    def _run(jobs: queue.Queue) -> None:
        while True:
            job = jobs.get()
            try:
                job()
            except Exception:  # a failed charge must not stop the thread; the limiter logs Redis failures
                logger.exception("ingest finish failed")
            finally:
                jobs.task_done()

    def wait(self) -> None:
        """Until every queued finish was sent (tests)."""
        if self._queue is not None and self._pid == os.getpid():
            self._queue.join()


_finisher = _Finisher()
ingest_finishes_wait = _finisher.wait


# What the next request needs of each bucket: a request token, and a point.
_NEXT_REQUEST_NEEDS = {"requests": 1, "points": 1}
_ingest_blocked_until: dict[int, float] = {}


def _points_bucket(tenant: Tenant, cost: int) -> tuple[str, float, float, float]:
    return ("points", tenant.limit("POINTS_PER_SECOND"), tenant.limit("POINTS_BURST"), cost)


@dataclass
class _Batch:
    """The typed events of a request on their way to rows; `indices` maps batch positions to event indices."""

    events: list[Event]
    indices: range | list[int]
    errors_by_index: dict[int, dict]
    series_ids: list[int | None] = field(default_factory=list)
    identity_errors: dict[tuple, dict] = field(default_factory=dict)
    timestamps: list[int | str] = field(default_factory=list)
    usable: list[bool] | None = None  # whose time and value passed (None: all); only these may create a series
    nan: np.ndarray | None = None  # which values are NaN samples to keep apart (keep_nan; None: none)
    stale: np.ndarray | None = None  # which of those are staleness markers: they find a series, never create one

    def reject(self, position: int, errors: dict) -> None:
        self.errors_by_index.setdefault(self.indices[position], {}).update(errors)


def points_ingest(*, tenant: Tenant, events: list, now: datetime | None = None,
                  deltas: list[int] | None = None, keep_nan: bool = False, limits: Limits | None = None) -> IngestResult:
    """Store the valid events of a batch; each (series, ts) is stored once and the first write wins.
    `deltas`: the indices of events whose value is an increase (OTLP's delta temporality), stored as
    running totals (_deltas_accumulate). `keep_nan` (the agent protocols): NaN values are Prometheus
    samples, stored apart for PromQL (storage.nan_samples_write) in the points' transaction instead of
    refused; a staleness marker's series is found but never created.

    `limits`: the tenant's ingest_limits, when the caller has them already.

    Raises PartitionsBusy when a new partition could not be created in time (nothing was stored).
    """
    now = now or timezone.now()
    limits = limits or ingest_limits(tenant=tenant)
    oldest_us, oldest_reason = _oldest_allowed(tenant, now)
    now_us = to_us(now)
    checker = EventChecker(now_us=now_us, oldest_us=oldest_us, oldest_reason=oldest_reason, limits=limits)
    typed, errors_by_index = typed_events(events, limits)
    # The hot path is list comprehensions over the batch: a known series costs one dict lookup,
    # a timestamp text is parsed once however many events share it.
    if errors_by_index:
        indices = [i for i, event in enumerate(typed) if event is not None]
        batch = _Batch([typed[i] for i in indices], indices, errors_by_index)
    else:
        batch = _Batch(typed, range(len(typed)), errors_by_index)
    # Times and values first: a refused point must not create a series (which counts toward the limit).
    _timestamps_check(batch=batch, checker=checker)
    _values_check(batch=batch, keep_nan=keep_nan)
    _series_ids_find(tenant=tenant, batch=batch, checker=checker)
    _partitions_ensure(batch=batch, now_us=now_us, max_new_partitions=limits.max_new_partitions)
    if deltas:
        _deltas_accumulate(tenant=tenant, batch=batch, deltas=set(deltas))
    nan_rows, result = _nan_rows_of(batch)
    rows, result.duplicates = _rows_of(batch)
    if nan_rows is None:
        if rows is not None:
            _points_write(tenant=tenant, rows=rows, now_us=now_us, result=result)
    else:
        with transaction.atomic():
            if rows is not None:
                _points_write(tenant=tenant, rows=rows, now_us=now_us, result=result)
            result.nans_kept, result.stale_kept = storage.nan_samples_write(
                tenant_id=tenant.id, series_ids=nan_rows.series_ids, ts_us=nan_rows.ts_us, values=nan_rows.values)
        result.duplicates += len(nan_rows.series_ids) - result.nans_kept - result.stale_kept
    result.rejected = [{"index": index, "errors": errors_by_index[index]} for index in sorted(errors_by_index)]
    return result


def _points_write(*, tenant: Tenant, rows: storage.PointRows, now_us: int, result: IngestResult) -> None:
    result.accepted = storage.points_write(tenant_id=tenant.id, rows=rows,
                                          late_before_us=storage.late_before_us(tenant, now_us))
    result.duplicates += len(rows.series_ids) - result.accepted


def ingest_counted(*, tenant: Tenant, protocol: str, result: IngestResult | None,
                   refused_in_conversion: int = 0) -> None:
    """Count a request's points for /metrics: accepted (NaN samples and staleness markers apart), duplicate,
    rejected by the first field refused, dropped (staleness markers of series that do not exist)."""
    by_reason: dict[str, int] = {}
    for item in result.rejected if result else ():
        reason = next(iter(item["errors"]), "event")
        by_reason[reason] = by_reason.get(reason, 0) + 1
    if refused_in_conversion:
        by_reason["protocol"] = refused_in_conversion
    if by_reason:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {INGEST_REJECTION_TABLE} AS r (tenant_id, day, protocol, reason, count) "
                "SELECT %s, (now() AT TIME ZONE 'UTC')::date, %s, reason, n FROM unnest(%s::text[], %s::bigint[]) "
                "AS v(reason, n) ON CONFLICT (tenant_id, day, protocol, reason) DO UPDATE SET count = r.count + "
                "EXCLUDED.count",
                [tenant.id, protocol, list(by_reason), list(by_reason.values())],
            )
    telemetry.points_counted(tenant_slug=tenant.slug, protocol=protocol, accepted=result.accepted if result else 0,
                             duplicates=result.duplicates if result else 0, rejected_by_reason=by_reason,
                             nans=result.nans_kept if result else 0, stale=result.stale_kept if result else 0,
                             stale_dropped=result.stale_dropped if result else 0)


def ingest_figures() -> list:
    """Scrape-time gauges of ingest for /metrics: the rollup refresh's backlog per tenant."""
    backlog = GaugeMetricFamily("cloudwatchdog_rollup_backlog_batches", "Ingest transactions whose time ranges the "
                                "rollup refresh has not folded in yet.", labels=["tenant"])
    for slug, batches, _ in storage.rollup_backlog():
        backlog.add_metric([slug], batches)
    return [backlog]


def _series_ids_find(*, tenant: Tenant, batch: _Batch, checker: EventChecker) -> None:
    """Each event's series id: None where its identity is refused (the reason in identity_errors), or where
    it is new and the event is refused already (by its time or value), which creates no series but is still
    told what is wrong with its identity."""
    entries = series_cache.for_tenant(tenant.id)
    identities = [(e.service, e.resource_id, e.metric_name, bytes(e.tags)) for e in batch.events]
    cached = entries.get
    series_ids = [cached(identity) for identity in identities]
    if None in series_ids:
        usable, stale = batch.usable, batch.stale
        new, judged_only, looked_up = {}, {}, {}
        for k, identity in enumerate(identities):
            if series_ids[k] is None:
                if usable is None or usable[k]:
                    new[identity] = batch.events[k]
                elif stale is not None and stale[k] and batch.timestamps[k].__class__ is int:
                    looked_up[identity] = batch.events[k]
                else:
                    judged_only[identity] = batch.events[k]
        resolved: dict[tuple, int] = {}
        errors = _series_resolve(tenant=tenant, new=new, checker=checker, resolved=resolved)
        looked_up = {identity: event for identity, event in looked_up.items() if identity not in new}
        errors.update(_series_resolve(tenant=tenant, new=looked_up, checker=checker, resolved=resolved, create=False))
        for identity, event in judged_only.items():
            if identity not in new and identity not in looked_up and (problems := checker.identity(event)[0]):
                errors[identity] = problems
        batch.identity_errors = errors
        series_ids = [sid if sid is not None else resolved.get(identities[k]) for k, sid in enumerate(series_ids)]
        for k, sid in enumerate(series_ids):
            if sid is None and identities[k] in errors:
                batch.reject(k, errors[identities[k]])
    batch.series_ids = series_ids


def _timestamps_check(*, batch: _Batch, checker: EventChecker) -> None:
    """Each event's time in µs, or the reason it is refused."""
    texts = [e.timestamp for e in batch.events]
    parsed = {text: checker.timestamp(text) for text in set(texts)}
    batch.timestamps = [parsed[text] for text in texts]
    if any(ts.__class__ is str for ts in parsed.values()):
        for k, ts in enumerate(batch.timestamps):
            if ts.__class__ is str:
                batch.reject(k, {"timestamp": [ts]})


def _values_check(*, batch: _Batch, keep_nan: bool) -> None:
    """Refuses the values storage cannot hold, and notes which events are still usable (batch.usable) and,
    with keep_nan, which are NaN samples and staleness markers (batch.nan, batch.stale)."""
    values = np.fromiter((e.value for e in batch.events), np.float64, len(batch.events))
    # NaN fails the comparison too; the typed decoder already refused non-finite numbers.
    value_ok = np.abs(values) <= MAX_ABS_VALUE
    storable = value_ok
    if keep_nan and not value_ok.all() and (nan := np.isnan(values)).any():
        batch.nan, batch.stale = nan, storage.is_stale(values)
        storable = value_ok | nan
        value_ok = storable & ~batch.stale  # a staleness marker never creates its series
    for k in np.flatnonzero(~storable).tolist():
        batch.reject(k, {"value": [value_error(batch.events[k].value)]})
    times_ok = [ts.__class__ is int for ts in batch.timestamps]
    if not value_ok.all() or not all(times_ok):
        batch.usable = (value_ok & np.array(times_ok, bool)).tolist()


def _partitions_ensure(*, batch: _Batch, now_us: int, max_new_partitions: int) -> None:
    """Creates the partitions the usable events with a series need; past the request's limit of new ones, an
    event is refused (its series exists already: sent again, it is stored)."""
    usable, nan = batch.usable, batch.nan
    if None in batch.series_ids or usable is not None:
        # NaN samples are stored apart (storage.nan_samples_write), in no partition.
        wanted = {batch.timestamps[k] for k, sid in enumerate(batch.series_ids)
                  if sid is not None and (usable is None or usable[k]) and (nan is None or not nan[k])}
    else:
        wanted = set(batch.timestamps)
    wanted_us = np.fromiter((ts for ts in wanted if ts.__class__ is int), np.int64)
    if not len(wanted_us):
        return
    covered, _ = storage.partitions_ensure(ts_us=wanted_us, now_us=now_us, max_new=max_new_partitions)
    if covered.all():
        return
    refused = set(wanted_us[~covered].tolist())
    reason = (f"needs a new partition, and this request already creates {max_new_partitions}, the limit "
              "per request (MAX_NEW_PARTITIONS_PER_REQUEST); send it again in a later request")
    for k, ts in enumerate(batch.timestamps):
        if ts in refused:
            batch.timestamps[k] = reason
            batch.reject(k, {"timestamp": [reason]})


def _deltas_accumulate(*, tenant: Tenant, batch: _Batch, deltas: set[int]) -> None:
    """Delta points as running totals, so a delta counter is stored (and read, rated, detected) as a
    cumulative one: in time order within the request, each is added onto the series' newest stored
    value before the request's first delta of that series (0 for a new series). A delta older than
    points already stored is added where it lands: later points are not rewritten. A request sent
    again adds nothing twice: its totals are the same, and the first write wins."""
    by_series: dict[int, list[int]] = {}
    for position, index in enumerate(batch.indices):
        series_id, ts = batch.series_ids[position], batch.timestamps[position]
        if index in deltas and series_id is not None and ts.__class__ is int:
            by_series.setdefault(series_id, []).append(position)
    if not by_series:
        return
    before = {series_id: min(batch.timestamps[k] for k in positions) - 1 for series_id, positions in by_series.items()}
    previous = storage.counters_previous(tenant=tenant, before_us=before)
    batch.events = list(batch.events)  # the caller's events keep their values
    for series_id, positions in by_series.items():
        total = previous[series_id][1] if series_id in previous else 0.0
        for k in sorted(positions, key=batch.timestamps.__getitem__):
            event = batch.events[k]
            if math.isfinite(event.value):  # else refused with its value below, the total unchanged
                total += event.value
                batch.events[k] = msgspec.structs.replace(event, value=total)


def _nan_rows_of(batch: _Batch) -> tuple[storage.PointRows | None, IngestResult]:
    """The NaN samples and staleness markers to keep (those with a series and a valid time), and a result
    counting the markers whose series does not exist (nothing to end, so nothing stored)."""
    result = IngestResult()
    if batch.nan is None:
        return None, result
    kept = []
    for k in np.flatnonzero(batch.nan).tolist():
        if batch.series_ids[k] is not None and batch.timestamps[k].__class__ is int:
            kept.append(k)
        elif batch.stale[k] and batch.indices[k] not in batch.errors_by_index:
            result.stale_dropped += 1
    if not kept:
        return None, result
    values = np.fromiter((batch.events[k].value for k in kept), np.float64, len(kept))
    return storage.PointRows(np.fromiter((batch.series_ids[k] for k in kept), np.int64, len(kept)),
                             np.fromiter((batch.timestamps[k] for k in kept), np.int64, len(kept)), values), result


def _rows_of(batch: _Batch) -> tuple[storage.PointRows | None, int]:
    """The accepted rows (first of each repeated (series, ts)) and how many repeats were dropped."""
    if not batch.events:
        return None, 0
    values = np.array([e.value for e in batch.events], np.float64)
    # NaN fails the comparison too; the typed decoder already refused non-finite numbers.
    value_ok = np.abs(values) <= MAX_ABS_VALUE
    all_good = None not in batch.series_ids and not any(ts.__class__ is str for ts in batch.timestamps)
    if all_good and value_ok.all():
        sid = np.array(batch.series_ids, np.int64)
        ts = np.array(batch.timestamps, np.int64)
    else:
        # NaN samples kept apart (_nan_rows_of) are neither rows nor refused.
        refused = ~value_ok if batch.nan is None else ~value_ok & ~batch.nan
        for k in np.flatnonzero(refused).tolist():
            batch.reject(k, {"value": [value_error(batch.events[k].value)]})
        good = [k for k in np.flatnonzero(value_ok).tolist()
                if batch.series_ids[k] is not None and batch.timestamps[k].__class__ is int]
        if not good:
            return None, 0
        sid = np.fromiter((batch.series_ids[k] for k in good), np.int64, len(good))
        ts = np.fromiter((batch.timestamps[k] for k in good), np.int64, len(good))
        values = values[good]
    # A repeat of (series, ts) inside the batch is a duplicate; the earliest event wins.
    order = np.lexsort((np.arange(len(sid)), ts, sid))
    repeat = np.zeros(len(sid), bool)
    repeat[order[1:]] = (sid[order[1:]] == sid[order[:-1]]) & (ts[order[1:]] == ts[order[:-1]])
    keep = ~repeat
    return storage.PointRows(sid[keep], ts[keep], values[keep]), int(repeat.sum())


def _series_resolve(*, tenant: Tenant, new: dict[tuple, Event], checker: EventChecker, resolved: dict,
                    create: bool = True) -> dict:
    """Resolve identities missing from the cache (creating series, committed on their own, unless `create` is
    false: then one not found stays unresolved); returns errors."""
    errors: dict[tuple, dict] = {}
    by_hash: dict[str, list[tuple]] = {}
    canonical_event: dict[str, tuple[Event, str]] = {}
    for identity, event in new.items():
        identity_errors, canonical_tags = checker.identity(event)
        if identity_errors:
            errors[identity] = identity_errors
            continue
        key_hash = series_key_hash((event.service, event.resource_id, event.metric_name, canonical_tags))
        by_hash.setdefault(key_hash, []).append(identity)
        canonical_event.setdefault(key_hash, (event, canonical_tags))
    if not by_hash:
        return errors
    hashes = list(by_hash)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT key_hash, id FROM {SERIES_TABLE} WHERE tenant_id = %s AND key_hash = ANY(%s)", [tenant.id, hashes]
        )
        found = dict(cursor.fetchall())
        to_create = [h for h in hashes if h not in found] if create else []
        if to_create:
            limit = tenant.limit("MAX_SERIES_PER_TENANT")
            refused = _series_create(cursor, tenant=tenant, limit=limit, hashes=to_create,
                                     created={h: canonical_event[h] for h in to_create}, found=found)
            for key_hash in refused:
                for identity in by_hash[key_hash]:
                    errors[identity] = {"metric_name": [
                        f"would create a new series over this tenant's limit of {limit} series (MAX_SERIES_PER_TENANT)"]}
    for key_hash, series_id in found.items():
        for identity in by_hash[key_hash]:
            series_cache.put(tenant.id, identity, series_id)
            resolved[identity] = series_id
    return errors


def _series_create(cursor, *, tenant: Tenant, limit: int, hashes: list[str], created: dict, found: dict) -> list[str]:
    """Create the series that fit under the tenant's limit (their ids go into `found`); returns the refused hashes.

    The count and the insert run under a per-tenant lock, so concurrent requests cannot both take
    the last places. Committed on its own, outside the points transaction: a series row without
    points is harmless, and a cached id must never point at a rolled-back row.
    """
    with transaction.atomic():
        locks.xact_lock(cursor, Lock.SERIES, tenant.id)
        cursor.execute(
            f"SELECT key_hash, id FROM {SERIES_TABLE} WHERE tenant_id = %s AND key_hash = ANY(%s)", [tenant.id, hashes]
        )
        found.update(cursor.fetchall())
        hashes = [h for h in hashes if h not in found]
        cursor.execute(f"SELECT count(*) FROM {SERIES_TABLE} WHERE tenant_id = %s", [tenant.id])
        room = max(limit - cursor.fetchone()[0], 0)
        allowed, refused = hashes[:room], hashes[room:]
        if allowed:
            _series_insert(cursor, tenant_id=tenant.id, created={h: created[h] for h in allowed})
            cursor.execute(
                f"SELECT key_hash, id FROM {SERIES_TABLE} WHERE tenant_id = %s AND key_hash = ANY(%s)",
                [tenant.id, allowed],
            )
            found.update(cursor.fetchall())
    return refused


def _series_insert(cursor, *, tenant_id: int, created: dict[str, tuple[Event, str]]) -> None:
    values = []
    params: list = []
    for key_hash, (event, canonical_tags) in created.items():
        values.append("(%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, now())")
        params += [tenant_id, event.service, event.resource_id, event.metric_name, canonical_tags or "{}",
                   key_hash, event.source, event.kind, event.unit]
    cursor.execute(
        f"INSERT INTO {SERIES_TABLE} (tenant_id, service, resource_id, metric_name, tags, key_hash, source, kind, unit, "
        "created_at) "
        f"VALUES {', '.join(values)} ON CONFLICT (tenant_id, key_hash) DO NOTHING",
        params,
    )
