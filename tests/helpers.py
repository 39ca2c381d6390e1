"""What tests share besides fixtures: an API client with a tenant's key, events and series shapes, the
environment of an app process, bounded waits and package installs. Tests import these from here;
conftest.py holds only the fixtures."""
import contextlib
import gzip
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.test import Client


class ApiClient:
    """Django's test client with a tenant's key: every call goes through the middleware and DRF."""

    def __init__(self, key: str | None, tenant=None, *, raise_request_exception=True):
        self.key = key
        self.tenant = tenant
        # raise_request_exception=False: see the response Django's handlers make of an exception.
        self.client = Client(raise_request_exception=raise_request_exception)

    def _headers(self, extra):
        headers = {}
        if self.key:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {self.key}"
        headers.update(extra)
        return headers

    def get(self, path, params=None, **extra):
        return self.client.get(path, params or {}, **self._headers(extra))

    def post(self, path, body=None, *, raw: bytes | None = None, gzip_body=False, **extra):
        data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        if gzip_body:
            data = gzip.compress(data)
            extra["HTTP_CONTENT_ENCODING"] = "gzip"
        return self.client.generic("POST", path, data, content_type="application/json", **self._headers(extra))

    def ingest(self, events, **extra):
        return self.post("/api/v1/ingest/metrics", {"events": events}, **extra)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def event(value=1.0, ts=None, *, metric_name="cpu_utilization", resource_id="i-test123", service="ec2", tags=None, **extra):
    item = {
        "source": "simulator", "service": service, "resource_id": resource_id, "metric_name": metric_name,
        "value": value, "timestamp": ts if isinstance(ts, str) else iso(ts or datetime.now(timezone.utc)),
        "tags": tags if tags is not None else {"env": "dev"},
    }
    item.update(extra)
    return item


def steady_then_spike(*, count=2000, end=None, base=50.0, spike=500.0, step=timedelta(minutes=1), **kw):
    """`count` one-minute points of a gently varying series ending at `end`, the last one a spike."""
    end = end or datetime.now(timezone.utc).replace(second=0, microsecond=0)
    events = []
    for i in range(count):
        ts = end - (count - 1 - i) * step
        value = base + (i % 7) * 0.5 - 1.5
        events.append(event(value, ts, **kw))
    events[-1]["value"] = spike
    return events


def spiky_history(*, count=2600, spikes=(1500, 1950), end=datetime(2026, 1, 10, tzinfo=timezone.utc)):
    """A steady series ending at `end` with spikes at the given indices (and its last point): three anomalies."""
    events = steady_then_spike(count=count, end=end)
    for k in spikes:
        events[k]["value"] = 700.0
    return events


def daily_spikes(*, days=9, end=datetime(2026, 1, 10, tzinfo=timezone.utc), seed=5):
    """`days` UTC days of one-minute points ending before `end` (a midnight), noise around 20 and, from
    the second day on, a 5-minute spike of +40 at 03:00 ± 20 minutes: a nightly job."""
    rng = random.Random(seed)
    first = end - timedelta(days=days)
    values = [20 + rng.gauss(0, 1) for _ in range(days * 1440)]
    for day in range(1, days):
        start = day * 1440 + 180 + rng.randint(-20, 20)
        for minute in range(start, start + 5):
            values[minute] += 40
    return [event(value, first + timedelta(minutes=i)) for i, value in enumerate(values)]


def apt_install(package: str) -> None:
    """Install a Debian package for a test, as CI's clean machine (where the suite runs as root) needs."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(f"{package} is not installed and apt-get cannot install it here: apt-get install {package}.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)


def app_process_env(**extra) -> dict:
    """The environment for a process of the app (a gunicorn, a Celery worker) that shares this test's
    database and Redis: a transactional test's committed rows are what it sees."""
    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    url = f"postgresql://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or ''}:{db['PORT'] or ''}/{db['NAME']}"
    if db.get("OPTIONS", {}).get("host"):
        url = f"postgresql://{db['USER']}:@/{db['NAME']}?host={db['OPTIONS']['host']}"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    env.update(DATABASE_URL=url, REDIS_URL=settings.REDIS_URL, SECRET_KEY="app-process-test-" + "x" * 40, **extra)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def app_gunicorn(log_path: Path, *, workers: int = 1):
    """The app under gunicorn, as deployed (its config; it reads chunked bodies, which Django's own
    server cannot), on a free port, sharing this test's database and Redis: yields the port."""
    port = free_port()
    root = Path(__file__).resolve().parent.parent
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "cloudwatchdog.wsgi:application", "--config",
             "cloudwatchdog/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
            cwd=root, env=app_process_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert process.poll() is None and time.monotonic() < deadline, Path(log_path).read_text()
                    time.sleep(0.2)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=30)


def wait_for(predicate, timeout=30) -> bool:
    """Poll until `predicate()` holds (the database a worker writes to): a bounded wait, not a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
