"""Writes for alerting: incidents rebuilt from anomalies, the notification outbox, delivery with retries.

1. `incidents_sync` runs inside detection's write transaction: it rebuilds the incidents of the
   series the run evaluated from their anomalies and the engine's alarm state (deterministically:
   an incident is one alarm, known by its series and start, so running again or replaying rebuilds
   the same ones) and writes one outbox row per channel for each incident event (opened, escalated,
   resolved, reopened). A row's unique key (channel, incident, event, event key) makes every event
   go out once, however often detection runs. `no_data_sync` opens and resolves the incidents of
   series that went silent.
2. `notifications_deliver_due` (a Celery task, right after the commit and every 20 s from beat)
   claims due rows, sends them (signed webhook, Slack, email), logs each attempt, and retries a
   failure with exponential backoff and jitter for NOTIFY_RETRY_HOURS, within a per-channel rate.
"""
from __future__ import annotations

import base64
import logging
import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.db.models.functions import Mod
from django.urls import reverse
from django.utils import timezone
from standardwebhooks import Webhook

from anomalies import delivery
from anomalies.models import (
    Anomaly,
    Baseline,
    Channel,
    DeliveryAttempt,
    Incident,
    IncidentEvent,
    Notification,
    Silence,
)
from cloudwatchdog.timeutil import format_iso, from_us, to_us
from metrics import storage as metrics_storage
from metrics.models import Series
from tenants.models import Tenant
from tenants.ratelimit import bucket_take

logger = logging.getLogger(__name__)

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
LEASE = timedelta(minutes=2)  # a claimed row is not claimed again for this long (the sender died?)


def incidents_sync(*, tenant: Tenant, watermarks_us: dict[int, int], found: set[int],
                   replaced_from_us: dict[int, int], alarms: dict) -> int:
    """Rebuild the incidents of the series a run evaluated (their newest points at `watermarks_us`)
    that can have changed: those with findings (`found`), with replaced anomalies (`replaced_from_us`:
    from when), with an incident still open or an alarm that ended in the run; queue their events.

    An incident is one alarm: its anomalies are those whose alarm began at its start (the opening
    alert and the escalations raised while it lasted); it is open while the engine's state (`alarms`:
    each series' snapshot, with the alarm going on and the alarms that ended in the run) says the
    alarm goes on, and resolved when it ended. Set-based: a handful of queries per run however many
    series. Returns how many notifications were queued."""
    anomaly_incidents = Incident.objects.for_tenant(tenant).filter(kind=Incident.KIND_ANOMALY)
    unresolved = set(anomaly_incidents.filter(resolved_at=None).values_list("series_id", flat=True))
    ended = {sid for sid, snapshot in alarms.items() if snapshot.alarms_ended}
    series_ids = sorted((found | set(replaced_from_us) | unresolved | ended) & set(watermarks_us))
    if not series_ids:
        return 0
    since = _regroup_since(tenant, series_ids, replaced_from_us)
    earliest = min((t for t in since.values() if t is not None), default=None)
    anomalies = Anomaly.objects.for_tenant(tenant).filter(series_id__in=series_ids).order_by("series_id", "ts").only(
        "id", "series_id", "ts", "severity", "score", "reason", "escalation", "alarm_started_at")  # not the JSON
    existing_rows = anomaly_incidents.filter(series_id__in=series_ids)
    if None not in since.values() and earliest is not None:
        anomalies, existing_rows = anomalies.filter(ts__gte=earliest), existing_rows.filter(started_at__gte=earliest)
    by_series: dict[int, list[Anomaly]] = {}
    for anomaly in anomalies:
        if since[anomaly.series_id] is None or anomaly.ts >= since[anomaly.series_id]:
            by_series.setdefault(anomaly.series_id, []).append(anomaly)
    existing = {(i.series_id, i.started_at): i for i in existing_rows
                if since[i.series_id] is None or i.started_at >= since[i.series_id]}
    changes = []
    earlier = _alarms_settled(tenant, series_ids, since)
    for series_id in series_ids:
        snapshot = alarms.get(series_id)
        for group in _groups(by_series.get(series_id, [])):
            watermark = from_us(watermarks_us[series_id])
            incident = existing.pop((series_id, group.start), None)
            resolved_at, out_of_band = _alarm_ending(snapshot, group, incident, watermark)
            if incident is None:
                incident = _moved(existing, series_id, group.start, resolved_at)
            lasted = (resolved_at or watermark) - group.start
            severity = _duration_severity(lasted, earlier.setdefault(series_id, []), group.start)
            changes.append(_incident_change(tenant, series_id, incident, group, resolved_at, out_of_band,
                                            (severity, lasted)))
            if resolved_at is not None:
                earlier[series_id].append((group.start, resolved_at))
    # What is left no anomaly makes any more (a replay changed history).
    Incident.objects.for_tenant(tenant).filter(id__in=[i.id for i in existing.values()]).delete()
    return _changes_write(tenant, changes)


