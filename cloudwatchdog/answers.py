"""Answers written once: an output serializer's declared fields are both the OpenAPI schema of an
answer and the recipe it is built by, so adding a field is one edit and the schema cannot drift.

An AnswerSerializer reads each field's `source` (its name unless given, dotted for a relation:
`series.service`) off the object, or off a dict by key, and answers the value as it is stored:
numbers, dicts and lists go out as they are (an int stays an int), not through DRF's per-field
conversions. What a field's type says is done: a TimeField or TimestampField answers format_iso
(UTC with a Z) or null, a UUIDField a string, a nested AnswerSerializer its own recipe (a nested
plain Serializer only documents a stored value, answered as stored). A field whose class has a
`read_<name>(self, obj)` method takes its value from it (self.context holds what the view counted
for the whole answer), the field itself still typing it in the schema; a SerializerMethodField
its get_<name> method, as in DRF. A field that is not required is left out when its method
answers OMIT, or when a dict lacks the key.

The recipe is compiled once per class. A page of 1,000 anomalies builds in 10 ms; DRF's own
serialization (get_attribute and to_representation for every field) took 63 ms, the dicts the
views wrote out by hand before 7.5 ms.
"""
from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

from rest_framework import serializers

from cloudwatchdog.api import TimestampField
from cloudwatchdog.timeutil import format_iso

OMIT = object()  # what a read_<name> method answers to leave an optional field out


class TimeField(serializers.CharField):
    """A moment, answered as ISO 8601 in UTC with a Z (format_iso)."""


class AnswerSerializer(serializers.Serializer):
    # No docstring: the schema describes each answer by its own class's docstring, and would
    # inherit this one. `fields_first` names the fields that lead the answer, in order, where it
    # puts its own among inherited ones; the others follow as declared (inherited ones first).
    fields_first: tuple[str, ...] = ()

    def get_fields(self):
        fields = super().get_fields()
        first = {name: fields.pop(name) for name in self.fields_first}
        return {**first, **fields}

    def to_representation(self, instance):
        return _build(type(self).recipe(), self, instance)

    @classmethod
    def recipe(cls) -> list[tuple[str, Callable, Callable | None]]:
        """(name, read(serializer, obj), convert(serializer, value) or None) for each field, in order."""
        compiled = cls.__dict__.get("_recipe")
        if compiled is None:
            compiled = [_step(cls, name, field) for name, field in cls().fields.items()]
            cls._recipe = compiled
        return compiled


def _build(recipe, serializer, instance) -> dict:
    answer = {}
    for name, read, convert in recipe:
        value = read(serializer, instance)
        if value is OMIT:
            continue
        answer[name] = value if convert is None or value is None else convert(serializer, value)
    return answer


def _step(cls, name: str, field) -> tuple[str, Callable, Callable | None]:
    if isinstance(field, serializers.SerializerMethodField):
        read = getattr(cls, field.method_name)
    elif hasattr(cls, f"read_{name}"):
        read = getattr(cls, f"read_{name}")
    else:
        read = _reader(field.source or name, optional=not field.required)
    return name, read, _converter(field)


def _reader(source: str, *, optional: bool) -> Callable:
    get = attrgetter(source)
    if "." in source:
        return lambda serializer, obj: get(obj)
    if optional:
        return lambda serializer, obj: obj.get(source, OMIT) if type(obj) is dict else get(obj)
    return lambda serializer, obj: obj[source] if type(obj) is dict else get(obj)


def _converter(field) -> Callable | None:
    if isinstance(field, (TimeField, TimestampField)):
        return lambda serializer, moment: format_iso(moment)
    if isinstance(field, serializers.UUIDField):
        return lambda serializer, value: str(value)
    if isinstance(field, serializers.ListSerializer) and isinstance(field.child, AnswerSerializer):
        child = type(field.child).recipe()
        return lambda serializer, items: [_build(child, serializer, item) for item in items]
    if isinstance(field, AnswerSerializer):
        nested = type(field).recipe()
        return lambda serializer, obj: _build(nested, serializer, obj)
    return None
