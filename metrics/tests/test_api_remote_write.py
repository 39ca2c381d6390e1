"""POST /api/v1/write: Prometheus itself (agent mode) scraping a target and remote-writing to a live
server with basic auth, and hand-built WriteRequests for the edges."""
import base64
import http.server
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import cramjam
import pytest
from django.test import Client

from metrics.protocols.remote_write import STALE_NAN_BITS
from metrics.protocols.remote_write_pb2 import MetricMetadata, WriteRequest

LONG_LABEL = "x" * 100  # over the tenant's MAX_VALUE_BYTES of 64 set below
FAILED, RETRIED = "prometheus_remote_storage_samples_failed_total", "prometheus_remote_storage_samples_retried_total"
SENT = "prometheus_remote_storage_samples_total"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Target(http.server.BaseHTTPRequestHandler):
    """A scrape target: a counter that grows on every scrape, a gauge, an empty summary (its quantiles NaN,
    as Prometheus' own are before their first observation) and a sample with a label too long."""

    scrapes = 0

    def do_GET(self):
        type(self).scrapes += 1
        body = (
            "# TYPE shop_orders_total counter\n"
            f'shop_orders_total{{region="eu"}} {10 * type(self).scrapes}\n'
            "# TYPE shop_temperature gauge\n"
            "shop_temperature 21.5\n"
            "# TYPE shop_latency_seconds summary\n"
            'shop_latency_seconds{quantile="0.5"} NaN\n'
            'shop_latency_seconds{quantile="0.99"} NaN\n'
            "shop_latency_seconds_sum 0\n"
            "shop_latency_seconds_count 0\n"
            "# TYPE shop_oversized gauge\n"
            f'shop_oversized{{blob="{LONG_LABEL}"}} 1\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _prometheus_counters(port: int) -> dict[tuple[str, str], float]:
    """Prometheus' remote storage counters by (name, remote_name)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    counters = {}
    for line in text.splitlines():
        if line.startswith("prometheus_remote_storage_") and 'remote_name="' in line:
            name, _, value = line.rpartition(" ")
            key = (name.split("{")[0], name.split('remote_name="')[1].split('"')[0])
            counters[key] = counters.get(key, 0.0) + float(value)
    return counters


def _write_agent_config(path, client, target_port: int, live_url: str) -> None:
    """Two queues scraping the shop: `valid` gets all but the oversized metric, `refused` only that one."""
    queue = f"""    basic_auth:
      username: {client.tenant.slug}
      password: {client.key}
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s"""
    path.write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: shop
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
remote_write:
  - name: valid
    url: {live_url}/api/v1/write
    write_relabel_configs: [{{source_labels: [__name__], regex: shop_oversized, action: drop}}]
{queue}
  - name: refused
    url: {live_url}/api/v1/push
    write_relabel_configs: [{{source_labels: [__name__], regex: shop_oversized, action: keep}}]
{queue}
""")


def _wait_for_the_shop(client, web_port: int):
    """Up to a minute, until three scrapes of orders are stored and the refused queue has failed a batch."""
    deadline = time.monotonic() + 60
    orders = temperature = []
    counters = {}
    while time.monotonic() < deadline:
        time.sleep(1)
        orders = client.get("/api/v1/metrics/timeseries", {"service": "shop", "metric_name": "shop_orders_total",
                                                           "minutes": 10}).json()["series"]
        temperature = client.get("/api/v1/metrics/timeseries", {"service": "shop", "metric_name": "shop_temperature",
                                                                "minutes": 10}).json()["series"]
        try:
            counters = _prometheus_counters(web_port)
        except OSError:
            continue
        if orders and len(orders[0]["points"]) >= 3 and temperature and \
                counters.get((FAILED, "refused"), 0) > 0:
            break
    return orders, temperature, counters


