"""POST /v1/metrics: the OpenTelemetry Python SDK's own OTLP/HTTP exporter against a live server,
and hand-built requests for what the SDK does not send (JSON bodies, refusals, bad bodies)."""
import gzip
import json
import time
import urllib.error
import urllib.request

import pytest
from django.test import Client
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from anomalies.runs import detection_run
from tenants.services import api_key_issue, tenant_create

# service.instance.id given, as a deployment names its instances (else the SDK makes one up per process,
# and each process is a series of its own); the restart below keeps it, so its counter resets in one series.
RESOURCE = {"service.name": "checkout", "host.name": "web-1", "service.instance.id": "web-1-main",
            "deployment.environment": "prod"}
INSTANCE = {"deployment.environment": "prod", "service.instance.id": "web-1-main"}


def _provider(url: str, key: str):
    exporter = OTLPMetricExporter(endpoint=f"{url}/v1/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    # Exports only when flushed: each flush is one request with the current cumulative values.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return MeterProvider(resource=Resource.create(RESOURCE), metric_readers=[reader])


def _series(client, metric_name):
    response = client.get("/api/v1/metrics/timeseries", {"service": "checkout", "metric_name": metric_name,
                                                          "minutes": 10})
    assert response.status_code == 200, response.content
    return response.json()["series"]


@pytest.mark.django_db(transaction=True)
def test_the_sdk_exporter_sends_a_gauge_a_counter_with_a_reset_and_a_histogram(live_server, make_tenant):
    client = make_tenant("otel")
    temperatures = iter([21.5, 22.0, 22.5])

    provider = _provider(live_server.url, client.key)
    meter = provider.get_meter("shop")
    meter.create_observable_gauge("room.temperature", [lambda options: [Observation(next(temperatures), {"room": "a"})]],
                                  unit="Cel")
    requests = meter.create_counter("http.requests", unit="{request}")
    latency = meter.create_histogram("http.latency", unit="ms")
    requests.add(5, {"route": "/cart"})
    latency.record(12.0, {"route": "/cart"})
    latency.record(30.0, {"route": "/cart"})
    assert provider.force_flush(30_000)
    time.sleep(0.01)
    requests.add(3, {"route": "/cart"})
    assert provider.force_flush(30_000)
    provider.shutdown()
    # The process restarts: its counter starts again from zero, a lower cumulative value.
    time.sleep(0.01)
    restarted = _provider(live_server.url, client.key)
    restarted.get_meter("shop").create_counter("http.requests", unit="{request}").add(2, {"route": "/cart"})
    assert restarted.force_flush(30_000)
    restarted.shutdown()

    [gauge] = _series(client, "room.temperature")
    assert (gauge["resource_id"], gauge["kind"], gauge["unit"]) == ("web-1", "gauge", "Cel")
    assert gauge["tags"] == {**INSTANCE, "room": "a"}
    assert [p["value"] for p in gauge["points"]] == [21.5, 22.0, 22.5]

    [counter] = _series(client, "http.requests")
    assert (counter["kind"], counter["unit"], counter["tags"]) == ("counter", "{request}", {**INSTANCE, "route": "/cart"})
    # Two flushes and the final export at shutdown, per provider.
    assert [p["value"] for p in counter["points"]] == [5.0, 8.0, 8.0, 2.0, 2.0]
    response = client.get("/api/v1/metrics/timeseries", {"series_id": counter["series_id"], "minutes": 10,
                                                          "fn": "increase"})
    # The drop from 8 to 2 is a restart that counted 2, not a decrease of 6.
    assert [p["value"] for p in response.json()["series"][0]["points"]] == [3.0, 0.0, 2.0, 0.0]

    [count] = _series(client, "http.latency_count")
    [total] = _series(client, "http.latency_sum")
    assert (count["kind"], total["kind"], total["unit"]) == ("counter", "counter", "ms")
    assert [p["value"] for p in count["points"]] == [2.0, 2.0, 2.0]  # cumulative, exported three times
    assert [p["value"] for p in total["points"]] == [42.0, 42.0, 42.0]
    # The SDK's default bounds (0, 5, 10, 25, 50, ... 10000) as le buckets: 12 and 30 are at or below 50.
    buckets = {s["tags"]["le"]: s["points"][-1]["value"] for s in _series(client, "http.latency_bucket")}
    assert (len(buckets), buckets["10"], buckets["25"], buckets["50"], buckets["10000"], buckets["+Inf"]) == \
        (16, 0.0, 1.0, 2.0, 2.0, 2.0)

    run = detection_run(tenant=client.tenant, trigger="command")
    assert run.status == "succeeded"
    anomalies = client.get("/api/v1/anomalies", {"metric_name": "http.requests"}).json()["results"]
    assert anomalies == []


def _post(url, body: bytes, *, key, content_type="application/x-protobuf", encoding=None):
    request = urllib.request.Request(f"{url}/v1/metrics", data=body, method="POST")
    request.add_header("Content-Type", content_type)
    request.add_header("Authorization", f"Bearer {key}")
    if encoding:
        request.add_header("Content-Encoding", encoding)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _json_request(points, *, now_ns):
    return {"resourceMetrics": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "billing"}},
            {"key": "service.instance.id", "value": {"stringValue": "pod-7"}},
            {"key": "cores", "value": {"intValue": "8"}},
        ]},
        "scopeMetrics": [{"scope": {"name": "s"}, "metrics": [{
            "name": "queue.depth", "unit": "1",
            "gauge": {"dataPoints": [
                {"timeUnixNano": str(now_ns + k * 1_000_000_000), "asDouble": value,
                 "attributes": [{"key": "queue", "value": {"stringValue": "jobs"}}],
                 "exemplars": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                                "asDouble": 1.0, "timeUnixNano": str(now_ns)}]}
                for k, value in enumerate(points)
            ]},
        }]}],
    }]}


