"""OTLP histograms as Prometheus' classic histograms (`_bucket{le}`, `_count`, `_sum`), exponential
histograms as le buckets or refused by name, and delta temporality stored as running totals."""
import time

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from metrics.protocols import go_float

RESOURCE = [{"key": "service.name", "value": {"stringValue": "api"}},
            {"key": "host.name", "value": {"stringValue": "web-1"}}]
CUMULATIVE, DELTA = 2, 1


def _request(*metrics) -> dict:
    return {"resourceMetrics": [{"resource": {"attributes": RESOURCE},
                                 "scopeMetrics": [{"scope": {"name": "s"}, "metrics": list(metrics)}]}]}


def _protobuf(body: dict) -> bytes:
    return json_format.ParseDict(body, ExportMetricsServiceRequest()).SerializeToString()


def _export(client, body: dict, *, protobuf=False) -> dict:
    if protobuf:
        response = client.client.generic("POST", "/v1/metrics", _protobuf(body), content_type="application/x-protobuf",
                                         HTTP_AUTHORIZATION=f"Bearer {client.key}")
        assert response.status_code == 200, response.content
        return json_format.MessageToDict(ExportMetricsServiceResponse.FromString(response.content))
    response = client.post("/v1/metrics", body)
    assert response.status_code == 200, response.content
    return response.json()


def _stored(client, metric_name: str) -> dict:
    """{le (or None): (kind, unit, [values])} of the api service's series of that name."""
    response = client.get("/api/v1/metrics/timeseries", {"service": "api", "metric_name": metric_name,
                                                         "minutes": 30})
    assert response.status_code == 200, response.content
    return {s["tags"].get("le"): (s["kind"], s["unit"], [p["value"] for p in s["points"]])
            for s in response.json()["series"]}


def _ns(seconds_ago: float) -> str:
    return str(time.time_ns() - int(seconds_ago * 1e9))


@pytest.mark.parametrize("value, text", [
    (0.005, "0.005"), (1.0, "1"), (0.0, "0"), (1e-05, "1e-05"), (0.0001, "0.0001"), (123456.0, "123456"),
    (1e6, "1e+06"), (2.5e6, "2.5e+06"), (1e21, "1e+21"), (-0.5, "-0.5"), (float("inf"), "+Inf"), (2 ** 0.5,
                                                                                                      "1.4142135623730951"),
])
def test_le_is_written_as_go_writes_a_float(value, text):
    assert go_float(value) == text


@pytest.mark.django_db
@pytest.mark.parametrize("protobuf", [False, True])
def test_a_cumulative_histogram_is_le_buckets_a_count_and_a_sum(make_tenant, protobuf):
    client = make_tenant("otlp-hist")
    point = {"timeUnixNano": _ns(60), "count": "10", "sum": 5.5, "explicitBounds": [0.005, 1.0, 2.5e6],
             "bucketCounts": ["1", "2", "3", "4"], "attributes": [{"key": "route", "value": {"stringValue": "/a"}}]}
    body = _request({"name": "rpc.duration", "unit": "s",
                     "histogram": {"aggregationTemporality": CUMULATIVE, "dataPoints": [point]}})
    assert _export(client, body, protobuf=protobuf) == {}
    assert _stored(client, "rpc.duration_bucket") == {
        "0.005": ("counter", "1", [1.0]), "1": ("counter", "1", [3.0]), "2.5e+06": ("counter", "1", [6.0]),
        "+Inf": ("counter", "1", [10.0]),
    }
    assert _stored(client, "rpc.duration_count") == {None: ("counter", "1", [10.0])}
    assert _stored(client, "rpc.duration_sum") == {None: ("counter", "s", [5.5])}
    [series] = client.get("/api/v1/series", {"metric_name": "rpc.duration_sum"}).json()["results"]
    assert series["tags"] == {"route": "/a"}
    assert client.get("/api/v1/series", {"metric_name": "rpc.duration.count"}).json()["results"] == []


@pytest.mark.django_db
def test_a_summary_is_count_sum_and_quantiles_with_go_quantile_labels(make_tenant):
    client = make_tenant("otlp-summary")
    body = _request({"name": "rpc.latency", "unit": "ms", "summary": {"dataPoints": [{
        "timeUnixNano": _ns(60), "count": "4", "sum": 10.0,
        "quantileValues": [{"quantile": 0.5, "value": 2.0}, {"quantile": 1.0, "value": 4.0}]}]}})
    assert _export(client, body) == {}
    assert _stored(client, "rpc.latency_count") == {None: ("counter", "1", [4.0])}
    assert _stored(client, "rpc.latency_sum") == {None: ("counter", "ms", [10.0])}
    response = client.get("/api/v1/metrics/timeseries", {"service": "api", "metric_name": "rpc.latency",
                                                         "minutes": 30})
    assert {s["tags"]["quantile"]: s["points"][0]["value"] for s in response.json()["series"]} == {"0.5": 2.0, "1": 4.0}