def _moved(existing: dict, series_id: int, start: datetime, end: datetime | None) -> Incident | None:
    """An incident of the series whose alarm now begins earlier (a late point re-evaluated put the series in
    alarm before it): the one that began within this alarm keeps its id, its notifications and who
    acknowledged it; it takes the new start."""
    for key, incident in sorted(existing.items(), key=lambda item: item[0][1]):
        if key[0] == series_id and start <= key[1] and (end is None or key[1] < end):
            del existing[key]
            return incident
    return None


def _regroup_since(tenant: Tenant, series_ids: list[int], replaced_from_us: dict[int, int]) -> dict[int, datetime | None]:
    """Per series, where regrouping starts: its latest incident's start (earlier alarms are settled), or
    the start of the alarm going on when its anomalies were replaced from; None: from its first anomaly."""
    since: dict[int, datetime | None] = dict.fromkeys(series_ids)
    incidents = Incident.objects.for_tenant(tenant).filter(kind=Incident.KIND_ANOMALY, series_id__in=series_ids)
    for series_id, started_at in incidents.order_by().values("series_id").annotate(latest=Max("started_at")).values_list(
            "series_id", "latest"):
        since[series_id] = started_at
    replaced = {sid: from_us(us) for sid, us in replaced_from_us.items() if sid in since}
    if replaced:
        before = {}
        for series_id, started_at in incidents.filter(series_id__in=list(replaced)).order_by(
                "series_id", "started_at").values_list("series_id", "started_at"):
            if started_at < replaced[series_id]:
                before[series_id] = started_at
        for series_id in replaced:
            start = before.get(series_id)
            since[series_id] = None if start is None or since[series_id] is None else min(since[series_id], start)
    return since


# An alarm that has lasted this long, longer than any of its series' alarms in the three weeks before
# it, is at least this severe: a deviation that lasts hours is itself rare.
LONG_ALARMS = ((timedelta(hours=4), "high"), (timedelta(hours=1), "medium"))
LONG_ALARMS_LOOKBACK = timedelta(weeks=3)


def _alarms_settled(tenant: Tenant, series_ids: list[int], since: dict) -> dict[int, list[tuple]]:
    """Per series, (start, end) of its ended alarms that regrouping does not touch, in the lookback."""
    earliest = min((t for t in since.values() if t is not None), default=None)
    rows = Incident.objects.for_tenant(tenant).filter(kind=Incident.KIND_ANOMALY, series_id__in=series_ids,
                                                       resolved_at__isnull=False)
    if earliest is not None:
        rows = rows.filter(started_at__gte=earliest - LONG_ALARMS_LOOKBACK)
    settled: dict[int, list[tuple]] = {}
    for series_id, started_at, resolved_at in rows.order_by("started_at").values_list(
            "series_id", "started_at", "resolved_at"):
        if since[series_id] is not None and started_at < since[series_id]:
            settled.setdefault(series_id, []).append((started_at, resolved_at))
    return settled


def _duration_severity(lasted: timedelta, earlier: list[tuple], start: datetime) -> str | None:
    longest = max((end - begin for begin, end in earlier if begin >= start - LONG_ALARMS_LOOKBACK and end <= start),
                  default=timedelta(0))
    for at_least, severity in LONG_ALARMS:
        if lasted >= at_least and lasted > longest:
            return severity
    return None