@pytest.mark.django_db(transaction=True)
def test_a_json_body_with_hex_exemplar_ids_and_gzip_is_stored_and_refusals_are_a_partial_success(live_server):
    key = api_key_issue(tenant=tenant_create(slug="otlp-json"), scope="ingest").plaintext
    now_ns = time.time_ns() - 60_000_000_000
    body = _json_request([1.0, 2.0], now_ns=now_ns)
    status, headers, answer = _post(live_server.url, gzip.compress(json.dumps(body).encode()), key=key,
                                    content_type="application/json", encoding="gzip")
    assert (status, headers["Content-Type"], json.loads(answer)) == (200, "application/json", {})

    # A retry stores nothing twice; a point an hour in the future is refused, named, the others kept.
    body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"].append(
        {"timeUnixNano": str(now_ns + 3_600_000_000_000 * 2), "asDouble": 9.0})
    status, _, answer = _post(live_server.url, json.dumps(body).encode(), key=key, content_type="application/json")
    partial = json.loads(answer)["partialSuccess"]
    assert status == 200 and partial["rejectedDataPoints"] == "1"
    assert "queue.depth (service 'billing', resource 'pod-7')" in partial["errorMessage"]
    assert "timestamp is more than" in partial["errorMessage"]

    request = ExportMetricsServiceRequest()
    from google.protobuf import json_format
    del body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"][0]["exemplars"]
    json_format.ParseDict(body, request)
    request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[1].as_double = float("inf")
    status, headers, answer = _post(live_server.url, request.SerializeToString(), key=key)
    response = ExportMetricsServiceResponse.FromString(answer)
    assert (status, headers["Content-Type"]) == (200, "application/x-protobuf")
    assert response.partial_success.rejected_data_points == 2
    assert "value must be a finite number, not infinity" in response.partial_success.error_message


