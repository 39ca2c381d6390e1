"""Reads for anomalies, baselines and detection runs."""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.db import connection
from django.db.models import Count, Max, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from anomalies.engine import DetectionConfig, SeriesState, expected_band, restart_at, state_from_history
from anomalies.models import (
    ANOMALY_TABLE,
    BASELINE_TABLE,
    DETECTION_STATE_TABLE,
    INCIDENT_TABLE,
    Anomaly,
    AnomalyEvent,
    Baseline,
    Channel,
    DeliveryAttempt,
    DetectionRule,
    DetectionRun,
    Incident,
    IncidentEvent,
    Notification,
    SeriesMute,
    Silence,
)
from cloudwatchdog.timeutil import EPOCH, format_iso, from_us, sql_at, sql_us, to_us
from metrics import counters
from metrics import selectors as metrics_selectors
from metrics import storage as metrics_storage
from metrics.models import Series
from tenants.models import TENANT_TABLE, Tenant


def detection_config_for(*, tenant: Tenant) -> DetectionConfig:
    """The default configuration with the tenant's overrides."""
    return DetectionConfig.from_overrides(tenant.detection_config)


def detection_configs_for(*, tenant: Tenant, series: Iterable[Series],
                          tenant_overrides: dict | None = None) -> dict[int, DetectionConfig]:
    """Each series' configuration, by series id: the defaults, the tenant's overrides (or
    `tenant_overrides`, to preview other ones), then the overrides of the tenant's rules that match
    it, least specific first (DetectionRule).

    One query for the rules whatever the number of series, and one DetectionConfig for each distinct
    set of matching rules, shared by every series it applies to. Raises ValueError if stored
    overrides no longer pass the engine's checks, as detection_config_for does."""
    base = (tenant.detection_config if tenant_overrides is None else tenant_overrides) or {}
    rules = _RuleIndex(detection_rule_list(tenant=tenant))
    configs: dict[tuple[DetectionRule, ...], DetectionConfig] = {(): DetectionConfig.from_overrides(base)}
    by_series = {}
    for one in series:
        matching = rules.matching(one)
        config = configs.get(matching)
        if config is None:
            merged = dict(base)
            for rule in matching:
                merged.update(rule.overrides)
            config = configs[matching] = DetectionConfig.from_overrides(merged)
        by_series[one.id] = config
    return by_series


def detection_configs_for_ids(*, tenant: Tenant, series_ids: Iterable[int]) -> dict[int, DetectionConfig]:
    """detection_configs_for the tenant's series with these ids (an id of no series of the tenant is
    left out): two queries, the series' names and the rules."""
    series = (metrics_selectors.series_list(tenant=tenant).filter(id__in=list(series_ids))
              .only("id", "service", "metric_name", "resource_id", "tags"))
    return detection_configs_for(tenant=tenant, series=series)


def detection_rules_for(*, tenant: Tenant, series: Series) -> list[DetectionRule]:
    """The tenant's rules that match the series, in the order they apply (the last wins)."""
    return list(_RuleIndex(detection_rule_list(tenant=tenant)).matching(series))


class _RuleIndex:
    """A tenant's rules by (service, metric_name), empty for any, in the order they apply: a series
    looks in four buckets instead of at every rule."""

    def __init__(self, rules: list[DetectionRule]):
        self.buckets: dict[tuple[str, str], list[DetectionRule]] = {}
        self.order = {}
        for position, rule in enumerate(sorted(rules, key=lambda r: (r.specificity, r.id))):
            self.order[rule.id] = position
            self.buckets.setdefault((rule.service, rule.metric_name), []).append(rule)

    def matching(self, series) -> tuple[DetectionRule, ...]:
        if not self.buckets:
            return ()
        keys = {(series.service, series.metric_name), (series.service, ""), ("", series.metric_name), ("", "")}
        found = [rule for key in keys for rule in self.buckets.get(key, ()) if rule.matches(series)]
        return tuple(sorted(found, key=lambda rule: self.order[rule.id]))


def detection_rule_list(*, tenant: Tenant) -> list[DetectionRule]:
    return list(DetectionRule.objects.for_tenant(tenant).order_by("id"))


def detection_rule_get(*, tenant: Tenant, rule_id: int) -> DetectionRule | None:
    return DetectionRule.objects.for_tenant(tenant).filter(id=rule_id).first()


