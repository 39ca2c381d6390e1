"""What one tenant sends to the agent protocols costs that tenant, not everyone (issue 22, security
review of 2026-12-03, findings 1, 2, 4, 5, 6 and 15): points are counted before they are built,
refused requests are charged, protocol caches are bounded in bytes per tenant, chunked bodies are
read, remote write's label sets are checked as Prometheus checks them."""
import gzip
import http.client
import time

import cramjam
import pytest
from django.test import override_settings
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from metrics.models import Series
from metrics.protocols import IdentityCache, otlp
from metrics.protocols.remote_write_pb2 import WriteRequest
from tenants.services import api_key_issue, tenant_create
from tests.helpers import app_gunicorn


def _varint(number: int) -> bytes:
    out = b""
    while True:
        low, number = number & 0x7F, number >> 7
        if not number:
            return out + bytes([low])
        out += bytes([low | 0x80])


def _field(number: int, payload: bytes) -> bytes:
    """A protobuf length-delimited field, as the review's reproductions write them (ld)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _otlp(client, body: bytes, *, content_type="application/x-protobuf", **headers):
    return client.client.generic("POST", "/v1/metrics", body, content_type=content_type,
                                 HTTP_AUTHORIZATION=f"Bearer {client.key}", **headers)


def _remote_write(client, body: bytes):
    return client.client.generic("POST", "/api/v1/write", bytes(cramjam.snappy.compress_raw(body)),
                                 content_type="application/x-protobuf", HTTP_CONTENT_ENCODING="snappy",
                                 HTTP_AUTHORIZATION=f"Bearer {client.key}")


def _limited(client, **limits):
    client.tenant.limits = limits
    client.tenant.save()
    return client


def _gauge_request(points: int, *, start_ns: int, resource: dict | None = None,
                   point_attributes: dict | None = None) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    for key, value in {"service.name": "svc", "host.name": "h1", **(resource or {})}.items():
        resource_metrics.resource.attributes.add(key=key, value=AnyValue(string_value=value))
    metric = resource_metrics.scope_metrics.add().metrics.add(name="queue.depth", unit="1")
    for k in range(points):
        point = metric.gauge.data_points.add(time_unix_nano=start_ns + k * 1_000_000_000, as_double=float(k))
        for key, value in (point_attributes or {}).items():
            point.attributes.add(key=key, value=AnyValue(string_value=value))
    return request


def _now_ns() -> int:
    return (int(time.time()) - 3600) * 1_000_000_000


# Finding 1: the review's 5 KB bodies of millions of points, each answered 413 before a point is built.
_EMPTY_HISTOGRAM_POINTS = _field(1, _field(2, _field(2, _field(1, b"m") + _field(9, b"\x0a\x00" * 2_600_000))))
_VALUELESS_GAUGE_POINTS = _field(1, _field(2, _field(2, _field(1, b"m") + _field(5, b"\x0a\x00" * 2_500_000))))
_EMPTY_JSON_POINTS = (b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":['
                      + b",".join([b"{}"] * 1_700_000) + b"]}}]}]}]}")


@pytest.mark.django_db
@pytest.mark.parametrize("body, content_type", [
    (_EMPTY_HISTOGRAM_POINTS, "application/x-protobuf"),
    (_VALUELESS_GAUGE_POINTS, "application/x-protobuf"),  # finding 6: was 200, every point refused one by one
    (_EMPTY_JSON_POINTS, "application/json"),  # was 200 after 17 s
])
def test_a_small_gzip_body_of_millions_of_points_is_a_413_naming_the_limit(make_tenant, body, content_type):
    client = make_tenant()
    response = _otlp(client, gzip.compress(body), content_type=content_type, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    assert "MAX_EVENTS_PER_REQUEST" in _status_message(response)
    assert not Series.objects.for_tenant(client.tenant).exists()


def _status_message(response) -> str:
    if response["Content-Type"].startswith("application/json"):
        return response.json()["message"]
    from google.rpc.status_pb2 import Status

    return Status.FromString(response.content).message


@pytest.mark.django_db
def test_remote_write_of_millions_of_empty_samples_is_a_413(make_tenant):
    client = make_tenant()
    body = _field(1, _field(1, _field(1, b"__name__") + _field(2, b"m")) + b"\x12\x00" * 2_600_000)
    response = _remote_write(client, body)
    assert response.status_code == 413
    assert "more than 10000 samples" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("points", [101, 3000])  # a body parsed at once, and one counted on the wire first
def test_one_point_over_the_limit_is_a_413_and_the_limit_itself_is_stored(make_tenant, points):
    client = _limited(make_tenant(), MAX_EVENTS_PER_REQUEST=100)
    over = _otlp(client, _gauge_request(points, start_ns=_now_ns()).SerializeToString())
    assert over.status_code == 413
    assert "more than 100 data points" in _status_message(over)
    at_limit = _otlp(client, _gauge_request(100, start_ns=_now_ns()).SerializeToString())
    assert at_limit.status_code == 200
    assert ExportMetricsServiceResponse.FromString(at_limit.content).partial_success.rejected_data_points == 0


@pytest.mark.django_db
def test_a_body_cut_inside_a_field_is_a_400_before_it_is_parsed(make_tenant):
    client = _limited(make_tenant(), MAX_EVENTS_PER_REQUEST=50)  # so a 7 KB body is counted on the wire
    body = _gauge_request(30, start_ns=_now_ns(), point_attributes={"a": "x" * 200}).SerializeToString()
    response = _otlp(client, body[:-3] + b"\x0a\xff\x7f")
    assert response.status_code == 400
    assert "not a protobuf ExportMetricsServiceRequest" in _status_message(response)


@pytest.mark.django_db
def test_a_resources_attributes_repeated_in_every_points_tags_are_bounded(make_tenant):
    """A 3 KB resource in each of thousands of points' tags is gigabytes from a small body: 413."""
    client = _limited(make_tenant(), MAX_BODY_BYTES=200_000)
    resource = {f"attribute{k:02d}": "v" * 2000 for k in range(20)}
    request = _gauge_request(2000, start_ns=_now_ns(), resource=resource, point_attributes={"queue": "jobs"})
    response = _otlp(client, gzip.compress(request.SerializeToString()), HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    assert "tags come to more than 800000 bytes" in _status_message(response)


# Finding 5: refused requests are charged to REQUESTS_PER_MINUTE; finding 1: and their CPU to the points bucket.
@pytest.mark.django_db
@pytest.mark.parametrize("path, body", [
    ("/v1/metrics", b"\xff\xff"), ("/api/v1/ingest/metrics", b"{"), ("/api/v1/write", b"\xff\xff"),
])
def test_refused_ingest_requests_count_against_the_request_rate(make_tenant, path, body):
    client = _limited(make_tenant(), REQUESTS_PER_MINUTE=5)
    statuses = [client.client.generic("POST", path, body, content_type="application/x-protobuf",
                                      HTTP_AUTHORIZATION=f"Bearer {client.key}").status_code for _ in range(8)]
    assert statuses[:5] == [400] * 5 and statuses[5:] == [429] * 3


@pytest.mark.django_db
def test_the_cpu_of_a_refused_request_is_charged_to_its_tenant_only(make_tenant):
    hostile, neighbour = make_tenant(), make_tenant()
    for client in (hostile, neighbour):
        _limited(client, POINTS_PER_SECOND=1000, POINTS_BURST=10_000)
    # Every CPU microsecond priced as a whole burst of points: one refused request empties the bucket.
    with override_settings(CLOUDWATCHDOG={**_settings(), "INGEST_POINTS_PER_CPU_SECOND": 10 ** 12}):
        assert _otlp(hostile, gzip.compress(_VALUELESS_GAUGE_POINTS), HTTP_CONTENT_ENCODING="gzip").status_code == 413
        again = _otlp(hostile, _gauge_request(1, start_ns=_now_ns()).SerializeToString())
        assert again.status_code == 429 and int(again["Retry-After"]) >= 10
    assert _otlp(neighbour, _gauge_request(1, start_ns=_now_ns()).SerializeToString()).status_code == 200


def _settings() -> dict:
    from django.conf import settings

    return settings.CLOUDWATCHDOG


# Finding 2: the protocol caches are bounded in bytes, per tenant and in all.
@pytest.mark.django_db
def test_a_refused_four_megabyte_resource_is_neither_stored_nor_kept(make_tenant):
    client = make_tenant()
    otlp.resource_cache.clear()
    for i in range(5):
        request = _gauge_request(3, start_ns=_now_ns(), resource={"big": f"{i:08d}" + "a" * 4_000_000})
        response = _otlp(client, gzip.compress(request.SerializeToString()), HTTP_CONTENT_ENCODING="gzip")
        assert response.status_code == 200
        refused = ExportMetricsServiceResponse.FromString(response.content).partial_success
        assert refused.rejected_data_points == 3 and "MAX_VALUE_BYTES" in refused.error_message
    assert otlp.resource_cache.bytes_used() == 0
    assert _otlp(client, _gauge_request(3, start_ns=_now_ns()).SerializeToString()).status_code == 200
    assert 0 < otlp.resource_cache.bytes_used(client.tenant.id) < 4096


def test_one_tenant_filling_the_identity_cache_does_not_push_out_another():
    cache = IdentityCache(tenant_bytes=10_000, total_bytes=25_000, entry_bytes=1000)
    cache.get(2, b"b" * 500, lambda key: ("b", len(key)))
    for i in range(200):
        cache.get(1, b"%04d" % i + b"a" * 500, lambda key: ("a", len(key)))
    assert cache.bytes_used(1) <= 10_000 and cache.bytes_used() <= 25_000
    built = []
    cache.get(2, b"b" * 500, lambda key: built.append(key))
    assert built == []  # still kept: tenant 1 started over within its own share
    cache.get(3, b"c" * 5000, lambda key: ("c", len(key)))  # over entry_bytes: worked out, not kept
    assert cache.bytes_used(3) == 0


# Finding 15: remote write label sets checked as Prometheus checks them.
def _labels_request(*label_sets) -> bytes:
    request = WriteRequest()
    for k, labels in enumerate(label_sets):
        series = request.timeseries.add()
        for name, value in labels:
            series.labels.add(name=name, value=value)
        series.samples.add(timestamp=int(time.time() * 1000) - 60_000 + k, value=1.0)
    return request.SerializeToString()


@pytest.mark.django_db
@pytest.mark.parametrize("labels, reason", [
    ([("__name__", "m"), ("a b-c", "1")], "label 'a b-c': a label name must match"),
    ([("__name__", "m"), ("0bad", "1")], "label '0bad': a label name must match"),
    ([("__name__", "m"), ("<script>", "1")], "label '<script>': a label name must match"),
    ([("__name__", "m"), ("env", "a"), ("env", "b")], "label 'env' twice"),
])
def test_remote_write_refuses_invalid_and_duplicate_label_names_by_name(make_tenant, labels, reason):
    client = make_tenant()
    response = _remote_write(client, _labels_request(labels, [("__name__", "ok"), ("job", "node")]))
    assert response.status_code == 400
    assert reason in response.content.decode() and "1 of 2 samples refused" in response.content.decode()
    assert list(Series.objects.for_tenant(client.tenant).values_list("metric_name", flat=True)) == ["ok"]


@pytest.mark.django_db
def test_an_empty_label_value_is_the_labels_absence(make_tenant):
    client = make_tenant()
    response = _remote_write(client, _labels_request([("__name__", "m"), ("env", "")], [("__name__", "m")]))
    assert response.status_code == 204
    assert list(Series.objects.for_tenant(client.tenant).values_list("tags", flat=True)) == [{}]


# Finding 4: chunked bodies, read by a real gunicorn (Django's test client always sends a length).
@pytest.fixture
def gunicorn_url(transactional_db, tmp_path):
    with app_gunicorn(tmp_path / "gunicorn.log") as port:
        yield port


def _chunked_post(port: int, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    # An iterable body goes out with Transfer-Encoding: chunked and no Content-Length.
    connection.request("POST", path, body=iter([body[:10], body[10:]]), headers=headers, encode_chunked=True)
    response = connection.getresponse()
    return response.status, response.read()


def test_chunked_bodies_are_read_by_every_way_in(gunicorn_url):
    tenant = tenant_create(slug="chunked")
    auth = {"Authorization": f"Bearer {api_key_issue(tenant=tenant, scope='all').plaintext}"}
    otlp_body = _gauge_request(2, start_ns=_now_ns()).SerializeToString()
    status, _ = _chunked_post(gunicorn_url, "/v1/metrics", otlp_body,
                              {**auth, "Content-Type": "application/x-protobuf"})
    assert status == 200
    rw_body = bytes(cramjam.snappy.compress_raw(_labels_request([("__name__", "rw_metric"), ("job", "node")])))
    status, _ = _chunked_post(gunicorn_url, "/api/v1/write", rw_body,
                              {**auth, "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"})
    assert status == 204
    json_body = (b'{"events": [{"source": "s", "service": "svc", "resource_id": "r", "metric_name": "json_metric", '
                 b'"value": 1.0, "timestamp": "%s"}]}' % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60)).encode())
    status, _ = _chunked_post(gunicorn_url, "/api/v1/ingest/metrics", json_body,
                              {**auth, "Content-Type": "application/json"})
    assert status == 202
    window = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + hours * 3600)) for hours in (0, 1)]
    status, answer = _chunked_post(gunicorn_url, "/api/v1/silences", b'{"start": "%s", "end": "%s", "note": "chunked"}'
                                   % (window[0].encode(), window[1].encode()), {**auth, "Content-Type": "application/json"})
    assert status == 201, answer
    assert set(Series.objects.for_tenant(tenant).values_list("metric_name", flat=True)) == {
        "queue.depth", "rw_metric", "json_metric"}


@pytest.mark.django_db
def test_a_small_gzip_otlp_json_body_of_millions_of_bucket_counts_is_a_413(make_tenant):
    client = make_tenant()
    body = (b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","histogram":{"dataPoints":[{'
            b'"timeUnixNano":"%d","count":"1","bucketCounts":[' % _now_ns() + b",".join([b"1"] * 2_400_000)
            + b"]}]}}]}]}]}")
    response = _otlp(client, gzip.compress(body), content_type="application/json", HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    assert "MAX_EVENTS_PER_REQUEST" in _status_message(response)


def test_cached_tags_hold_their_length_not_the_json_encoders_buffer():
    import tracemalloc

    from metrics.protocols import tags_json

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [tags_json({"env": "prod", "pod": f"pod-{i}"}) for i in range(1000)]
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_entry < 200  # orjson's own result holds a 4 KB buffer


def test_a_tenants_cached_identities_start_over_when_its_limits_change():
    cache, built = IdentityCache(), []
    for limits in ("limits A", "limits A", "limits B"):
        cache.get(1, b"labels", lambda key: built.append(limits) or limits, limits=limits)
    assert built == ["limits A", "limits B"]