@dataclass
class _Group:
    start: datetime  # when the alarm began
    anomalies: list[Anomaly]

    @property
    def last(self) -> Anomaly:
        return self.anomalies[-1]

    @property
    def peak(self) -> Anomaly:
        """The most severe anomaly, the latest of equals (an escalation went further)."""
        return max(self.anomalies, key=lambda a: (SEVERITY_RANK[a.severity], a.score, a.ts))


def _groups(anomalies: list[Anomaly]) -> list[_Group]:
    """The anomalies (in time order) by the alarm they belong to; one stored before alarms were kept
    and never grouped makes its own."""
    groups: dict[datetime, _Group] = {}
    for anomaly in anomalies:
        start = anomaly.alarm_started_at or anomaly.ts
        groups.setdefault(start, _Group(start, [])).anomalies.append(anomaly)
    return list(groups.values())


def _alarm_ending(snapshot, group: _Group, incident: Incident | None, watermark: datetime) -> tuple:
    """(resolved_at or None while the alarm goes on, out of band now) of a group's alarm: from the
    engine's state after the run; an alarm it neither ended nor holds ended before the run (as
    stored), or, stored before alarms were kept, is over by the newest point evaluated."""
    start_us = to_us(group.start)
    ended = dict(snapshot.alarms_ended) if snapshot is not None else {}
    if start_us in ended:
        return from_us(ended[start_us]), False
    if snapshot is not None and snapshot.state == "alarm" and snapshot.state_since_us == start_us:
        return None, bool(snapshot.out_of_band)
    if incident is not None and incident.resolved_at is not None:
        return incident.resolved_at, False
    return watermark, False


@dataclass
class _Change:
    incident: Incident
    is_new: bool
    previous_status: str | None
    events: list[tuple[str, str]]
    changed: bool = True  # False: the same as stored (a rerun, a replay of the same history)


def _incident_change(tenant: Tenant, series_id: int, incident: Incident | None, group: _Group,
                     resolved_at: datetime | None, out_of_band: bool, duration: tuple) -> _Change:
    """The incident an alarm makes now, and the events since it was last written: opened, escalated
    (once per escalation, and once when its duration made it more severe), resolved, reopened (a
    replay found the alarm going on after all)."""
    peak = group.peak
    peak_severity, reason = peak.severity, peak.reason
    duration_severity, lasted = duration
    if duration_severity is not None and SEVERITY_RANK[duration_severity] > SEVERITY_RANK[peak_severity]:
        peak_severity = duration_severity
        reason = (f"In alarm for {round(lasted / timedelta(hours=1), 1):g} h, longer than any alarm of this series in "
                  f"the three weeks before. {peak.reason}")
    events: list[tuple[str, str]] = []
    is_new = incident is None
    before = None if is_new else [getattr(incident, name) for name in _INCIDENT_FIELDS[:-1]]
    if is_new:
        incident = Incident(tenant=tenant, series_id=series_id, started_at=group.start, status=Incident.STATUS_OPEN)
        events.append(("opened", format_iso(group.start)))
        previous_status, was_resolved_at = None, None
    else:
        previous_status, was_resolved_at = incident.status, incident.resolved_at
    events += [("escalated", format_iso(a.ts)) for a in group.anomalies if a.escalation]
    if peak_severity != peak.severity:
        events.append(("escalated", f"lasting {peak_severity}"))
    if resolved_at is not None:
        status = Incident.STATUS_RESOLVED
        if was_resolved_at is None:
            events.append(("resolved", format_iso(resolved_at)))
    else:
        if was_resolved_at is not None:
            events.append(("reopened", format_iso(group.last.ts)))
        # Open, or a person's triage (acknowledged, even resolved by hand) while the alarm lasts.
        status = Incident.STATUS_OPEN if previous_status is None or was_resolved_at is not None else previous_status
    incident.last_anomaly_at, incident.resolved_at, incident.status = group.last.ts, resolved_at, status
    incident.peak_severity, incident.peak_score, incident.reason = peak_severity, peak.score, reason
    incident.anomaly_count, incident.out_of_band = len(group.anomalies), out_of_band
    incident.started_at = group.start
    changed = is_new or before != [getattr(incident, name) for name in _INCIDENT_FIELDS[:-1]]
    return _Change(incident, is_new, previous_status, events, changed)