def detection_rule_series_matched(*, tenant: Tenant, rules: list[DetectionRule]) -> dict[int, int]:
    """How many of the tenant's series each rule matches, by rule id, in one pass over its series."""
    if not rules:
        return {}
    counts = {}
    for rule in rules:
        conditions = _rule_conditions(rule)
        counts[f"rule_{rule.id}"] = Count("id", filter=conditions) if conditions else Count("id")
    totals = metrics_selectors.series_list(tenant=tenant).order_by().aggregate(**counts)
    return {rule.id: totals[f"rule_{rule.id}"] for rule in rules}


def series_count_changed_by(*, tenant: Tenant, settings: Iterable[str]) -> int:
    """How many of the tenant's series a change of these tenant-wide settings reaches: all of them
    but those matched by a rule that overrides every one of the settings (the rule wins there)."""
    settings = set(settings)
    if not settings:
        return 0
    series = metrics_selectors.series_list(tenant=tenant).order_by()
    shielding = [rule for rule in detection_rule_list(tenant=tenant) if settings <= set(rule.overrides or {})]
    if not shielding:
        return series.count()
    if any(not _rule_conditions(rule) for rule in shielding):
        return 0  # a rule matching every series overrides them all
    shielded = Q()
    for rule in shielding:
        shielded |= _rule_conditions(rule)
    return series.exclude(shielded).count()


def _rule_conditions(rule: DetectionRule) -> Q:
    """The series a rule matches, as a filter (empty: every series)."""
    conditions = Q()
    for matcher in ("service", "metric_name", "resource_id"):
        if getattr(rule, matcher):
            conditions &= Q(**{matcher: getattr(rule, matcher)})
    if rule.tags:
        conditions &= Q(tags__contains=rule.tags)
    return conditions


def states_at(*, tenant: Tenant, restart_us: dict[int, int], configs: dict[int, DetectionConfig]) -> dict[int, SeriesState]:
    """Each series' engine state just before its restart time (a UTC day boundary), rebuilt from
    the stored points and anomalies before it with its settings (`configs`), for re-evaluations,
    replays and band drawing."""
    if not restart_us:
        return {}
    window = max(configs[series_id].window_points for series_id in restart_us)
    history = metrics_storage.points_before(tenant=tenant, before_us=restart_us, count=2 * window + 1)
    by_series: dict[int, tuple[list, list]] = {}
    for series_id, ts, value in history:
        series_ts, series_values = by_series.setdefault(series_id, ([], []))
        series_ts.append(ts)
        series_values.append(value)
    first = metrics_storage.series_first_ts(tenant=tenant, series_ids=list(restart_us))
    history_start = {sid: by_series[sid][0][0] if sid in by_series else restart_us[sid] for sid in restart_us}
    counter_ids = metrics_selectors.counter_series_ids(tenant=tenant, series_ids=restart_us)
    # A counter's history is its rates; the extremes of its stored values say nothing about those.
    extremes = metrics_storage.series_extremes_before(
        tenant=tenant, before_us={sid: ts for sid, ts in history_start.items() if sid not in counter_ids})
    for series_id in counter_ids & by_series.keys():
        by_series[series_id] = tuple(array.tolist() for array in counters.rates(*by_series[series_id]))
    recorded = _alarms_before(tenant=tenant, before_us=restart_us)
    # The excursions before the restart are the checkpoint's: they reach back weeks, past the history.
    checkpoints = dict(Baseline.objects.for_tenant(tenant).filter(series_id__in=list(restart_us))
                       .exclude(checkpoint=None).values_list("series_id", "checkpoint"))
    states = {}
    for series_id, restart in restart_us.items():
        if first.get(series_id) is None or first[series_id] >= restart:
            states[series_id] = SeriesState()
            continue
        series_ts, series_values = by_series.get(series_id, ([], []))
        lowest, highest = extremes.get(series_id, (math.inf, -math.inf))
        alarms = recorded.get(series_id, _RecordedAlarms())
        states[series_id] = state_from_history(
            history_ts=series_ts, history_values=series_values, first_ts_us=first[series_id],
            lowest_before=lowest, highest_before=highest, alerts_before=alarms.alerts, config=configs[series_id],
            excursions_from=SeriesState.from_bytes(checkpoints[series_id]) if series_id in checkpoints else None,
            alarm_since_us=alarms.since_us, alarm_peak=alarms.peak, recovered_us=alarms.recovered_us,
        )
    return states


