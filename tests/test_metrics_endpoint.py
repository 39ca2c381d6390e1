"""GET /metrics: promtool accepts it, it counts by tenant, protocol and reason, it sums several
gunicorn workers, and a scrape token guards it: required outside a development machine, checked when set."""
import http.client
import json
import re
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.test import Client, override_settings

from cloudwatchdog.settings import _loopback
from tenants.services import api_key_issue, tenant_create
from tests.helpers import app_process_env, event

ROOT = Path(__file__).resolve().parent.parent


def _sample(text: str, name: str, **labels) -> float:
    """The sum of a family's samples whose labels include the given ones."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


@pytest.mark.django_db
def test_promtool_accepts_the_exposition_and_points_are_counted_by_outcome_and_reason(make_tenant, prometheus_binaries,
                                                                                      settings):
    _, promtool = prometheus_binaries
    settings.METRICS_OPEN_WITHOUT_TOKEN = True  # as under make run (make test-external runs as production)
    client = make_tenant("scraped")
    now = datetime.now(timezone.utc)
    response = client.ingest([event(1.0, now), event(2.0, now), event(3.0, "2026-13-01T00:00:00Z"),
                              event(1e300, now, resource_id="i-2")])
    assert response.status_code == 202
    text = Client().get("/metrics").content.decode()
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    points = "cloudwatchdog_points_total"
    assert _sample(text, points, tenant="scraped", protocol="json", outcome="accepted") == 1
    assert _sample(text, points, tenant="scraped", protocol="json", outcome="duplicate") == 1
    assert _sample(text, points, tenant="scraped", protocol="json", outcome="rejected", reason="timestamp") == 1
    assert _sample(text, points, tenant="scraped", protocol="json", outcome="rejected", reason="value") == 1
    assert _sample(text, "cloudwatchdog_http_request_duration_seconds_count", endpoint="ingest-metrics",
                   method="POST", status="202") >= 1
    for gauge in ("cloudwatchdog_detection_lag_seconds", "cloudwatchdog_late_points_waiting",
                  "cloudwatchdog_rollup_backlog_batches", "cloudwatchdog_celery_queue_length"):
        assert f"# TYPE {gauge} gauge" in text
    assert _sample(text, "cloudwatchdog_rollup_backlog_batches", tenant="scraped") == 1
    for queue in settings.TASK_QUEUES.values():  # each of the worker roles' queues
        assert f'cloudwatchdog_celery_queue_length{{queue="{queue}"}}' in text
    assert _sample(text, "cloudwatchdog_collector_up") == 3 and "cloudwatchdog_collector_up{" in text


@pytest.mark.django_db
@pytest.mark.parametrize("open_without_token", [True, False])
def test_a_scrape_token_when_set_is_required(open_without_token):
    with override_settings(METRICS_SCRAPE_TOKEN="s3cret-scrape-token", METRICS_OPEN_WITHOUT_TOKEN=open_without_token):
        assert Client().get("/metrics").status_code == 401
        assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token").status_code == 200


@pytest.mark.django_db
def test_a_development_machine_answers_a_scrape_without_a_token():
    with override_settings(METRICS_SCRAPE_TOKEN="", METRICS_OPEN_WITHOUT_TOKEN=True):
        assert Client().get("/metrics").status_code == 200


# A process configured as in production (DATABASE_URL set), asked through Django's whole stack.
_SCRAPE = """
import sys
import django
django.setup()
from django.test import Client
for header in sys.argv[1:]:
    response = Client().get("/metrics", HTTP_HOST="localhost", HTTP_AUTHORIZATION=header)
    print(response.status_code, response.content.decode().splitlines()[0])
"""


def _production_scrapes(*headers, token: str) -> list[str]:
    env = app_process_env(METRICS_SCRAPE_TOKEN=token, BIND="127.0.0.1:8000")
    done = subprocess.run([sys.executable, "-c", _SCRAPE, *headers], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.django_db
def test_in_production_a_scrape_is_refused_naming_the_setting_until_the_token_is_set():
    refused = _production_scrapes("", "Bearer anything", token="")
    assert [line.split()[0] for line in refused] == ["403", "403"]
    assert "METRICS_SCRAPE_TOKEN" in refused[0]
    answered = _production_scrapes("", "Bearer wrong", "Bearer prod-token", token="prod-token")
    assert [line.split()[0] for line in answered] == ["401", "401", "200"]
    assert answered[2].startswith("200 # HELP ")


@pytest.mark.parametrize(("bind", "loopback"), [
    ("127.0.0.1:8000", True), ("[::1]:8000", True), ("localhost:8000", True), ("127.0.0.1", True),
    ("0.0.0.0:8000", False), ("[::]:8000", False), ("10.1.2.3:8000", False), ("cwd.example.com:8000", False),
    ("unix:/run/cloudwatchdog.sock", False),
])
def test_only_a_loopback_bind_counts_as_a_development_machine(bind, loopback):
    assert _loopback(bind) is loopback


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_counts_of_several_gunicorn_workers_add_up_in_every_scrape(tmp_path):
    key = api_key_issue(tenant=tenant_create(slug="multi"), scope="all").plaintext
    port = _free_port()
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    log = open(tmp_path / "gunicorn.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "cloudwatchdog.wsgi:application", "--config", "cloudwatchdog/gunicorn.conf.py",
         "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=ROOT, env=app_process_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), METRICS_SCRAPE_TOKEN="multi-token"),
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
                time.sleep(0.2)
        now = datetime.now(timezone.utc).replace(microsecond=0)

        def worker_pids() -> set[str]:
            return {path.stem.rpartition("_")[2] for path in metrics_dir.iterdir()}

        sent = 0
        # A connection each, until both workers have counted something (a worker still booting takes none).
        while sent < 20 or (len(worker_pids()) < 2 and sent < 400):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            body = json.dumps({"events": [event(float(sent), now - timedelta(milliseconds=sent))]})
            connection.request("POST", "/api/v1/ingest/metrics", body,
                               {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            assert connection.getresponse().status == 202
            connection.close()
            sent += 1
        assert len(worker_pids()) >= 2, worker_pids()
        for _ in range(6):  # whichever worker answers, it sums both
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", "/metrics", headers={"Authorization": "Bearer multi-token"})
            text = connection.getresponse().read().decode()
            connection.close()
            assert _sample(text, "cloudwatchdog_points_total", tenant="multi", outcome="accepted") == sent
    finally:
        process.terminate()
        process.wait(timeout=30)