_INCIDENT_FIELDS = ["started_at", "last_anomaly_at", "resolved_at", "status", "peak_severity", "peak_score",
                    "reason", "anomaly_count", "out_of_band", "updated_at"]


def _changes_write(tenant: Tenant, changes: list[_Change]) -> int:
    """Write the incidents (new ones in one insert, the others in one update), their status events and
    the notifications of their events; returns how many notifications were queued."""
    changes = [c for c in changes if c.changed]
    if not changes:
        return 0
    now = timezone.now()
    for change in changes:
        change.incident.updated_at = now
    Incident.objects.bulk_create([c.incident for c in changes if c.is_new])
    Incident.objects.for_tenant(tenant).bulk_update([c.incident for c in changes if not c.is_new], _INCIDENT_FIELDS,
                                                    batch_size=500)
    IncidentEvent.objects.bulk_create([
        IncidentEvent(tenant=tenant, incident=c.incident, actor="detection", from_status=c.previous_status,
                      to_status=c.incident.status)
        for c in changes if c.previous_status is not None and c.previous_status != c.incident.status])
    # Ended at `now`, a silence "until resolved" still covers the resolved message queued below (its
    # incident's last anomaly came before now); ended here, it ends whether or not a channel is enabled.
    _silences_end_with(tenant, [c.incident.id for c in changes if any(event == "resolved" for event, _ in c.events)], now)
    with_events = [c for c in changes if c.events]
    if not with_events:
        return 0
    series = {s.id: s for s in Series.objects.for_tenant(tenant).filter(
        id__in={c.incident.series_id for c in with_events})}
    channels = list(Channel.objects.for_tenant(tenant).filter(enabled=True))
    if not channels:
        return 0
    silences = list(Silence.objects.for_tenant(tenant).filter(
        end__gt=min(c.incident.last_anomaly_at for c in with_events)))
    rows = []
    for change in with_events:
        incident = change.incident
        incident.series = series[incident.series_id]
        silenced = any(s.matches(incident.series, incident.last_anomaly_at) for s in silences)
        for channel in _matching(channels, incident.series, incident.peak_severity):
            rows += [Notification(tenant=tenant, channel=channel, incident=incident, event=event, event_key=key,
                                  message_id=f"msg_{uuid.uuid4().hex}", payload=_payload(incident, event),
                                  status=Notification.SILENCED if silenced else Notification.PENDING,
                                  next_attempt_at=now)
                     for event, key in change.events]
    return _insert_new(rows)


def _silences_end_with(tenant: Tenant, incident_ids: list[int], now: datetime) -> None:
    """End the silences set to last until one of these incidents resolved (a scheduled one is dropped)."""
    if not incident_ids:
        return
    tied = Silence.objects.for_tenant(tenant).filter(ends_with_incident_id__in=incident_ids, end__gt=now)
    tied.filter(start__gt=now).delete()
    tied.update(end=now)


def _insert_new(rows: list[Notification]) -> int:
    """Insert the rows whose event is not queued yet; returns how many were new. The unique key is what
    guarantees "once" (a concurrent insert is ignored); reading the queued keys first makes the count exact."""
    if not rows:
        return 0
    queued = set(Notification.objects.unscoped().filter(
        tenant_id=rows[0].tenant_id, incident_id__in={row.incident_id for row in rows}).values_list(
        "channel_id", "incident_id", "event", "event_key"))
    new = [row for row in rows if (row.channel_id, row.incident_id, row.event, row.event_key) not in queued]
    Notification.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def _matching(channels: list[Channel], series: Series, severity: str) -> list[Channel]:
    return [c for c in channels if SEVERITY_RANK[severity] >= SEVERITY_RANK[c.min_severity]
            and (not c.service or c.service == series.service)
            and (not c.metric_name or c.metric_name == series.metric_name)]


