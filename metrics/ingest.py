"""The ingest hot path's parsing and validation: plain Python, no per-event serializers.

`parse_body` turns the request body into the events list (or raises BodyError with the
status to answer); `validate_events` splits events into valid points and rejections by
index, each rejection naming the field and the reason.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MICROSECOND = timedelta(microseconds=1)
NAME_FIELDS = ("service", "resource_id", "metric_name")
REQUIRED_FIELDS = ("service", "resource_id", "metric_name", "value", "timestamp")


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
    max_tag_key_length: int
    max_string_length: int


@dataclass(frozen=True, slots=True)
class ValidPoint:
    index: int
    series_key: tuple  # (service, resource_id, metric_name, canonical tags JSON)
    ts_us: int  # microseconds since the epoch, UTC
    value: float
    source: str
    tags: dict


def parse_body(raw: bytes, *, content_encoding: str, limits: Limits) -> list:
    """The `events` list of a (possibly gzip) JSON body, or BodyError with 400/413."""
    if len(raw) > limits.max_body_bytes:
        raise BodyError(413, f"The request body is over the limit of {limits.max_body_bytes} bytes.")
    if content_encoding.strip().lower() in ("gzip", "x-gzip") or raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, limits.max_body_bytes)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses NaN/Infinity tokens; the stdlib accepts them, so such an event can be
        # rejected by its index instead of failing the whole batch.
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise BodyError(400, f"The body is not valid JSON: {error}.", {"body": ["not valid JSON"]}) from None
    if not isinstance(body, dict) or "events" not in body:
        raise BodyError(400, "The body must be a JSON object with an 'events' list.", {"events": ["this field is required"]})
    events = body["events"]
    if not isinstance(events, list):
        raise BodyError(400, "'events' must be a list of event objects.", {"events": ["must be a list"]})
    if not events:
        raise BodyError(400, "'events' is empty: send at least one event.", {"events": ["must not be empty"]})
    if len(events) > limits.max_events:
        raise BodyError(
            413,
            f"The request has {len(events)} events; the limit is {limits.max_events} per request.",
            {"events": [f"at most {limits.max_events} events per request"]},
        )
    return events


def _gunzip(raw: bytes, max_bytes: int) -> bytes:
    # Bounded decompression: a small gzip bomb must not become gigabytes in memory.
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(raw, max_bytes + 1)
    except zlib.error:
        raise BodyError(400, "The body is not valid gzip.", {"body": ["not valid gzip"]}) from None
    if len(out) > max_bytes or decompressor.unconsumed_tail:
        raise BodyError(413, f"The decompressed body is over the limit of {max_bytes} bytes.")
    if not decompressor.eof:
        raise BodyError(400, "The body is not valid gzip: it ends early.", {"body": ["not valid gzip"]})
    return out


def parse_timestamp(text) -> int:
    """Microseconds since the epoch of an ISO 8601 timestamp with a UTC offset; ValueError says why not."""
    if not isinstance(text, str):
        raise ValueError(f"must be an ISO 8601 string with a UTC offset, not {_json_type(text)}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{text[:64]}' is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise ValueError("needs a time zone: add 'Z' or an offset such as +00:00")
    return (moment - EPOCH) // _ONE_MICROSECOND


def timestamp_from_us(ts_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=ts_us)


def format_timestamp(moment: datetime) -> str:
    """UTC with a Z, the one form responses use."""
    text = moment.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


def series_key_hash(series_key: tuple) -> str:
    return hashlib.sha1("\x1f".join(series_key).encode()).hexdigest()


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


def validate_events(events: list, *, now_us: int, oldest_us: int | None, oldest_reason: str, limits: Limits):
    """Split events into ValidPoints and rejections [{"index", "errors": {field: [reason]}}]."""
    valid: list[ValidPoint] = []
    rejected: list[dict] = []
    latest_us = now_us + limits.max_future_seconds * 1_000_000
    max_len = limits.max_string_length
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            rejected.append({"index": index, "errors": {"event": [f"must be an object, not {_json_type(event)}"]}})
            continue
        errors: dict[str, list[str]] = {}
        for name in REQUIRED_FIELDS:
            if event.get(name) is None:
                errors[name] = ["this field is required"]
        for name in NAME_FIELDS:
            text = event.get(name)
            if text is None:
                continue
            if not isinstance(text, str):
                errors[name] = [f"must be a string, not {_json_type(text)}"]
            elif not text.strip():
                errors[name] = ["must not be blank"]
            elif len(text) > max_len:
                errors[name] = [f"is {len(text)} characters long; the limit is {max_len}"]
        source = event.get("source", "")
        if source is None:
            source = ""
        if not isinstance(source, str):
            errors["source"] = [f"must be a string, not {_json_type(source)}"]
        elif len(source) > max_len:
            errors["source"] = [f"is {len(source)} characters long; the limit is {max_len}"]
        value = event.get("value")
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                errors["value"] = [f"must be a number, not {_json_type(value)}"]
            else:
                value = float(value) if not isinstance(value, int) or abs(value) < 2**63 else math.inf
                if math.isnan(value):
                    errors["value"] = ["must be a finite number, not NaN"]
                elif math.isinf(value):
                    errors["value"] = ["must be a finite number, not infinity"]
        ts_us = None
        timestamp = event.get("timestamp")
        if timestamp is not None:
            try:
                ts_us = parse_timestamp(timestamp)
            except ValueError as error:
                errors["timestamp"] = [str(error)]
            else:
                if ts_us > latest_us:
                    errors["timestamp"] = [
                        f"is more than {limits.max_future_seconds // 60} minutes in the future"
                    ]
                elif oldest_us is not None and ts_us < oldest_us:
                    errors["timestamp"] = [oldest_reason]
        tags = event.get("tags")
        canonical_tags = ""
        if tags is None:
            tags = {}
        elif not isinstance(tags, dict):
            errors["tags"] = [f"must be an object of string values, not {_json_type(tags)}"]
        else:
            tag_errors = _tag_errors(tags, limits)
            if tag_errors:
                errors["tags"] = tag_errors
            elif tags:
                canonical_tags = orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode()
        if errors:
            rejected.append({"index": index, "errors": errors})
            continue
        valid.append(
            ValidPoint(
                index=index,
                series_key=(event["service"], event["resource_id"], event["metric_name"], canonical_tags),
                ts_us=ts_us,
                value=value,
                source=source,
                tags=tags,
            )
        )
    return valid, rejected


def _tag_errors(tags: dict, limits: Limits) -> list[str]:
    if len(tags) > limits.max_tags:
        return [f"has {len(tags)} tags; the limit is {limits.max_tags}"]
    for key, value in tags.items():
        if not key:
            return ["tag names must not be empty"]
        if len(key) > limits.max_tag_key_length:
            return [f"tag name '{key[:32]}…' is over {limits.max_tag_key_length} characters"]
        if not isinstance(value, str):
            return [f"tag '{key[:64]}' must be a string, not {_json_type(value)}"]
        if len(value) > limits.max_string_length:
            return [f"tag '{key[:64]}' value is over {limits.max_string_length} characters"]
    return []
