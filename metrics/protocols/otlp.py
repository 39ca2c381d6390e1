"""OTLP/HTTP metrics: an ExportMetricsServiceRequest (protobuf or OTLP JSON) as events.

Mapping (the README's table): resource `service.name` -> service; `host.id`, else `host.name`,
else `service.instance.id` -> resource_id; metric name -> metric_name; the other resource
attributes and the point's attributes -> tags (scalars as strings, arrays and maps as JSON;
`telemetry.sdk.*` left out: it describes the exporter, and would start new series at every SDK
upgrade). Gauge -> one point per data point; a monotonic sum -> a counter, any other sum -> a
gauge; delta points are increases, added onto the series' value on the way in
(services.points_ingest), so a delta counter reads as a cumulative one. Histograms -> the names
remote write uses: `<name>_bucket` (tag `le`, cumulative counts, "+Inf" last), `<name>_count` and
`<name>_sum`, counters when cumulative or delta; exponential histograms the same when their buckets
are le buckets exactly (cumulative, no negative values), else refused by name. Summaries -> `<name>_count`,
`<name>_sum` (counters) and `<name>` per quantile (tag `quantile`). Exemplars are dropped. A point flagged "no
recorded value" (OTLP's staleness marker, which the Collector's Prometheus receiver sends when a target goes away)
becomes a Prometheus staleness marker on each series it would write; it and NaN values are kept apart from the
points, for PromQL only (services.points_ingest).
"""
from __future__ import annotations

import base64
import itertools
import math
from dataclasses import dataclass, field

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from metrics import storage
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
    go_float,
    tags_json,
    wire,
)

RESOURCE_ID_ATTRIBUTES = ("host.id", "host.name", "service.instance.id")
_NO_RECORDED_VALUE = metrics_pb2.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
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
    makes one per le bucket, _count and _sum; a summary's quantiles one each). Every level is counted by
    its length before it is walked, so no loop here runs past the limits."""
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
            raise TooLarge(f"The request has more than {most} data points (a histogram point counts once per bucket, "
                           "+Inf included, and twice more for _count and _sum; a summary's _count, _sum and quantiles "
                           f"once each); this tenant's limit is "
                           f"{most} a request (MAX_EVENTS_PER_REQUEST); nothing was stored.")


def _points_of(metric, room: int) -> int:
    which = metric.WhichOneof("data")
    if which is None:
        return 1  # refused, by name
    points = getattr(metric, which).data_points
    if which in ("gauge", "sum"):
        return len(points)
    made = _LEAST_POINTS[which] * len(points)
    if made <= room:  # each point's buckets or quantiles counted only while the request is within bounds
        made = sum(_point_count(point) for point in points)
    return made


_LEAST_POINTS = {"histogram": 3, "exponential_histogram": 4, "summary": 2}


def _point_count(point) -> int:
    """The points one data point makes: a histogram's le buckets (+Inf and the zero bucket included), _count
    and _sum; a summary's _count, _sum and quantiles."""
    if isinstance(point, metrics_pb2.HistogramDataPoint):
        return len(point.explicit_bounds) + 3
    if isinstance(point, metrics_pb2.ExponentialHistogramDataPoint):
        return len(point.positive.bucket_counts) + 4
    if isinstance(point, metrics_pb2.SummaryDataPoint):
        return len(point.quantile_values) + 2
    return 1


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
    points = _Points(out, resource, limits, metric.name, metric.unit)
    if which is None:
        out.refuse(f"metric {shown(metric.name)!r}", "has no data (gauge, sum, histogram, exponential_histogram or "
                   "summary)")
        return
    data = getattr(metric, which)
    if which in ("gauge", "sum"):
        _numbers_add(points, which, data)
        return
    for point in data.data_points:
        points.stale = bool(point.flags & _NO_RECORDED_VALUE)
        if which == "summary":
            _summary_add(points, point)
        else:
            _histogram_add(points, point, which, data)


