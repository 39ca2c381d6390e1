"""The ingest hot path's parsing and validation: plain Python, no per-event serializers.

`parse_body` turns the request body into the events list (or raises BodyError with the
status to answer); `typed_events` and `EventChecker` judge each event, so that a rejection
names its index, the field and the reason (metrics.services.points_ingest puts them together).
"""
from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
import orjson

from cloudwatchdog.timeutil import parse_iso

NAME_FIELDS = ("service", "resource_id", "metric_name")
REQUIRED_FIELDS = ("service", "resource_id", "metric_name", "value", "timestamp")
# CloudWatch's range for a value. Bounded values keep every aggregate finite: rollup sums of
# millions of points, the engine's deviations divided by its smallest scale (1e-9), CUSUM sums.
MAX_ABS_VALUE = 2.0 ** 360
# The separator of the series identity hashed into key_hash (series_key_hash): it must not occur in a name.
IDENTITY_SEPARATOR = "\x1f"
# Which byte limit applies to each string field (the columns are at least that wide).
NAME_BYTES_FIELDS = ("service", "metric_name")
VALUE_BYTES_FIELDS = ("resource_id", "source")
KINDS = ("gauge", "counter")
MAX_UNIT_BYTES = 64  # the column's width (metrics.models.UNIT_MAX_BYTES)