def detection_input(*, tenant: Tenant, points: dict[int, tuple[np.ndarray, np.ndarray]],
                    after_us: dict[int, int | None]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """What the engine evaluates for each series' new points: a gauge's values, a counter's rates.

    A counter's first new point is compared with the point stored at or before `after_us` (when
    there is one), so each evaluation continues exactly where the last one stopped.
    """
    counter_ids = metrics_selectors.counter_series_ids(tenant=tenant, series_ids=points)
    if not counter_ids:
        return points
    previous = metrics_storage.counters_previous(
        tenant=tenant, before_us={sid: after_us[sid] for sid in counter_ids if after_us.get(sid) is not None})
    converted = dict(points)
    for series_id in counter_ids:
        converted[series_id] = counters.rates(*points[series_id], previous=previous.get(series_id))
    return converted


@dataclass
class _RecordedAlarms:
    """What the store says of a series' alarms before a time: its alerts (escalations are not alerts),
    the deviation of its last anomaly, the alarm going on then (its start), when the last one ended."""

    alerts: list[int] = field(default_factory=list)
    peak: float = math.nan
    since_us: int | None = None
    recovered_us: int | None = None


def _alarms_before(*, tenant: Tenant, before_us: dict[int, int]) -> dict[int, _RecordedAlarms]:
    series_ids = list(before_us)
    recorded: dict[int, _RecordedAlarms] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT a.series_id, {sql_us('a.ts')}, a.escalation, a.value - a.expected
            FROM unnest(%s::bigint[], %s::bigint[]) AS s(series_id, before_us)
            JOIN {ANOMALY_TABLE} a ON a.tenant_id = %s AND a.series_id = s.series_id
             AND a.ts < {sql_at('s.before_us')}
            ORDER BY a.series_id, a.ts
            """,
            [series_ids, [before_us[s] for s in series_ids], tenant.id],
        )
        for series_id, ts_us, escalation, deviation in cursor.fetchall():
            alarms = recorded.setdefault(series_id, _RecordedAlarms())
            if not escalation:
                alarms.alerts.append(ts_us)
            alarms.peak = deviation
        # An alarm ending at the time itself ends in the points evaluated from it: going on before.
        cursor.execute(
            f"""
            SELECT s.series_id,
                (SELECT {sql_us('i.started_at')} FROM {INCIDENT_TABLE} i
                 WHERE i.tenant_id = %s AND i.series_id = s.series_id AND i.kind = 'anomaly' AND i.started_at < s.at
                   AND (i.resolved_at IS NULL OR i.resolved_at >= s.at)
                 ORDER BY i.started_at DESC LIMIT 1),
                (SELECT {sql_us('max(i.resolved_at)')} FROM {INCIDENT_TABLE} i
                 WHERE i.tenant_id = %s AND i.series_id = s.series_id AND i.kind = 'anomaly' AND i.resolved_at < s.at)
            FROM (SELECT series_id, {sql_at('before_us')} AS at
                  FROM unnest(%s::bigint[], %s::bigint[]) AS u(series_id, before_us)) s
            """,
            [tenant.id, tenant.id, series_ids, [before_us[s] for s in series_ids]],
        )
        for series_id, since_us, recovered_us in cursor.fetchall():
            if since_us is not None or recovered_us is not None:
                alarms = recorded.setdefault(series_id, _RecordedAlarms())
                alarms.since_us, alarms.recovered_us = since_us, recovered_us
    return recorded


def anomaly_list(
    *,
    tenant: Tenant,
    service: str | None = None,
    metric_name: str | None = None,
    resource_id: str | None = None,
    series_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    severity: str | None = None,
    status: str | None = None,
) -> QuerySet[Anomaly]:
    """The tenant's anomalies matching every given filter, newest first."""
    anomalies = Anomaly.objects.for_tenant(tenant).select_related("series")
    if service:
        anomalies = anomalies.filter(series__service=service)
    if metric_name:
        anomalies = anomalies.filter(series__metric_name=metric_name)
    if resource_id:
        anomalies = anomalies.filter(series__resource_id=resource_id)
    if series_id is not None:
        anomalies = anomalies.filter(series_id=series_id)
    if start:
        anomalies = anomalies.filter(ts__gt=start)
    if end:
        anomalies = anomalies.filter(ts__lte=end)
    if severity:
        anomalies = anomalies.filter(severity=severity)
    if status:
        anomalies = anomalies.filter(status=status)
    return anomalies.order_by("-ts", "-id")


def anomalies_in_range(*, tenant: Tenant, series_id: int, start: datetime, end: datetime,
                       limit: int) -> list[Anomaly]:
    """The series' anomalies in (start, end], oldest first, at most `limit` (a chart's markers)."""
    return list(anomaly_list(tenant=tenant, series_id=series_id, start=start, end=end).order_by("ts")[:limit])


SeriesIdentity = tuple[str, str, str, dict]  # metric_name, service, resource_id, tags: what its labels are made of
_IDENTITY = ("series__metric_name", "series__service", "series__resource_id", "series__tags")


def anomaly_scores(*, tenant: Tenant, low_us: int, high_us: int, metric_names: list[str] | None = None,
                   limit: int) -> tuple[dict[int, SeriesIdentity], list[tuple[int, int, float]]]:
    """The tenant's anomalies in [low_us, high_us] (both inclusive), of series with these metric names when
    given: each series' identity by id, and (series id, µs, score) by series then time, at most `limit`
    (the caller tells more from exactly `limit`)."""
    rows = (Anomaly.objects.for_tenant(tenant).filter(ts__gte=from_us(low_us), ts__lte=from_us(high_us))
            .order_by("series_id", "ts"))
    if metric_names is not None:
        rows = rows.filter(series__metric_name__in=metric_names)
    identities, scores = {}, []
    for series_id, ts, score, *identity in rows.values_list("series_id", "ts", "score", *_IDENTITY)[:limit]:
        identities.setdefault(series_id, tuple(identity))
        scores.append((series_id, to_us(ts), score))
    return identities, scores


def incident_spans(*, tenant: Tenant, low_us: int, high_us: int, metric_names: list[str] | None = None,
                   limit: int) -> tuple[dict[int, SeriesIdentity], list[tuple[int, int, int | None]]]:
    """The tenant's incidents (of either kind) open at some time in [low_us, high_us], of series with
    these metric names when given: each series' identity by id, and (series id, started µs, resolved µs or
    None while open) by series then start, at most `limit`. An incident is open from its start
    (inclusive) to its resolution (exclusive)."""
    rows = (Incident.objects.for_tenant(tenant).filter(started_at__lte=from_us(high_us))
            .exclude(resolved_at__lte=from_us(low_us)).order_by("series_id", "started_at"))
    if metric_names is not None:
        rows = rows.filter(series__metric_name__in=metric_names)
    identities, spans = {}, []
    for series_id, started, resolved, *identity in rows.values_list(
            "series_id", "started_at", "resolved_at", *_IDENTITY)[:limit]:
        identities.setdefault(series_id, tuple(identity))
        spans.append((series_id, to_us(started), None if resolved is None else to_us(resolved)))
    return identities, spans


def anomaly_neighbours(*, tenant: Tenant, anomaly: Anomaly) -> tuple[Anomaly | None, Anomaly | None]:
    """The previous and next anomaly of the same series."""
    same = anomaly_list(tenant=tenant, series_id=anomaly.series_id)
    previous = same.filter(ts__lt=anomaly.ts).order_by("-ts").first()
    following = same.filter(ts__gt=anomaly.ts).order_by("ts").first()
    return previous, following


def anomaly_counts(*, tenant: Tenant, since: datetime) -> dict[str, dict[str, int]]:
    """The tenant's anomalies after `since`, counted by severity, then status (every pair, zeros too)."""
    rows = (anomaly_list(tenant=tenant, start=since).order_by()
            .values("severity", "status").annotate(n=Count("id")))
    table = {severity: {status: 0 for status, _ in Anomaly.STATUSES} for severity, _ in Anomaly.SEVERITIES}
    for row in rows:
        table[row["severity"]][row["status"]] = row["n"]
    return table


def incidents_open_counts(*, tenant: Tenant) -> dict[str, dict[str, int]]:
    """The tenant's incidents not resolved, counted by peak severity (high first), then open or
    acknowledged (every pair, zeros too): what is on fire now, an alarm counted once however many
    anomalies it holds."""
    rows = (Incident.objects.for_tenant(tenant).exclude(status=Incident.STATUS_RESOLVED).order_by()
            .values("peak_severity", "status").annotate(n=Count("id")))
    table = {severity: {Incident.STATUS_OPEN: 0, Incident.STATUS_ACKNOWLEDGED: 0}
             for severity, _ in reversed(Anomaly.SEVERITIES)}
    for row in rows:
        table[row["peak_severity"]][row["status"]] = row["n"]
    return table


def incidents_open_by_tenant(*, tenants: list[Tenant]) -> dict[int, int]:
    """Open incidents (nobody acknowledged them), by tenant id, of these tenants."""
    return dict(Incident.objects.for_tenants(tenants).filter(status=Incident.STATUS_OPEN)
                .values_list("tenant_id").annotate(n=Count("id")).order_by())


def silences_active_count(*, tenant: Tenant, now: datetime) -> int:
    return Silence.objects.for_tenant(tenant).filter(start__lte=now, end__gt=now).count()


def anomaly_ids_by_tenant(*, anomalies: QuerySet[Anomaly]) -> Iterator[tuple[Tenant, list[int]]]:
    """A selection of anomalies (an admin's, already scoped to the staff user's tenants), tenant by
    tenant: each tenant with its selected anomalies' ids, read as the caller reaches that tenant."""
    for tenant_id in anomalies.values_list("tenant", flat=True).distinct():
        tenant = anomalies.filter(tenant_id=tenant_id).first().tenant
        yield tenant, list(anomalies.filter(tenant_id=tenant_id).values_list("id", flat=True))


def baseline_list(*, tenant: Tenant, series_id: int | None = None, status: str | None = None,
                  state: str | None = None) -> QuerySet[Baseline]:
    baselines = Baseline.objects.for_tenant(tenant).select_related("series")
    if series_id is not None:
        baselines = baselines.filter(series_id=series_id)
    if status:
        baselines = baselines.filter(status=status)
    if state:
        baselines = baselines.filter(state=state)
    return baselines.order_by("series_id")


def baseline_get(*, tenant: Tenant, series_id: int) -> Baseline | None:
    """The series' baseline, or None before detection first evaluates it."""
    return baseline_list(tenant=tenant, series_id=series_id).first()


def series_states(tenant: Tenant, series_ids: list[int]) -> dict[int, dict]:
    """Each series' alarm state, for the series endpoints (registered in metrics.selectors.series_facts);
    a series detection has not seen yet is warming."""
    return {series_id: {"state": state, "state_since": format_iso(since) if since else None, "out_of_band": out}
            for series_id, state, since, out in Baseline.objects.for_tenant(tenant).filter(
                series_id__in=series_ids).values_list("series_id", "state", "state_since", "out_of_band")}


def detection_run_get(*, tenant: Tenant, run_id) -> DetectionRun | None:
    return DetectionRun.objects.for_tenant(tenant).filter(run_id=run_id).first()


def baseline_band(*, tenant: Tenant, series_id: int, start: datetime, end: datetime, max_points: int = 20_000):
    """The expected value, the model's band and the alert threshold (the band widened by the gain
    after recent alerts) at each stored point of one series in (start, end], for drawing.

    Computed by the same engine as detection, from the history before `start`'s UTC day, so it
    matches what the residual detector compared each point with.
    """
    along = _bands_from_day(tenant=tenant, series_ids=[series_id], day_start_us=restart_at(to_us(start)),
                            until_us=to_us(end), limit_per_series=max_points)[series_id]

    def number(x):
        return None if np.isnan(x) else float(x)

    band = [
        {
            "timestamp": from_us(int(t)), "value": float(v), "expected": number(e), "lower": number(lo),
            "upper": number(up), "alert_lower": number(alo), "alert_upper": number(aup),
            "status": "ready" if w else "warming",
        }
        for t, v, e, lo, up, w, alo, aup in zip(along.ts_us, along.values, along.expected, along.lower,
                                                along.upper, along.warm, along.alert_lower, along.alert_upper)
    ]
    return [item for item in band if item["timestamp"] > start]


@dataclass(frozen=True)
class BandAlong:
    """A series' points as detection evaluates them (a counter's: its rates per second) with, at each, what
    band_along gives: the expected value, the band, whether the model was warm, the alert threshold."""

    ts_us: np.ndarray
    values: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    warm: np.ndarray
    alert_lower: np.ndarray
    alert_upper: np.ndarray

    def between(self, low_us: int, high_us: int) -> BandAlong:
        keep = (self.ts_us >= low_us) & (self.ts_us <= high_us)
        return BandAlong(*(array[keep] for array in (self.ts_us, self.values, self.expected, self.lower, self.upper,
                                                     self.warm, self.alert_lower, self.alert_upper)))


class BandTooLong(Exception):
    """Drawing a band would replay more points of a series than the caller allows."""


def baseline_bands(*, tenant: Tenant, series_ids: list[int], low_us: int, high_us: int,
                   max_points: int) -> dict[int, BandAlong]:
    """baseline_band's arrays for several series at once, at their points in [low_us, high_us] (both
    inclusive): one state rebuild and one read for all. Raises BandTooLong when a series has more than
    `max_points` points from `low_us`'s UTC day to `high_us` (the replay starts at that day)."""
    bands = _bands_from_day(tenant=tenant, series_ids=series_ids, day_start_us=restart_at(low_us),
                            until_us=high_us, limit_per_series=max_points + 1)
    for series_id, along in bands.items():
        if len(along.ts_us) > max_points:
            raise BandTooLong(f"series {series_id} has more than {max_points} points from the UTC day its band "
                              "is replayed from")
    return {series_id: along.between(low_us, high_us) for series_id, along in bands.items()}


def _bands_from_day(*, tenant: Tenant, series_ids: list[int], day_start_us: int, until_us: int,
                    limit_per_series: int) -> dict[int, BandAlong]:
    """Each series' BandAlong from a UTC day's start to `until_us`, replayed from its state at that day
    (the tenant's series among `series_ids` only)."""
    configs = detection_configs_for_ids(tenant=tenant, series_ids=series_ids)
    if not configs:
        return {}
    states = states_at(tenant=tenant, restart_us={sid: day_start_us for sid in configs}, configs=configs)
    after = {sid: day_start_us - 1 for sid in configs}
    ids, ts, values = metrics_storage.points_after(tenant=tenant, after_us=after,
                                                   until_us={sid: until_us for sid in configs},
                                                   limit_per_series=limit_per_series)
    # points_after answers in (series, ts) order: each series is one slice.
    bounds = np.searchsorted(ids, np.array(sorted(configs), dtype=np.int64), side="left")
    ends = np.searchsorted(ids, np.array(sorted(configs), dtype=np.int64), side="right")
    points = {sid: (ts[lo:hi], values[lo:hi]) for sid, lo, hi in zip(sorted(configs), bounds, ends)}
    inputs = detection_input(tenant=tenant, points=points, after_us=after)
    percentages = metrics_selectors.percentage_series_ids(tenant=tenant, series_ids=list(configs))
    bands = {}
    for series_id, (series_ts, series_values) in inputs.items():
        drawn = band_along(state=states[series_id], ts=series_ts, values=series_values, config=configs[series_id],
                           percentage=series_id in percentages)
        bands[series_id] = BandAlong(series_ts, series_values, *drawn)
    return bands


def band_along(*, state: SeriesState, ts: np.ndarray, values: np.ndarray, config: DetectionConfig,
               percentage: bool) -> tuple[np.ndarray, ...]:
    """Per point evaluated from `state` under `config` (any configuration: the what-if preview draws
    the band of settings not saved): expected, lower, upper, warm, alert_lower, alert_upper, as
    expected_band gives them, a percentage's cut at 100."""
    if not len(ts):
        return tuple(np.array([]) for _ in range(6))
    expected, lower, upper, warm, alert_lower, alert_upper = expected_band(state, ts, values, config)
    if percentage:
        # A percentage's band goes no higher than 100 where the series never went higher.
        below_100 = np.maximum.accumulate(np.concatenate(([state.highest], values[:-1]))) <= 100
        upper = np.where(below_100, np.minimum(upper, 100.0), upper)
        alert_upper = np.where(below_100, np.minimum(alert_upper, 100.0), alert_upper)
    return expected, lower, upper, warm, alert_lower, alert_upper


def detection_progress() -> list[tuple[str, datetime | None, int]]:
    """(tenant slug, newest evaluated point, late points waiting) of every tenant, for /metrics."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT t.slug, d.watermark_max,
                   COALESCE((SELECT sum(b.late_points) FROM {BASELINE_TABLE} b WHERE b.tenant_id = t.id), 0)::bigint
            FROM {TENANT_TABLE} t LEFT JOIN {DETECTION_STATE_TABLE} d ON d.tenant_id = t.id
            ORDER BY t.slug
            """
        )
        return cursor.fetchall()


