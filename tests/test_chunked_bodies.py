"""Chunked request bodies (Transfer-Encoding: chunked, no Content-Length), as the OpenTelemetry JS SDK and
streaming clients send them: read under gunicorn on every ingest endpoint and a JSON API one, bounded by
the tenant's limit; 411 from a server that cannot read them (Django's own)."""
import http.client
import json
import time

import cramjam
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from metrics.protocols.remote_write_pb2 import WriteRequest
from tests.helpers import app_gunicorn, event


def _chunked(port: int, path: str, body: bytes, *, key: str, content_type: str, **headers) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    pieces = iter([body[k:k + 1000] for k in range(0, len(body), 1000)])  # an iterator: no length to send
    try:
        connection.request("POST", path, body=pieces, encode_chunked=True,
                           headers={"Authorization": f"Bearer {key}", "Content-Type": content_type, **headers})
    except (BrokenPipeError, ConnectionResetError):
        # A server that answers without reading the body (the 411) may close before the last chunk is sent;
        # its answer is already in our receive buffer, so read it as a client would.
        pass
    response = connection.getresponse()
    answer = response.status, response.read()
    connection.close()
    return answer


def _otlp_body(now_ns: int) -> bytes:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "otlp-chunked"
    metric = resource.scope_metrics.add().metrics.add(name="queue.depth")
    metric.gauge.data_points.add(time_unix_nano=now_ns, as_double=3.0)
    return request.SerializeToString()


def _remote_write_body(now_ms: int) -> bytes:
    request = WriteRequest()
    series = request.timeseries.add()
    for name, value in {"__name__": "node_load1", "job": "rw-chunked", "instance": "h:9100"}.items():
        series.labels.add(name=name, value=value)
    series.samples.add(timestamp=now_ms, value=0.5)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


@pytest.mark.django_db(transaction=True)
def test_chunked_bodies_are_read_under_gunicorn_on_every_ingest_endpoint(make_tenant, tmp_path):
    client = make_tenant("chunked")
    client.tenant.limits = {"MAX_BODY_BYTES": 300_000}
    client.tenant.save()
    now = time.time()
    json_body = json.dumps({"events": [event(float(k), resource_id=f"r-{k}") for k in range(300)]}).encode()
    assert len(json_body) > 10_000  # several chunks
    with app_gunicorn(tmp_path / "gunicorn.log") as port:
        status, answer = _chunked(port, "/api/v1/ingest/metrics", json_body, key=client.key,
                                  content_type="application/json")
        assert (status, json.loads(answer)["accepted"]) == (202, 300), answer
        status, answer = _chunked(port, "/v1/metrics", _otlp_body(int((now - 60) * 1e9)), key=client.key,
                                  content_type="application/x-protobuf")
        assert status == 200 and answer == b"", answer
        status, answer = _chunked(port, "/api/v1/write", _remote_write_body(int((now - 60) * 1000)), key=client.key,
                                  content_type="application/x-protobuf", **{"Content-Encoding": "snappy"})
        assert status == 204, answer
        # Over the tenant's MAX_BODY_BYTES: 413, however it is sent.
        status, answer = _chunked(port, "/api/v1/ingest/metrics", b" " * 300_001 + json_body, key=client.key,
                                  content_type="application/json")
        assert status == 413 and b"MAX_BODY_BYTES" in answer, answer
        # An endpoint DRF parses (not one that reads its own body) gets the body too.
        status, answer = _chunked(port, "/api/v1/silences", json.dumps({
            "service": "ec2", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"}).encode(),
            key=client.key, content_type="application/json")
        assert status == 201, answer
    for service, metric_name in (("otlp-chunked", "queue.depth"), ("rw-chunked", "node_load1")):
        [series] = client.get("/api/v1/series", {"service": service}).json()["results"]
        assert (series["metric_name"], series["point_count"]) == (metric_name, 1)


@pytest.mark.django_db(transaction=True)
def test_a_server_that_cannot_read_a_chunked_body_answers_411_not_an_empty_body(live_server, make_tenant):
    client = make_tenant("chunked-411")
    port = int(live_server.url.rsplit(":", 1)[1])
    status, answer = _chunked(port, "/api/v1/ingest/metrics", json.dumps({"events": [event()]}).encode(),
                              key=client.key, content_type="application/json")
    assert status == 411 and b"Content-Length" in answer
    assert client.get("/api/v1/series").json()["results"] == []
