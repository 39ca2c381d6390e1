"""Baselines (with the per-series watermark and engine checkpoint), anomalies and detection runs."""
import uuid

from django.db import models

from anomalies.engine.config import severity_of
from metrics.models import NAME_MAX_BYTES, VALUE_MAX_BYTES, Series
from tenants.models import TenantOwned


class Baseline(TenantOwned):
    STATUS_WARMING = "warming"
    STATUS_READY = "ready"
    STATUSES = [(STATUS_WARMING, "warming"), (STATUS_READY, "ready")]

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="baselines", help_text="The series.")
    method = models.CharField(
        max_length=40, default="trailing_median",
        help_text="How the expected value is computed: trailing_median, or seasonal_median (the same time on "
        "earlier days or weeks; each anomaly's baseline names which).")
    status = models.CharField(
        max_length=10, choices=STATUSES, default=STATUS_WARMING,
        help_text="warming: not enough history yet, no anomaly is raised; ready: anomalies are raised.",
    )
    window_points = models.PositiveIntegerField(default=0, help_text="Trailing points the baseline is computed over.")
    sample_count = models.PositiveIntegerField(default=0, help_text="Points currently in the trailing window.")
    median = models.FloatField(null=True, blank=True, help_text="Median of the trailing window (the expected value).")
    mad = models.FloatField(null=True, blank=True, help_text="Median absolute deviation of the trailing window.")
    scale = models.FloatField(null=True, blank=True, help_text="Robust σ used for the band (1.4826×MAD, floored).")
    lower = models.FloatField(null=True, blank=True, help_text="Lower edge of the current expected band.")
    upper = models.FloatField(null=True, blank=True, help_text="Upper edge of the current expected band.")
    first_ts = models.DateTimeField(null=True, blank=True, help_text="Timestamp of the series' first point.")
    watermark = models.DateTimeField(
        null=True, blank=True, help_text="Newest point read by detection; newer points are evaluated by the next run.",
    )
    evaluating_from = models.DateTimeField(
        null=True, blank=True,
        help_text="Set while a run evaluates from this time; left set if that run died, so the next run redoes it.",
    )
    late_from = models.DateTimeField(
        null=True, blank=True, help_text="Earliest point that arrived behind the watermark and is not evaluated yet.",
    )
    late_points = models.PositiveIntegerField(
        default=0, help_text="Points that arrived behind the watermark and wait for re-evaluation or a replay.",
    )
    STATE_OK, STATE_ALARM, STATE_NO_DATA, STATE_WARMING = "ok", "alarm", "no_data", "warming"
    STATES = [(s, s) for s in (STATE_OK, STATE_ALARM, STATE_NO_DATA, STATE_WARMING)]
    state = models.CharField(
        max_length=10, choices=STATES, default=STATE_WARMING, db_default=STATE_WARMING,
        help_text="The series' alarm state: ok; alarm (an anomaly opened it, it ends once the points have stayed "
        "inside the band for the recovery time); no_data (silent for longer than max(15 min, 10 x its usual "
        "interval)); warming (not enough history yet).")
    state_since = models.DateTimeField(null=True, blank=True, help_text="Since when the series is in its state.")
    out_of_band = models.BooleanField(
        default=False, db_default=False, help_text="Its newest point is outside the model's band.")
    interval_seconds = models.FloatField(
        null=True, blank=True, help_text="The usual time between its points (the median step of the window).")
    recurring = models.JSONField(
        default=list, db_default=models.Value([], output_field=models.JSONField()), blank=True,
        help_text="Recurring excursions recognised (a nightly job): period (daily/weekly), direction (above/below), "
        "start/end (UTC), seen on how many of the last 3 periods. Deviations matching one raise no anomaly.")
    checkpoint = models.BinaryField(null=True, blank=True, editable=False, help_text="The engine's state after the watermark.")
    updated_at = models.DateTimeField(auto_now=True, help_text="Last time detection updated this baseline.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "series"], name="baseline_tenant_series_uniq")]
        indexes = [models.Index(fields=["tenant", "status"], name="baseline_tenant_status")]


class Anomaly(TenantOwned):
    SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH = "low", "medium", "high"
    SEVERITIES = [(SEVERITY_LOW, "low"), (SEVERITY_MEDIUM, "medium"), (SEVERITY_HIGH, "high")]
    STATUS_OPEN, STATUS_ACKNOWLEDGED, STATUS_RESOLVED = "open", "acknowledged", "resolved"
    STATUSES = [(STATUS_OPEN, "open"), (STATUS_ACKNOWLEDGED, "acknowledged"), (STATUS_RESOLVED, "resolved")]

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="anomalies", help_text="The series.")
    ts = models.DateTimeField(help_text="Timestamp of the anomalous point.")
    value = models.FloatField(help_text="The observed value.")
    expected = models.FloatField(help_text="What the baseline expected.")
    lower = models.FloatField(help_text="Lower edge of the expected band.")
    upper = models.FloatField(help_text="Upper edge of the expected band.")
    score = models.FloatField(
        help_text="0–1, one scale for every detector: how rare a deviation this large was in the series' last three "
        "weeks, −log10(chance) / 4 (baseline_stats.chance).")
    severity = models.CharField(
        max_length=10, choices=SEVERITIES,
        help_text="From the score: high from 0.8 (about 1 in 1,600), medium from 0.5 (1 in 100), else low.")
    status = models.CharField(max_length=15, choices=STATUSES, default=STATUS_OPEN, help_text="Triage status.")
    detector = models.CharField(max_length=40, help_text="The detector that wrote the reason.")
    parameters = models.JSONField(default=dict, help_text="The detector's parameters when it fired.")
    baseline_stats = models.JSONField(default=dict, help_text="The baseline statistics the point was compared with.")
    suppression = models.JSONField(default=dict, help_text="The suppression state (cooldown, previous alert).")
    reason = models.TextField(help_text="One sentence built from the stored fields.")
    run = models.ForeignKey(
        "DetectionRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="anomalies",
        help_text="The detection run that created this anomaly.",
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the anomaly was recorded.")
    drift_started_at = models.DateTimeField(
        null=True, blank=True,
        help_text="For a cusum, variance or flatline anomaly: when the points it sums up began (the drift, the shifted "
                  "points, the run).")
    muted = models.BooleanField(default=False, db_default=False,
                                help_text="Raised while its series was muted: stored, but not to be acted on.")
    escalation = models.BooleanField(
        default=False, db_default=False,
        help_text="Raised inside an alarm already going on because it went markedly beyond the alarm's peak "
        "(escalation_factor times as far from the expected value); sent as incident.escalated.")
    alarm_started_at = models.DateTimeField(
        null=True, blank=True, help_text="When the alarm it belongs to began (its incident's start).")

    class Meta:
        verbose_name_plural = "anomalies"
        constraints = [models.UniqueConstraint(fields=["tenant", "series", "ts"], name="anomaly_tenant_series_ts_uniq")]
        indexes = [
            models.Index(fields=["tenant", "-ts", "-id"], name="anomaly_tenant_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.severity} anomaly of {self.series} at {self.ts:%Y-%m-%d %H:%M:%S} UTC"

    @staticmethod
    def severity_for(score: float) -> str:
        return severity_of(score)


class DetectionRun(TenantOwned):
    STATUS_QUEUED, STATUS_RUNNING, STATUS_SUCCEEDED, STATUS_FAILED, STATUS_SKIPPED = (
        "queued", "running", "succeeded", "failed", "skipped")
    STATUSES = [(s, s) for s in (STATUS_QUEUED, STATUS_RUNNING, STATUS_SUCCEEDED, STATUS_FAILED, STATUS_SKIPPED)]
    TRIGGERS = [(t, t) for t in ("api", "api_async", "command", "beat", "replay")]

    run_id = models.UUIDField(default=uuid.uuid4, editable=False, help_text="Public id of the run.")
    trigger = models.CharField(max_length=20, choices=TRIGGERS, help_text="What started the run.")
    status = models.CharField(max_length=10, choices=STATUSES, default=STATUS_QUEUED, help_text="Where the run is.")
    requested_at = models.DateTimeField(auto_now_add=True, help_text="When the run was requested.")
    started_at = models.DateTimeField(null=True, blank=True, help_text="When the run started working.")
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When the run ended.")
    series_processed = models.PositiveIntegerField(default=0, help_text="Series with points evaluated.")
    points_processed = models.PositiveBigIntegerField(default=0, help_text="Points evaluated.")
    anomalies_created = models.PositiveIntegerField(default=0, help_text="Anomalies recorded by this run.")
    duration_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Wall time of the run.")
    replay_since = models.DateTimeField(null=True, blank=True, help_text="For a replay: the start of the recomputed range.")
    shard = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="For one shard of a large tenant's scheduled pass: the series whose id modulo DETECTION_SHARDS is this.")
    error = models.TextField(blank=True, help_text="Why the run failed or was skipped.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "run_id"], name="run_tenant_run_id_uniq")]
        indexes = [models.Index(fields=["tenant", "-requested_at"], name="run_tenant_requested")]

    def __str__(self) -> str:
        return f"{self.run_id} ({self.status})"


class DetectionState(TenantOwned):
    """Per-tenant detection state that ingest reads on every request, kept to one small row."""

    watermark_max = models.DateTimeField(
        null=True, blank=True,
        help_text="The newest watermark of any series of the tenant: a batch entirely newer than this has no late point.",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant"], name="detectionstate_tenant_uniq")]


# Tables that raw SQL names.
BASELINE_TABLE = Baseline._meta.db_table
ANOMALY_TABLE = Anomaly._meta.db_table
DETECTION_STATE_TABLE = DetectionState._meta.db_table


class AnomalyEvent(TenantOwned):
    """One change of an anomaly's status: who, when, from what to what, and why (the audit trail)."""

    anomaly = models.ForeignKey(Anomaly, on_delete=models.CASCADE, related_name="events", help_text="The anomaly.")
    at = models.DateTimeField(auto_now_add=True, help_text="When the change was made.")
    actor = models.CharField(max_length=200, help_text="Who made it: an admin user (user:<name>) or an API key (key:<prefix>).")
    from_status = models.CharField(max_length=15, help_text="The status before.")
    to_status = models.CharField(max_length=15, help_text="The status after.")
    note = models.TextField(blank=True, help_text="What was done, or why.")

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["tenant", "anomaly", "at"], name="anomaly_event_anomaly_at")]


class SeriesMute(TenantOwned):
    """A period in which a series' anomalies are stored but marked muted (maintenance, a known incident)."""

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="mutes", help_text="The series.")
    start = models.DateTimeField(help_text="Muted from (inclusive).")
    end = models.DateTimeField(help_text="Muted until (exclusive).")
    actor = models.CharField(max_length=200, help_text="Who muted it.")
    note = models.TextField(blank=True, help_text="Why.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the mute was made.")

    class Meta:
        indexes = [models.Index(fields=["tenant", "series", "end"], name="series_mute_series_end")]
        constraints = [models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="series_mute_end_after_start")]

    def __str__(self) -> str:
        return f"{self.series} muted {self.start:%Y-%m-%d %H:%M} – {self.end:%Y-%m-%d %H:%M} UTC"