@dataclass
class DetectionLag:
    newest_evaluated: datetime | None  # the newest point detection has read, of any series
    last_run_finished: datetime | None  # the last run that succeeded
    late_points: int  # points that arrived behind the watermark, waiting for re-evaluation
    states: dict[str, int]  # series by alarm state (ok, alarm, no_data, warming)


def detection_lag(*, tenant: Tenant) -> DetectionLag:
    """How far behind detection is for a tenant: on-call reads "no anomaly" as "all well" only if
    detection has read the latest points."""
    baselines = Baseline.objects.for_tenant(tenant)
    totals = baselines.aggregate(newest=Max("watermark"), late=Sum("late_points"))
    states = dict.fromkeys((state for state, _ in Baseline.STATES), 0)
    states.update(baselines.values_list("state").annotate(n=Count("id")).order_by())
    last_run = (DetectionRun.objects.for_tenant(tenant).filter(status=DetectionRun.STATUS_SUCCEEDED)
                .aggregate(at=Max("finished_at"))["at"])
    return DetectionLag(totals["newest"], last_run, totals["late"] or 0, states)


def series_state_counts() -> list[tuple[str, str, int]]:
    """(tenant slug, state, series) of every tenant and state, every state listed (zero too), for /metrics."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT t.slug, s.state, count(b.id)
            FROM {TENANT_TABLE} t CROSS JOIN unnest(%s::text[]) AS s(state)
            LEFT JOIN {BASELINE_TABLE} b ON b.tenant_id = t.id AND b.state = s.state
            GROUP BY t.slug, s.state ORDER BY t.slug, s.state
            """,
            [[state for state, _ in Baseline.STATES]],
        )
        return cursor.fetchall()


