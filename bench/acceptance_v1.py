"""Walk the V1 acceptance list against a running server (started by `make run`).

usage: .venv/bin/python bench/acceptance_v1.py --url http://127.0.0.1:8000 --key KEY --other-key KEY2
Prints one line per check and exits non-zero if any fails.
"""
import argparse
import json
import sys
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone


def call(base, method, path, key=None, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def event(value, ts, resource_id="i-accept"):
    return {"source": "acceptance", "service": "ec2", "resource_id": resource_id, "metric_name": "cpu_utilization",
            "value": value, "timestamp": iso(ts), "tags": {"env": "dev"}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--other-key", required=True)
    args = parser.parse_args()
    base, key, other = args.url.rstrip("/"), args.key, args.other_key
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}")

    status, body = call(base, "POST", "/api/v1/ingest/metrics", key, {"events": [{
        "source": "simulator", "service": "ec2", "resource_id": "i-test123", "metric_name": "cpu_utilization",
        "value": 180.0, "timestamp": "2025-01-01T00:00:00Z", "tags": {"env": "dev"}}]})
    check("sketch ingest example -> 202 accepted 1", status == 202 and body["accepted"] + body["duplicates"] == 1, body)

    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    events = [event(50.0 + (i % 7) * 0.5, now - timedelta(minutes=2000 - i)) for i in range(2000)]
    events.append(event(500.0, now))
    for start in range(0, len(events), 1000):
        status, body = call(base, "POST", "/api/v1/ingest/metrics", key, {"events": events[start:start + 1000]})
    five = [event(v, now - timedelta(minutes=5 - i), "i-five") for i, v in enumerate([1, 1, 1, 1, 999])]
    call(base, "POST", "/api/v1/ingest/metrics", key, {"events": five})
    status, run = call(base, "POST", "/api/v1/process/run", key)
    check("process/run reports >= 2000 points and >= 1 anomaly",
          status == 200 and run["points_processed"] >= 2000 and run["anomalies_created"] >= 1, run)
    status, page = call(base, "GET", "/api/v1/anomalies?resource_id=i-accept", key)
    spike = next((a for a in page["results"] if a["value"] == 500.0), None)
    check("the spike's anomaly has expected, lower, upper, score, detector and a reason",
          spike is not None and all(spike.get(f) is not None for f in ("expected", "lower", "upper", "score", "detector"))
          and spike["reason"].endswith("."), spike and spike["reason"])
    status, page = call(base, "GET", "/api/v1/anomalies?resource_id=i-five", key)
    check("a series of five points raises nothing", page["results"] == [])
    status, again = call(base, "POST", "/api/v1/process/run", key)
    check("a second run creates nothing", again["anomalies_created"] == 0, again)
    status, body = call(base, "POST", "/api/v1/ingest/metrics", key, {"events": events[:500]})
    check("re-sent events count as duplicates", body["accepted"] == 0 and body["duplicates"] == 500, body)
    status, read = call(base, "GET", "/api/v1/metrics/timeseries?service=ec2&metric_name=cpu_utilization"
                        "&resource_id=i-accept&minutes=60", key)
    check("minutes=60 returns the last 60 points", len(read["series"][0]["points"]) == 60,
          len(read["series"][0]["points"]))
    seen = [call(base, "GET", p, other)[1] for p in ("/api/v1/anomalies", "/api/v1/series", "/api/v1/baselines")]
    check("a second tenant's key sees none of it", all(not s["results"] for s in seen))
    raw = ('{"events": [' + json.dumps(event(1.0, now, "i-nan")) + "," +
           json.dumps(event(2.0, now - timedelta(seconds=30), "i-nan")).replace("2.0", "NaN") + "]}").encode()
    status, body = call(base, "POST", "/api/v1/ingest/metrics", key, raw=raw)
    check("a NaN event is rejected by index while its neighbour is stored",
          status == 202 and body["accepted"] + body["duplicates"] == 1 and body["rejected"][0]["index"] == 1
          and call(base, "GET", "/api/v1/metrics/timeseries?service=ec2&metric_name=cpu_utilization"
                   "&resource_id=i-nan&minutes=5", key)[1]["series"][0]["points"][-1]["value"] == 1.0, body)
    status, body = call(base, "POST", "/api/v1/ingest/metrics", key, raw=b"{not json")
    check("a malformed body gets a JSON 400", status == 400 and "detail" in body, body)
    with urllib.request.urlopen(base + "/api/schema/") as response:
        check("/api/schema/ answers", response.status == 200)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