class _Points:
    """Where one metric's points go: events of the resource's series, each point's attributes read once."""

    def __init__(self, out: Converted, resource: _Resource, limits: Limits, name: str, unit: str):
        self.out, self.resource, self.limits, self.name, self.unit = out, resource, limits, name, unit
        self.stale = False  # the point being added has no recorded value: each of its series gets a stale marker

    def attributes(self, point) -> dict | None:
        """The point's attributes, or None when they are refused (named, `times` points)."""
        if not len(point.attributes):
            return {}
        attributes, problem = _attributes(point.attributes, self.limits)
        if problem:
            self.refuse(point, problem, times=_point_count(point))
            return None
        return attributes

    def refuse(self, point, problem: str, *, times: int = 1) -> None:
        self.out.refuse(f"{shown(self.name)} at {point.time_unix_nano} ns", problem, times=times)

    def add(self, point, attributes: dict, value: float, kind: str, *, suffix: str = "", extra_tags: dict | None = None,
            unit: str | None = None, delta: bool = False) -> None:
        if self.stale:
            value = storage.STALE_NAN
        if attributes or extra_tags:
            tags = self.out.tags_built(_tags_json({**self.resource.tags, **attributes, **(extra_tags or {})}))
        else:
            tags = self.resource.tags_json
        if delta and value == value:  # NaN (an empty summary's quantile, a stale marker) is no increase
            self.out.deltas.append(len(self.out.events))
        self.out.events.append(Event(
            service=self.resource.service, resource_id=self.resource.resource_id, metric_name=self.name + suffix,
            value=value, timestamp=point.time_unix_nano // 1000, source="otlp", tags=tags, kind=kind,
            unit=self.unit if unit is None else unit,
        ))


def _numbers_add(points: _Points, which: str, data) -> None:
    # A monotonic sum is a counter; a delta sum's points are increases, added up on the way in
    # (services.points_ingest) so a delta counter reads as a cumulative one and an up-down delta
    # sum as its running value (a gauge); any other sum is a gauge as sent.
    delta = which == "sum" and data.aggregation_temporality == _DELTA
    counter = which == "sum" and data.is_monotonic and data.aggregation_temporality in (_CUMULATIVE, _DELTA)
    kind = "counter" if counter else "gauge"
    for point in data.data_points:
        points.stale = bool(point.flags & _NO_RECORDED_VALUE)
        number = point.WhichOneof("value")
        if number is None and points.stale:
            attributes = points.attributes(point)
            if attributes is not None:
                points.add(point, attributes, storage.STALE_NAN, kind, delta=delta)
            continue
        if number is None:
            points.refuse(point, "has no value (as_double or as_int)")
            continue
        attributes = points.attributes(point)
        if attributes is not None:
            points.add(point, attributes, float(getattr(point, number)), kind, delta=delta)


def _summary_add(points: _Points, point) -> None:
    # Summaries have no temporality: their count and sum are cumulative by definition.
    attributes = points.attributes(point)
    if attributes is None:
        return
    points.add(point, attributes, float(point.count), "counter", suffix="_count", unit="1")
    points.add(point, attributes, point.sum, "counter", suffix="_sum")
    for quantile in point.quantile_values:
        points.add(point, attributes, quantile.value, "gauge", extra_tags={"quantile": go_float(quantile.quantile)})