def mute_windows(*, tenant: Tenant, series_ids: list[int]) -> dict[int, list[tuple[int, int]]]:
    """Each series' mute periods as [start µs, end µs) pairs."""
    windows: dict[int, list[tuple[int, int]]] = {}
    if not series_ids:
        return windows
    for series_id, start, end in SeriesMute.objects.for_tenant(tenant).filter(series_id__in=series_ids).values_list(
            "series_id", "start", "end"):
        windows.setdefault(series_id, []).append((to_us(start), to_us(end)))
    return windows


def anomaly_get(*, tenant: Tenant, anomaly_id: int) -> Anomaly | None:
    return Anomaly.objects.for_tenant(tenant).select_related("series", "run").filter(id=anomaly_id).first()


def anomaly_events(*, tenant: Tenant, anomaly_id: int) -> list[AnomalyEvent]:
    return list(AnomalyEvent.objects.for_tenant(tenant).filter(anomaly_id=anomaly_id).order_by("at", "id"))


def detection_runs_recent(*, tenant: Tenant, limit: int = 10) -> list[DetectionRun]:
    return list(DetectionRun.objects.for_tenant(tenant).order_by("-requested_at")[:limit])


def series_mutes(*, tenant: Tenant, series_id: int) -> list[SeriesMute]:
    return list(SeriesMute.objects.for_tenant(tenant).filter(series_id=series_id).select_related("series")
                .order_by("-end")[:20])