@pytest.mark.django_db
def test_nan_values_and_no_recorded_value_points_are_kept_for_promql_only_and_counted(make_tenant, settings):
    settings.METRICS_OPEN_WITHOUT_TOKEN = True
    client = make_tenant("otlp-nan")
    now_ns = (time.time_ns() - 60_000_000_000) // 1_000_000_000 * 1_000_000_000
    body = _json_request(["NaN", 2.0], now_ns=now_ns)  # protobuf's JSON mapping quotes NaN
    metrics = body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
    # What the Collector's Prometheus receiver sends when a target goes away: a point with no recorded value.
    metrics[0]["gauge"]["dataPoints"].append({"timeUnixNano": str(now_ns + 10_000_000_000), "flags": 1,
                                              "attributes": [{"key": "queue", "value": {"stringValue": "jobs"}}]})
    # An empty summary: count and sum 0, its quantiles NaN.
    metrics.append({"name": "rpc.duration", "summary": {"dataPoints": [{
        "timeUnixNano": str(now_ns), "count": "0", "sum": 0.0,
        "quantileValues": [{"quantile": 0.5, "value": "NaN"}, {"quantile": 0.99, "value": "NaN"}]}]}})
    response = client.post("/v1/metrics", body)
    assert response.status_code == 200 and response.json() == {}
    request = ExportMetricsServiceRequest()
    from google.protobuf import json_format
    json_format.ParseDict(body, request)
    response = client.client.generic("POST", "/v1/metrics", request.SerializeToString(),
                                     content_type="application/x-protobuf", HTTP_AUTHORIZATION=f"Bearer {client.key}")
    assert response.status_code == 200
    assert not ExportMetricsServiceResponse.FromString(response.content).HasField("partial_success")
    stored = {(s["metric_name"], s["tags"].get("quantile")): s["point_count"]
              for s in client.get("/api/v1/series", {"service": "billing"}).json()["results"]}
    # Points only where values are finite; a NaN quantile's series exists, as in Prometheus, with no points.
    assert stored == {("queue.depth", None): 1, ("rpc.duration_count", None): 1, ("rpc.duration_sum", None): 1,
                      ("rpc.duration", "0.5"): 0, ("rpc.duration", "0.99"): 0}
    text = Client().get("/metrics").content.decode()
    assert 'outcome="accepted",protocol="otlp",reason="nan",tenant="otlp-nan"} 3.0' in text
    assert 'outcome="accepted",protocol="otlp",reason="staleness",tenant="otlp-nan"} 1.0' in text
    assert 'outcome="duplicate",protocol="otlp",reason="",tenant="otlp-nan"} 7.0' in text

    def promql(expr, at_ns):
        answer = client.get("/prometheus/api/v1/query", {"query": expr, "time": str(at_ns / 1e9)}).json()
        return [sample["value"][1] for sample in answer["data"]["result"]]

    assert promql('{__name__="rpc.duration", quantile="0.99"}', now_ns + 5_000_000_000) == ["NaN"]
    assert promql('{__name__="queue.depth"}', now_ns + 5_000_000_000) == ["2"]
    assert promql('{__name__="queue.depth"}', now_ns + 11_000_000_000) == []  # ended by the marker


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("content_type, body, status", [
    ("application/x-protobuf", b"\x0a\xff\xff\xff", 400),
    ("application/json", b"{not json", 400),
    ("application/json", b'{"resourceMetrics": [{"scopeMetrics": 7}]}', 400),
    ("text/plain", b"cpu 1", 415),
])
def test_an_undecodable_body_is_a_400_status_message_in_the_request_encoding(live_server, content_type, body, status):
    key = api_key_issue(tenant=tenant_create(slug="otlp-bad"), scope="ingest").plaintext
    code, headers, answer = _post(live_server.url, body, key=key, content_type=content_type)
    assert code == status
    if content_type == "application/json":
        assert json.loads(answer)["message"]
    elif content_type == "application/x-protobuf":
        assert "not a protobuf ExportMetricsServiceRequest" in Status.FromString(answer).message


@pytest.mark.django_db(transaction=True)
def test_a_read_scoped_key_or_no_key_cannot_export(live_server):
    key = api_key_issue(tenant=tenant_create(slug="otlp-read"), scope="read").plaintext
    body = ExportMetricsServiceRequest().SerializeToString()
    assert _post(live_server.url, body, key=key)[0] == 403
    assert _post(live_server.url, body, key="cwd_all_" + "0" * 48)[0] == 401


def test_a_refused_megabyte_name_does_not_come_back_a_megabyte_long():
    from metrics.ingest import Event
    from metrics.protocols import point_name, summary

    huge = Event(service="s" * 1_000_000, resource_id="r", metric_name="m" * 1_000_000, value=1.0, timestamp=0)
    reasons = [f"{point_name(huge)}: value must be finite"] * 5
    said = summary(reasons, total=5, noun="data point")
    assert len(said) < 6_000 and said.startswith("5 of 5 data points refused: mmm")


@pytest.mark.django_db
def test_otlp_v1_metrics_is_an_alias_documented_once(make_tenant):
    from drf_spectacular.generators import SchemaGenerator

    client = make_tenant("otlp-alias")
    body = _json_request([4.0], now_ns=time.time_ns() - 60_000_000_000)
    response = client.post("/otlp/v1/metrics", body)
    assert (response.status_code, response.json()) == (200, {})
    assert [s["metric_name"] for s in client.get("/api/v1/series").json()["results"]] == ["queue.depth"]
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    assert "/v1/metrics" in paths and "/otlp/v1/metrics" not in paths


@pytest.mark.django_db
def test_refused_points_create_no_series(make_tenant):
    client = make_tenant("otlp-refused")
    body = _json_request([1.0], now_ns=time.time_ns() + 86_400 * 10**9)  # a day in the future
    response = client.post("/v1/metrics", body)
    assert response.status_code == 200 and response.json()["partialSuccess"]["rejectedDataPoints"] == "1"
    assert client.get("/api/v1/series").json()["results"] == []