class BodyError(Exception):
    def __init__(self, status: int, detail: str, errors: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or {}


@dataclass(frozen=True)
class Limits:
    max_events: int
    max_body_bytes: int
    max_future_seconds: int
    max_tags: int
    max_name_bytes: int  # service, metric_name, tag names
    max_value_bytes: int  # resource_id, source, tag values
    max_new_partitions: int


class Event(msgspec.Struct, gc=False):
    """One event of the contract; decoding a whole body into these is the hot path's validation of types.

    Untracked by the garbage collector (it holds no containers, so it cannot be in a cycle): a
    batch is a thousand of them, which would otherwise trigger collections on every request.
    The agent protocols (metrics.protocols) build Events too, with `timestamp` already in µs since
    the epoch (an int) instead of ISO text. `kind` and `unit` describe a new series (first write wins).
    """

    service: str
    resource_id: str
    metric_name: str
    value: float
    timestamp: str
    source: str = ""
    tags: msgspec.Raw = msgspec.Raw(b"{}")  # kept as sent: the series cache is keyed on these bytes
    kind: Literal["gauge", "counter"] = "gauge"
    unit: Annotated[str, msgspec.Meta(max_length=MAX_UNIT_BYTES)] = ""


class _Body(msgspec.Struct):
    events: list[Event]


_typed_decoder = msgspec.json.Decoder(_Body)


def parse_body(raw: bytes, *, content_encoding: str, limits: Limits) -> list:
    """The events of a (possibly gzip) JSON body, or BodyError with 400/413.

    When every event has the right types the body decodes straight into `Event`s (in C);
    otherwise the events come back as plain JSON values for `typed_events` to sort out by index.
    """
    if len(raw) > limits.max_body_bytes:
        raise BodyError(413, f"The request body is over this tenant's limit of {limits.max_body_bytes} bytes "
                             "(MAX_BODY_BYTES).")
    if content_encoding.strip().lower() in ("gzip", "x-gzip") or raw[:2] == b"\x1f\x8b":
        raw = gunzip(raw, limits.max_body_bytes)
    try:
        events = _typed_decoder.decode(raw).events
    except (msgspec.ValidationError, msgspec.DecodeError):
        events = None
    if events:
        events_count_check(events, limits)
        return events
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses NaN/Infinity tokens; the stdlib accepts them, so such an event can be
        # rejected by its index instead of failing the whole batch.
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise BodyError(400, f"The body is not valid JSON: {shown(str(error))}.", {"body": ["not valid JSON"]}) from None
        except RecursionError:
            raise BodyError(400, "The body is nested too deeply: an ingest body is an object of a list of flat events.",
                            {"body": ["nested too deeply"]}) from None
    if not isinstance(body, dict) or "events" not in body:
        raise BodyError(400, "The body must be a JSON object with an 'events' list.", {"events": ["this field is required"]})
    events = body["events"]
    if not isinstance(events, list):
        raise BodyError(400, "'events' must be a list of event objects.", {"events": ["must be a list"]})
    events_count_check(events, limits)
    return events


def events_count_check(events: list, limits: Limits) -> None:
    if not events:
        raise BodyError(400, "'events' is empty: send at least one event.", {"events": ["must not be empty"]})
    if len(events) > limits.max_events:
        raise BodyError(
            413,
            f"The request has {len(events)} events; this tenant's limit is {limits.max_events} per request "
            "(MAX_EVENTS_PER_REQUEST).",
            {"events": [f"at most {limits.max_events} events per request"]},
        )


def gunzip(raw: bytes, max_bytes: int) -> bytes:
    """Every member of a gzip body (RFC 1952 allows several, one after the other), bounded: a small gzip
    bomb must not become gigabytes in memory. Anything after the last member but gzip is refused."""
    parts, total, rest = [], 0, raw
    while True:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = decompressor.decompress(rest, max_bytes - total + 1)
        except zlib.error:
            raise BodyError(400, "The body is not valid gzip.", {"body": ["not valid gzip"]}) from None
        total += len(out)
        if total > max_bytes or decompressor.unconsumed_tail:
            raise BodyError(413, f"The decompressed body is over this tenant's limit of {max_bytes} bytes "
                                 "(MAX_BODY_BYTES).")
        if not decompressor.eof:
            raise BodyError(400, "The body is not valid gzip: it ends early.", {"body": ["not valid gzip"]})
        parts.append(out)
        rest = decompressor.unused_data
        if not rest:
            return b"".join(parts)


def shown(text: str, length: int = 64) -> str:
    """A client's text as it may appear in an error message: cut short, lone surrogates escaped."""
    return text[:length].encode("utf-8", "backslashreplace").decode("utf-8")


def text_error(text: str, max_bytes: int, limit_name: str) -> str | None:
    """Why a name or value cannot be stored (NUL, the identity separator, a lone surrogate, its size), or None."""
    if "\x00" in text:
        return "must not contain the NUL character (\\u0000)"
    if IDENTITY_SEPARATOR in text:
        return "must not contain the unit separator (\\u001f)"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "must not contain a lone surrogate (\\ud800-\\udfff)"
    if size > max_bytes:
        return f"is {size} bytes long in UTF-8; the limit is {max_bytes} ({limit_name})"
    return None


def series_key_hash(series_key: tuple) -> str:
    return hashlib.sha1(IDENTITY_SEPARATOR.join(series_key).encode()).hexdigest()


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def typed_events(events: list, limits: Limits) -> tuple[list[Event | None], dict[int, dict]]:
    """Events checked for presence and types: an Event per index, or None with its errors by index.

    Only a body that did not decode straight into Events comes here; it may hold anything JSON
    can (lone surrogates included), so every string is checked before it goes anywhere.
    """
    if events and isinstance(events[0], Event):
        return events, {}
    typed: list[Event | None] = []
    errors_by_index: dict[int, dict] = {}
    for index, item in enumerate(events):
        if isinstance(item, Event):
            typed.append(item)
            continue
        errors = _item_errors(item, limits) if isinstance(item, dict) else {
            "event": [f"must be an object, not {_json_type(item)}"]}
        if errors:
            typed.append(None)
            errors_by_index[index] = errors
            continue
        typed.append(Event(
            service=item["service"], resource_id=item["resource_id"], metric_name=item["metric_name"],
            value=float(item["value"]), timestamp=item["timestamp"], source=item.get("source") or "",
            tags=msgspec.Raw(orjson.dumps(item.get("tags") or {})), kind=item.get("kind") or "gauge",
            unit=item.get("unit") or "",
        ))
    return typed, errors_by_index


def _item_errors(item: dict, limits: Limits) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for name in REQUIRED_FIELDS:
        if item.get(name) is None:
            errors[name] = ["this field is required"]
    for name in (*NAME_FIELDS, "timestamp", "source"):
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            if name == "timestamp":
                errors[name] = [f"must be an ISO 8601 string with a UTC offset, not {_json_type(value)}"]
            else:
                errors[name] = [f"must be a string, not {_json_type(value)}"]
        elif isinstance(value, str) and name != "timestamp":
            problem = _field_text_error(name, value, limits)
            if problem:
                errors[name] = [problem]
    value = item.get("value")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors["value"] = [f"must be a number, not {_json_type(value)}"]
        else:
            problem = value_error(value)
            if problem:
                errors["value"] = [problem]
    kind = item.get("kind")
    if kind is not None and kind not in KINDS:
        errors["kind"] = [f"must be one of {', '.join(KINDS)}"]
    unit = item.get("unit")
    if unit is not None:
        problem = text_error(unit, MAX_UNIT_BYTES, "the unit limit") if isinstance(unit, str) else \
            f"must be a string, not {_json_type(unit)}"
        if problem:
            errors["unit"] = [problem]
    tags = item.get("tags")
    if tags is not None:
        tag_errors = _tag_errors(tags, limits) if isinstance(tags, dict) else [
            f"must be an object of string values, not {_json_type(tags)}"]
        if tag_errors:
            errors["tags"] = tag_errors
    return errors


def value_error(value) -> str | None:
    """Why a number cannot be stored (not finite, or beyond ±2^360), or None."""
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        number = math.inf
    if math.isnan(number):
        return "must be a finite number, not NaN"
    if math.isinf(number):
        return "must be a finite number, not infinity"
    if abs(number) > MAX_ABS_VALUE:
        return f"must be between -2^360 and 2^360 (±{MAX_ABS_VALUE:.3g})"
    return None


def _field_text_error(name: str, text: str, limits: Limits) -> str | None:
    if name in NAME_BYTES_FIELDS:
        return text_error(text, limits.max_name_bytes, "MAX_NAME_BYTES")
    return text_error(text, limits.max_value_bytes, "MAX_VALUE_BYTES")


class EventChecker:
    """The value checks of the hot path, each done once per distinct timestamp or new series."""

    def __init__(self, *, now_us: int, oldest_us: int, oldest_reason: str, limits: Limits):
        self.latest_us = now_us + limits.max_future_seconds * 1_000_000
        self.oldest_us = oldest_us
        self.oldest_reason = oldest_reason
        self.limits = limits

    def timestamp(self, text: str | int) -> int | str:
        """Microseconds since the epoch, or the reason the timestamp is refused (ISO text, or µs already)."""
        if text.__class__ is int:
            ts_us = text
        else:
            try:
                ts_us = parse_iso(text)
            except ValueError as error:
                return str(error)
        if ts_us > self.latest_us:
            return f"is more than {self.limits.max_future_seconds // 60} minutes in the future"
        if ts_us < self.oldest_us:
            return self.oldest_reason
        return ts_us

    def identity(self, event: Event) -> tuple[dict, str]:
        """(errors by field, canonical tags JSON) of a series identity seen for the first time."""
        errors: dict[str, list[str]] = {}
        for name in (*NAME_FIELDS, "source"):
            text = getattr(event, name)
            if name != "source" and not text.strip():
                errors[name] = ["must not be blank"]
                continue
            problem = _field_text_error(name, text, self.limits)
            if problem:
                errors[name] = [problem]
        problem = text_error(event.unit, MAX_UNIT_BYTES, "the unit limit") if event.unit else None
        if problem:
            errors["unit"] = [problem]
        canonical = ""
        try:
            tags = orjson.loads(bytes(event.tags))
        except orjson.JSONDecodeError as error:
            errors["tags"] = [f"are not valid JSON: {shown(str(error))}"]
            return errors, canonical
        if not isinstance(tags, dict):
            errors["tags"] = [f"must be an object of string values, not {_json_type(tags)}"]
        else:
            tag_errors = _tag_errors(tags, self.limits)
            if tag_errors:
                errors["tags"] = tag_errors
            elif tags:
                canonical = orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode()
        return errors, canonical


def _tag_errors(tags: dict, limits: Limits) -> list[str]:
    if len(tags) > limits.max_tags:
        return [f"has {len(tags)} tags; the limit is {limits.max_tags} (MAX_TAGS)"]
    for key, value in tags.items():
        if not key:
            return ["tag names must not be empty"]
        problem = text_error(key, limits.max_name_bytes, "MAX_NAME_BYTES")
        if problem:
            return [f"tag name '{shown(key, 32)}…' {problem}"]
        if not isinstance(value, str):
            return [f"tag '{shown(key)}' must be a string, not {_json_type(value)}"]
        problem = text_error(value, limits.max_value_bytes, "MAX_VALUE_BYTES")
        if problem:
            return [f"tag '{shown(key)}' value {problem}"]
    return []