@pytest.mark.django_db(transaction=True)
def test_prometheus_remote_writes_with_basic_auth_counts_no_nan_failed_and_drops_a_refused_batch_unretried(
        live_server, make_tenant, prometheus_binaries, tmp_path):
    prometheus, _ = prometheus_binaries
    client = make_tenant("prom")
    client.tenant.limits = {"MAX_VALUE_BYTES": 64}
    client.tenant.save()
    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    web_port = _free_port()
    _write_agent_config(tmp_path / "prometheus.yml", client, target.server_address[1], live_server.url)
    process = subprocess.Popen(
        [prometheus, "--enable-feature=agent", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.agent.path={tmp_path / 'wal'}", f"--web.listen-address=127.0.0.1:{web_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        orders, temperature, counters = _wait_for_the_shop(client, web_port)
        assert orders and len(orders[0]["points"]) >= 3, counters
        [series] = orders
        resource = f"127.0.0.1:{target.server_address[1]}"
        assert (series["service"], series["resource_id"], series["tags"], series["kind"]) == \
            ("shop", resource, {"region": "eu"}, "counter")
        values = [p["value"] for p in series["points"]]
        assert values == sorted(values) and values[0] % 10 == 0
        assert [p["value"] for p in temperature[0]["points"]][:2] == [21.5, 21.5]
        assert temperature[0]["kind"] == "gauge"
        # The summary's NaN quantiles were kept apart, for PromQL: not one sample of the valid queue failed.
        assert counters[(SENT, "valid")] > 0 and counters.get((FAILED, "valid"), 0) == 0, counters
        assert client.get("/api/v1/series", {"service": "shop", "metric_name": "shop_latency_seconds_count"}).json()[
            "results"]
        # The refused sample's batches were answered 400: counted failed by Prometheus, never retried.
        assert counters[(FAILED, "refused")] > 0
        assert counters.get((RETRIED, "valid"), 0) == counters.get((RETRIED, "refused"), 0) == 0
        rate = client.get("/api/v1/metrics/timeseries", {"series_id": series["series_id"], "minutes": 10,
                                                         "fn": "rate"}).json()["series"][0]["points"]
        assert rate and all(5 <= p["value"] <= 20 for p in rate)  # 10 per scrape, about one scrape a second
        oversized = client.get("/api/v1/metrics/timeseries", {"service": "shop", "metric_name": "shop_oversized",
                                                              "minutes": 10}).json()["series"]
        assert oversized == []
    finally:
        process.terminate()
        process.wait(timeout=30)
        target.shutdown()


def _write(client, request: WriteRequest, *, raw: bytes | None = None, **headers):
    body = raw if raw is not None else bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    return client.client.generic("POST", "/api/v1/write", body, content_type="application/x-protobuf",
                                 HTTP_CONTENT_ENCODING="snappy", HTTP_X_PROMETHEUS_REMOTE_WRITE_VERSION="0.1.0",
                                 **headers)


def _series(request: WriteRequest, name: str, samples, **labels):
    series = request.timeseries.add()
    for key, value in {"__name__": name, "job": "node", "instance": "host-1:9100", **labels}.items():
        series.labels.add(name=key, value=value)
    for ts_ms, value in samples:
        series.samples.add(timestamp=ts_ms, value=value)


def _basic(slug: str, key: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{slug}:{key}".encode()).decode()}


@pytest.mark.django_db
def test_every_nan_is_kept_apart_and_counted_infinity_refused_by_name_and_the_rest_stored_once(make_tenant, settings):
    settings.METRICS_OPEN_WITHOUT_TOKEN = True
    client = make_tenant("rw")
    auth = _basic("rw", client.key)
    now_ms = int(time.time() * 1000) - 60_000
    stale = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
    request = WriteRequest()
    _series(request, "node_load1", [(now_ms, 0.5), (now_ms + 15_000, stale)])
    # An empty summary's quantiles are NaN (Prometheus' own go_gc_duration_seconds before the first GC).
    _series(request, "rpc_duration_seconds", [(now_ms, float("nan")), (now_ms + 15_000, float("-nan"))],
            quantile="0.5")
    _series(request, "rpc_duration_seconds_count", [(now_ms, 0.0)])
    # A series never seen ends before it begins: nothing to keep, and no series made.
    _series(request, "node_gone", [(now_ms, stale)])
    assert _write(client, request, **auth).status_code == 204
    text = Client().get("/metrics").content.decode()
    assert 'outcome="accepted",protocol="remote_write",reason="nan",tenant="rw"} 2.0' in text
    assert 'outcome="accepted",protocol="remote_write",reason="staleness",tenant="rw"} 1.0' in text
    assert 'outcome="dropped",protocol="remote_write",reason="staleness",tenant="rw"} 1.0' in text

    infinite = WriteRequest()
    _series(infinite, "node_cpu_seconds_total", [(now_ms, 100.0), (now_ms + 15_000, float("inf"))], cpu="0")
    response = _write(client, infinite, **auth)
    assert response.status_code == 400
    text = response.content.decode()
    assert text.startswith("1 of 2 samples refused: node_cpu_seconds_total (service 'node', resource 'host-1:9100')")
    assert "value must be a finite number, not infinity" in text and "(the other samples were stored)" in text

    series = client.get("/api/v1/series", {"service": "node"}).json()["results"]
    assert {(s["metric_name"], s["kind"], s["point_count"]) for s in series} == {
        ("node_load1", "gauge", 1), ("rpc_duration_seconds_count", "counter", 1),
        ("node_cpu_seconds_total", "counter", 1), ("rpc_duration_seconds", "gauge", 0)}

    retry = WriteRequest()
    _series(retry, "node_load1", [(now_ms, 0.5)])
    assert _write(client, retry, **auth).status_code == 204
    assert client.get("/api/v1/series", {"service": "node", "metric_name": "node_load1"}).json()["results"][0][
        "point_count"] == 1


@pytest.mark.django_db
def test_metadata_only_requests_are_204_and_metadata_makes_a_counter(make_tenant):
    client = make_tenant("rw-meta")
    auth = _basic("rw-meta", client.key)
    request = WriteRequest()
    request.metadata.add(type=MetricMetadata.COUNTER, metric_family_name="jobs_done", help="Jobs.", unit="")
    assert _write(client, request, **auth).status_code == 204
    _series(request, "jobs_done", [(int(time.time() * 1000) - 1000, 3.0)])
    assert _write(client, request, **auth).status_code == 204
    [series] = client.get("/api/v1/series", {"metric_name": "jobs_done"}).json()["results"]
    assert series["kind"] == "counter"


@pytest.mark.django_db
@pytest.mark.parametrize("body, reason", [
    (b"not snappy at all", "not snappy block-compressed"),
    (bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff")), "not a protobuf WriteRequest"),
])
def test_a_malformed_body_is_a_400_saying_why(make_tenant, body, reason):
    client = make_tenant("rw-bad")
    response = _write(client, WriteRequest(), raw=body, **_basic("rw-bad", client.key))
    assert response.status_code == 400 and reason in response.content.decode()


@pytest.mark.django_db
def test_basic_auth_needs_the_keys_own_tenant_as_user(make_tenant):
    client = make_tenant("rw-auth")
    make_tenant("rw-other")
    assert _write(client, WriteRequest(), **_basic("rw-other", client.key)).status_code == 401
    assert _write(client, WriteRequest(), HTTP_AUTHORIZATION="Basic %%%").status_code == 401
    assert _write(client, WriteRequest(), **_basic("rw-auth", client.key)).status_code == 204


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["application/x-protobuf;proto=io.prometheus.write.v2.Request",
                                          'application/x-protobuf; proto="io.prometheus.write.v2.Request"',
                                          "application/x-protobuf;proto=io.prometheus.write.v3.Request"])
def test_a_message_other_than_1_0_is_a_415_naming_1_0_before_its_body_is_read(make_tenant, content_type):
    client = make_tenant("rw-v2")
    request = WriteRequest()
    _series(request, "node_load1", [(int(time.time() * 1000) - 1000, 0.5)])
    body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    auth = _basic("rw-v2", client.key)
    response = client.client.generic("POST", "/api/v1/write", body, content_type=content_type,
                                     HTTP_CONTENT_ENCODING="snappy", HTTP_X_PROMETHEUS_REMOTE_WRITE_VERSION="2.0.0",
                                     **auth)
    assert (response.status_code, response["Content-Type"]) == (415, "text/plain; charset=utf-8")
    assert "remote write 1.0 only (Content-Type: application/x-protobuf;proto=prometheus.WriteRequest)" in \
        response.content.decode()
    assert client.get("/api/v1/series").json()["results"] == []
    # Refused before the body is read: a body over MAX_BODY_BYTES is still a 415, not a 413.
    oversized = b"\0" * (client.tenant.limit("MAX_BODY_BYTES") + 1)
    assert client.client.generic("POST", "/api/v1/write", oversized, content_type=content_type,
                                 **auth).status_code == 415
    # 1.0 named explicitly is stored.
    assert client.client.generic("POST", "/api/v1/write", body, content_type="application/x-protobuf;"
                                 "proto=prometheus.WriteRequest", **auth).status_code == 204


@pytest.mark.django_db
def test_a_batch_larger_than_the_burst_is_413_which_prometheus_does_not_retry(make_tenant):
    client = make_tenant("rw-burst")
    client.tenant.limits = {"POINTS_BURST": 2}  # saved around Tenant.clean(), which refuses it
    client.tenant.save()
    request = WriteRequest()
    _series(request, "node_load1", [(int(time.time() * 1000) - 3000 + k, 0.5) for k in range(3)])
    response = _write(client, request, **_basic("rw-burst", client.key))
    assert response.status_code == 413 and "burst of 2 (POINTS_BURST)" in response.content.decode()


def test_the_readmes_prometheus_config_is_valid_and_retries_a_429(prometheus_binaries, tmp_path):
    """Prometheus 2.x drops a batch answered 429 unless queue_config.retry_on_http_429 is set."""
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("Prometheus (server or `--enable-feature=agent`)", 1)[1].split("```yaml\n", 1)[1]
    config = yaml.safe_load(block.split("```", 1)[0])
    assert config["remote_write"][0]["queue_config"]["retry_on_http_429"] is True
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    _, promtool = prometheus_binaries
    check = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.django_db
def test_refused_samples_create_no_series(make_tenant):
    client = make_tenant("rw-refused")
    client.tenant.max_point_age_days = 1
    client.tenant.save()
    now_ms = int(time.time() * 1000) - 1000
    request = WriteRequest()
    _series(request, "node_load1", [(now_ms - 3 * 86_400_000, 0.5)])  # older than the tenant accepts
    _series(request, "node_load5", [(now_ms, float("inf"))])
    _series(request, "node_load15", [(now_ms, 0.5)])
    response = _write(client, request, **_basic("rw-refused", client.key))
    assert response.status_code == 400 and response.content.decode().startswith("2 of 3 samples refused")
    assert [s["metric_name"] for s in client.get("/api/v1/series").json()["results"]] == ["node_load15"]