def channel_list(*, tenant: Tenant) -> list[Channel]:
    return list(Channel.objects.for_tenant(tenant).order_by("id"))


def channels_with_health(channels: QuerySet[Channel]) -> QuerySet[Channel]:
    """The channels (already scoped to tenants) each with its delivery health: `last_success_at`,
    `last_error_at` and `last_error` of its attempts, and `failing_since`, the first failed attempt
    after its last success (None while the newest attempt succeeded, or before any failed)."""
    attempts = DeliveryAttempt.objects.unscoped().filter(
        tenant_id=OuterRef("tenant_id"), notification__channel_id=OuterRef("pk"))
    succeeded, failed = attempts.filter(error=""), attempts.exclude(error="")
    newest_failed = failed.order_by("-at", "-id")
    failed_since_success = failed.filter(at__gt=Coalesce(OuterRef("last_success_at"), Value(EPOCH)))
    return channels.annotate(
        last_success_at=Subquery(succeeded.order_by("-at", "-id").values("at")[:1]),
        last_error_at=Subquery(newest_failed.values("at")[:1]),
        last_error=Subquery(newest_failed.values("error")[:1]),
    ).annotate(failing_since=Subquery(failed_since_success.order_by("at", "id").values("at")[:1]))


def channels_failing(*, tenants: QuerySet[Tenant]) -> list[Channel]:
    """The enabled channels of these tenants whose newest delivery attempt failed, failing longest first."""
    channels = Channel.objects.for_tenants(tenants).filter(enabled=True).select_related("tenant")
    return list(channels_with_health(channels).filter(failing_since__isnull=False).order_by("failing_since", "id"))


