"""Small shared pieces of the HTTP API: query-parameter parsing and keyset cursors."""
from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cloudwatchdog.errors import ApiError
from cloudwatchdog.timeutil import from_us, parse_iso

_STEP = re.compile(r"^(\d{1,10})([smhd])$")
_STEP_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_STEP_SECONDS = 3660 * 86400  # ten years
# Like Prometheus: a stepped read returns at most this many points per series.
MAX_POINTS_PER_SERIES = 11_000
# What a read may name: datetime's range, a day short at each end so that offsets and windows fit.
EARLIEST_READ = datetime(1, 1, 2, tzinfo=timezone.utc)
LATEST_READ = datetime(9999, 12, 30, tzinfo=timezone.utc)
_FIRST = datetime(1, 1, 1, tzinfo=timezone.utc)
_LAST = datetime(9999, 12, 31, tzinfo=timezone.utc)
MAX_ID = 2**63 - 1  # PostgreSQL's bigint


@extend_schema_field(OpenApiTypes.DATETIME)
class TimestampField(serializers.Field):
    """ISO 8601 with a UTC offset, as everywhere in the API."""

    def to_internal_value(self, data):
        try:
            moment = from_us(parse_iso(data))
        except ValueError as error:
            raise serializers.ValidationError(str(error))
        except OverflowError:
            moment = None
        if moment is None or not EARLIEST_READ <= moment <= LATEST_READ:
            raise serializers.ValidationError(
                f"must be between {EARLIEST_READ:%Y-%m-%d}T00:00:00Z and {LATEST_READ:%Y-%m-%d}T00:00:00Z")
        return moment

    def to_representation(self, value):
        return value.isoformat().replace("+00:00", "Z")


@extend_schema_field({"type": "string", "pattern": r"^\d{1,10}[smhd]$", "example": "1h"})
class StepField(serializers.Field):
    """`<n>[smhd]`, e.g. 5m or 1h, as seconds (at most ten years)."""

    def to_internal_value(self, data):
        match = _STEP.match(str(data))
        if not match or int(match.group(1)) == 0:
            raise serializers.ValidationError("must look like 30s, 5m, 1h or 1d")
        seconds = int(match.group(1)) * _STEP_SECONDS[match.group(2)]
        if seconds > MAX_STEP_SECONDS:
            raise serializers.ValidationError("must be at most 3660d (ten years)")
        return seconds

    def to_representation(self, value):
        return f"{value}s"


def query_params(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def encode_cursor(*parts) -> str:
    return base64.urlsafe_b64encode(":".join(str(p) for p in parts).encode()).decode().rstrip("=")


def cursor_id(text: str) -> int:
    """A row id inside a cursor (ValueError if it is not one)."""
    value = int(text)
    if not 0 <= value <= MAX_ID:
        raise ValueError(text)
    return value


def cursor_time(text: str) -> datetime:
    """A time (µs since the epoch) inside a cursor (ValueError if it is not one)."""
    try:
        return from_us(int(text))
    except OverflowError:
        raise ValueError(text) from None


def decode_cursor(cursor: str, *parts_as) -> list:
    """The parts of a cursor, each converted by its function in `parts_as`; 400 if it is not one we gave out."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = base64.urlsafe_b64decode(padded.encode("ascii")).decode().split(":")
        if len(parts) != len(parts_as):
            raise ValueError(cursor)
        return [convert(part) for convert, part in zip(parts_as, parts)]
    except (ValueError, UnicodeError):
        raise ApiError(400, "The cursor is not valid; use the 'next' link of a previous page.",
                       {"cursor": ["is not a cursor this API gave out"]}) from None


def keyset_page(request, rows, *, limit: int, parts: tuple, after: Callable, key: Callable) -> tuple[list, str | None]:
    """One page of `rows` (a queryset in its keyset order) and the link to the next, or None.

    The request's `cursor`, if any, is decoded with the converters in `parts` and handed to
    `after(rows, *values)`, which keeps the rows past it; `key(row)` gives the values that the
    next page's cursor carries.
    """
    cursor = request.query_params.get("cursor")
    if cursor:
        rows = after(rows, *decode_cursor(cursor, *parts))
    page = list(rows[: limit + 1])
    if len(page) <= limit:
        return page, None
    page = page[:limit]
    return page, next_link(request, encode_cursor(*key(page[-1])))


def next_link(request, cursor: str) -> str:
    params = request.query_params.copy()
    params["cursor"] = cursor
    return request.build_absolute_uri(request.path) + "?" + params.urlencode()


def window(*, minutes: int | None, start: datetime | None, end: datetime | None, now: datetime, default_minutes: int):
    """(start, end] of a read: explicit start/end, else the last `minutes` before now (kept within
    the times a read may name)."""
    if end is None and (start is None or minutes is None):
        end = now
    elif end is None:
        end = min(start, _LAST - timedelta(minutes=minutes)) + timedelta(minutes=minutes)
    if start is None:
        span = timedelta(minutes=minutes or default_minutes)
        start = max(end, _FIRST + span) - span
    if start >= end:
        raise ApiError(400, "start must be before end.", {"start": ["must be before end"]})
    return start, end


def step_check(*, start: datetime, end: datetime, step_seconds: int | None) -> None:
    """400 when a stepped read would return more than MAX_POINTS_PER_SERIES points per series."""
    if step_seconds and (end - start) / timedelta(seconds=step_seconds) > MAX_POINTS_PER_SERIES:
        least = -(-int((end - start).total_seconds()) // MAX_POINTS_PER_SERIES)
        raise ApiError(400, f"The step gives more than {MAX_POINTS_PER_SERIES} points per series over this window.",
                       {"step": [f"must be at least {least}s over this window (at most {MAX_POINTS_PER_SERIES} "
                                 "points per series)"]})