class Incident(TenantOwned):
    """One alarm of one series: opened by the anomaly that put the series in alarm, holding the
    escalations raised while it lasted, resolved when the series left the alarm (its points back inside
    the band for the recovery time). Or a no_data incident: the series went silent, resolved when its
    points came back.

    Rebuilt from the anomalies and the alarms' ends (anomalies.alerting), so a replay gives the same
    incidents: an incident is known by its series, kind and start."""

    KIND_ANOMALY, KIND_NO_DATA = "anomaly", "no_data"
    KINDS = [(KIND_ANOMALY, "anomaly"), (KIND_NO_DATA, "no data")]

    STATUS_OPEN, STATUS_ACKNOWLEDGED, STATUS_RESOLVED = "open", "acknowledged", "resolved"
    STATUSES = [(STATUS_OPEN, "open"), (STATUS_ACKNOWLEDGED, "acknowledged"), (STATUS_RESOLVED, "resolved")]

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="incidents", help_text="The series.")
    kind = models.CharField(max_length=10, choices=KINDS, default=KIND_ANOMALY, db_default=KIND_ANOMALY,
                            help_text="anomaly: the series was out of line; no_data: it went silent.")
    started_at = models.DateTimeField(help_text="Time of its first anomaly (no_data: when the silence became one).")
    last_anomaly_at = models.DateTimeField(help_text="Time of its latest anomaly (no_data: of the last point before "
                                           "the silence).")
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="When it was resolved (automatically: the "
                                       "first point of the recovery time the series spent back inside its band; "
                                       "no_data: its first point after the silence).")
    out_of_band = models.BooleanField(default=False, db_default=False,
                                      help_text="While open: the series' newest point is outside its band.")
    status = models.CharField(max_length=15, choices=STATUSES, default=STATUS_OPEN, help_text="Triage status.")
    peak_severity = models.CharField(max_length=10, choices=Anomaly.SEVERITIES, help_text="Highest severity so far.")
    peak_score = models.FloatField(help_text="Highest score so far.")
    anomaly_count = models.PositiveIntegerField(help_text="Anomalies in it.")
    reason = models.TextField(help_text="The reason of its peak anomaly.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "series", "kind", "started_at"],
                                               name="incident_series_kind_start")]
        indexes = [models.Index(fields=["tenant", "-started_at"], name="incident_tenant_started")]

    def __str__(self) -> str:
        return f"{self.peak_severity} incident of {self.series} from {self.started_at:%Y-%m-%d %H:%M} UTC"


