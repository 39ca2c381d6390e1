"""Ingest admission (issue 26): a tenant's in-flight cap over every process (Redis), one Redis call on a
request's path, its end (slot freed, points and CPU charged) sent off the path."""
import http.client
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import psycopg2
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import override_settings

from cloudwatchdog.locks import Lock, xact_lock_sql
from metrics.services import ingest_admit, ingest_finishes_wait
from tenants.ratelimit import _inflight_key, inflight_ended
from tests.helpers import event
from tests.test_dependencies_down import own_redis  # noqa: F401 (a fixture)


def _redis():
    return redis.Redis.from_url(settings.REDIS_URL)


def _capped(client, cap: int):
    client.tenant.limits = {"INGEST_INFLIGHT_PER_TENANT": cap}
    client.tenant.save()
    return client


def _batch(points: int, resource: str = "r") -> list[dict]:
    now = datetime.now(timezone.utc)
    return [event(float(k), now - timedelta(milliseconds=k), resource_id=f"{resource}{k}") for k in range(points)]


class _Server:
    """One keep-alive connection to the live server, as an agent holds."""

    def __init__(self, url: str, key: str):
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.key = key

    def ingest(self, events) -> tuple[int, str | None, dict]:
        self.connection.request("POST", "/api/v1/ingest/metrics", json.dumps({"events": events}),
                                {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
        response = self.connection.getresponse()
        return response.status, response.getheader("Retry-After"), json.loads(response.read())


def test_a_tenant_at_its_cap_is_answered_429_while_another_is_admitted(make_tenant, live_server):
    tenant_a, tenant_b = _capped(make_tenant("inflight-a"), 1), _capped(make_tenant("inflight-b"), 1)
    held = []
    # A's first request waits in the view for the ingest lock this connection holds (as detection's
    # watermark pass does), its slot taken.
    blocker = psycopg2.connect(**connection.get_connection_params())
    with blocker.cursor() as cursor:
        cursor.execute(*xact_lock_sql(Lock.INGEST, tenant_a.tenant.id))
    first = threading.Thread(target=lambda: held.append(_Server(live_server.url, tenant_a.key).ingest(_batch(100))))
    first.start()
    deadline = time.monotonic() + 10
    while _redis().zcard(_inflight_key(tenant_a.tenant.id)) < 1:
        assert time.monotonic() < deadline, "A's first request never took its slot"
        time.sleep(0.02)
    try:
        status, retry_after, body = _Server(live_server.url, tenant_a.key).ingest(_batch(100, "second"))
        assert (status, retry_after) == (429, "1")
        assert "1 ingest requests in flight" in body["detail"] and "INGEST_INFLIGHT_PER_TENANT" in body["detail"]
        status, _, body = _Server(live_server.url, tenant_b.key).ingest(_batch(100))
        assert (status, body["accepted"]) == (202, 100)
        assert first.is_alive()  # A's first request was still in flight all along
    finally:
        blocker.rollback()
        blocker.close()
        first.join(timeout=30)
    assert held[0][0] == 202 and held[0][2]["accepted"] == 100
    assert _Server(live_server.url, tenant_a.key).ingest(_batch(100, "third"))[0] == 202  # its slot was freed


@pytest.mark.django_db
def test_a_slot_never_freed_frees_itself_after_its_ttl(make_tenant):
    owner = _capped(make_tenant(), 1)
    with override_settings(CLOUDWATCHDOG={**settings.CLOUDWATCHDOG, "INGEST_INFLIGHT_TTL_SECONDS": 3}):
        leaked = ingest_admit(tenant=owner.tenant)  # a worker killed before its request ended
        assert leaked.slot is not None
        refused = owner.ingest(_batch(1))
        assert refused.status_code == 429 and refused["Retry-After"] == "1"
        time.sleep(3.1)
        assert owner.ingest(_batch(1)).status_code == 202


@pytest.mark.django_db
def test_redis_stopped_admits(owner, own_redis):  # noqa: F811 (the fixture)
    _capped(owner, 1)
    assert ingest_admit(tenant=owner.tenant).slot is not None  # the one slot, held
    assert owner.ingest(_batch(1)).status_code == 429
    own_redis.kill()
    own_redis.wait()
    response = owner.ingest(_batch(3))
    assert response.status_code == 202 and response.json()["accepted"] == 3


class _RedisCalls:
    def __init__(self):
        self.on_path, self.thread = [], threading.get_ident()

    def __enter__(self):
        self.original = redis.Redis.execute_command
        calls = self

        def counted(client, *args, **options):
            if threading.get_ident() == calls.thread:
                calls.on_path.append(args[0])
            return calls.original(client, *args, **options)

        redis.Redis.execute_command = counted
        return self

    def __exit__(self, *exc):
        redis.Redis.execute_command = self.original


@pytest.mark.django_db
def test_a_100_point_ingest_makes_one_redis_call_on_its_path_and_is_charged_after(owner, settings):
    settings.INGEST_FINISH_IN_BACKGROUND = True
    owner.tenant.limits = {"POINTS_PER_SECOND": 1, "POINTS_BURST": 100_000}  # so a charge shows
    owner.tenant.save()
    assert owner.ingest(_batch(100)).status_code == 202  # the series are made, the scripts loaded
    ingest_finishes_wait()
    points_key = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:bucket:points:{owner.tenant.id}"
    before = float(_redis().hget(points_key, "t"))
    with _RedisCalls() as calls:
        assert owner.ingest(_batch(100)).status_code == 202
    assert calls.on_path == ["EVALSHA"]
    ingest_finishes_wait()
    assert _redis().zcard(_inflight_key(owner.tenant.id)) == 0  # the slot was freed, off the path
    assert float(_redis().hget(points_key, "t")) <= before - 99  # its points (or more, its CPU) charged


@pytest.mark.django_db
def test_a_100_point_ingest_of_known_series_takes_a_bounded_number_of_queries(owner, django_assert_max_num_queries):
    assert owner.ingest(_batch(100)).status_code == 202  # the series are made; the key touched
    # The ingest lock, the ingest log and the watermark in one statement (the COPY is not counted here),
    # between the test transaction's SAVEPOINT and RELEASE.
    with django_assert_max_num_queries(3):
        response = owner.ingest(_batch(100))
    assert response.status_code == 202 and response.json()["accepted"] == 100


@pytest.mark.django_db
def test_a_workers_ended_request_does_not_hold_its_next_while_its_finish_is_unsent(make_tenant):
    owner = _capped(make_tenant(), 1)
    ended = ingest_admit(tenant=owner.tenant)
    assert ingest_admit(tenant=owner.tenant).refusal == "inflight"
    inflight_ended(tenant_id=owner.tenant.id, member=ended.slot)  # its finish still queued
    assert ingest_admit(tenant=owner.tenant).slot is not None
