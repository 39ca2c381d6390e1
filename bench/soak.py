"""Soak: `make run`'s whole stack under a bounded mixed load while its parts restart; nothing lost.

usage: .venv/bin/python bench/soak.py [--minutes 10] [--agents 50]

Starts the stack itself (scripts/serve.py, embedded PostgreSQL and Redis in a data directory of
its own, on a free port), then for --minutes: --agents simulated agents each send a batch of
SERIES_PER_AGENT points every two seconds over a keep-alive connection, retrying the same batch
after Retry-After on 429/503 as exporters do; readers page series and anomalies and read series;
an async detection run is requested every 10 s (beat runs its own every minute). At 20%, 45% and
70% of the time Redis is stopped for 10 s, PostgreSQL is restarted, and a Celery worker process
is killed (-9). At the end every point answered 202 is read back through the API.

Prints points sent, accepted (answered 202), read back, lost, duplicated, the 5xx answers inside
and outside the restart windows, and whether every 503 had Retry-After. Not part of make test.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERIES_PER_AGENT = 50
INTERVAL = 2.0


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.accepted: dict[tuple[str, str], set[str]] = {}  # (service, resource) -> timestamps answered 202
        self.statuses: Counter = Counter()
        self.server_errors: list[tuple[float, int, str]] = []
        self.unavailable_without_retry_after = 0
        self.windows: list[tuple[float, float, str]] = []

    def answer(self, status: int, retry_after: str | None, path: str) -> None:
        with self.lock:
            self.statuses[status] += 1
            if status >= 500:
                self.server_errors.append((time.monotonic(), status, path))
                if status == 503 and not retry_after:
                    self.unavailable_without_retry_after += 1


class Client:
    """One keep-alive connection, reconnecting when the server closes it or is away."""

    def __init__(self, port: int, key: str):
        self.port, self.key = port, key
        self.connection = None

    def call(self, method: str, path: str, body=None) -> tuple[int, str | None, dict]:
        for _ in range(2):
            try:
                if self.connection is None:
                    self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                self.connection.request(method, path, json.dumps(body) if body is not None else None,
                                        {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
                response = self.connection.getresponse()
                payload = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, response.getheader("Retry-After"), json.loads(payload or b"null")
            except (OSError, http.client.HTTPException):
                self.close()
        return 0, None, {}

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def agent(number: int, client: Client, stats: Stats, stop: threading.Event) -> None:
    service = f"soak-{number}"
    while not stop.is_set():
        started = time.monotonic()
        now = datetime.now(timezone.utc).replace(microsecond=0)
        events = [{"service": service, "resource_id": f"r{s}", "metric_name": "load", "value": float((s * 7 + now.second) % 100),
                   "timestamp": iso(now)} for s in range(SERIES_PER_AGENT)]
        with stats.lock:
            stats.sent += len(events)
        for _ in range(60):  # the same batch until it is taken, as an exporter retries it
            status, retry_after, body = client.call("POST", "/api/v1/ingest/metrics", {"events": events})
            stats.answer(status, retry_after, "ingest")
            if status == 202:
                with stats.lock:
                    for item in events:
                        stats.accepted.setdefault((service, item["resource_id"]), set()).add(item["timestamp"])
                break
            if status in (429, 503) or status == 0:
                time.sleep(min(float(retry_after or 1), 2.0))
                continue
            print(f"agent {number}: unexpected {status} {body}", file=sys.stderr)
            break
        stop.wait(max(0.0, INTERVAL - (time.monotonic() - started)))


def reader(client: Client, stats: Stats, stop: threading.Event) -> None:
    paths = ["/api/v1/series?limit=100", "/api/v1/anomalies?limit=50", "/api/v1/baselines?limit=50",
             "/api/v1/metrics/timeseries?service=soak-1&metric_name=load&minutes=10",
             "/api/v1/metrics/timeseries?service=soak-2&metric_name=load&minutes=60&step=1m"]
    k = 0
    while not stop.is_set():
        path = paths[k % len(paths)]
        status, retry_after, _ = client.call("GET", path)
        stats.answer(status, retry_after, path.split("?")[0])
        k += 1
        stop.wait(0.5)


def async_runs(client: Client, stats: Stats, stop: threading.Event) -> None:
    while not stop.wait(10):
        status, retry_after, _ = client.call("POST", "/api/v1/process/run?async=true")
        stats.answer(status, retry_after, "process/run?async")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker_children(data_dir: Path) -> list[int]:
    master = int((data_dir / "run" / "worker.pid").read_text())
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--agents", type=int, default=50)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="cwd-soak-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(CLOUDWATCHDOG_DATA_DIR=str(data_dir), PORT=str(port))
    os.environ["CLOUDWATCHDOG_DATA_DIR"] = str(data_dir)
    from cloudwatchdog import embedded

    log = open(data_dir / "serve.log", "w")
    stack = subprocess.Popen([sys.executable, "scripts/serve.py"], cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while not (match := re.search(r"^(cwd_all_\w+)$", (data_dir / "serve.log").read_text(), re.M)):
        if stack.poll() is not None or time.monotonic() > deadline:
            print((data_dir / "serve.log").read_text()[-3000:], file=sys.stderr)
            return 1
        time.sleep(0.5)
    key = match.group(1)
    time.sleep(3)  # the roles boot
    print(f"stack up on port {port}, data in {data_dir}; {args.agents} agents for {args.minutes} min", flush=True)

    stats, stop = Stats(), threading.Event()
    threads = [threading.Thread(target=agent, args=(n, Client(port, key), stats, stop)) for n in range(args.agents)]
    threads += [threading.Thread(target=reader, args=(Client(port, key), stats, stop)) for _ in range(3)]
    threads.append(threading.Thread(target=async_runs, args=(Client(port, key), stats, stop)))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    total = args.minutes * 60

    def at(share: float) -> None:
        while time.monotonic() - started < share * total:
            time.sleep(0.2)

    at(0.20)
    begin = time.monotonic()
    os.kill(int((data_dir / "redis.pid").read_text()), signal.SIGTERM)
    time.sleep(10)
    embedded.redis_url(ROOT)  # started again, as an operator would
    stats.windows.append((begin, time.monotonic() + 5, "redis stopped 10 s"))
    print("redis stopped and started again", flush=True)
    at(0.45)
    begin = time.monotonic()
    embedded.postgres_restart(ROOT)
    stats.windows.append((begin, time.monotonic() + 5, "postgresql restarted"))
    print("postgresql restarted", flush=True)
    at(0.70)
    victims = _worker_children(data_dir)
    begin = time.monotonic()
    os.kill(victims[0], signal.SIGKILL)
    stats.windows.append((begin, time.monotonic() + 5, "celery worker process killed"))
    print(f"celery worker process {victims[0]} killed", flush=True)
    at(1.0)
    stop.set()
    for thread in threads:
        thread.join()

    reader_client = Client(port, key)
    read_back, duplicated = 0, 0
    lost: list[tuple[str, str, str]] = []
    for number in range(args.agents):
        service = f"soak-{number}"
        status, _, body = reader_client.call(
            "GET", f"/api/v1/metrics/timeseries?service={service}&metric_name=load"
                   f"&start={iso(datetime.now(timezone.utc) - timedelta(minutes=args.minutes + 10))}")
        assert status == 200, (status, body)
        stored: dict[str, list[str]] = {s["resource_id"]: [p["timestamp"] for p in s["points"]] for s in body["series"]}
        for (svc, resource), stamps in stats.accepted.items():
            if svc != service:
                continue
            have = stored.get(resource, [])
            read_back += len(set(have) & stamps)
            duplicated += len(have) - len(set(have))
            lost += [(svc, resource, ts) for ts in stamps - set(have)]
    accepted = sum(len(stamps) for stamps in stats.accepted.values())

    def inside(moment: float) -> bool:
        return any(low <= moment <= high for low, high, _ in stats.windows)

    outside = [(round(t - started, 1), status, path) for t, status, path in stats.server_errors if not inside(t)]
    report = {
        "minutes": args.minutes, "agents": args.agents, "points_sent": stats.sent, "points_accepted": accepted,
        "points_read_back": read_back, "points_lost": len(lost), "points_duplicated": duplicated,
        "answers": dict(sorted(stats.statuses.items())),
        "5xx_inside_restart_windows": sum(1 for t, _, _ in stats.server_errors if inside(t)),
        "5xx_outside_restart_windows": len(outside), "503_without_retry_after": stats.unavailable_without_retry_after,
        "faults": [label for _, _, label in stats.windows],
    }
    print(json.dumps(report, indent=2))
    if outside:
        print("5xx outside the windows:", outside[:20])
    if lost:
        print("lost (first 10):", lost[:10])

    os.killpg(stack.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it
    stack.wait(timeout=60)
    return 0 if not lost and not duplicated and not outside and not stats.unavailable_without_retry_after else 1


if __name__ == "__main__":
    sys.exit(main())