class IncidentEvent(TenantOwned):
    """A change of an incident's status, by a person, a key or detection itself (the audit trail)."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=200, help_text="user:<name>, key:<prefix> or detection.")
    from_status = models.CharField(max_length=15)
    to_status = models.CharField(max_length=15)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]


INCIDENT_TABLE = Incident._meta.db_table


class Channel(TenantOwned):
    """Where a tenant's incident notifications go: a signed webhook, a Slack incoming webhook or email."""

    KIND_WEBHOOK, KIND_SLACK, KIND_EMAIL = "webhook", "slack", "email"
    KINDS = [(KIND_WEBHOOK, "webhook"), (KIND_SLACK, "slack"), (KIND_EMAIL, "email")]

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=KINDS)
    url = models.URLField(max_length=2000, blank=True, help_text="webhook and slack: where to POST.")
    email = models.EmailField(blank=True, help_text="email: the recipient.")
    secret = models.CharField(max_length=100, blank=True, editable=False,
                              help_text="webhook: the signing secret (whsec_…), shown once when created.")
    min_severity = models.CharField(max_length=10, choices=Anomaly.SEVERITIES, default=Anomaly.SEVERITY_LOW,
                                    help_text="Incidents below this peak severity are not sent here.")
    service = models.CharField(max_length=1024, blank=True, help_text="Only incidents of this service, if set.")
    metric_name = models.CharField(max_length=1024, blank=True, help_text="Only incidents of this metric, if set.")
    renotify_hours = models.PositiveIntegerField(null=True, blank=True, help_text="Remind every N hours while an "
                                                 "incident is open and unacknowledged (empty: never).")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Notification(TenantOwned):
    """One message to one channel about one incident event: the outbox row, written in the same transaction
    as the incident change and delivered (retried with backoff for 24 h) by a Celery task."""

    PENDING, DELIVERED, GAVE_UP, SILENCED = "pending", "delivered", "gave_up", "silenced"
    STATUSES = [(s, s) for s in (PENDING, DELIVERED, GAVE_UP, SILENCED)]
    EVENTS = [(e, e) for e in ("opened", "escalated", "resolved", "reopened", "reminder", "test")]

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=12, choices=EVENTS)
    event_key = models.CharField(max_length=100, help_text="What makes this event unique for its incident, so "
                                 "running detection again or replaying never sends it twice.")
    message_id = models.CharField(max_length=40, help_text="webhook-id: the same on every attempt.")
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(help_text="When the next attempt is due.")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "channel", "incident", "event", "event_key"],
                                               name="notification_once")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="notification_due")]

    def __str__(self) -> str:
        return f"{self.event} message to {self.channel}, {self.status}"


