"""Input and output shapes of the metrics endpoints; the output ones build the answers
(cloudwatchdog.answers). The series identity that every answer about a series shares is declared here."""
from typing import NamedTuple

from rest_framework import serializers

from cloudwatchdog.answers import AnswerSerializer, TimeField
from cloudwatchdog.api import MAX_ID, StepField, TimestampField
from cloudwatchdog.timeutil import format_iso
from metrics.models import Series
from metrics.storage import AGGREGATES, COUNTER_FUNCTIONS, SeriesStats


class SeriesFilterSerializer(serializers.Serializer):
    """The series a read is about, by its identity (each optional)."""

    service = serializers.CharField(required=False)
    metric_name = serializers.CharField(required=False)
    resource_id = serializers.CharField(required=False)


class SeriesIdentitySerializer(AnswerSerializer):
    # Which series an answer is about, read off the answered object's `series` (no docstring: the
    # schema would give it to every answer about a series).
    series_id = serializers.IntegerField(source="series.id")
    service = serializers.CharField(source="series.service")
    resource_id = serializers.CharField(source="series.resource_id")
    metric_name = serializers.CharField(source="series.metric_name")


class TaggedSeriesIdentitySerializer(SeriesIdentitySerializer):
    tags = serializers.DictField(child=serializers.CharField(), source="series.tags")


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


class IngestResponseSerializer(AnswerSerializer):
    accepted = serializers.IntegerField(help_text="points newly stored")
    duplicates = serializers.IntegerField(help_text="points already stored, or repeated earlier in the batch")
    rejected = RejectedEventSerializer(many=True)


class SeriesQuerySerializer(SeriesFilterSerializer):
    cursor = serializers.CharField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)


class SeriesListed(NamedTuple):
    """A series as listed: with its stats (None before its first point) and the facts other apps add."""

    series: Series
    stats: SeriesStats | None
    facts: dict


class SeriesSerializer(TaggedSeriesIdentitySerializer):
    source = serializers.CharField(source="series.source")
    kind = serializers.ChoiceField(choices=["gauge", "counter"], source="series.kind")
    unit = serializers.CharField(source="series.unit")
    first_timestamp = TimeField(allow_null=True)
    last_timestamp = TimeField(allow_null=True)
    point_count = serializers.IntegerField()
    state = serializers.ChoiceField(
        choices=["ok", "alarm", "no_data", "warming"],
        help_text="its alarm state (GET /api/v1/baselines tells more): ok, alarm, no_data (silent), warming")
    state_since = serializers.CharField(allow_null=True)
    out_of_band = serializers.BooleanField(help_text="its newest point is outside the model's band")

    def read_first_timestamp(self, listed: SeriesListed):
        return listed.stats.first_ts if listed.stats else None

    def read_last_timestamp(self, listed: SeriesListed):
        return listed.stats.last_ts if listed.stats else None

    def read_point_count(self, listed: SeriesListed) -> int:
        return listed.stats.point_count if listed.stats else 0

    def read_state(self, listed: SeriesListed) -> str:
        return listed.facts.get("state", "warming")  # before detection has seen a series: warming

    def read_state_since(self, listed: SeriesListed):
        return listed.facts.get("state_since")

    def read_out_of_band(self, listed: SeriesListed) -> bool:
        return listed.facts.get("out_of_band", False)


class SeriesPageSerializer(AnswerSerializer):
    results = SeriesSerializer(many=True)
    next = serializers.CharField(allow_null=True)


class TimeseriesQuerySerializer(SeriesFilterSerializer):
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
    # Built by points_answer below, these fields' one builder.
    timestamp = serializers.CharField()
    value = serializers.FloatField()


def points_answer(points: list[tuple]) -> list[dict]:
    """(time, value) pairs as PointSerializer's fields (tests/test_answers.py holds the two together): a
    read may answer millions of points, one comprehension here, not a recipe step per field."""
    return [{"timestamp": format_iso(ts), "value": value} for ts, value in points]


class SeriesPoints(NamedTuple):
    """A series as read: the counter function applied (or None) and its (time, value) pairs."""

    series: Series
    fn: str | None
    points: list[tuple]


class TimeseriesSeriesSerializer(TaggedSeriesIdentitySerializer):
    kind = serializers.ChoiceField(choices=["gauge", "counter"], source="series.kind")
    unit = serializers.CharField(source="series.unit")
    fn = serializers.CharField(allow_null=True, help_text="The counter function applied to the points, if any.")
    points = PointSerializer(many=True)

    def read_points(self, read: SeriesPoints) -> list[dict]:
        return points_answer(read.points)


class TimeseriesResponseSerializer(AnswerSerializer):
    series = TimeseriesSeriesSerializer(many=True)