@pytest.mark.django_db
def test_malformed_histograms_and_negative_exponential_ones_are_refused_by_name(make_tenant):
    client = make_tenant("otlp-hist-bad")
    at = _ns(60)
    body = _request(
        {"name": "short.counts", "histogram": {"aggregationTemporality": CUMULATIVE, "dataPoints": [
            {"timeUnixNano": at, "count": "3", "explicitBounds": [1.0, 2.0], "bucketCounts": ["1", "2"]}]}},
        {"name": "unsorted.bounds", "histogram": {"aggregationTemporality": CUMULATIVE, "dataPoints": [
            {"timeUnixNano": at, "count": "3", "explicitBounds": [2.0, 1.0], "bucketCounts": ["1", "1", "1"]}]}},
        {"name": "signed.values", "exponentialHistogram": {"aggregationTemporality": CUMULATIVE, "dataPoints": [
            {"timeUnixNano": at, "count": "2", "sum": 0.0, "scale": 0, "positive": {"offset": 0, "bucketCounts": ["1"]},
             "negative": {"offset": 0, "bucketCounts": ["1"]}}]}},
        {"name": "fine.gauge", "gauge": {"dataPoints": [{"timeUnixNano": at, "asDouble": 1.0}]}},
    )
    partial = _export(client, body)["partialSuccess"]
    message = partial["errorMessage"]
    # Each refused point counts as the points it would have made (2 + 3, 2 + 3, 1 + 4).
    assert partial["rejectedDataPoints"] == "15", message
    assert "short.counts at" in message and "has 2 bucket_counts for 2 explicit_bounds (there must be one more)" in \
        message
    assert "unsorted.bounds at" in message and "not finite and strictly increasing" in message
    assert "signed.values at" in message and "exponential histogram with negative values" in message
    assert [s["metric_name"] for s in client.get("/api/v1/series").json()["results"]] == ["fine.gauge"]


@pytest.mark.django_db
def test_a_histogram_point_counts_as_its_buckets_against_the_points_limit(make_tenant):
    client = make_tenant("otlp-hist-limit")
    client.tenant.limits = {"MAX_EVENTS_PER_REQUEST": 20}
    client.tenant.save()
    point = {"timeUnixNano": _ns(60), "count": "0", "sum": 0.0, "explicitBounds": [float(k) for k in range(9)],
             "bucketCounts": ["0"] * 10}
    two = _request({"name": "h", "histogram": {"aggregationTemporality": CUMULATIVE, "dataPoints": [point, point]}})
    for protobuf in (False, True):
        if protobuf:
            response = client.client.generic("POST", "/v1/metrics", _protobuf(two),
                                             content_type="application/x-protobuf",
                                             HTTP_AUTHORIZATION=f"Bearer {client.key}")
        else:
            response = client.post("/v1/metrics", two)
        # 2 x (9 bounds + 3) = 24 points, over 20.
        assert response.status_code == 413, response.content
        assert b"more than 20 data points (a histogram point counts once per bucket" in response.content
    one = _request({"name": "h", "histogram": {"aggregationTemporality": CUMULATIVE, "dataPoints": [point]}})
    assert _export(client, one) == {}