class DeliveryAttempt(TenantOwned):
    """One try at delivering a notification: what came back and how long it took."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(auto_now_add=True)
    status_code = models.PositiveIntegerField(null=True, blank=True, help_text="HTTP status; empty for email or "
                                              "when no answer came.")
    latency_ms = models.PositiveIntegerField()
    response_excerpt = models.TextField(blank=True, help_text="The first 500 characters of the answer.")
    error = models.TextField(blank=True, help_text="Why it failed, when it did.")

    class Meta:
        ordering = ["at", "id"]


class Silence(TenantOwned):
    """A maintenance window: incidents of matching series notify nobody between start and end."""

    service = models.CharField(max_length=1024, blank=True, help_text="Match this service (empty: any).")
    metric_name = models.CharField(max_length=1024, blank=True, help_text="Match this metric (empty: any).")
    resource_id = models.CharField(max_length=2048, blank=True, help_text="Match this resource (empty: any).")
    tags = models.JSONField(default=dict, blank=True, help_text="Match series having all these tags.")
    start = models.DateTimeField()
    end = models.DateTimeField()
    actor = models.CharField(max_length=200)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    series = models.ForeignKey(
        Series, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Match this one series only (a silence made from its console pages); its service, metric, "
        "resource and tags are kept for reading.")
    ends_with_incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Set 'until resolved': the silence ends when this incident resolves (or at its end, if sooner).")

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="silence_end_after_start")]

    def state_at(self, at) -> str:
        """active, scheduled or ended, at `at`."""
        return "scheduled" if at < self.start else "active" if at < self.end else "ended"

    def matches(self, series, at) -> bool:
        if self.series_id is not None:
            return self.start <= at < self.end and self.series_id == series.id
        return (self.start <= at < self.end and (not self.service or self.service == series.service)
                and (not self.metric_name or self.metric_name == series.metric_name)
                and (not self.resource_id or self.resource_id == series.resource_id)
                and all(series.tags.get(k) == v for k, v in (self.tags or {}).items()))


class DetectionRule(TenantOwned):
    """Detection settings for the tenant's series that match it, as a CloudWatch alarm or a Datadog
    monitor is per metric: a service, a metric name, a resource and tags, each empty (or {}) for any.

    How a series' settings are made (anomalies.selectors.detection_configs_for): the engine's
    defaults, then the tenant's overrides (Tenant.detection_config), then the overrides of every rule
    matching the series, from the least specific to the most. A rule's specificity is how many
    matchers it sets (service, metric_name, resource_id, and each tag counts one); ties go by id, the
    newer rule last. So the most specific rule wins each setting it names, and a setting no rule
    names keeps the tenant's value."""

    name = models.CharField(max_length=200, help_text="What the rule is for, e.g. \"checkout latency: alert above "
                            "only\".")
    service = models.CharField(max_length=NAME_MAX_BYTES, blank=True,
                               help_text="Match series of this service, exactly (empty: any).")
    metric_name = models.CharField(max_length=NAME_MAX_BYTES, blank=True,
                                   help_text="Match series of this metric, exactly (empty: any).")
    resource_id = models.CharField(max_length=VALUE_MAX_BYTES, blank=True,
                                   help_text="Match series of this resource, exactly (empty: any).")
    tags = models.JSONField(default=dict, blank=True,
                            help_text="Match series having all these tag values, e.g. {\"env\": \"prod\"} (empty: any).")
    overrides = models.JSONField(
        default=dict,
        help_text="The detection settings for matching series (the fields of anomalies.engine.DetectionConfig), "
        "e.g. {\"direction\": \"above\", \"residual_threshold\": 8, \"recovery_seconds\": 1800}; on top of the "
        "tenant's overrides and of less specific rules. Apply to history with run_detection --replay.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the rule was made.")
    updated_at = models.DateTimeField(auto_now=True, help_text="When the rule was last changed.")

    def __str__(self) -> str:
        return self.name

    @property
    def specificity(self) -> int:
        """How many matchers the rule sets: a more specific rule's settings win over a less specific one's."""
        return bool(self.service) + bool(self.metric_name) + bool(self.resource_id) + len(self.tags or {})

    def matches(self, series) -> bool:
        return ((not self.service or self.service == series.service)
                and (not self.metric_name or self.metric_name == series.metric_name)
                and (not self.resource_id or self.resource_id == series.resource_id)
                and all(series.tags.get(k) == v for k, v in (self.tags or {}).items()))
