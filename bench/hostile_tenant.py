"""One tenant's hostile agent requests against another tenant's ingest latency and the workers' memory
(issue 22's acceptance; the security review of 2026-12-03, findings 1 and 2).

1. Tenant B's one-event JSON ingest, sequential: p50/p99 while idle.
2. The same while tenant A sends the review's amplification bodies (5 KB gzip OTLP protobuf of
   2.6M empty histogram points, OTLP JSON of 1.7M empty points, 2.5M valueless gauge points,
   remote write of 2.6M empty samples) from --attackers concurrent connections: first each
   sending one request every --pause seconds (the review's "four requests"), then flat out (which
   saturates the 2 cores as four agents sending maximal valid batches would: that is load
   isolation's business, not amplification's).
3. The web workers' RSS before, after --hostile requests that each carry a 4 MB resource
   attribute or label value (the cache finding) and the bodies above, and after a pause.

usage: make run (in another shell), then
       .venv/bin/python bench/hostile_tenant.py --url http://127.0.0.1:8000 [--attackers 4] [--hostile 100]
"""
import argparse
import gzip
import http.client
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

import cramjam

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.ingest_http import bench_key, make_otlp_batches  # noqa: E402  (bench_key sets Django up)


def _varint(number: int) -> bytes:
    out = b""
    while True:
        low, number = number & 0x7F, number >> 7
        if not number:
            return out + bytes([low])
        out += bytes([low | 0x80])


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def amplification_bodies() -> list[tuple[str, bytes, dict]]:
    """(path, body, headers) of the review's reproductions."""
    protobuf, gz = {"Content-Type": "application/x-protobuf"}, {"Content-Encoding": "gzip"}
    histogram = _field(1, _field(2, _field(2, _field(1, b"m") + _field(9, b"\x0a\x00" * 2_600_000))))
    valueless = _field(1, _field(2, _field(2, _field(1, b"m") + _field(5, b"\x0a\x00" * 2_500_000))))
    json_points = (b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":['
                   + b",".join([b"{}"] * 1_700_000) + b"]}}]}]}]}")
    samples = _field(1, _field(1, _field(1, b"__name__") + _field(2, b"m")) + b"\x12\x00" * 2_600_000)
    return [
        ("/v1/metrics", gzip.compress(histogram), {**protobuf, **gz}),
        ("/v1/metrics", gzip.compress(valueless), {**protobuf, **gz}),
        ("/v1/metrics", gzip.compress(json_points), {"Content-Type": "application/json", **gz}),
        ("/api/v1/write", bytes(cramjam.snappy.compress_raw(samples)), {**protobuf, "Content-Encoding": "snappy"}),
    ]