def _payload(incident: Incident, event: str) -> dict:
    series = incident.series
    return {
        "type": f"incident.{event}",
        "incident": {
            "id": incident.id, "status": incident.status, "severity": incident.peak_severity,
            "score": incident.peak_score, "started_at": format_iso(incident.started_at),
            "last_anomaly_at": format_iso(incident.last_anomaly_at),
            "resolved_at": format_iso(incident.resolved_at) if incident.resolved_at else None,
            "anomaly_count": incident.anomaly_count, "reason": incident.reason, "kind": incident.kind,
            "out_of_band": incident.out_of_band,
            # The console's incident page: its state, chart, timeline and the buttons to act on it.
            "url": settings.PUBLIC_BASE_URL + reverse("admin:anomalies_incident_change", args=[incident.id]),
        },
        "series": {"id": series.id, "service": series.service, "resource_id": series.resource_id,
                   "metric_name": series.metric_name, "tags": series.tags},
    }


# A series is silent when no point came for max(NO_DATA_MIN, NO_DATA_INTERVALS × its usual interval).
# Scheduled passes notice a silence within a minute or two; one noticed more than NO_DATA_PAGE_WITHIN
# after it began (a series that stopped long ago, seen at start-up or after an import) sets the state
# without paging anyone.
NO_DATA_MIN = timedelta(minutes=15)
NO_DATA_INTERVALS = 10
NO_DATA_PAGE_WITHIN = timedelta(minutes=30)


def no_data_sync(*, tenant: Tenant, now: datetime, shard: int | None = None) -> int:
    """Series of the tenant that have reported steadily (ready) and went silent enter no_data, with an
    incident of that kind; those whose points came back (the run evaluated them, so their state is no
    longer no_data) resolve it at their first point after the silence. A tenant may turn no-data
    detection off. Returns how many notifications were queued."""
    changes = _no_data_resolved(tenant)
    if not tenant.no_data_alerts:
        return _changes_write(tenant, changes)
    # Only series silent for the shortest silence are read: the rest reported within it.
    baselines = Baseline.objects.for_tenant(tenant).filter(
        state__in=[Baseline.STATE_OK, Baseline.STATE_ALARM], watermark__lt=now - NO_DATA_MIN,
        interval_seconds__isnull=False)
    if shard is not None:
        baselines = baselines.annotate(shard=Mod("series_id", settings.CLOUDWATCHDOG["DETECTION_SHARDS"])).filter(
            shard=shard)
    silent = []
    for baseline in baselines.only("id", "series_id", "watermark", "interval_seconds"):
        threshold = max(NO_DATA_MIN, NO_DATA_INTERVALS * timedelta(seconds=baseline.interval_seconds))
        if now - baseline.watermark >= threshold:
            silent.append((baseline, baseline.watermark + threshold))
    for baseline, since in silent:
        baseline.state, baseline.state_since, baseline.out_of_band = Baseline.STATE_NO_DATA, since, False
    Baseline.objects.for_tenant(tenant).bulk_update([b for b, _ in silent], ["state", "state_since", "out_of_band"],
                                                    batch_size=1000)
    changes += [_Change(Incident(
        tenant=tenant, series_id=baseline.series_id, kind=Incident.KIND_NO_DATA, started_at=since,
        last_anomaly_at=baseline.watermark, status=Incident.STATUS_OPEN, peak_severity=Anomaly.SEVERITY_MEDIUM,
        peak_score=0.5, anomaly_count=0, reason=_silence_sentence(baseline.watermark, baseline.interval_seconds)),
        True, None, [("opened", format_iso(since))])
        for baseline, since in silent if now - since <= NO_DATA_PAGE_WITHIN]
    return _changes_write(tenant, changes)


def _silence_sentence(last_point: datetime, interval_seconds: float) -> str:
    every = f"{interval_seconds:g} s" if interval_seconds < 120 else f"{interval_seconds / 60:g} min"
    return (f"No points since {last_point:%Y-%m-%d %H:%M:%S} UTC; the series usually reports every {every}: silent "
            f"for longer than max(15 min, {NO_DATA_INTERVALS} intervals).")


