"""Prometheus remote write 1.0: a snappy-compressed protobuf WriteRequest as events.

Mapping: `__name__` -> metric_name, `job` -> service, `instance` -> resource_id, the other
labels -> tags. A series is a counter when the request's metadata says its family is one, or,
as metadata usually travels in requests of its own, when its name ends in `_total`, `_count`,
`_sum` or `_bucket` (Prometheus' naming rules for counters and the cumulative parts of
histograms and summaries). Staleness markers and every other NaN (an empty summary's quantiles) are
events like any sample: points_ingest keeps them apart from the points, for PromQL only.
Native histograms are refused by name (this version stores float samples only).

The body is read with remote_write_fast.proto, wire-compatible with the spec's WriteRequest, so a
label set seen before costs one dict lookup on its encoded bytes (see identity_cache).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

import cramjam
import orjson
from google.protobuf.message import DecodeError

from metrics import storage
from metrics.ingest import Event, Limits, shown, text_error
from metrics.protocols import (
    UNKNOWN_RESOURCE,
    UNKNOWN_SERVICE,
    Converted,
    IdentityCache,
    TooLarge,
    bounded_parse_bytes,
    fields_allowed,
    tags_json,
    wire,
)
from metrics.protocols.remote_write_fast_pb2 import WriteRequestLabelBytes
from metrics.protocols.remote_write_pb2 import Label, MetricMetadata

# Prometheus marks a series that went away with this NaN (value.StaleNaN); it is not a measurement.
STALE_NAN_BITS = storage.STALE_NAN_BITS
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
_COUNTER_TYPES = {MetricMetadata.COUNTER, MetricMetadata.HISTOGRAM, MetricMetadata.SUMMARY}


class UndecodableBody(Exception):
    """The body is not a snappy-compressed WriteRequest (answered 400: Prometheus does not retry it)."""


# WriteRequest -> timeseries -> samples and histograms (each one point).
_SHAPE = {1: {2: wire.POINT, 4: wire.POINT}}


def decode(raw: bytes, *, limits: Limits) -> WriteRequestLabelBytes:
    """The request, its labels and metadata still encoded (remote_write_fast.proto); 400/413 as exceptions,
    the sample count refused past the tenant's limit before anything is built from it."""
    try:
        length = cramjam.snappy.decompress_raw_len(raw)
    except cramjam.DecompressionError as error:
        raise UndecodableBody(f"The body is not snappy block-compressed: {shown(str(error))}.") from None
    if length > limits.max_body_bytes:
        raise BodyTooLarge(length, limits.max_body_bytes)
    try:
        body = bytes(cramjam.snappy.decompress_raw(raw))
    except cramjam.DecompressionError as error:
        raise UndecodableBody(f"The body is not snappy block-compressed: {shown(str(error))}.") from None
    if len(body) > bounded_parse_bytes(limits):
        try:
            wire.count(body, _SHAPE, most_points=limits.max_events, most_fields=fields_allowed(limits),
                       noun="sample")
        except wire.Malformed as error:
            raise UndecodableBody(f"The body is not a protobuf WriteRequest: {error}.") from None
    try:
        request = WriteRequestLabelBytes.FromString(body)
    except (DecodeError, RecursionError) as error:
        raise UndecodableBody(f"The body is not a protobuf WriteRequest: {shown(str(error))}.") from None
    _samples_check(request, limits)
    return request


def _samples_check(request: WriteRequestLabelBytes, limits: Limits) -> None:
    most = limits.max_events
    if len(request.timeseries) + len(request.metadata) > fields_allowed(limits):
        raise TooLarge(f"The request has more series and metadata than its at most {most} samples "
                       "(MAX_EVENTS_PER_REQUEST) can use; nothing was stored.")
    samples = 0
    for series in request.timeseries:
        samples += len(series.samples) + len(series.histograms)
        if samples > most:
            raise TooLarge(f"The request has more than {most} samples; this tenant's limit is {most} a request "
                           "(MAX_EVENTS_PER_REQUEST); nothing was stored.")


class BodyTooLarge(Exception):
    def __init__(self, length: int, max_bytes: int):
        super().__init__(f"The body decompresses to {length} bytes, over this tenant's limit of {max_bytes} "
                         "(MAX_BODY_BYTES).")


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


# Label sets as sent (their encoded bytes) -> _Identity, per tenant, bounded in bytes.
identity_cache = IdentityCache()
# Remote write 1.0: label names MUST match this (Prometheus refuses a series with any other).
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _identity_of(label_bytes: tuple, limits: Limits) -> _Identity:
    # One label more than MAX_TAGS for each of __name__, job and instance, which are not tags.
    if len(label_bytes) > limits.max_tags + 3:
        return _refused(f"series with {len(label_bytes)} labels: the limit is {limits.max_tags} besides "
                        "__name__, job and instance (MAX_TAGS)")
    try:
        pairs = [(label.name, label.value) for label in map(Label.FromString, label_bytes)]
    except DecodeError:
        return _refused("series: its labels are not valid protobuf Label messages")
    names = [name for name, _ in pairs]
    invalid = next((name for name in names if not _LABEL_NAME.fullmatch(name)), None)
    if invalid is not None:
        return _refused(f"series with label {shown(invalid)!r}: a label name must match [a-zA-Z_][a-zA-Z0-9_]* "
                        "(remote write 1.0)")
    if len(set(names)) < len(names):
        twice = next(name for name in names if names.count(name) > 1)
        return _refused(f"series with label {shown(twice)!r} twice: label names must be unique (remote write 1.0)")
    # An empty value is the label's absence, as in Prometheus: m{env=""} is m{}.
    labels = {name: value for name, value in pairs if value}
    oversized = next((f"label {shown(name)!r} {error}" for name, value in labels.items()
                      for error in (text_error(name, limits.max_name_bytes, "MAX_NAME_BYTES"),
                                    text_error(value, limits.max_value_bytes, "MAX_VALUE_BYTES")) if error), None)
    if oversized:
        return _refused(f"series {shown(labels.get('__name__', ''))!r}: {oversized}")
    return _identity(labels)


def _valid(identity: _Identity) -> bool:
    return identity.problem is None


def _refused(problem: str) -> _Identity:
    return _Identity("", "", "", "", b"", False, problem)


def _identity(labels: dict[str, str]) -> _Identity:
    metric_name = labels.pop("__name__", "")
    if not metric_name:
        return _refused(f"series {shown(orjson.dumps(labels).decode(), 200)}: samples without a __name__ label")
    service = labels.pop("job", "") or UNKNOWN_SERVICE
    resource_id = labels.pop("instance", "") or UNKNOWN_RESOURCE
    tags = tags_json(dict(sorted(labels.items())))
    return _Identity(service, resource_id, metric_name, _family(metric_name), tags,
                     metric_name.endswith(COUNTER_SUFFIXES))


def convert(request: WriteRequestLabelBytes, *, limits: Limits, tenant_id: int) -> Converted:
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
    identity_of = partial(_identity_of, limits=limits)
    for series in request.timeseries:
        identity = identity_cache.get(tenant_id, tuple(series.labels), identity_of, keep=_valid, limits=limits)
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
            events.append(Event(service=service, resource_id=resource_id, metric_name=metric_name, value=sample.value,
                                timestamp=sample.timestamp * 1000, source="prometheus", tags=tags, kind=kind,
                                unit=unit))
    return out


def _family(metric_name: str) -> str:
    for suffix in COUNTER_SUFFIXES:
        if metric_name.endswith(suffix):
            return metric_name[: -len(suffix)]
    return metric_name
