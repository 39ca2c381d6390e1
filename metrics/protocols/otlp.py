"""OTLP/HTTP metrics: an ExportMetricsServiceRequest (protobuf or OTLP JSON) as events.

Mapping (the README's table): resource `service.name` -> service; `host.id`, else `host.name`,
else `service.instance.id` -> resource_id; metric name -> metric_name; the other resource
attributes and the point's attributes -> tags (scalars as strings, arrays and maps as JSON;
`telemetry.sdk.*` left out: it describes the exporter, and would start new series at every SDK
upgrade). Gauge -> one point per data point; a monotonic cumulative sum -> a counter, any other
sum -> a gauge (a delta is already an increase); histograms and exponential histograms ->
`<name>.count` and `<name>.sum`, summaries the same plus `<name>` per quantile (tag `quantile`):
counters when cumulative. Exemplars are dropped; so are points flagged "no recorded value"
(OTLP's staleness marker) and NaN values (counted as dropped).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from metrics.ingest import Event, Limits, shown, text_error
from metrics.protocols import (
    TAG_BYTES_PER_BODY_BYTE,
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

RESOURCE_ID_ATTRIBUTES = ("host.id", "host.name", "service.instance.id")
_NO_RECORDED_VALUE = metrics_pb2.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_POINT_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
_JSON_POINT_KINDS = ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram", "summary")
JSON_OBJECTS_PER_POINT = 32  # a point with 15 attributes, or fewer and exemplars
JSON_VALUES_PER_POINT = 64  # its fields, attributes and a histogram's buckets


class UndecodableBody(Exception):
    """The body is not an ExportMetricsServiceRequest in the declared encoding (answered 400)."""


# ExportMetricsServiceRequest -> resource_metrics -> scope_metrics -> metrics -> gauge, sum, histogram,
# exponential_histogram or summary -> data_points.
_SHAPE = {1: {2: {2: {number: {1: wire.POINT} for number in (5, 7, 9, 10, 11)}}}}


def decode(raw: bytes, *, json_body: bool, limits: Limits) -> ExportMetricsServiceRequest:
    """The request, refused (TooLarge) past the tenant's limits before anything is built from it."""
    if json_body:
        return _json_decode(raw, limits)
    if len(raw) > bounded_parse_bytes(limits):
        try:
            wire.count(raw, _SHAPE, most_points=limits.max_events, most_fields=fields_allowed(limits),
                       noun="data point")
        except wire.Malformed as error:
            raise UndecodableBody(f"The body is not a protobuf ExportMetricsServiceRequest: {error}.") from None
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(raw)
    except (DecodeError, RecursionError) as error:
        raise UndecodableBody(f"The body is not a protobuf ExportMetricsServiceRequest: {shown(str(error))}.") from None
    _points_check(request, limits)
    return request


