"""Small shared pieces of the HTTP API: query-parameter parsing and keyset cursors."""
from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cloudwatchdog.errors import ApiError
from metrics.ingest import parse_timestamp, timestamp_from_us

_STEP = re.compile(r"^(\d+)([smhd])$")
_STEP_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@extend_schema_field(OpenApiTypes.DATETIME)
class TimestampField(serializers.Field):
    """ISO 8601 with a UTC offset, as everywhere in the API."""

    def to_internal_value(self, data):
        try:
            return timestamp_from_us(parse_timestamp(data))
        except ValueError as error:
            raise serializers.ValidationError(str(error))

    def to_representation(self, value):
        return value.isoformat().replace("+00:00", "Z")


@extend_schema_field({"type": "string", "pattern": r"^\d+[smhd]$", "example": "1h"})
class StepField(serializers.Field):
    """`<n>[smhd]`, e.g. 5m or 1h, as seconds."""

    def to_internal_value(self, data):
        match = _STEP.match(str(data))
        if not match or int(match.group(1)) == 0:
            raise serializers.ValidationError("must look like 30s, 5m, 1h or 1d")
        return int(match.group(1)) * _STEP_SECONDS[match.group(2)]

    def to_representation(self, value):
        return f"{value}s"


def query_params(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def encode_cursor(*parts) -> str:
    return base64.urlsafe_b64encode(":".join(str(p) for p in parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, count: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = base64.urlsafe_b64decode(padded.encode()).decode().split(":")
        if len(parts) != count:
            raise ValueError
        return parts
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The cursor is not valid; use the 'next' link of a previous page.",
                       {"cursor": ["is not a cursor this API gave out"]}) from None


def next_link(request, cursor: str) -> str:
    params = request.query_params.copy()
    params["cursor"] = cursor
    return request.build_absolute_uri(request.path) + "?" + params.urlencode()


def window(*, minutes: int | None, start: datetime | None, end: datetime | None, now: datetime, default_minutes: int):
    """(start, end] of a read: explicit start/end, else the last `minutes` before now."""
    if start is None and end is None:
        end = now
        start = now - timedelta(minutes=minutes or default_minutes)
    elif start is None:
        start = end - timedelta(minutes=minutes or default_minutes)
    elif end is None:
        end = now if minutes is None else start + timedelta(minutes=minutes)
    if start >= end:
        raise ApiError(400, "start must be before end.", {"start": ["must be before end"]})
    return start, end
