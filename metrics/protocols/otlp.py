"""OTLP/HTTP metrics: an ExportMetricsServiceRequest (protobuf or OTLP JSON) as events.

Mapping (the README's table): resource `service.name` -> service; `host.id`, else `host.name`,
else `service.instance.id` -> resource_id; metric name -> metric_name; the other resource
attributes and the point's attributes -> tags (scalars as strings, arrays and maps as JSON;
`telemetry.sdk.*` left out: it describes the exporter, and would start new series at every SDK
upgrade). Gauge -> one point per data point; a monotonic cumulative sum -> a counter, any other
sum -> a gauge (a delta is already an increase); histograms and exponential histograms ->
`<name>.count` and `<name>.sum`, summaries the same plus `<name>` per quantile (tag `quantile`):
counters when cumulative. Exemplars are dropped; so are points flagged "no recorded value"
(OTLP's staleness marker).
"""
from __future__ import annotations

import base64

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from metrics.ingest import Event, shown
from metrics.protocols import UNKNOWN_RESOURCE, UNKNOWN_SERVICE, Converted

RESOURCE_ID_ATTRIBUTES = ("host.id", "host.name", "service.instance.id")
_NO_RECORDED_VALUE = metrics_pb2.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_POINT_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
_JSON_POINT_KINDS = ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram", "summary")


class UndecodableBody(Exception):
    """The body is not an ExportMetricsServiceRequest in the declared encoding (answered 400)."""


def decode(raw: bytes, *, json_body: bool) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    if not json_body:
        try:
            request.ParseFromString(raw)
        except (DecodeError, RecursionError) as error:
            raise UndecodableBody(f"The body is not a protobuf ExportMetricsServiceRequest: {shown(str(error))}.") from None
        return request
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise UndecodableBody(f"The body is not valid JSON: {shown(str(error))}.") from None
    if not isinstance(body, dict):
        raise UndecodableBody("The body must be an OTLP JSON object with 'resourceMetrics'.")
    _exemplars_drop(body)
    try:
        # OTLP JSON is protobuf's JSON mapping but for hex trace and span ids, which only exemplars
        # carry (dropped above); unknown fields are ignored, as the specification asks of receivers.
        json_format.ParseDict(body, request, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, TypeError, ValueError) as error:
        raise UndecodableBody(f"The body is not an OTLP JSON ExportMetricsServiceRequest: {shown(str(error), 200)}.") \
            from None
    return request


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


def _attributes(key_values) -> dict[str, str]:
    attributes = {}
    for item in key_values:
        text = _text(item.value)
        if text is not None:
            attributes[item.key] = text
    return attributes


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


class _ResourceCache:
    """Resources as sent (their encoded bytes) -> (service, resource_id, tags, tags JSON), per process.

    An agent sends the same few resources in every request; their attributes are read once. The
    mapping depends on nothing but the bytes, so tenants share it. Bounded: starts over past
    `max_entries`."""

    def __init__(self, max_entries: int = 20_000):
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[str, str, dict, bytes]] = {}

    def get(self, resource) -> tuple[str, str, dict, bytes]:
        key = resource.SerializeToString()
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            service, resource_id, tags = _identity(_attributes(resource.attributes))
            entry = self._entries[key] = (service, resource_id, tags, _tags_json(tags))
        return entry

    def clear(self) -> None:
        self._entries.clear()


resource_cache = _ResourceCache()


def _tags_json(tags: dict) -> bytes:
    return orjson.dumps(tags, option=orjson.OPT_SORT_KEYS) if tags else b"{}"


def convert(request: ExportMetricsServiceRequest) -> Converted:
    out = Converted()
    for resource_metrics in request.resource_metrics:
        resource = resource_cache.get(resource_metrics.resource)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                _metric_convert(out, metric, resource)
    return out


def _metric_convert(out: Converted, metric, resource: tuple[str, str, dict, bytes]) -> None:
    which = metric.WhichOneof("data")
    name, unit = metric.name, metric.unit
    service, resource_id, resource_tags, resource_json = resource

    def add(point, metric_name: str, value: float, kind: str, extra_tags: dict | None = None, point_unit: str = unit):
        if extra_tags or len(point.attributes):
            tags = _tags_json({**resource_tags, **_attributes(point.attributes), **(extra_tags or {})})
        else:
            tags = resource_json
        out.events.append(Event(
            service=service, resource_id=resource_id, metric_name=metric_name, value=value,
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