def _json_decode(raw: bytes, limits: Limits) -> ExportMetricsServiceRequest:
    # Protobuf's JSON parser takes microseconds a value: count objects (braces) and values (commas
    # separate them) first; one inside a string counts too, so this errs on the safe side.
    most_objects, most_values = JSON_OBJECTS_PER_POINT * limits.max_events, JSON_VALUES_PER_POINT * limits.max_events
    if raw.count(b"{") > most_objects or raw.count(b",") > most_values:
        raise TooLarge(f"The body has more than {most_objects} JSON objects or {most_values} values; this tenant's "
                       f"limit of {limits.max_events} data points a request (MAX_EVENTS_PER_REQUEST) allows "
                       f"{JSON_OBJECTS_PER_POINT} and {JSON_VALUES_PER_POINT} a point (send protobuf for larger "
                       "points); nothing was stored.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise UndecodableBody(f"The body is not valid JSON: {shown(str(error))}.") from None
    if not isinstance(body, dict):
        raise UndecodableBody("The body must be an OTLP JSON object with 'resourceMetrics'.")
    _exemplars_drop(body)
    request = ExportMetricsServiceRequest()
    try:
        # OTLP JSON is protobuf's JSON mapping but for hex trace and span ids, which only exemplars
        # carry (dropped above); unknown fields are ignored, as the specification asks of receivers.
        json_format.ParseDict(body, request, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, TypeError, ValueError) as error:
        raise UndecodableBody(f"The body is not an OTLP JSON ExportMetricsServiceRequest: {shown(str(error), 200)}.") \
            from None
    _points_check(request, limits)
    return request


def _points_check(request: ExportMetricsServiceRequest, limits: Limits) -> None:
    """TooLarge when the request would make more points than MAX_EVENTS_PER_REQUEST (a histogram point
    makes two, count and sum; a summary's quantiles one each). Every level is counted by its length
    before it is walked, so no loop here runs past the limits."""
    most = limits.max_events
    levels = [request.resource_metrics]
    for inside in (lambda resource: resource.scope_metrics, lambda scope: scope.metrics, None):
        if sum(len(level) for level in levels) > fields_allowed(limits):
            raise TooLarge(f"The request has more resources, scopes or metrics than its at most {most} data "
                           "points (MAX_EVENTS_PER_REQUEST) can use; nothing was stored.")
        if inside is not None:
            levels = [inside(item) for level in levels for item in level]
    points = 0
    for metric in (metric for level in levels for metric in level):
        points += _points_of(metric, most - points)
        if points > most:
            raise TooLarge(f"The request has more than {most} data points (a histogram point counts twice, count "
                           "and sum; a summary's quantiles once each); this tenant's limit is "
                           f"{most} a request (MAX_EVENTS_PER_REQUEST); nothing was stored.")


def _points_of(metric, room: int) -> int:
    which = metric.WhichOneof("data")
    if which is None:
        return 1  # refused, by name
    points = getattr(metric, which).data_points
    if which in ("gauge", "sum"):
        return len(points)
    made = 2 * len(points)
    if which == "summary" and made <= room:
        made += sum(len(point.quantile_values) for point in points)
    return made


def _exemplars_drop(body: dict) -> None:
    for resource_metrics in _dicts(body.get("resourceMetrics") or body.get("resource_metrics")):
        for scope_metrics in _dicts(resource_metrics.get("scopeMetrics") or resource_metrics.get("scope_metrics")):
            for metric in _dicts(scope_metrics.get("metrics")):
                for kind in _JSON_POINT_KINDS:
                    data = metric.get(kind)
                    if isinstance(data, dict):
                        for point in _dicts(data.get("dataPoints") or data.get("data_points")):
                            point.pop("exemplars", None)


def _dicts(items) -> list:
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _text(value) -> str | None:
    """An AnyValue as a tag value: scalars as strings, arrays and maps as JSON, None when empty."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return repr(value.double_value)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return orjson.dumps(json_format.MessageToDict(value)).decode()


def _attributes(key_values, limits: Limits) -> tuple[dict[str, str], str | None]:
    """Attributes as tags, or why they cannot be: too many, or an array or map too large to be a tag
    value (told before it is turned into JSON)."""
    if len(key_values) > limits.max_tags:
        return {}, f"has {len(key_values)} attributes; the limit is {limits.max_tags} tags (MAX_TAGS)"
    attributes = {}
    for item in key_values:
        if item.value.WhichOneof("value") in ("array_value", "kvlist_value") and \
                item.value.ByteSize() > limits.max_value_bytes:
            return {}, f"attribute {shown(item.key)!r} is over {limits.max_value_bytes} bytes (MAX_VALUE_BYTES)"
        text = _text(item.value)
        if text is not None:
            attributes[item.key] = text
    return attributes, None


@dataclass(frozen=True)
class _Resource:
    """What a resource means: its series identity, its tags (and their JSON), or why its points are refused."""

    service: str = ""
    resource_id: str = ""
    tags: dict = field(default_factory=dict)
    tags_json: bytes = b"{}"
    problem: str | None = None


def _resource(resource, limits: Limits) -> _Resource:
    attributes, problem = _attributes(resource.attributes, limits)
    if problem is None:
        # Checked here, not point by point: the resource's tags go into every one of its points'.
        problem = next((f"resource attribute {shown(key)!r} {error}" for key, value in attributes.items()
                        for error in (text_error(key, limits.max_name_bytes, "MAX_NAME_BYTES"),
                                      text_error(value, limits.max_value_bytes, "MAX_VALUE_BYTES")) if error), None)
    if problem is not None:
        return _Resource(problem=problem if problem.startswith("resource") else f"resource {problem}")
    service, resource_id, tags = _identity(attributes)
    return _Resource(service, resource_id, tags, _tags_json(tags))


def _valid(resource: _Resource) -> bool:
    return resource.problem is None


def _identity(resource_attributes: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    """(service, resource_id, the remaining attributes as tags) of a resource."""
    tags = {k: v for k, v in resource_attributes.items() if not k.startswith("telemetry.sdk.")}
    service = tags.pop("service.name", "") or UNKNOWN_SERVICE
    resource_id = next((resource_attributes[k] for k in RESOURCE_ID_ATTRIBUTES if resource_attributes.get(k)), "")
    for name in RESOURCE_ID_ATTRIBUTES:
        if resource_attributes.get(name) == resource_id:
            tags.pop(name)  # the one that became resource_id; the others stay tags
            break
    return service, resource_id or UNKNOWN_RESOURCE, tags


# Resources as sent (their encoded bytes) -> _Resource. An agent sends the same few in every request;
# their attributes are read once.
resource_cache = IdentityCache()


def _tags_json(tags: dict) -> bytes:
    return tags_json(tags, sort=True)


def convert(request: ExportMetricsServiceRequest, *, limits: Limits, tenant_id: int) -> Converted:
    out = Converted(tag_bytes_allowed=TAG_BYTES_PER_BODY_BYTE * limits.max_body_bytes)
    for resource_metrics in request.resource_metrics:
        resource = resource_cache.get(tenant_id, resource_metrics.resource.SerializeToString(),
                                      lambda _: _resource(resource_metrics.resource, limits), keep=_valid,
                                      limits=limits)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if resource.problem:
                    out.refuse(f"metric {shown(metric.name)!r}", resource.problem,
                               times=_points_of(metric, limits.max_events))
                else:
                    _metric_convert(out, metric, resource, limits)
    return out


def _metric_convert(out: Converted, metric, resource: _Resource, limits: Limits) -> None:
    which = metric.WhichOneof("data")
    name, unit = metric.name, metric.unit

    def add(point, metric_name: str, value: float, kind: str, extra_tags: dict | None = None, point_unit: str = unit):
        if value != value:  # NaN (an empty summary's quantile): dropped and counted, as remote write does
            out.nans += 1
            return
        if extra_tags or len(point.attributes):
            attributes, problem = _attributes(point.attributes, limits)
            if problem:
                out.refuse(f"{shown(metric_name)} at {point.time_unix_nano} ns", problem)
                return
            tags = out.tags_built(_tags_json({**resource.tags, **attributes, **(extra_tags or {})}))
        else:
            tags = resource.tags_json
        out.events.append(Event(
            service=resource.service, resource_id=resource.resource_id, metric_name=metric_name, value=value,
            timestamp=point.time_unix_nano // 1000, source="otlp", tags=tags, kind=kind, unit=point_unit,
        ))

    if which == "gauge" or which == "sum":
        data = getattr(metric, which)
        counter = which == "sum" and data.is_monotonic and data.aggregation_temporality == _CUMULATIVE
        kind = "counter" if counter else "gauge"
        for point in data.data_points:
            if point.flags & _NO_RECORDED_VALUE:
                out.dropped += 1
                continue
            number = point.WhichOneof("value")
            if number is None:
                out.refuse(f"{name} at {point.time_unix_nano} ns", "has no value (as_double or as_int)")
                continue
            add(point, name, float(getattr(point, number)), kind)
    elif which in ("histogram", "exponential_histogram", "summary"):
        data = getattr(metric, which)
        # Summaries have no temporality: their count and sum are cumulative by definition.
        cumulative = which == "summary" or data.aggregation_temporality == _CUMULATIVE
        kind = "counter" if cumulative else "gauge"
        for point in data.data_points:
            if point.flags & _NO_RECORDED_VALUE:
                out.dropped += 1
                continue
            add(point, f"{name}.count", float(point.count), kind, point_unit="1")
            if which == "summary" or point.HasField("sum"):
                add(point, f"{name}.sum", point.sum, kind)
            if which == "summary":
                for quantile in point.quantile_values:
                    add(point, name, quantile.value, "gauge", {"quantile": repr(quantile.quantile)})
    elif which is None:
        out.refuse(f"metric {shown(name)!r}", "has no data (gauge, sum, histogram, exponential_histogram or summary)")
