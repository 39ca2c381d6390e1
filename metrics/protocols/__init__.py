"""The agent protocols: OTLP/HTTP metrics (otlp) and Prometheus remote write 1.0 (remote_write).

Each turns a request body into the same `metrics.ingest.Event`s as the JSON API, so the same
limits, validation and first-write-wins rules apply (metrics.services.points_ingest), and
reports what it refused while converting. NaN samples and staleness markers (a remote-write StaleNaN,
an OTLP point flagged "no recorded value") travel as events with those values; points_ingest keeps
them out of the point table, for PromQL only. What a request may cost is bounded before
it is converted: its points are counted first (wire.py for large bodies), and what protocols
remember between requests (IdentityCache) is bounded in bytes per tenant. remote_write_pb2 is
generated from remote_write.proto by `make protos`; the OTLP classes come from the
opentelemetry-proto package.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

import orjson

from cloudwatchdog.timeutil import format_iso, from_us
from metrics.ingest import Event, shown

# What a point is called when a protocol gives no name for its service or resource. OTLP's SDKs
# say "unknown_service" for a missing service.name; the resource follows the same pattern.
UNKNOWN_SERVICE = "unknown_service"
UNKNOWN_RESOURCE = "unknown_resource"


@dataclass
class Converted:
    """A protocol request as events (NaN values and staleness markers among them: points_ingest keeps them
    apart, for PromQL), with the points refused on the way."""

    events: list[Event] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why each refused point was refused, naming it
    deltas: list[int] = field(default_factory=list)  # indices of events that are increases (OTLP delta temporality)
    tag_bytes_allowed: int | None = None  # the tags JSON its points may build, all together
    tag_bytes: int = 0

    def refuse(self, what: str, reason: str, *, times: int = 1) -> None:
        self.refused.extend([f"{what}: {reason}"] * times)  # one sentence, counted once per point

    def tags_built(self, tags: bytes) -> bytes:
        """`tags`, counted against tag_bytes_allowed (TooLarge past it)."""
        self.tag_bytes += len(tags)
        if self.tag_bytes_allowed is not None and self.tag_bytes > self.tag_bytes_allowed:
            raise TooLarge(f"The points' tags come to more than {self.tag_bytes_allowed} bytes (each point's tags "
                           f"repeat its resource's attributes; the limit is {TAG_BYTES_PER_BODY_BYTE} times "
                           "MAX_BODY_BYTES): send fewer "
                           "points a request; nothing was stored.")
        return tags


def go_float(value: float) -> str:
    """`value` as Prometheus writes a float label (`le`, `quantile`): Go's strconv.FormatFloat(v, 'g', -1, 64),
    the shortest digits that read back exactly, with an exponent below 1e-4 and from 1e6 on ("1e+06")."""
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()  # repr: the shortest digits
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # where the decimal point falls among the digits
    if not -4 <= point - 1 < 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if point - 1 < 0 else '+'}{abs(point - 1):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def point_name(event: Event) -> str:
    """How an error names one point: its metric, series identity and time."""
    try:
        when = format_iso(from_us(event.timestamp))
    except (OverflowError, TypeError):
        when = f"{event.timestamp} µs since the epoch"
    # Names cut short: a refused megabyte-long name must not come back a megabyte long, five times.
    return (f"{shown(event.metric_name, 200)} (service {shown(event.service, 200)!r}, resource "
            f"{shown(event.resource_id, 200)!r}) at {when}")


def rejections_named(events: list[Event], rejected: list[dict]) -> list[str]:
    """points_ingest's rejections (by index, errors by field) as sentences naming each point."""
    return [
        f"{point_name(events[item['index']])}: " + "; ".join(
            f"{field_name} {message}" for field_name, messages in item["errors"].items() for message in messages)
        for item in rejected
    ]


_REASON_CHARS = 1000


def summary(reasons: list[str], *, total: int, noun: str, shown: int = 5) -> str:
    """'N of M <noun>s refused: <the first few reasons>' for a response that names what it refused; a
    reason that refused several points (a histogram point's buckets) is said once."""
    times = Counter(reasons)
    first = list(times)[:shown]
    head = "; ".join(reason if len(reason) <= _REASON_CHARS else reason[:_REASON_CHARS] + "…" for reason in first)
    left = len(reasons) - sum(times[reason] for reason in first)
    more = f"; and {left} more" if left else ""
    return f"{len(reasons)} of {total} {noun}s refused: {head}{more}"