def _no_data_resolved(tenant: Tenant) -> list[_Change]:
    """The open no_data incidents whose series reports again, resolved at its first point after the silence."""
    reporting = list(Incident.objects.for_tenant(tenant).filter(kind=Incident.KIND_NO_DATA, resolved_at=None).exclude(
        series__baselines__state=Baseline.STATE_NO_DATA))
    if not reporting:
        return []
    series_ids, times, _ = metrics_storage.points_after(
        tenant=tenant, after_us={i.series_id: to_us(i.last_anomaly_at) for i in reporting}, limit_per_series=1)
    first_back = dict(zip(series_ids.tolist(), times.tolist()))
    changes, returned = [], {}
    for incident in reporting:
        # Points sent late (an agent's buffer after a network outage) can fall inside the silence.
        back = first_back.get(incident.series_id)
        returned[incident.series_id] = max(from_us(back), incident.started_at) if back is not None else timezone.now()
        previous = incident.status
        incident.resolved_at, incident.status = returned[incident.series_id], Incident.STATUS_RESOLVED
        changes.append(_Change(incident, False, previous, [("resolved", format_iso(incident.resolved_at))]))
    # Back to ok: since its points came back, not since its last alarm ended.
    back_to_ok = list(Baseline.objects.for_tenant(tenant).filter(series_id__in=list(returned), state=Baseline.STATE_OK)
                      .only("id", "series_id", "state_since"))
    for baseline in back_to_ok:
        baseline.state_since = max(filter(None, (baseline.state_since, returned[baseline.series_id])))
    Baseline.objects.for_tenant(tenant).bulk_update(back_to_ok, ["state_since"], batch_size=1000)
    return changes


def notification_test_queue(*, channel: Channel) -> Notification:
    """A test message to one channel ("send test"), delivered like any other."""
    return Notification.objects.create(
        tenant=channel.tenant, channel=channel, incident=None, event="test", event_key=uuid.uuid4().hex,
        message_id=f"msg_{uuid.uuid4().hex}", next_attempt_at=timezone.now(),
        payload={"type": "test", "message": f"A test notification to {channel.name} from CloudWatchDog."})


def reminders_queue(*, now: datetime | None = None) -> int:
    """For channels with renotify_hours: a reminder of each open, unacknowledged incident every N hours."""
    now = now or timezone.now()
    queued = 0
    for channel in Channel.objects.unscoped().filter(enabled=True, renotify_hours__isnull=False).select_related("tenant"):
        period = channel.renotify_hours * 3600
        slot = int(now.timestamp()) // period
        silences = list(Silence.objects.for_tenant(channel.tenant).filter(start__lte=now, end__gt=now))
        # Open and still going on: an alarm that ended reminds nobody, whatever its triage status says.
        for incident in Incident.objects.for_tenant(channel.tenant).filter(
                status=Incident.STATUS_OPEN, resolved_at__isnull=True,
                started_at__lte=now - timedelta(seconds=period)).select_related("series"):
            if _matching([channel], incident.series, incident.peak_severity):
                # A silenced reminder is kept as such: the incident's timeline says why nobody was reminded.
                silenced = any(s.matches(incident.series, now) for s in silences)
                queued += _insert_new([Notification(
                    tenant=channel.tenant, channel=channel, incident=incident, event="reminder", event_key=str(slot),
                    message_id=f"msg_{uuid.uuid4().hex}", payload=_payload(incident, "reminder"), next_attempt_at=now,
                    status=Notification.SILENCED if silenced else Notification.PENDING,
                )])
    return queued