def channel_get(*, tenant: Tenant, channel_id: int) -> Channel | None:
    return Channel.objects.for_tenant(tenant).filter(id=channel_id).first()


def deliveries_list(*, tenant: Tenant, channel: Channel, limit: int = 100) -> list[Notification]:
    """The channel's notifications, newest first, with their attempt logs."""
    attempts = Prefetch("attempt_log", queryset=DeliveryAttempt.objects.for_tenant(tenant).order_by("at", "id"),
                        to_attr="attempts_logged")
    return list(Notification.objects.for_tenant(tenant).filter(channel=channel).order_by("-created_at", "-id")
                .prefetch_related(attempts)[:limit])


def incident_list(*, tenant: Tenant, status: str | None = None, series_id: int | None = None,
                  kind: str | None = None) -> QuerySet[Incident]:
    """The tenant's incidents matching every given filter, newest first (started_at, then id: a keyset)."""
    incidents = Incident.objects.for_tenant(tenant).select_related("series")
    if status:
        incidents = incidents.filter(status=status)
    if kind:
        incidents = incidents.filter(kind=kind)
    if series_id is not None:
        incidents = incidents.filter(series_id=series_id)
    return incidents.order_by("-started_at", "-id")


def incidents_overlapping(*, tenant: Tenant, series_id: int, start: datetime, end: datetime) -> list[Incident]:
    """The series' incidents that were open at some time in (start, end], oldest first."""
    return list(Incident.objects.for_tenant(tenant).filter(series_id=series_id, started_at__lte=end).exclude(
        resolved_at__lte=start).order_by("started_at")[:200])


