"""Acceptance (issue 25): the OpenTelemetry JavaScript SDK (from npm, on Debian's Node) exports a gauge, a
counter and a histogram through both of its OTLP/HTTP exporters, JSON and protobuf, to the app under
gunicorn (the SDK may send chunked bodies, which Django's own server cannot read); everything reads
back through our API, every histogram bucket included, delta temporality reads as cumulative, and the
histogram's 0.9 quantile comes out of histogram_quantile through the Prometheus API."""
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tenants.services import api_key_issue, tenant_create
from tests.helpers import app_gunicorn, apt_install

OTEL_JS = Path(__file__).resolve().parent / "otel_js"
# What export.js records in each of its two rounds, and the SDK's default explicit bounds.
LATENCIES_MS = [3, 7, 12, 30, 60, 80, 300, 350, 400, 450]
DEFAULT_BOUNDS = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000]
RESOURCE_TAGS = {"deployment.environment": "ci"}
RUNS = (("json", "shop-json", "cumulative"), ("proto", "shop-proto", "cumulative"), ("proto", "shop-delta", "delta"))


@pytest.fixture(scope="session")
def node() -> str:
    """Node with the SDK installed from tests/otel_js's lockfile: Debian's nodejs and npm are installed
    when missing and `npm ci` runs when node_modules is, as on CI's clean clone."""
    for command, package in (("node", "nodejs"), ("npm", "npm")):
        if not shutil.which(command):
            apt_install(package)
    if not (OTEL_JS / "node_modules").is_dir():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=OTEL_JS, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    return shutil.which("node")


def _read(base: str, key: str, path: str, **params) -> dict:
    request = urllib.request.Request(f"{base}{path}?{urllib.parse.urlencode(params)}",
                                     headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _values(base: str, key: str, service: str, metric_name: str, **params) -> dict:
    """{le (None for other series): (tags without le, [values])} of a service's series of that name."""
    answer = _read(base, key, "/api/v1/metrics/timeseries", service=service, metric_name=metric_name, minutes=30,
                   **params)
    return {s["tags"].pop("le", None): (s["tags"], [p["value"] for p in s["points"]]) for s in answer["series"]}


def _at_or_below(bound: float, times: int = 1) -> float:
    return float(times * sum(1 for value in LATENCIES_MS if value <= bound))


@pytest.mark.django_db(transaction=True)
def test_the_javascript_sdk_exports_through_both_exporters_and_everything_reads_back(node, tmp_path):
    key = api_key_issue(tenant=tenant_create(slug="otel-js"), scope="all").plaintext
    with app_gunicorn(tmp_path / "gunicorn.log", workers=2) as port:
        base = f"http://127.0.0.1:{port}"
        exporters = [subprocess.Popen([node, "export.js", encoding, base, service, temporality], cwd=OTEL_JS,
                                      env={**os.environ, "CWD_KEY": key}, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True) for encoding, service, temporality in RUNS]
        for run, exporter in zip(RUNS, exporters):
            output, _ = exporter.communicate(timeout=120)
            assert exporter.returncode == 0, (run, output)
        for _, service, temporality in RUNS:
            _check_service(base, key, service, delta=temporality == "delta")


def _check_service(base: str, key: str, service: str, *, delta: bool) -> None:
    listed = _read(base, key, "/api/v1/series", service=service, limit=100)["results"]
    assert {(s["metric_name"], s["resource_id"], s["kind"], s["unit"]) for s in listed} == {
        ("room.temperature", "web-1", "gauge", "Cel"), ("http.requests", "web-1", "counter", "{request}"),
        ("http.server.duration_bucket", "web-1", "counter", "1"), ("http.server.duration_count", "web-1", "counter", "1"),
        ("http.server.duration_sum", "web-1", "counter", "ms"),
    }, service
    assert len(listed) == 4 + len(DEFAULT_BOUNDS) + 1  # a series per le, +Inf included

    # Three exports (two flushes and one at shutdown); a delta exporter sends the counter and histogram
    # only when they changed, and its increases are stored as running totals.
    cumulative = [1, 2] if delta else [1, 2, 2]
    assert _values(base, key, service, "room.temperature") == {None: ({**RESOURCE_TAGS, "room": "a"},
                                                                      [21.5, 22.0, 22.5])}
    route = {**RESOURCE_TAGS, "route": "/cart"}
    assert _values(base, key, service, "http.requests") == {None: (route, [5.0, 8.0, 8.0][:len(cumulative)])}
    increases = _values(base, key, service, "http.requests", fn="increase")[None][1]
    assert increases == [3.0, 0.0][:len(cumulative) - 1]
    buckets = _values(base, key, service, "http.server.duration_bucket")
    expected = {str(bound): (route, [_at_or_below(bound, times) for times in cumulative]) for bound in DEFAULT_BOUNDS}
    expected["+Inf"] = (route, [float(len(LATENCIES_MS) * times) for times in cumulative])
    assert buckets == expected
    assert buckets["500"][1][-1] == 20.0 and buckets["250"][1][-1] == 12.0  # the 0.9 quantile's bucket
    assert _values(base, key, service, "http.server.duration_count") == {
        None: (route, [float(len(LATENCIES_MS) * times) for times in cumulative])}
    assert _values(base, key, service, "http.server.duration_sum") == {
        None: (route, [float(sum(LATENCIES_MS) * times) for times in cumulative])}

    # The Prometheus API reads the buckets with the labels a PromQL histogram needs.
    answer = _read(base, key, "/prometheus/api/v1/series", **{"match[]": f'{{__name__="http.server.duration_bucket",'
                                                                         f'job="{service}"}}'})
    assert answer["status"] == "success"
    assert sorted(answer["data"], key=lambda labels: float(labels["le"])) == [
        {"__name__": "http.server.duration_bucket", "job": service, "instance": "web-1",
         "deployment_environment": "ci", "route": "/cart", "le": le}
        for le in [*map(str, DEFAULT_BOUNDS), "+Inf"]]

    # Percentiles through PromQL. Every round records the same latencies, so each bucket's cumulative
    # counts are c, 2c (, 2c): rate() extrapolates them all by one factor, and the 0.9 quantile is that
    # of one round: rank 9 of 10 falls in (250, 500], which holds 4 values above the 6 below it.
    expected_p90 = 250 + (500 - 250) * (0.9 * len(LATENCIES_MS) - 6) / 4
    assert expected_p90 == 437.5
    buckets = f'{{__name__="http.server.duration_bucket",job="{service}"}}'
    by_series = _query(base, key, f"histogram_quantile(0.9, rate({buckets}[1m]))")
    assert by_series == [({"job": service, "instance": "web-1", "deployment_environment": "ci", "route": "/cart"},
                          pytest.approx(expected_p90, rel=1e-9))]
    summed = _query(base, key, f"histogram_quantile(0.9, sum by (le) (rate({buckets}[1m])))")
    assert summed == [({}, pytest.approx(expected_p90, rel=1e-9))]


def _query(base: str, key: str, expression: str) -> list[tuple[dict, float]]:
    """(labels, value) of each series of an instant query at now, through the Prometheus API."""
    answer = _read(base, key, "/prometheus/api/v1/query", query=expression)
    assert (answer["status"], answer["data"]["resultType"]) == ("success", "vector"), answer
    return [(item["metric"], float(item["value"][1])) for item in answer["data"]["result"]]
