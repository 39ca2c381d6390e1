"""HTTP ingest against raw COPY, measured side by side in one run (DESIGN §3).

Both paths store the same rows: batches of 1,000 points over 1,000 series.
- HTTP: 4 client processes, one keep-alive connection each, against a server started by `make run`,
  in one of three protocols (--protocol): the JSON API, OTLP/HTTP protobuf (one resource per series,
  as a Collector forwarding many hosts sends) or Prometheus remote write (snappy protobuf).
- COPY: one `COPY` of the same rows over one connection into a narrow table
  (tenant_id, series_id, ts, value) with a unique (series_id, ts) index.

usage: .venv/bin/python bench/ingest_http.py --url http://127.0.0.1:8000 [--rounds 5] [--batches 300]
       [--protocol json|otlp|remote_write]
Each run makes its own tenant (and ingest key) in the database the project's settings point at
(embedded by default), so earlier runs' watermarks cannot turn its points into late points; its
INGEST_INFLIGHT_PER_TENANT is --connections, and a 429 is waited out (Retry-After) and sent again.
"""
import argparse
import io
import multiprocessing
import os
import socket
import sys
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_batches(batches: int, series: int, start: datetime, run_tag: str) -> list[bytes]:
    """One body per timestamp, one event per series, timestamps one millisecond apart from `start`."""
    bodies = []
    for b in range(batches):
        ts = (start + timedelta(milliseconds=b)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        events = [
            {"source": "bench", "service": "bench", "resource_id": f"{run_tag}-r{s}", "metric_name": "load",
             "value": float((b * 31 + s) % 1000) / 10.0, "timestamp": ts, "tags": {"env": "bench"}}
            for s in range(series)
        ]
        bodies.append(orjson.dumps({"events": events}))
    return bodies


def make_otlp_batches(batches: int, series: int, start: datetime, run_tag: str) -> list[bytes]:
    """The same points as ExportMetricsServiceRequests: a resource (host.name) per series, one gauge point each."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    start_ns = int(start.timestamp() * 1e9)
    bodies = []
    for b in range(batches):
        request = ExportMetricsServiceRequest()
        for s in range(series):
            resource_metrics = request.resource_metrics.add()
            for key, value in (("service.name", "bench"), ("host.name", f"{run_tag}-r{s}"), ("env", "bench")):
                resource_metrics.resource.attributes.add(key=key).value.string_value = value
            metric = resource_metrics.scope_metrics.add().metrics.add(name="load")
            metric.gauge.data_points.add(time_unix_nano=start_ns + b * 1_000_000,
                                         as_double=float((b * 31 + s) % 1000) / 10.0)
        bodies.append(request.SerializeToString())
    return bodies


def make_remote_write_batches(batches: int, series: int, start: datetime, run_tag: str) -> list[bytes]:
    """The same points as snappy-compressed WriteRequests: a time series per series, one sample each."""
    import cramjam

    from metrics.protocols.remote_write_pb2 import WriteRequest

    start_ms = int(start.timestamp() * 1000)
    bodies = []
    for b in range(batches):
        request = WriteRequest()
        for s in range(series):
            series_pb = request.timeseries.add()
            for name, value in (("__name__", "load"), ("env", "bench"), ("instance", f"{run_tag}-r{s}"), ("job", "bench")):
                series_pb.labels.add(name=name, value=value)
            series_pb.samples.add(timestamp=start_ms + b, value=float((b * 31 + s) % 1000) / 10.0)
        bodies.append(bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
    return bodies


PROTOCOLS = {
    # (body maker, path, extra headers, the status of a batch stored whole)
    "json": (make_batches, "/api/v1/ingest/metrics", "Content-Type: application/json\r\n", 202),
    "otlp": (make_otlp_batches, "/v1/metrics", "Content-Type: application/x-protobuf\r\n", 200),
    "remote_write": (make_remote_write_batches, "/api/v1/write", "Content-Type: application/x-protobuf\r\n"
                     "Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n", 204),
}


def _client(url: str, key: str, bodies: list[bytes], ready, results, protocol: str = "json", points: int = 0) -> None:
    """One keep-alive connection posting its bodies in turn. A minimal HTTP/1.1 client (requests
    prepared up front, responses parsed by hand), so the load generator takes little of the cores
    the server runs on; the first body warms the connection and is not timed."""
    parsed = urllib.parse.urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port or 80), timeout=120)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile("rb")
    _, path, headers, ok = PROTOCOLS[protocol]
    head = (f"POST {path} HTTP/1.1\r\nHost: {parsed.hostname}\r\n{headers}"
            f"Authorization: Bearer {key}\r\nContent-Length: ").encode()
    requests = [head + str(len(body)).encode() + b"\r\n\r\n" + body for body in bodies]

    def post(request: bytes) -> int:
        sock.sendall(request)
        status = int(reader.readline().split()[1])
        length, retry_after = 0, None
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"retry-after":
                retry_after = value.strip()
        payload = reader.read(length)
        if status == 429:  # over the tenant's rate or in-flight share: wait as told and send it again, as agents do
            time.sleep(float(retry_after or 1))
            return post(request)
        if status != ok:
            raise RuntimeError(f"{status}: {payload[:500]!r}")
        if protocol == "json":
            return orjson.loads(payload)["accepted"]
        if payload:  # an OTLP partial success: some points were refused
            raise RuntimeError(f"partial success: {payload[:500]!r}")
        return points

    post(requests[0])
    ready.wait()
    began = time.perf_counter()
    accepted = sum(post(request) for request in requests[1:])
    results.put((began, time.perf_counter(), accepted))
    sock.close()


def run_http(url: str, key: str, bodies: list[bytes], connections: int, protocol: str = "json",
             points: int = 0) -> tuple[int, float]:
    """Points accepted and seconds taken by `connections` clients, each with its share of the bodies
    (plus one warm-up body each), from when all are connected to when the last one is done."""
    ready = multiprocessing.Barrier(connections + 1)
    results = multiprocessing.Queue()
    shards = [bodies[i::connections] for i in range(connections)]
    clients = [multiprocessing.Process(target=_client, args=(url, key, shard, ready, results, protocol, points))
               for shard in shards]
    for client in clients:
        client.start()
    ready.wait()
    finished = [results.get(timeout=600) for _ in clients]
    for client in clients:
        client.join()
    began = min(f[0] for f in finished)
    ended = max(f[1] for f in finished)
    return sum(f[2] for f in finished), ended - began


def _django():
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")
    django.setup()


def bench_key(run_tag: str, inflight: int | None = None) -> str:
    """An ingest key of a new tenant; `inflight`: its INGEST_INFLIGHT_PER_TENANT, so that many connections
    measure ingest rather than the tenant's share."""
    _django()
    from tenants.services import api_key_issue, tenant_create

    tenant = tenant_create(slug=f"bench-ingest-{run_tag}")
    if inflight:
        tenant.limits = {**tenant.limits, "INGEST_INFLIGHT_PER_TENANT": inflight}
        tenant.save(update_fields=["limits"])
    return api_key_issue(tenant=tenant, scope="ingest").plaintext


def run_copy(rows: int, series: int, start: datetime) -> float:
    _django()
    from django.db import connection

    buffer = io.StringIO()
    for b in range(rows // series):
        ts = (start + timedelta(milliseconds=b)).isoformat(timespec="milliseconds")
        for s in range(series):
            buffer.write(f"1\t{s}\t{ts}\t{float((b * 31 + s) % 1000) / 10.0!r}\n")
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_copy_points")
        cursor.execute("CREATE TABLE bench_copy_points (tenant_id bigint NOT NULL, series_id bigint NOT NULL, "
                       "ts timestamptz NOT NULL, value double precision NOT NULL)")
        cursor.execute("CREATE UNIQUE INDEX ON bench_copy_points (series_id, ts)")
        buffer.seek(0)
        started = time.perf_counter()
        cursor.cursor.copy_expert("COPY bench_copy_points FROM STDIN", buffer)
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_copy_points")
    return elapsed


def _median(values):
    return sorted(values)[len(values) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--batches", type=int, default=300, help="batches of --series events per round (default 300)")
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="alternating HTTP and COPY rounds; medians reported")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="json")
    args = parser.parse_args()
    run_tag = f"b{int(time.time())}"
    key = bench_key(run_tag, inflight=args.connections)  # ingest measured, not one tenant's share of it
    http_rates, copy_rates = [], []
    for round_number in range(args.rounds):
        # Each round's timestamps start at the current time and are a millisecond apart, as a live
        # agent's are current: detection leaves points younger than its settle time alone, so none
        # lands behind a watermark while the round runs (late points are a different workload).
        start = datetime.now(timezone.utc)
        bodies = PROTOCOLS[args.protocol][0](args.batches + args.connections, args.series, start, run_tag)
        accepted, http_seconds = run_http(args.url, key, bodies, args.connections, args.protocol, args.series)
        http_rates.append(accepted / http_seconds)
        copy_seconds = run_copy(args.batches * args.series, args.series, start)
        copy_rates.append(args.batches * args.series / copy_seconds)
        print(f"round {round_number + 1}: HTTP ({args.protocol}) {http_rates[-1]:,.0f} points/s, COPY {copy_rates[-1]:,.0f} rows/s")
    http_rate, copy_rate = _median(http_rates), _median(copy_rates)
    print(f"HTTP ingest ({args.protocol}): {http_rate:,.0f} points/s (median of {args.rounds}; {args.connections} keep-alive "
          f"connections, {args.series} events per request, {args.batches} requests per round)")
    print(f"raw COPY:    {copy_rate:,.0f} rows/s (median of {args.rounds}, one connection, narrow table)")
    print(f"ratio HTTP / COPY = {http_rate / copy_rate:.2f}")


if __name__ == "__main__":
    main()
