"""The product sketch's curl flow, over real HTTP against a live server, with two tenants."""
import json
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from tenants.services import api_key_issue, tenant_create
from tests.helpers import event, iso, steady_then_spike


def _call(base, method, path, key=None, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.django_db(transaction=True)
def test_the_sketch_flow_end_to_end_over_http(live_server):
    base = live_server.url
    key = api_key_issue(tenant=tenant_create(slug="tenant-1"), scope="all").plaintext
    other = api_key_issue(tenant=tenant_create(slug="tenant-2"), scope="all").plaintext

    # The sketch's ingest example.
    status, body = _call(base, "POST", "/api/v1/ingest/metrics", key, {"events": [event(180.0, "2025-01-01T00:00:00Z")]})
    assert (status, body) == (202, {"accepted": 1, "duplicates": 0, "rejected": []})

    # 2,000 one-minute points of a steady series ending now, then a spike.
    events = steady_then_spike(count=2001, resource_id="i-live")
    for start in range(0, len(events), 1000):
        status, body = _call(base, "POST", "/api/v1/ingest/metrics", key, {"events": events[start:start + 1000]})
        assert status == 202 and body["accepted"] == len(events[start:start + 1000])
    now = datetime.now(timezone.utc)
    five = [event(v, now - timedelta(minutes=5 - i), resource_id="i-five") for i, v in enumerate([1, 1, 1, 1, 999])]
    _call(base, "POST", "/api/v1/ingest/metrics", key, {"events": five})

    status, run = _call(base, "POST", "/api/v1/process/run", key)
    assert status == 200
    assert run["points_processed"] >= 2000 and run["anomalies_created"] >= 1

    status, anomalies = _call(base, "GET", "/api/v1/anomalies", key)
    assert status == 200
    spike = next(a for a in anomalies["results"] if a["resource_id"] == "i-live" and a["value"] == 500.0)
    assert all(spike[f] is not None for f in ("expected", "lower", "upper", "score", "detector", "reason"))
    assert not [a for a in anomalies["results"] if a["resource_id"] == "i-five"]

    status, again = _call(base, "POST", "/api/v1/process/run", key)
    assert again["anomalies_created"] == 0

    status, resent = _call(base, "POST", "/api/v1/ingest/metrics", key, {"events": events[:1000]})
    assert (status, resent["accepted"], resent["duplicates"]) == (202, 0, 1000)

    status, read = _call(base, "GET", "/api/v1/metrics/timeseries?service=ec2&metric_name=cpu_utilization"
                         "&resource_id=i-live&minutes=60", key)
    assert len(read["series"][0]["points"]) == 60

    for path in ("/api/v1/anomalies", "/api/v1/series", "/api/v1/baselines",
                 "/api/v1/metrics/timeseries?service=ec2&metric_name=cpu_utilization&minutes=100000"):
        status, seen = _call(base, "GET", path, other)
        assert status == 200 and not (seen.get("results") or seen.get("series")), path
    status, _ = _call(base, "GET", f"/api/v1/process/runs/{run['run_id']}", other)
    assert status == 404

    raw = ('{"events": [' + json.dumps(event(1.0, iso(now))) + "," +
           json.dumps(event(2.0, iso(now - timedelta(seconds=1)))).replace("2.0", "NaN") + "]}").encode()
    status, body = _call(base, "POST", "/api/v1/ingest/metrics", key, raw=raw)
    assert status == 202 and body["accepted"] == 1 and body["rejected"][0]["index"] == 1

    status, body = _call(base, "POST", "/api/v1/ingest/metrics", key, raw=b"{oops")
    assert status == 400 and body["detail"]

    status, _ = _call(base, "GET", "/healthz")
    assert status == 200
    with urllib.request.urlopen(base + "/api/schema/?format=json") as response:
        schema = json.loads(response.read())
    assert "/api/v1/ingest/metrics" in schema["paths"] and "/api/v1/anomalies" in schema["paths"]
