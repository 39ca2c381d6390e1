"""Input and output shapes of the metrics endpoints (the output ones document the schema)."""
from rest_framework import serializers

from cloudwatchdog.api import MAX_ID, StepField, TimestampField
from metrics.selectors import AGGREGATES, COUNTER_FUNCTIONS


class EventSerializer(serializers.Serializer):
    """One event, as documented; the hot path validates without this class."""

    source = serializers.CharField(required=False)
    service = serializers.CharField()
    resource_id = serializers.CharField()
    metric_name = serializers.CharField()
    value = serializers.FloatField()
    timestamp = serializers.CharField(help_text="ISO 8601 with a UTC offset (Z or ±hh:mm)")
    tags = serializers.DictField(child=serializers.CharField(), required=False)
    kind = serializers.ChoiceField(choices=["gauge", "counter"], required=False, default="gauge",
                                   help_text="What the value is, for a new series (first write wins): a gauge, or a "
                                   "counter that only goes up (read and evaluated by its rate; a drop is a restart).")
    unit = serializers.CharField(required=False, max_length=64, help_text="The unit, for a new series (UCUM: By, ms, 1).")


class IngestRequestSerializer(serializers.Serializer):
    events = EventSerializer(many=True)


class RejectedEventSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class IngestResponseSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="points newly stored")
    duplicates = serializers.IntegerField(help_text="points already stored, or repeated earlier in the batch")
    rejected = RejectedEventSerializer(many=True)


class SeriesQuerySerializer(serializers.Serializer):
    service = serializers.CharField(required=False)
    metric_name = serializers.CharField(required=False)
    resource_id = serializers.CharField(required=False)
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)


class SeriesSerializer(serializers.Serializer):
    series_id = serializers.IntegerField()
    service = serializers.CharField()
    resource_id = serializers.CharField()
    metric_name = serializers.CharField()
    tags = serializers.DictField(child=serializers.CharField())
    source = serializers.CharField()
    kind = serializers.ChoiceField(choices=["gauge", "counter"])
    unit = serializers.CharField()
    first_timestamp = serializers.CharField(allow_null=True)
    last_timestamp = serializers.CharField(allow_null=True)
    point_count = serializers.IntegerField()
    state = serializers.ChoiceField(
        choices=["ok", "alarm", "no_data", "warming"],
        help_text="its alarm state (GET /api/v1/baselines tells more): ok, alarm, no_data (silent), warming")
    state_since = serializers.CharField(allow_null=True)
    out_of_band = serializers.BooleanField(help_text="its newest point is outside the model's band")


class SeriesPageSerializer(serializers.Serializer):
    results = SeriesSerializer(many=True)
    next = serializers.CharField(allow_null=True)


class TimeseriesQuerySerializer(serializers.Serializer):
    service = serializers.CharField(required=False)
    metric_name = serializers.CharField(required=False)
    resource_id = serializers.CharField(required=False)
    series_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    minutes = serializers.IntegerField(required=False, min_value=1, max_value=10 * 366 * 24 * 60)
    start = TimestampField(required=False)
    end = TimestampField(required=False)
    step = StepField(required=False)
    agg = serializers.ChoiceField(choices=sorted(AGGREGATES), required=False, default="avg")
    fn = serializers.ChoiceField(
        choices=COUNTER_FUNCTIONS, required=False,
        help_text="For counters: 'increase' since the point before (summed per step), or 'rate', that increase per "
        "second. A drop counts as a restart from zero. agg does not apply; every matched series must be a counter.")

    def validate(self, data):
        if not any(data.get(name) for name in ("service", "metric_name", "series_id")):
            raise serializers.ValidationError({"service": ["give service and metric_name, or series_id"]})
        return data


class PointSerializer(serializers.Serializer):
    timestamp = serializers.CharField()
    value = serializers.FloatField()


class TimeseriesSeriesSerializer(serializers.Serializer):
    series_id = serializers.IntegerField()
    service = serializers.CharField()
    resource_id = serializers.CharField()
    metric_name = serializers.CharField()
    tags = serializers.DictField(child=serializers.CharField())
    kind = serializers.ChoiceField(choices=["gauge", "counter"])
    unit = serializers.CharField()
    fn = serializers.CharField(allow_null=True, help_text="The counter function applied to the points, if any.")
    points = PointSerializer(many=True)


class TimeseriesResponseSerializer(serializers.Serializer):
    series = TimeseriesSeriesSerializer(many=True)
