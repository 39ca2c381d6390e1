"""Prometheus remote write 1.0: a snappy-compressed protobuf WriteRequest as events.

Mapping: `__name__` -> metric_name, `job` -> service, `instance` -> resource_id, the other
labels -> tags. A series is a counter when the request's metadata says its family is one, or,
as metadata usually travels in requests of its own, when its name ends in `_total`, `_count`,
`_sum` or `_bucket` (Prometheus' naming rules for counters and the cumulative parts of
histograms and summaries). Staleness markers are dropped deliberately; any other NaN is refused.
Native histograms are refused by name (this version stores float samples only).

The body is read with remote_write_fast.proto, wire-compatible with the spec's WriteRequest, so a
label set seen before costs one dict lookup on its encoded bytes (see identity_cache).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import cramjam
import orjson
from google.protobuf.message import DecodeError

from metrics.ingest import Event, shown
from metrics.protocols import UNKNOWN_RESOURCE, UNKNOWN_SERVICE, Converted
from metrics.protocols.remote_write_fast_pb2 import WriteRequestLabelBytes
from metrics.protocols.remote_write_pb2 import Label, MetricMetadata

# Prometheus marks a series that went away with this NaN (value.StaleNaN); it is not a measurement.
STALE_NAN_BITS = 0x7FF0000000000002
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
_COUNTER_TYPES = {MetricMetadata.COUNTER, MetricMetadata.HISTOGRAM, MetricMetadata.SUMMARY}
_bits = struct.Struct("<d")
_as_int = struct.Struct("<Q")


class UndecodableBody(Exception):
    """The body is not a snappy-compressed WriteRequest (answered 400: Prometheus does not retry it)."""


def decode(raw: bytes, *, max_bytes: int) -> WriteRequestLabelBytes:
    """The request, its labels and metadata still encoded (remote_write_fast.proto); 400/413 as exceptions."""
    try:
        length = cramjam.snappy.decompress_raw_len(raw)
    except cramjam.DecompressionError as error:
        raise UndecodableBody(f"The body is not snappy block-compressed: {shown(str(error))}.") from None
    if length > max_bytes:
        raise BodyTooLarge(length, max_bytes)
    try:
        body = bytes(cramjam.snappy.decompress_raw(raw))
    except cramjam.DecompressionError as error:
        raise UndecodableBody(f"The body is not snappy block-compressed: {shown(str(error))}.") from None
    try:
        return WriteRequestLabelBytes.FromString(body)
    except (DecodeError, RecursionError) as error:
        raise UndecodableBody(f"The body is not a protobuf WriteRequest: {shown(str(error))}.") from None


class BodyTooLarge(Exception):
    def __init__(self, length: int, max_bytes: int):
        super().__init__(f"The body decompresses to {length} bytes, over this tenant's limit of {max_bytes} "
                         "(MAX_BODY_BYTES).")


def is_stale_marker(value: float) -> bool:
    return _as_int.unpack(_bits.pack(value))[0] == STALE_NAN_BITS


@dataclass(frozen=True)
class _Identity:
    """What a label set means, worked out once per process for each label set seen."""

    service: str
    resource_id: str
    metric_name: str
    family: str
    tags: bytes
    counter_by_name: bool
    problem: str | None = None  # why its samples are refused, naming the series


class _IdentityCache:
    """Label sets as sent (their encoded bytes) -> _Identity; shared by tenants, as the mapping is the
    same for all. Bounded: past `max_entries` it starts over (cheaper than LRU bookkeeping per hit)."""

    def __init__(self, max_entries: int = 100_000):
        self.max_entries = max_entries
        self._entries: dict[tuple, _Identity] = {}

    def get(self, label_bytes: tuple) -> _Identity:
        identity = self._entries.get(label_bytes)
        if identity is None:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            identity = self._entries[label_bytes] = _identity(label_bytes)
        return identity

    def clear(self) -> None:
        self._entries.clear()


identity_cache = _IdentityCache()


def _identity(label_bytes: tuple) -> _Identity:
    try:
        labels = {label.name: label.value for label in map(Label.FromString, label_bytes)}
    except DecodeError:
        return _Identity("", "", "", "", b"", False, "series: its labels are not valid protobuf Label messages")
    metric_name = labels.pop("__name__", "")
    if not metric_name:
        return _Identity("", "", "", "", b"", False,
                         f"series {shown(orjson.dumps(labels).decode(), 200)}: samples without a __name__ label")
    service = labels.pop("job", "") or UNKNOWN_SERVICE
    resource_id = labels.pop("instance", "") or UNKNOWN_RESOURCE
    tags = orjson.dumps(dict(sorted(labels.items()))) if labels else b"{}"
    return _Identity(service, resource_id, metric_name, _family(metric_name), tags,
                     metric_name.endswith(COUNTER_SUFFIXES))


def convert(request: WriteRequestLabelBytes) -> Converted:
    out = Converted()
    counter_families, units = set(), {}
    for encoded in request.metadata:
        try:
            metadata = MetricMetadata.FromString(encoded)
        except DecodeError:
            out.refuse("metadata", "not a valid protobuf MetricMetadata")
            continue
        if metadata.type in _COUNTER_TYPES:
            counter_families.add(metadata.metric_family_name)
        if metadata.unit:
            units[metadata.metric_family_name] = metadata.unit
    events = out.events
    for series in request.timeseries:
        identity = identity_cache.get(tuple(series.labels))
        if series.histograms:
            out.refuse(f"series {shown(identity.metric_name)!r}", f"has {len(series.histograms)} native histogram "
                       "samples; send classic histograms (float samples) instead")
        samples = series.samples
        if not samples:
            continue
        if identity.problem:
            out.refuse(identity.problem, f"{len(samples)} samples refused")
            continue
        counter = identity.counter_by_name or identity.family in counter_families or \
            identity.metric_name in counter_families
        kind = "counter" if counter else "gauge"
        unit = units.get(identity.family, "")
        service, resource_id, metric_name, tags = identity.service, identity.resource_id, identity.metric_name, \
            identity.tags
        for sample in samples:
            value = sample.value
            if value != value and is_stale_marker(value):
                out.dropped += 1
                continue
            events.append(Event(service=service, resource_id=resource_id, metric_name=metric_name, value=value,
                                timestamp=sample.timestamp * 1000, source="prometheus", tags=tags, kind=kind,
                                unit=unit))
    return out


def _family(metric_name: str) -> str:
    for suffix in COUNTER_SUFFIXES:
        if metric_name.endswith(suffix):
            return metric_name[: -len(suffix)]
    return metric_name
