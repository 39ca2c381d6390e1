"""Prometheus remote write 1.0: a snappy-compressed protobuf WriteRequest as events.

Mapping: `__name__` -> metric_name, `job` -> service, `instance` -> resource_id, the other
labels -> tags. A series is a counter when the request's metadata says its family is one, or,
as metadata usually travels in requests of its own, when its name ends in `_total`, `_count`,
`_sum` or `_bucket` (Prometheus' naming rules for counters and the cumulative parts of
histograms and summaries). Staleness markers are dropped deliberately; any other NaN is refused.
Native histograms are refused by name (this version stores float samples only).
"""
from __future__ import annotations

import struct

import cramjam
import orjson
from google.protobuf.message import DecodeError

from metrics.ingest import Event, shown
from metrics.protocols import UNKNOWN_RESOURCE, UNKNOWN_SERVICE, Converted
from metrics.protocols.remote_write_pb2 import MetricMetadata, WriteRequest

# Prometheus marks a series that went away with this NaN (value.StaleNaN); it is not a measurement.
STALE_NAN_BITS = 0x7FF0000000000002
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
_COUNTER_TYPES = {MetricMetadata.COUNTER, MetricMetadata.HISTOGRAM, MetricMetadata.SUMMARY}
_bits = struct.Struct("<d")
_as_int = struct.Struct("<Q")


class UndecodableBody(Exception):
    """The body is not a snappy-compressed WriteRequest (answered 400: Prometheus does not retry it)."""


def decode(raw: bytes, *, max_bytes: int) -> WriteRequest:
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
    request = WriteRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError) as error:
        raise UndecodableBody(f"The body is not a protobuf WriteRequest: {shown(str(error))}.") from None
    return request


class BodyTooLarge(Exception):
    def __init__(self, length: int, max_bytes: int):
        super().__init__(f"The body decompresses to {length} bytes, over this tenant's limit of {max_bytes} "
                         "(MAX_BODY_BYTES).")


def is_stale_marker(value: float) -> bool:
    return _as_int.unpack(_bits.pack(value))[0] == STALE_NAN_BITS


def convert(request: WriteRequest) -> Converted:
    out = Converted()
    counter_families = {m.metric_family_name for m in request.metadata if m.type in _COUNTER_TYPES}
    units = {m.metric_family_name: m.unit for m in request.metadata if m.unit}
    for series in request.timeseries:
        labels = {label.name: label.value for label in series.labels}
        metric_name = labels.pop("__name__", "")
        if series.histograms:
            out.refuse(f"series {shown(metric_name)!r}", f"has {len(series.histograms)} native histogram samples; "
                       "send classic histograms (float samples) instead")
        if not series.samples:
            continue
        if not metric_name:
            out.refuse(f"series {shown(str(labels), 200)}", f"{len(series.samples)} samples without a __name__ label")
            continue
        service = labels.pop("job", "") or UNKNOWN_SERVICE
        resource_id = labels.pop("instance", "") or UNKNOWN_RESOURCE
        family = _family(metric_name)
        counter = family in counter_families or metric_name in counter_families or metric_name.endswith(COUNTER_SUFFIXES)
        kind = "counter" if counter else "gauge"
        unit = units.get(family, "")
        tags = orjson.dumps(dict(sorted(labels.items()))) if labels else b"{}"
        for sample in series.samples:
            value = sample.value
            if value != value and is_stale_marker(value):
                out.dropped += 1
                continue
            out.events.append(Event(
                service=service, resource_id=resource_id, metric_name=metric_name, value=value,
                timestamp=sample.timestamp * 1000, source="prometheus", tags=tags, kind=kind, unit=unit,
            ))
    return out


def _family(metric_name: str) -> str:
    for suffix in COUNTER_SUFFIXES:
        if metric_name.endswith(suffix):
            return metric_name[: -len(suffix)]
    return metric_name
