"""Input and output shapes of the anomalies endpoints; the output ones build the answers
(cloudwatchdog.answers)."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from anomalies.models import Anomaly, Baseline
from anomalies.services import tags_problem
from cloudwatchdog.answers import OMIT, AnswerSerializer, TimeField
from cloudwatchdog.api import MAX_ID, TimestampField
from metrics.serializers import SeriesFilterSerializer, SeriesIdentitySerializer, TaggedSeriesIdentitySerializer


class AnomalyQuerySerializer(SeriesFilterSerializer):
    series_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    start = TimestampField(required=False)
    end = TimestampField(required=False)
    severity = serializers.ChoiceField(choices=[s for s, _ in Anomaly.SEVERITIES], required=False)
    status = serializers.ChoiceField(choices=[s for s, _ in Anomaly.STATUSES], required=False)
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)


class AnomalySerializer(TaggedSeriesIdentitySerializer):
    fields_first = ("id", "series_id", "timestamp")

    id = serializers.IntegerField()
    timestamp = TimeField(source="ts")
    value = serializers.FloatField()
    expected = serializers.FloatField()
    lower = serializers.FloatField()
    upper = serializers.FloatField()
    score = serializers.FloatField(
        help_text="0-1 for every detector: how rare a deviation this large was in the series' last three weeks")
    severity = serializers.ChoiceField(choices=[s for s, _ in Anomaly.SEVERITIES])
    status = serializers.ChoiceField(choices=[s for s, _ in Anomaly.STATUSES])
    detector = serializers.CharField()
    parameters = serializers.DictField()
    baseline = serializers.DictField(source="baseline_stats")
    suppression = serializers.DictField()
    reason = serializers.CharField()
    muted = serializers.BooleanField(help_text="Raised while its series was muted.")
    drift_started_at = TimeField(
        allow_null=True, help_text="For a cusum, variance or flatline anomaly: when the points it sums up began "
                                   "(the drift, the shifted points, the run); null for range and residual.")
    escalation = serializers.BooleanField(
        help_text="Raised inside an alarm already going on because it went markedly beyond the alarm's peak "
                  "(escalation_factor times as far from the expected value); sent as incident.escalated.")
    alarm_started_at = TimeField(
        allow_null=True, help_text="When the alarm it belongs to began: its incident's start.")


# The schema keeps the components' names from before these served incidents too: generated clients
# name their types after them.
@extend_schema_serializer(component_name="AnomalyEvent")
class StatusEventSerializer(AnswerSerializer):
    """A status change or note of an anomaly or an incident."""

    at = TimeField()
    actor = serializers.CharField(help_text="user:<admin user> or key:<API key prefix>")
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    note = serializers.CharField()


class AnomalyDetailSerializer(AnomalySerializer):
    events = StatusEventSerializer(many=True, help_text="Status changes and notes, oldest first.")

    def read_events(self, anomaly) -> list:
        return self.context["events"]


@extend_schema_serializer(component_name="AnomalyPatch")
class StatusChangeSerializer(serializers.Serializer):
    """Acknowledge, resolve or reopen an anomaly or an incident, with a note."""

    status = serializers.ChoiceField(choices=[s for s, _ in Anomaly.STATUSES], required=False)
    note = serializers.CharField(required=False, max_length=4000, allow_blank=False,
                                 help_text="What was done or why; recorded with the change.")

    def validate(self, data):
        if "status" not in data and "note" not in data:
            raise serializers.ValidationError({"status": ["give a status, a note, or both"]})
        return data


class AnomalyPageSerializer(AnswerSerializer):
    results = AnomalySerializer(many=True)
    next = serializers.CharField(allow_null=True)


class BaselineQuerySerializer(serializers.Serializer):
    series_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    status = serializers.ChoiceField(choices=[s for s, _ in Baseline.STATUSES], required=False)
    state = serializers.ChoiceField(choices=[s for s, _ in Baseline.STATES], required=False,
                                    help_text="only series in this state (alarm: what is out of line now)")
    start = TimestampField(required=False, help_text="with series_id: start of the band (default: end − 24 h)")
    end = TimestampField(required=False, help_text="with series_id: end of the band (default: now)")
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)


class RecurringPatternSerializer(serializers.Serializer):
    period = serializers.ChoiceField(choices=["daily", "weekly"])
    direction = serializers.ChoiceField(choices=["above", "below"], help_text="above or below the expected value")
    start = serializers.CharField(help_text="UTC, HH:MM (weekly: weekday HH:MM)")
    end = serializers.CharField(help_text="UTC, HH:MM (weekly: weekday HH:MM), the end of the last 5-minute slot")
    seen = serializers.IntegerField(help_text="on how many of the last `of` days (weeks)")
    of = serializers.IntegerField()


class BaselineSerializer(SeriesIdentitySerializer):
    method = serializers.CharField()
    status = serializers.ChoiceField(choices=["warming", "ready"])
    window_points = serializers.IntegerField()
    sample_count = serializers.IntegerField()
    median = serializers.FloatField(allow_null=True)
    mad = serializers.FloatField(allow_null=True)
    scale = serializers.FloatField(allow_null=True)
    lower = serializers.FloatField(allow_null=True)
    upper = serializers.FloatField(allow_null=True)
    watermark = TimeField(allow_null=True)
    late_points = serializers.IntegerField(help_text="points behind the watermark waiting for re-evaluation or replay")
    late_from = TimeField(allow_null=True)
    state = serializers.ChoiceField(
        choices=["ok", "alarm", "no_data", "warming"],
        help_text="ok; alarm (from the anomaly that opened it until the points have stayed inside the band for the "
                  "recovery time); no_data (silent for longer than max(15 min, 10 x its usual interval)); warming")
    state_since = TimeField(allow_null=True)
    out_of_band = serializers.BooleanField(help_text="its newest point is outside the band")
    interval_seconds = serializers.FloatField(allow_null=True, help_text="the usual time between its points")
    recurring = RecurringPatternSerializer(
        many=True, help_text="recurring excursions recognised: deviations matching one raise no anomaly")


class BandPointSerializer(AnswerSerializer):
    timestamp = TimeField()
    value = serializers.FloatField()
    expected = serializers.FloatField(allow_null=True)
    lower = serializers.FloatField(allow_null=True, help_text="the model's band: expected − residual_threshold σ")
    upper = serializers.FloatField(allow_null=True, help_text="the model's band: expected + residual_threshold σ")
    alert_lower = serializers.FloatField(
        allow_null=True, help_text="the alert threshold: the band widened by the gain after recent alerts (up to "
                                   "residual_ceiling σ)")
    alert_upper = serializers.FloatField(allow_null=True)
    status = serializers.CharField()


class BaselinePageSerializer(AnswerSerializer):
    results = BaselineSerializer(many=True)
    next = serializers.CharField(allow_null=True)
    band = BandPointSerializer(many=True, required=False, help_text="only with series_id")


class RunSummarySerializer(AnswerSerializer):
    run_id = serializers.UUIDField()
    status = serializers.CharField()
    trigger = serializers.CharField()
    series_processed = serializers.IntegerField()
    points_processed = serializers.IntegerField()
    anomalies_created = serializers.IntegerField()
    duration_ms = serializers.IntegerField(allow_null=True)
    requested_at = TimeField()
    started_at = TimeField(allow_null=True)
    finished_at = TimeField(allow_null=True)
    error = serializers.CharField()

    def read_error(self, run) -> str:
        # A failed run's error may hold database text; the client gets a sentence, support staff the detail.
        return "The run failed; the error has been logged." if run.status == run.STATUS_FAILED and run.error else run.error


class ProcessRunQuerySerializer(serializers.Serializer):
    def get_fields(self):
        # "async" is a Python keyword, so the field cannot be declared as a class attribute.
        return {"async": serializers.BooleanField(
            required=False, default=False, help_text="enqueue on Celery and answer 202 with the run id")}


class RunQueuedSerializer(AnswerSerializer):
    run_id = serializers.UUIDField()
    status = serializers.CharField()


class ChannelWriteSerializer(serializers.Serializer):
    """A notification channel as created or changed; the checks that need the network happen at send time too."""

    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=["webhook", "slack", "email"])
    url = serializers.URLField(max_length=2000, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    min_severity = serializers.ChoiceField(choices=[s for s, _ in Anomaly.SEVERITIES], required=False, default="low")
    service = serializers.CharField(max_length=1024, required=False, allow_blank=True, default="")
    metric_name = serializers.CharField(max_length=1024, required=False, allow_blank=True, default="")
    renotify_hours = serializers.IntegerField(min_value=1, max_value=24 * 7, required=False, allow_null=True)
    enabled = serializers.BooleanField(required=False, default=True)

    def validate(self, data):
        if self.instance is not None and data.get("kind", self.instance.kind) != self.instance.kind:
            raise serializers.ValidationError({"kind": [f"a channel's kind cannot change (this one is a "
                                                        f"{self.instance.kind}); create a new channel"]})
        kind = data.get("kind") or getattr(self.instance, "kind", None)
        url = data.get("url", getattr(self.instance, "url", ""))
        email = data.get("email", getattr(self.instance, "email", ""))
        if kind in ("webhook", "slack") and not url:
            raise serializers.ValidationError({"url": [f"a {kind} channel needs a url"]})
        if kind == "email" and not email:
            raise serializers.ValidationError({"email": ["an email channel needs an email address"]})
        if url:
            from anomalies.delivery import UnsafeDestination, destination_check

            try:
                destination_check(url)
            except UnsafeDestination as error:
                raise serializers.ValidationError({"url": [str(error)]})
        return data


class ChannelSerializer(AnswerSerializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    url = serializers.CharField()
    email = serializers.CharField()
    min_severity = serializers.CharField()
    service = serializers.CharField()
    metric_name = serializers.CharField()
    renotify_hours = serializers.IntegerField(allow_null=True)
    enabled = serializers.BooleanField()
    created_at = TimeField()
    secret = serializers.CharField(required=False, help_text="webhook: the signing secret, only in the answer "
                                   "that creates the channel.")

    def read_secret(self, channel):
        return channel.secret if self.context.get("show_secret") and channel.secret else OMIT


class ChannelPageSerializer(AnswerSerializer):
    results = ChannelSerializer(many=True)


class DeliveryAttemptSerializer(AnswerSerializer):
    at = TimeField()
    status_code = serializers.IntegerField(allow_null=True, help_text="HTTP status; null for email or when no "
                                           "answer came")
    latency_ms = serializers.IntegerField()
    response_excerpt = serializers.CharField(help_text="the first 500 characters of the answer")
    error = serializers.CharField(help_text="why it failed, when it did")


class DeliverySerializer(AnswerSerializer):
    message_id = serializers.CharField()
    event = serializers.CharField()
    incident_id = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    created_at = TimeField()
    delivered_at = TimeField(allow_null=True)
    log = DeliveryAttemptSerializer(many=True, help_text="Each attempt, oldest first.")

    def read_log(self, notification) -> list:
        return getattr(notification, "attempts_logged", [])


class DeliveryPageSerializer(AnswerSerializer):
    results = DeliverySerializer(many=True)


class IncidentQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["open", "acknowledged", "resolved"], required=False)
    kind = serializers.ChoiceField(choices=["anomaly", "no_data"], required=False)
    series_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)


class IncidentSerializer(SeriesIdentitySerializer):
    fields_first = ("id",)

    id = serializers.IntegerField()
    status = serializers.CharField()
    started_at = TimeField()
    last_anomaly_at = TimeField()
    resolved_at = TimeField(allow_null=True)
    peak_severity = serializers.CharField()
    peak_score = serializers.FloatField()
    anomaly_count = serializers.IntegerField(help_text="the anomaly that opened it and its escalations")
    reason = serializers.CharField()
    kind = serializers.ChoiceField(choices=["anomaly", "no_data"],
                                   help_text="anomaly: its series was out of line; no_data: it went silent")
    out_of_band = serializers.BooleanField(help_text="while open: its series' newest point is outside the band")
    events = StatusEventSerializer(many=True, required=False, help_text="Status changes and notes, oldest first "
                                   "(reading one incident).")

    def read_events(self, incident):
        return self.context.get("events", OMIT)


class IncidentPageSerializer(AnswerSerializer):
    results = IncidentSerializer(many=True)
    next = serializers.CharField(allow_null=True)


class SilenceWriteSerializer(serializers.Serializer):
    service = serializers.CharField(max_length=1024, required=False, allow_blank=True, default="")
    metric_name = serializers.CharField(max_length=1024, required=False, allow_blank=True, default="")
    resource_id = serializers.CharField(max_length=2048, required=False, allow_blank=True, default="")
    tags = serializers.DictField(child=serializers.CharField(max_length=2048), required=False, default=dict)
    start = TimestampField()
    end = TimestampField()
    note = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")

    def validate_tags(self, tags):
        problem = tags_problem(tags)
        if problem:
            raise serializers.ValidationError(problem)
        return tags

    def validate(self, data):
        if data["end"] <= data["start"]:
            raise serializers.ValidationError({"end": ["must be after start"]})
        return data


class SilenceSerializer(AnswerSerializer):
    id = serializers.IntegerField()
    service = serializers.CharField()
    metric_name = serializers.CharField()
    resource_id = serializers.CharField()
    tags = serializers.DictField()
    series_id = serializers.IntegerField(
        allow_null=True, help_text="Set when it covers this one series only (made from its console pages); "
        "its service, metric, resource and tags are then that series', for reading.")
    ends_with_incident_id = serializers.IntegerField(
        allow_null=True, help_text="Set 'until resolved' in the console: it ends when this incident resolves.")
    start = TimeField()
    end = TimeField()
    actor = serializers.CharField()
    note = serializers.CharField()


class SilencePageSerializer(AnswerSerializer):
    results = SilenceSerializer(many=True)


class DetectionRuleWriteSerializer(serializers.Serializer):
    """A detection rule as created or changed (PATCH: the fields given; tags and overrides are replaced
    whole). An override the engine refuses is a 400 naming it."""

    name = serializers.CharField(max_length=200)
    service = serializers.CharField(max_length=1024, required=False, allow_blank=True, default="", trim_whitespace=False,
                                    help_text="match series of this service (empty: any)")
    metric_name = serializers.CharField(max_length=1024, required=False, allow_blank=True, default="", trim_whitespace=False,
                                        help_text="match series of this metric (empty: any)")
    resource_id = serializers.CharField(max_length=2048, required=False, allow_blank=True, default="", trim_whitespace=False,
                                        help_text="match series of this resource (empty: any)")
    tags = serializers.DictField(child=serializers.CharField(max_length=2048, trim_whitespace=False), required=False,
                                 default=dict,
                                 help_text="match series having all these tag values (empty: any)")
    overrides = serializers.DictField(
        help_text="detection settings for the matching series (the fields of DetectionConfig), e.g. "
        "{\"direction\": \"above\", \"residual_threshold\": 8}")


class DetectionRuleSerializer(AnswerSerializer):
    """A detection rule: the series it matches and the settings it gives them."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    service = serializers.CharField()
    metric_name = serializers.CharField()
    resource_id = serializers.CharField()
    tags = serializers.DictField(child=serializers.CharField())
    overrides = serializers.DictField()
    specificity = serializers.IntegerField(
        help_text="how many matchers it sets (service, metric_name, resource_id, one per tag): the settings of the "
        "most specific matching rule win, ties going to the newer rule")
    series_matched = serializers.SerializerMethodField(help_text="how many of the tenant's series it matches now")
    created_at = TimestampField()
    updated_at = TimestampField()

    @extend_schema_field(OpenApiTypes.INT)
    def get_series_matched(self, rule) -> int:
        # Counted by the view for all the rules it answers at once (one query), passed in the context.
        return self.context["series_matched"][rule.id]


class DetectionRulePageSerializer(AnswerSerializer):
    results = DetectionRuleSerializer(many=True)


class SeriesDetectionConfigSerializer(AnswerSerializer):
    series_id = serializers.IntegerField()
    config = serializers.DictField(help_text="every detection setting the series runs with")
    rules = serializers.ListField(child=serializers.IntegerField(),
                                  help_text="ids of the rules that apply to it, in the order they apply (the last wins)")