def incident_get(*, tenant: Tenant, incident_id: int) -> Incident | None:
    return Incident.objects.for_tenant(tenant).select_related("series").filter(id=incident_id).first()


def incident_events(*, tenant: Tenant, incident_id: int) -> list[IncidentEvent]:
    return list(IncidentEvent.objects.for_tenant(tenant).filter(incident_id=incident_id).order_by("at", "id"))


def incident_anomalies(*, tenant: Tenant, incident: Incident, limit: int = 500) -> list[Anomaly]:
    """The anomalies of an incident's alarm (the first `limit`), oldest first. One stored before alarms
    were kept belongs to the incident it started."""
    if incident.kind != Incident.KIND_ANOMALY:
        return []
    return list(Anomaly.objects.for_tenant(tenant).filter(series_id=incident.series_id).filter(
        Q(alarm_started_at=incident.started_at) | Q(alarm_started_at__isnull=True, ts=incident.started_at))
        .order_by("ts")[:limit])


def incident_of_anomaly(*, tenant: Tenant, anomaly: Anomaly) -> Incident | None:
    return Incident.objects.for_tenant(tenant).filter(
        series_id=anomaly.series_id, kind=Incident.KIND_ANOMALY,
        started_at=anomaly.alarm_started_at or anomaly.ts).first()


def incident_notifications(*, tenant: Tenant, incident: Incident) -> list[Notification]:
    """The messages about an incident, oldest first, each with its channel and its attempts (`attempts_logged`)."""
    attempts = Prefetch("attempt_log", queryset=DeliveryAttempt.objects.for_tenant(tenant).order_by("at", "id"),
                        to_attr="attempts_logged")
    return list(Notification.objects.for_tenant(tenant).filter(incident_id=incident.id).select_related("channel")
                .order_by("created_at", "id").prefetch_related(attempts)[:500])


def silences_not_over_count(*, tenant: Tenant, now: datetime) -> int:
    return Silence.objects.for_tenant(tenant).filter(end__gt=now).count()


def silences_matching(*, tenant: Tenant, series: Series, now: datetime) -> list[Silence]:
    """The silences active now that cover the series (its incidents notify nobody)."""
    active = Silence.objects.for_tenant(tenant).filter(start__lte=now, end__gt=now).order_by("end")[:500]
    return [silence for silence in active if silence.matches(series, now)]


def silence_list(*, tenant: Tenant) -> list[Silence]:
    return list(Silence.objects.for_tenant(tenant).order_by("-end", "id"))


def silence_get(*, tenant: Tenant, silence_id: int) -> Silence | None:
    return Silence.objects.for_tenant(tenant).filter(id=silence_id).first()


def watermarks_of(tenant: Tenant) -> dict[int, int]:
    """Detection's watermark (µs) of each of a tenant's series that has a baseline (0 before its first
    evaluation): compaction stays behind it (registered in metrics.storage.compaction_horizons)."""
    return {series_id: to_us(watermark) if watermark is not None else 0
            for series_id, watermark in Baseline.objects.for_tenant(tenant).values_list("series_id", "watermark")}