@pytest.mark.django_db
def test_delta_sums_and_histograms_are_stored_as_running_totals(make_tenant):
    client = make_tenant("otlp-delta")
    now_ns = time.time_ns()

    def ago(seconds: int) -> str:
        return str(now_ns - seconds * 1_000_000_000)

    def deltas(seconds_ago, requests, gauge_change, counts, total):
        at = ago(seconds_ago)
        return _request(
            {"name": "http.requests", "sum": {"aggregationTemporality": DELTA, "isMonotonic": True,
                                              "dataPoints": [{"timeUnixNano": at, "asInt": str(requests)}]}},
            {"name": "queue.length", "sum": {"aggregationTemporality": DELTA, "isMonotonic": False,
                                             "dataPoints": [{"timeUnixNano": at, "asDouble": gauge_change}]}},
            {"name": "rpc.duration", "unit": "s", "histogram": {"aggregationTemporality": DELTA, "dataPoints": [
                {"timeUnixNano": at, "count": str(sum(counts)), "sum": total, "explicitBounds": [1.0],
                 "bucketCounts": [str(c) for c in counts]}]}},
        )

    assert _export(client, deltas(300, 5, 4.0, [1, 1], 2.5)) == {}
    assert _export(client, deltas(240, 3, -1.0, [2, 0], 1.0), protobuf=True) == {}
    # Sent again (an exporter's retry): the same totals, so duplicates, and nothing counted twice.
    assert _export(client, deltas(240, 3, -1.0, [2, 0], 1.0)) == {}
    assert _stored(client, "http.requests") == {None: ("counter", "", [5.0, 8.0])}
    assert _stored(client, "queue.length") == {None: ("gauge", "", [4.0, 3.0])}
    assert _stored(client, "rpc.duration_bucket") == {"1": ("counter", "1", [1.0, 3.0]),
                                                      "+Inf": ("counter", "1", [2.0, 4.0])}
    assert _stored(client, "rpc.duration_count") == {None: ("counter", "1", [2.0, 4.0])}
    assert _stored(client, "rpc.duration_sum") == {None: ("counter", "s", [2.5, 3.5])}
    increase = client.get("/api/v1/metrics/timeseries", {"service": "api", "metric_name": "http.requests",
                                                         "minutes": 30, "fn": "increase"}).json()
    assert [p["value"] for p in increase["series"][0]["points"]] == [3.0]

    # Two deltas in one request, sent out of order, are added in time order; a delta older than the
    # stored points is added where it lands (onto the point before it), and later points stay as stored.
    at_180, at_120, at_270 = ago(180), ago(120), ago(270)
    body = _request({"name": "http.requests", "sum": {"aggregationTemporality": DELTA, "isMonotonic": True,
                                                      "dataPoints": [{"timeUnixNano": at_120, "asInt": "10"},
                                                                     {"timeUnixNano": at_180, "asInt": "1"}]}})
    assert _export(client, body) == {}
    assert _stored(client, "http.requests") == {None: ("counter", "", [5.0, 8.0, 9.0, 19.0])}
    late = _request({"name": "http.requests", "sum": {"aggregationTemporality": DELTA, "isMonotonic": True,
                                                      "dataPoints": [{"timeUnixNano": at_270, "asInt": "2"}]}})
    assert _export(client, late) == {}
    assert _stored(client, "http.requests") == {None: ("counter", "", [5.0, 7.0, 8.0, 9.0, 19.0])}


def _exponential_provider(url: str, key: str, temporality) -> MeterProvider:
    exporter = OTLPMetricExporter(endpoint=f"{url}/v1/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                                  preferred_temporality={Histogram: temporality})
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return MeterProvider(resource=Resource.create({"service.name": "api", "host.name": "web-1"}),
                         metric_readers=[reader],
                         views=[View(instrument_type=Histogram,
                                     aggregation=ExponentialBucketHistogramAggregation(max_size=20))])


@pytest.mark.django_db(transaction=True)
def test_the_python_sdks_exponential_histogram_reads_back_as_exact_le_buckets(live_server, make_tenant):
    client = make_tenant("otlp-exp")
    provider = _exponential_provider(live_server.url, client.key, AggregationTemporality.CUMULATIVE)
    latency = provider.get_meter("shop").create_histogram("rpc.duration", unit="ms")
    exports = [[0.0, 0.3, 3.0, 7.5, 12.0, 12.5], [100.0, 250.0, 1000.0]]
    for values in exports:  # the second widens the range: the SDK lowers its scale, and the le series change
        for value in values:
            latency.record(value)
        assert provider.force_flush(30_000)
        time.sleep(0.01)
    provider.shutdown()

    response = client.get("/api/v1/metrics/timeseries", {"service": "api", "metric_name": "rpc.duration_bucket",
                                                         "minutes": 30})
    by_time: dict[str, dict[str, float]] = {}
    for series in response.json()["series"]:
        assert series["kind"] == "counter"
        for point in series["points"]:
            by_time.setdefault(point["timestamp"], {})[series["tags"]["le"]] = point["value"]
    assert len(by_time) == 3  # two flushes and the export at shutdown
    for (_, buckets), recorded in zip(sorted(by_time.items()), [exports[0], exports[0] + exports[1]]):
        # Each le holds exactly the values recorded so far at or below it.
        assert len(buckets) > 5 and buckets["+Inf"] == len(recorded)
        assert buckets == {le: sum(1 for value in recorded if value <= float(le)) for le in buckets}
    assert _stored(client, "rpc.duration_count")[None][2] == [6.0, 9.0, 9.0]
    assert _stored(client, "rpc.duration_sum")[None][2] == pytest.approx([35.3, 1385.3, 1385.3])


@pytest.mark.django_db
def test_a_delta_exponential_histogram_is_refused_by_name(make_tenant):
    client = make_tenant("otlp-exp-delta")
    body = _request({"name": "rpc.duration", "exponentialHistogram": {"aggregationTemporality": DELTA, "dataPoints": [
        {"timeUnixNano": _ns(60), "count": "1", "sum": 3.0, "scale": 1, "positive": {"offset": 3,
                                                                                     "bucketCounts": ["1"]}}]}})
    partial = _export(client, body)["partialSuccess"]
    assert partial["rejectedDataPoints"] == "5"
    assert "rpc.duration at" in partial["errorMessage"] and "is a delta exponential histogram" in \
        partial["errorMessage"]
    assert client.get("/api/v1/series", {"service": "api"}).json()["results"] == []