def _histogram_add(points: _Points, point, which: str, data) -> None:
    """A histogram point as Prometheus' classic histogram: `<name>_bucket{le}` (cumulative counts, le="+Inf"
    last), `<name>_count` and `<name>_sum`; counters when cumulative, added up when delta."""
    delta = data.aggregation_temporality == _DELTA
    if which == "histogram":
        buckets, problem = _explicit_buckets(point)
    elif delta:
        # Each delta interval has its own scale and range, so a bound's running total would miss the
        # intervals it was not a bound in.
        buckets, problem = [], ("is a delta exponential histogram, whose buckets change from one export to the "
                                "next; export it with cumulative temporality, or as an explicit-bucket histogram")
    else:
        buckets, problem = _exponential_buckets(point)
    if problem and points.stale:
        buckets = []  # a point with no recorded value: its buckets do not matter, its count and sum end
    elif problem:
        points.refuse(point, problem, times=_point_count(point))
        return
    attributes = points.attributes(point)
    if attributes is None:
        return
    kind = "counter" if delta or data.aggregation_temporality == _CUMULATIVE else "gauge"
    for le, cumulative_count in buckets:
        points.add(point, attributes, cumulative_count, kind, suffix="_bucket", extra_tags={"le": le}, unit="1",
                   delta=delta)
    points.add(point, attributes, float(point.count), kind, suffix="_count", unit="1", delta=delta)
    if point.HasField("sum"):
        points.add(point, attributes, point.sum, kind, suffix="_sum", delta=delta)


def _explicit_buckets(point) -> tuple[list[tuple[str, float]], str | None]:
    """(le, cumulative count) of each bucket, or why the point cannot be kept."""
    bounds, counts = point.explicit_bounds, point.bucket_counts
    if not counts:
        return [("+Inf", float(point.count))], None  # no buckets: only the count, as le="+Inf"
    if len(counts) != len(bounds) + 1:
        return [], f"has {len(counts)} bucket_counts for {len(bounds)} explicit_bounds (there must be one more)"
    if not all(math.isfinite(bound) for bound in bounds) or any(a >= b for a, b in zip(bounds, bounds[1:])):
        return [], "has explicit_bounds that are not finite and strictly increasing"
    cumulative = itertools.accumulate(counts[:-1])
    # +Inf is the point's count, as the Collector's Prometheus exporters write it.
    return [(go_float(bound), float(count)) for bound, count in zip(bounds, cumulative)] + \
        [("+Inf", float(point.count))], None


EXPONENTIAL_SCALES = range(-10, 21)  # the scales OTLP defines


def _exponential_buckets(point) -> tuple[list[tuple[str, float]], str | None]:
    """An exponential histogram's buckets as le buckets: exact for values >= 0. Positive bucket i holds
    (base**i, base**(i+1)] with base = 2**(2**-scale), so its upper bound is an le with the count at
    or below it; the zero bucket [-t, t] is le=t. Negative buckets hold [-base**(i+1), -base**i), whose
    upper bounds are open: they have no le bucket, so such points are refused."""
    if any(point.negative.bucket_counts):
        return [], ("is an exponential histogram with negative values, which le buckets cannot hold exactly; "
                    "record them in an explicit-bucket histogram")
    if point.scale not in EXPONENTIAL_SCALES:
        return [], f"has exponential histogram scale {point.scale}, outside -10..20"
    offset, counts = point.positive.offset, point.positive.bucket_counts
    try:
        uppers = [_exponential_bound(index, point.scale) for index in range(offset + 1, offset + len(counts) + 1)]
    except OverflowError:
        uppers = [math.inf]
    bounds = [point.zero_threshold, *uppers]
    if not all(math.isfinite(bound) for bound in bounds) or any(a >= b for a, b in zip(bounds, bounds[1:])):
        return [], "has exponential histogram buckets beyond the float range or not above its zero_threshold"
    cumulative = itertools.accumulate(counts, initial=point.zero_count)
    return [(go_float(bound), float(count)) for bound, count in zip(bounds, cumulative)] + \
        [("+Inf", float(point.count))], None


def _exponential_bound(index: int, scale: int) -> float:
    """base**index for base = 2**(2**-scale): exact for scale <= 0; otherwise 2**(index / 2**scale), whose
    exponent is exact, so a bound a coarser scale shares is the same float and the same le."""
    if scale <= 0:
        return math.ldexp(1.0, index << -scale)
    return 2.0 ** (index / (1 << scale))
