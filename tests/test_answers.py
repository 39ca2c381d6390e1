"""Answers built from their serializers' declared fields (cloudwatchdog.answers): the shape the schema
gives is the shape answered, with nothing converted that the field type does not say."""
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from rest_framework import serializers

from cloudwatchdog.answers import OMIT, AnswerSerializer, TimeField
from metrics.serializers import PointSerializer, points_answer

MOMENT = datetime(2026, 1, 10, 1, 0, tzinfo=timezone(timedelta(hours=1)))


class _Reading(AnswerSerializer):
    fields_first = ("name",)

    id = serializers.IntegerField()
    at = TimeField(allow_null=True)
    count = serializers.FloatField(source="stats.count")
    note = serializers.CharField(required=False)
    name = serializers.CharField()

    def read_note(self, reading):
        return self.context.get("note", OMIT)


def test_an_answer_follows_the_declared_order_and_answers_values_as_stored():
    reading = SimpleNamespace(id=3, at=MOMENT, stats=SimpleNamespace(count=2), name="cpu")
    assert list(_Reading(reading).data.items()) == [("name", "cpu"), ("id", 3), ("at", "2026-01-10T00:00:00Z"),
                                                    ("count", 2)]  # an int stays an int, as it was stored
    assert _Reading(reading, context={"note": "hi"}).data["note"] == "hi"


def test_an_optional_field_a_dict_lacks_is_left_out_and_a_required_one_is_an_error():
    class _Page(AnswerSerializer):
        results = _Reading(many=True)
        next = serializers.CharField(allow_null=True)
        band = serializers.ListField(required=False)

    reading = SimpleNamespace(id=3, at=None, stats=SimpleNamespace(count=2.5), name="cpu")
    assert _Page({"results": [reading], "next": None}).data == {
        "results": [{"name": "cpu", "id": 3, "at": None, "count": 2.5}], "next": None}
    assert _Page({"results": [], "next": None, "band": [1]}).data["band"] == [1]
    with pytest.raises(KeyError):
        _Page({"results": []}).data


def test_a_read_answers_its_points_with_the_point_schema_fields():
    assert list(points_answer([(MOMENT, 1.5)])[0]) == list(PointSerializer().fields)