def notifications_deliver_due(*, now: datetime | None = None, limit: int = 200) -> int:
    """Deliver the notifications whose attempt is due; returns how many attempts were made."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(Notification.objects.unscoped().filter(status=Notification.PENDING, next_attempt_at__lte=now)
                   .select_for_update(skip_locked=True).order_by("next_attempt_at")[:limit])
        # Claimed: a concurrent sender skips them, and a sender that dies leaves them due again later.
        Notification.objects.unscoped().filter(id__in=[n.id for n in due]).update(next_attempt_at=now + LEASE)
    attempts = 0
    for notification in due:
        try:
            attempts += _deliver(notification, now)
        except Exception:  # one notification's trouble must not hold up the others (of every tenant)
            logger.exception("delivering notification %s failed", notification.id)
            _failed_attempt(notification, now)
    return attempts


def _failed_attempt(notification: Notification, now: datetime) -> None:
    """Count an attempt that broke before its outcome was written, and retry it later like any failure."""
    try:
        DeliveryAttempt.objects.create(tenant_id=notification.tenant_id, notification=notification, latency_ms=0,
                                       error="the attempt failed inside CloudWatchDog; it has been logged")
        if now - notification.created_at >= timedelta(hours=settings.CLOUDWATCHDOG["NOTIFY_RETRY_HOURS"]):
            later = {"status": Notification.GAVE_UP}
        else:
            later = {"next_attempt_at": now + backoff(notification.attempts + 1)}
        Notification.objects.unscoped().filter(id=notification.id).update(attempts=notification.attempts + 1, **later)
    except Exception:
        logger.exception("recording the failed attempt of notification %s failed", notification.id)


def _deliver(notification: Notification, now: datetime) -> int:
    channel = Channel.objects.unscoped().filter(id=notification.channel_id, tenant_id=notification.tenant_id).first()
    if channel is None or not channel.enabled:
        Notification.objects.unscoped().filter(id=notification.id).update(status=Notification.GAVE_UP)
        return 0
    per_minute = settings.CLOUDWATCHDOG["CHANNEL_MESSAGES_PER_MINUTE"]
    wait = bucket_take(name=f"channel:{channel.id}", tenant_id=channel.tenant_id, rate=per_minute / 60, burst=per_minute)
    if wait is not None:  # over the channel's rate: later, without counting an attempt
        Notification.objects.unscoped().filter(id=notification.id).update(next_attempt_at=now + timedelta(seconds=wait))
        return 0
    outcome = _send(channel, notification, now)
    DeliveryAttempt.objects.create(tenant_id=notification.tenant_id, notification=notification,
                                   status_code=outcome.status_code, latency_ms=outcome.latency_ms,
                                   response_excerpt=outcome.excerpt, error=outcome.error)
    attempts = notification.attempts + 1
    if outcome.ok:
        update = {"status": Notification.DELIVERED, "delivered_at": timezone.now()}
    elif now - notification.created_at >= timedelta(hours=settings.CLOUDWATCHDOG["NOTIFY_RETRY_HOURS"]):
        update = {"status": Notification.GAVE_UP}
    else:
        update = {"next_attempt_at": now + backoff(attempts)}
    Notification.objects.unscoped().filter(id=notification.id).update(attempts=attempts, **update)
    return 1


def backoff(attempts: int) -> timedelta:
    """Exponential, 10 s doubling up to an hour, with full jitter in its upper half."""
    ceiling = min(10 * 2 ** (attempts - 1), 3600)
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _send(channel: Channel, notification: Notification, now: datetime) -> delivery.Outcome:
    payload = notification.payload
    if channel.kind == Channel.KIND_EMAIL:
        return delivery.send_email(channel.email, _subject(payload), _text(payload))
    if channel.kind == Channel.KIND_SLACK:
        return delivery.post_json(channel.url, orjson.dumps({"text": _text(payload)}), {})
    body = orjson.dumps(payload).decode()
    signature = Webhook(channel.secret).sign(notification.message_id, now, body)
    return delivery.post_json(channel.url, body.encode(), {
        "webhook-id": notification.message_id, "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature})


def _subject(payload: dict) -> str:
    if payload.get("type") == "test":
        return "CloudWatchDog: test notification"
    incident, series = payload["incident"], payload["series"]
    return (f"[{incident['severity']}] {payload['type'].split('.')[-1]}: {series['service']}/{series['resource_id']}/"
            f"{series['metric_name']}")


def _text(payload: dict) -> str:
    if payload.get("type") == "test":
        return payload["message"]
    incident = payload["incident"]
    if incident.get("kind") == "no_data":
        now = f"reporting again since {incident['resolved_at']}" if incident["resolved_at"] else "still silent"
        return f"{_subject(payload)}\n{incident['reason']}\nSilent since {incident['started_at']}; {now}.\n{incident['url']}"
    if incident["resolved_at"]:
        now = f"back inside its band since {incident['resolved_at']}"
    else:
        now = "out of band now" if incident.get("out_of_band") else "inside its band now, not yet for the recovery time"
    return (f"{_subject(payload)}\n{incident['reason']}\nIn alarm since {incident['started_at']} "
            f"({incident['anomaly_count']} anomalies); {now}; status {incident['status']}.\n{incident['url']}")


def channel_secret() -> str:
    """A Standard Webhooks signing secret: whsec_ and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