# A body of up to this many bytes per point allowed is parsed at once: it holds at most half as many
# messages, which the parser builds in milliseconds. A larger one is counted on the wire first.
PARSE_BYTES_PER_POINT = 64
# Resources, scopes, metrics (and the fields around them) a request may have per point allowed.
FIELDS_PER_POINT = 16
# The tags JSON a request's points may come to, per byte of MAX_BODY_BYTES: an OTLP resource's
# attributes are repeated in each of its points' tags, so a small body could otherwise make gigabytes.
TAG_BYTES_PER_BODY_BYTE = 4


def bounded_parse_bytes(limits) -> int:
    return PARSE_BYTES_PER_POINT * limits.max_events


def fields_allowed(limits) -> int:
    return FIELDS_PER_POINT * limits.max_events + 1024


def tags_json(tags: dict, *, sort: bool = False) -> bytes:
    """Tags as the JSON bytes a series key holds, sized to their length: orjson's own result keeps a
    buffer of at least 4 KB, which every cached identity and series key would hold on to."""
    if not tags:
        return b"{}"
    return bytes(memoryview(orjson.dumps(tags, option=orjson.OPT_SORT_KEYS if sort else None)))


class TooLarge(Exception):
    """A request over its tenant's limits, found while decoding, before any event is built (413)."""


class IdentityCache:
    """Per-process map of identities as sent (a resource's or a label set's encoded bytes) -> what they
    mean, one map per tenant, bounded in bytes.

    An agent sends the same few identities in every request, so each is worked out once. What one
    tenant sends cannot grow it without bound or push out another's: an identity over `entry_bytes`
    or one that is refused is not kept, a tenant's map that passes `tenant_bytes` starts over, and
    when all together pass `total_bytes` the largest one does (cheaper than LRU on every hit)."""

    _ENTRY_OVERHEAD = 400  # dict slot, key and value objects of one entry, in bytes

    def __init__(self, *, tenant_bytes: int = 8 << 20, total_bytes: int = 32 << 20, entry_bytes: int = 16 << 10):
        self.tenant_bytes, self.total_bytes, self.entry_bytes = tenant_bytes, total_bytes, entry_bytes
        self._tenants: dict[int, dict] = {}
        self._bytes: dict[int, int] = {}
        self._limits: dict[int, object] = {}
        self._total = 0

    def get(self, tenant_id: int, key: bytes | tuple[bytes, ...], build: Callable, keep: Callable = bool,
            limits=None):
        """The meaning of `key` under the tenant's `limits`, from `build(key)` the first time; kept only when
        `keep(meaning)` holds. A tenant's map starts over when its limits change (a meaning depends on them)."""
        if self._limits.get(tenant_id, limits) != limits:
            self._forget(tenant_id)
        self._limits[tenant_id] = limits
        entries = self._tenants.get(tenant_id)
        if entries is not None:
            found = entries.get(key)
            if found is not None:
                return found
        meaning = build(key)
        size = len(key) if isinstance(key, bytes) else sum(map(len, key))
        if size <= self.entry_bytes and keep(meaning):
            self._put(tenant_id, key, meaning, 2 * size + self._ENTRY_OVERHEAD)  # the meaning is about as big
        return meaning

    def _put(self, tenant_id: int, key, meaning, size: int) -> None:
        if self._bytes.get(tenant_id, 0) + size > self.tenant_bytes:
            self._forget(tenant_id)
        while self._total + size > self.total_bytes and self._tenants:
            self._forget(max(self._bytes, key=self._bytes.get))
        self._tenants.setdefault(tenant_id, {})[key] = meaning
        self._bytes[tenant_id] = self._bytes.get(tenant_id, 0) + size
        self._total += size

    def bytes_used(self, tenant_id: int | None = None) -> int:
        return self._total if tenant_id is None else self._bytes.get(tenant_id, 0)

    def _forget(self, tenant_id: int) -> None:
        self._tenants.pop(tenant_id, None)
        self._total -= self._bytes.pop(tenant_id, 0)

    def clear(self) -> None:
        self._tenants.clear()
        self._bytes.clear()
        self._limits.clear()
        self._total = 0