def big_identity_bodies(count: int) -> list[tuple[str, bytes, dict]]:
    """OTLP requests with a distinct 4 MB resource attribute each, and remote writes with a 4 MB label value."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from metrics.protocols.remote_write_pb2 import WriteRequest

    bodies, now_ns = [], int(time.time() - 120) * 1_000_000_000
    for i in range(count):
        if i % 2 == 0:
            request = ExportMetricsServiceRequest()
            resource_metrics = request.resource_metrics.add()
            for key, value in (("service.name", "s"), ("big", f"{i:08d}" + "a" * 4_000_000)):
                resource_metrics.resource.attributes.add(key=key).value.string_value = value
            resource_metrics.scope_metrics.add().metrics.add(name="m").gauge.data_points.add(
                time_unix_nano=now_ns, as_double=1.0)
            bodies.append(("/v1/metrics", gzip.compress(request.SerializeToString()),
                           {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}))
        else:
            request = WriteRequest()
            series = request.timeseries.add()
            for name, value in (("__name__", "m"), ("big", f"{i:08d}" + "a" * 4_000_000)):
                series.labels.add(name=name, value=value)
            series.samples.add(timestamp=now_ns // 1_000_000, value=1.0)
            bodies.append(("/api/v1/write", bytes(cramjam.snappy.compress_raw(request.SerializeToString())),
                           {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}))
    return bodies


def _post(connection, path: str, body: bytes, headers: dict) -> int:
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status


def tenant_b_latencies(url: str, key: str, requests: int) -> list[float]:
    target = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies = []
    for i in range(requests):
        ts = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body = (b'{"events": [{"source": "bench", "service": "b", "resource_id": "r", "metric_name": "one", '
                b'"value": %d, "timestamp": "%s"}]}' % (i, ts.encode()))
        began = time.perf_counter()
        status = _post(connection, "/api/v1/ingest/metrics", body, headers)
        latencies.append(time.perf_counter() - began)
        assert status == 202, status
        time.sleep(0.01)
    return latencies


def attacker(url: str, key: str, bodies: list, stop: threading.Event, statuses: list, pause: float) -> None:
    target = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
    i = 0
    while not stop.is_set():
        path, body, headers = bodies[i % len(bodies)]
        try:
            statuses.append(_post(connection, path, body, {**headers, "Authorization": f"Bearer {key}"}))
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            statuses.append("error")
        i += 1
        stop.wait(pause)


def under_attack(args, key_a: str, key_b: str, bodies: list, pause: float) -> tuple[list[float], list]:
    stop, statuses = threading.Event(), []
    attackers = [threading.Thread(target=attacker, args=(args.url, key_a, bodies, stop, statuses, pause))
                 for _ in range(args.attackers)]
    for thread in attackers:
        thread.start()
    time.sleep(1)
    loaded = tenant_b_latencies(args.url, key_b, args.requests)
    stop.set()
    for thread in attackers:
        thread.join()
    return loaded, statuses


def web_worker_rss_mb() -> float:
    """Resident memory of every gunicorn process (the master and its workers), in MB."""
    output = subprocess.run(["ps", "-eo", "rss,args"], capture_output=True, text=True).stdout
    return sum(int(line.split()[0]) for line in output.splitlines()[1:] if "gunicorn" in line and "cloudwatchdog" in line) / 1024


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--attackers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200, help="tenant B's requests per phase")
    parser.add_argument("--hostile", type=int, default=100, help="requests of the memory phase")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between one attacker's requests, first phase")
    args = parser.parse_args()
    run_tag = f"hostile{int(time.time())}"
    key_a, key_b = bench_key(run_tag + "a"), bench_key(run_tag + "b")

    tenant_b_latencies(args.url, key_b, 20)  # warm every worker's caches
    idle = tenant_b_latencies(args.url, key_b, args.requests)
    idle_p99 = _percentile(idle, 0.99)
    print(f"tenant B one-event ingest idle: p50 {_percentile(idle, 0.5) * 1000:.1f} ms p99 {idle_p99 * 1000:.1f} ms")
    valid = [("/v1/metrics", body, {"Content-Type": "application/x-protobuf"})
             for body in make_otlp_batches(200, 1000, datetime.now(timezone.utc) - timedelta(minutes=20), run_tag)]
    phases = [(f"{args.attackers} attackers, {args.pause} s between each one's requests", amplification_bodies(),
               args.pause),
              (f"{args.attackers} attackers flat out", amplification_bodies(), 0.0),
              (f"for comparison, {args.attackers} agents flat out sending valid 1,000-point OTLP batches", valid, 0.0)]
    for name, bodies, pause in phases:
        loaded, statuses = under_attack(args, key_a, key_b, bodies, pause)
        loaded_p99 = _percentile(loaded, 0.99)
        print(f"  under {name}: p50 {_percentile(loaded, 0.5) * 1000:.1f} ms p99 {loaded_p99 * 1000:.1f} ms "
              f"({loaded_p99 / idle_p99:.2f}x idle); tenant A's answers "
              f"{ {status: statuses.count(status) for status in sorted(set(statuses), key=str)} }")

    time.sleep(3)
    before = web_worker_rss_mb()
    hostile = big_identity_bodies(args.hostile // 2) + (amplification_bodies() * (args.hostile // 8 + 1))
    target = urllib.parse.urlsplit(args.url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
    answers = [_post(connection, path, body, {**headers, "Authorization": f"Bearer {key_a}"})
               for path, body, headers in hostile[: args.hostile]]
    after = web_worker_rss_mb()
    time.sleep(10)
    settled = web_worker_rss_mb()
    print(f"web workers' RSS: {before:.0f} MB before, {after:.0f} MB after {len(answers)} hostile requests, "
          f"{settled:.0f} MB 10 s later (answers { {a: answers.count(a) for a in sorted(set(answers))} })")


if __name__ == "__main__":
    main()