CHANNEL_FIELDS = ("name", "kind", "url", "email", "min_severity", "service", "metric_name", "renotify_hours", "enabled")


def channel_create(*, tenant: Tenant, data: dict) -> Channel:
    """A tenant's channel; a webhook gets its signing secret (returned once, by the caller's answer)."""
    channel = Channel(tenant=tenant, **{k: v for k, v in data.items() if k in CHANNEL_FIELDS})
    if channel.kind == Channel.KIND_WEBHOOK:
        channel.secret = channel_secret()
    channel.save()
    return channel


def channel_update(*, channel: Channel, data: dict) -> Channel:
    for name, value in data.items():
        if name in CHANNEL_FIELDS and name != "kind":
            setattr(channel, name, value)
    channel.save()
    return channel


def channel_delete(*, channel: Channel) -> None:
    channel.delete()


def incident_status_set(*, tenant: Tenant, incident: Incident, status: str, actor: str, note: str = "") -> Incident:
    """A person's triage of an incident, recorded as an event like an anomaly's."""
    if status not in dict(Incident.STATUSES):
        raise ValueError(f"unknown status {status!r}")
    with transaction.atomic():
        incident = Incident.objects.for_tenant(tenant).select_for_update().get(id=incident.id)
        if incident.status != status or note:
            IncidentEvent.objects.create(tenant=tenant, incident=incident, actor=actor[:200],
                                         from_status=incident.status, to_status=status, note=note)
        incident.status = status
        incident.save(update_fields=["status", "updated_at"])
        if status == Incident.STATUS_RESOLVED:
            _silences_end_with(tenant, [incident.id], timezone.now())
    return incident


class TooManySilences(ValueError):
    """The tenant has as many silences not yet over as it may have."""


def silence_create(*, tenant: Tenant, data: dict, actor: str) -> Silence:
    """A maintenance window; at most SILENCES_PER_TENANT not yet over (every detection run reads them).
    Active at once, it also holds back the matching incidents' messages still waiting to go out (an
    "opened" retried against a failing channel would otherwise arrive after the engineer silenced it)."""
    now = timezone.now()
    with transaction.atomic():
        # One create at a time per tenant, so two at once cannot both pass the limit.
        Tenant.objects.select_for_update().filter(id=tenant.id).first()
        most = settings.CLOUDWATCHDOG["SILENCES_PER_TENANT"]
        if Silence.objects.for_tenant(tenant).filter(end__gt=now).count() >= most:
            raise TooManySilences(f"this tenant has {most} silences not yet over, the most it may have "
                                  "(SILENCES_PER_TENANT); end one first")
        silence = Silence.objects.create(tenant=tenant, actor=actor[:200], **data)
        if silence.start <= now < silence.end:
            waiting = (Notification.objects.for_tenant(tenant).filter(status=Notification.PENDING, incident__isnull=False)
                       .select_related("incident__series"))
            held = [n.id for n in waiting if silence.matches(n.incident.series, now)]
            Notification.objects.for_tenant(tenant).filter(id__in=held).update(status=Notification.SILENCED)
    return silence


def silence_delete(*, silence: Silence) -> None:
    silence.delete()


def silence_end(*, silence: Silence, now: datetime) -> None:
    """End a silence now: an active one ends at `now`, a scheduled one is dropped, an ended one stays."""
    state = silence.state_at(now)
    if state == "scheduled":
        silence.delete()
    elif state == "active":
        silence.end = now
        silence.save(update_fields=["end"])
