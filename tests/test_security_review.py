"""The reproductions of ../shared/reviews/security.md, each sent through the HTTP stack (Django's
handler, middleware and DRF), each asserting the documented answer. Tests are named after the
review's point (C1-C12 confirmed, S1-S7 suspected). Partitions (C1, C8) are in
metrics/tests/test_partitions.py, the admin walk (C7) in tests/test_admin_isolation.py."""
import json
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
from django.core.management import call_command
from django.db import connection

from cloudwatchdog.locks import Lock
from metrics.services import series_cache
from metrics.storage import rollups_refresh
from tests.helpers import event, iso, steady_then_spike

URL = "/api/v1/ingest/metrics"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _post_raw(client, raw: str):
    return client.post(URL, raw=raw.encode("utf-8", "surrogatepass"))


def _ev(service, **extra):
    return {"service": service, "resource_id": "r", "metric_name": "m", "value": 1, "timestamp": iso(NOW), **extra}


# C1: one point dated year 1 broke partition maintenance for every tenant.
def test_c1_a_point_in_year_one_is_refused_and_every_tenants_maintenance_and_ingest_go_on(owner, outsider):
    response = owner.ingest([_ev("s", timestamp="0001-01-01T00:00:00Z")])
    assert response.status_code == 400
    assert response.json()["rejected"][0]["errors"]["timestamp"][0].startswith("is before the earliest accepted")
    call_command("maintain_points")
    assert outsider.ingest([event(1.0, NOW)]).json()["accepted"] == 1


# C2: DATA_UPLOAD_MAX_MEMORY_SIZE=None let an unauthenticated POST to the admin load any body.
def test_c2_an_oversized_form_post_to_the_admin_is_refused_before_its_body_is_read(live_server):
    import socket
    from urllib.parse import urlsplit

    host, port = urlsplit(live_server.url).hostname, urlsplit(live_server.url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /admin/login/ HTTP/1.1\r\nHost: localhost\r\nCookie: csrftoken=" + b"a" * 32 + b"\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1073741824\r\n\r\n"
                     + b"a" * 65536)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


# C3: whitespace variants of one tag map filled the series cache without touching the series limit.
def test_c3_spellings_of_one_series_do_not_grow_the_series_cache(owner):
    series_cache.clear()
    for spaces in range(40):
        raw = ('{"events": [{"service": "s", "resource_id": "r", "metric_name": "m", "value": 1, "timestamp": "%s", '
               '"tags": {"a": "b"%s}}]}') % (iso(NOW - timedelta(seconds=spaces)), " " * (1000 + spaces))
        assert _post_raw(owner, raw).json()["accepted"] == 1
    assert len(owner.get("/api/v1/series").json()["results"]) == 1
    entries = series_cache.for_tenant(owner.tenant.id)
    assert len(entries.ids) == series_cache.VARIANTS_PER_SERIES
    assert series_cache.bytes_used() < 10 * 1024


def test_c3_a_tenant_over_its_cache_share_starts_over_without_evicting_another(owner, outsider, monkeypatch):
    monkeypatch.setattr(series_cache, "tenant_bytes", 20_000)
    series_cache.clear()
    outsider.ingest([event(1.0, NOW, resource_id="kept")])
    for k in range(100):
        owner.ingest([event(1.0, NOW, resource_id=f"r{k}-" + "x" * 200)])
    assert series_cache.for_tenant(owner.tenant.id).bytes <= 20_000
    assert len(series_cache.for_tenant(outsider.tenant.id).ids) == 1


# C4: values of 1e308 overflowed sum() and the single all-tenant rollup transaction rolled back.
def test_c4_values_beyond_two_to_the_360_are_refused_by_index(owner):
    body = owner.ingest([event(1e308, NOW), event(-3e108, NOW - timedelta(minutes=1)), event(2.0e108, NOW - timedelta(minutes=2))]).json()
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {"index": 0, "errors": {"value": ["must be between -2^360 and 2^360 (±2.35e+108)"]}},
        {"index": 1, "errors": {"value": ["must be between -2^360 and 2^360 (±2.35e+108)"]}},
    ]


def test_c4_one_tenants_failing_rollup_does_not_stop_anothers(owner, outsider):
    minute = (NOW - timedelta(minutes=3)).replace(second=0, microsecond=0)  # the planted rows share its bucket
    owner.ingest([event(1.0, minute)])
    series_id = owner.get("/api/v1/series").json()["results"][0]["series_id"]
    with connection.cursor() as cursor:  # data stored before values were bounded: its sum overflows
        cursor.execute("INSERT INTO metrics_point VALUES (%s, %s, %s, 1e308), (%s, %s, %s, 1e308)",
                       [owner.tenant.id, series_id, minute + timedelta(seconds=1),
                        owner.tenant.id, series_id, minute + timedelta(seconds=2)])
    outsider.ingest([event(5.0, minute)])
    report = rollups_refresh()
    assert report["failed_tenants"] == [owner.tenant.id] and report["tenants"] == 1
    read = outsider.get("/api/v1/metrics/timeseries", {"service": "ec2", "metric_name": "cpu_utilization",
                                                        "minutes": 10, "step": "1m", "agg": "sum"})
    assert read.json()["series"][0]["points"] == [{"timestamp": iso(minute.replace(second=0)), "value": 5.0}]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM metrics_rollup_1h WHERE tenant_id = %s", [outsider.tenant.id])
        assert cursor.fetchone()[0] == 1
        cursor.execute("SELECT count(*) FROM metrics_ingest_log WHERE tenant_id = %s", [owner.tenant.id])
        assert cursor.fetchone()[0] == 1  # kept for the next refresh


# C5: one bad event answered 500 and dropped its valid neighbours.
@pytest.mark.parametrize("bad, field, reason", [
    (_ev("a" * 1025), "service", "is 1025 bytes long in UTF-8; the limit is 1024 (MAX_NAME_BYTES)"),
    (_ev("s", metric_name="m" * 600 + "é" * 300), "metric_name", "is 1200 bytes long in UTF-8; the limit is 1024 (MAX_NAME_BYTES)"),
    (_ev("s", resource_id="r" * 2049), "resource_id", "is 2049 bytes long in UTF-8; the limit is 2048 (MAX_VALUE_BYTES)"),
    (_ev("s", source="x" * 2049), "source", "is 2049 bytes long in UTF-8; the limit is 2048 (MAX_VALUE_BYTES)"),
    (_ev("a\u0000b"), "service", "must not contain the NUL character (\\u0000)"),
    (_ev("s", resource_id="a\u0000"), "resource_id", "must not contain the NUL character (\\u0000)"),
    (_ev("s", tags={"k\u0000": "v"}), "tags", "tag name 'k\u0000…' must not contain the NUL character (\\u0000)"),
    (_ev("s", tags={"k": "\u0000"}), "tags", "tag 'k' value must not contain the NUL character (\\u0000)"),
    (_ev("a\u001fb"), "service", "must not contain the unit separator (\\u001f)"),
    (_ev("\ud800"), "service", "must not contain a lone surrogate (\\ud800-\\udfff)"),
    (_ev("s", tags={"k": "\udfff"}), "tags", "tag 'k' value must not contain a lone surrogate (\\ud800-\\udfff)"),
    (_ev("s", timestamp="0001-01-01T00:00:00+01:00"), "timestamp",
     "is before the earliest accepted timestamp, 2000-01-01T00:00:00Z (EARLIEST_TIMESTAMP)"),
    (_ev("s", timestamp="\ud800"), "timestamp", "'\\ud800' is not an ISO 8601 timestamp"),
    (_ev("s", tags={f"k{i}": "v" for i in range(31)}), "tags", "has 31 tags; the limit is 30 (MAX_TAGS)"),
])
def test_c5_a_bad_event_is_refused_by_index_and_its_neighbours_are_stored(owner, bad, field, reason):
    good = _ev("good")
    raw = json.dumps({"events": [good, bad, dict(good, timestamp=iso(NOW - timedelta(minutes=1)))]}, ensure_ascii=True)
    response = owner.post(URL, raw=raw.encode())
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] == 2
    assert body["rejected"] == [{"index": 1, "errors": {field: [reason]}}]


def test_c5_names_at_their_byte_limits_in_four_byte_characters_are_stored(owner):
    # S5: three such names used to exceed the 2,704-byte btree row of the series lookup index.
    big = _ev("\U0001F600" * 256, metric_name="\U0001F601" * 256, resource_id="\U0001F602" * 512,
              tags={"\U0001F603" * 256: "\U0001F604" * 512})
    assert owner.ingest([big]).json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    found = owner.get("/api/v1/series", {"service": "\U0001F600" * 256}).json()["results"]
    assert found[0]["resource_id"] == "\U0001F602" * 512


def test_c5_a_body_nested_five_thousand_deep_is_a_400(owner):
    response = _post_raw(owner, '{"events": [' + "[" * 5000 + "]" * 5000 + "]}")
    assert response.status_code == 400
    assert response.json()["errors"] == {"body": ["nested too deeply"]}


# C6: crafted read parameters gave 500.
@pytest.mark.parametrize("path, params, field", [
    ("/api/v1/series", {"cursor": "YWJj"}, "cursor"),
    ("/api/v1/baselines", {"cursor": "YWJj"}, "cursor"),
    ("/api/v1/anomalies", {"cursor": "eDp5"}, "cursor"),
    ("/api/v1/anomalies", {"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OTk6MQ"}, "cursor"),
    ("/api/v1/series", {"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OTk"}, "cursor"),
    ("/api/v1/anomalies", {"start": "0001-01-01T00:00:00+01:00"}, "start"),
    ("/api/v1/metrics/timeseries", {"service": "s", "end": "0001-01-01T00:00:00Z"}, "end"),
    ("/api/v1/baselines", {"series_id": 1, "end": "0001-01-01T00:00:00Z"}, "end"),
    ("/api/v1/metrics/timeseries", {"service": "s", "step": "9999999999999d"}, "step"),
    ("/api/v1/metrics/timeseries", {"service": "s", "step": "99999d"}, "step"),
    ("/api/v1/metrics/timeseries", {"service": "s", "start": "2000-01-01T00:00:00Z", "step": "1s"}, "step"),
    ("/api/v1/metrics/timeseries", {"series_id": 2**63}, "series_id"),
    ("/api/v1/anomalies", {"series_id": -1}, "series_id"),
])
def test_c6_crafted_read_parameters_are_a_400_naming_the_field(owner, path, params, field):
    response = owner.get(path, params)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


@pytest.mark.parametrize("params", [
    {"service": "s", "end": "0001-01-02T00:00:00Z"},
    {"service": "s", "start": "9999-12-29T00:00:00Z", "minutes": 100000},
    {"service": "s", "start": "0001-01-02T00:00:00Z", "end": "9999-12-30T00:00:00Z", "step": "3660d"},
])
def test_c6_reads_at_the_ends_of_time_answer_200(owner, params):
    owner.ingest([event(1.0, NOW, service="s", metric_name="m")])
    assert owner.get("/api/v1/metrics/timeseries", params).status_code == 200


# C10: retention_days=0 silently deleted a tenant's points every hour while ingest answered 202.
def test_c10_a_retention_of_zero_days_cannot_be_set(owner):
    from django.contrib.auth.models import User
    from django.db import IntegrityError, transaction
    from django.test import Client

    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x"))
    form = {"slug": "owner", "name": "Owner", "is_active": "on", "limits": "{}", "detection_config": "{}",
            "tenantstaff_set-TOTAL_FORMS": "0", "tenantstaff_set-INITIAL_FORMS": "0"}
    page = client.post(f"/admin/tenants/tenant/{owner.tenant.id}/change/", {**form, "retention_days": "0"})
    assert page.status_code == 200 and b"greater than or equal to 1" in page.content
    owner.tenant.retention_days = 0
    with pytest.raises(IntegrityError), transaction.atomic():
        owner.tenant.save()


def test_c10_a_tenant_limit_the_storage_cannot_hold_is_refused_in_the_admin(owner):
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x"))
    form = {"slug": "owner", "name": "Owner", "is_active": "on", "detection_config": "{}",
            "tenantstaff_set-TOTAL_FORMS": "0", "tenantstaff_set-INITIAL_FORMS": "0"}
    url = f"/admin/tenants/tenant/{owner.tenant.id}/change/"
    for limits, message in [('{"MAX_NAME_BYTES": 5000}', b"MAX_NAME_BYTES may be at most 1024"),
                            ('{"POINTS_PER_SECOND": "many"}', b"must be a whole number of at least 1"),
                            ('{"MAX_SOMETHING": 3}', b"is not a per-tenant limit"),
                            ('{"POINTS_PER_SECOND": 1, "POINTS_BURST": 2}',
                             b"POINTS_BURST (2) must be at least MAX_EVENTS_PER_REQUEST (10000)")]:
        page = client.post(url, {**form, "limits": limits})
        assert page.status_code == 200 and message in page.content, limits
    assert client.post(url, {**form, "limits": '{"POINTS_PER_SECOND": 5000}'}).status_code == 302


# C12: the rest of the low findings.
def test_c12_a_junk_limit_override_in_the_database_falls_back_to_the_default(owner):
    owner.tenant.limits = {"MAX_EVENTS_PER_REQUEST": "lots", "REQUESTS_PER_MINUTE": [1]}
    owner.tenant.save()
    assert owner.ingest([event(1.0, NOW)]).status_code == 202
    assert owner.get("/api/v1/series").status_code == 200


def test_c12_the_admin_points_page_ignores_a_bad_before(owner):
    from django.contrib.auth.models import User
    from django.test import Client

    owner.ingest([event(7.5, NOW)])
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x"))
    series_id = owner.get("/api/v1/series").json()["results"][0]["series_id"]
    for before in ("yesterday", "2026-01-01T00:00:00", "0001-01-01T00:00:00+01:00"):
        page = client.get(f"/admin/metrics/series/{series_id}/points/", {"before": before})
        assert page.status_code == 200, before


def test_c12_a_new_keys_plaintext_never_travels_in_a_cookie(owner):
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x"))
    response = client.post("/admin/tenants/apikey/add/", {"tenant": owner.tenant.id, "scope": "read", "name": "k"})
    assert "messages" not in response.cookies
    page = client.get(response["Location"])
    assert b"cwd_read_" in page.content


def test_c12_a_deleted_tenants_points_go_with_it(owner, outsider):
    owner.ingest([event(1.0, NOW)])
    outsider.ingest([event(1.0, NOW)])
    tenant_id = owner.tenant.id
    with connection.cursor() as cursor:
        # A write that authenticated just before the deletion (keys are cached for seconds).
        owner.tenant.delete()
        cursor.execute("INSERT INTO metrics_point VALUES (%s, 1, %s, 1)", [tenant_id, NOW])
        cursor.execute("INSERT INTO metrics_ingest_log VALUES (%s, %s, %s)", [tenant_id, NOW, NOW])
        report = rollups_refresh()
        cursor.execute("SELECT tenant_id, count(*) FROM metrics_point GROUP BY 1")
        counts = dict(cursor.fetchall())
    assert report["orphan_points_deleted"] == 1
    assert tenant_id not in counts and counts[outsider.tenant.id] == 1


def test_c12_a_failed_runs_error_text_stays_with_support_staff(owner, monkeypatch):
    from anomalies import evaluation
    from anomalies.models import DetectionRun

    def broken(**kwargs):
        raise ValueError("relation secret_internal_table does not exist")

    monkeypatch.setattr(evaluation, "run_evaluate", broken)
    client_response = owner.post("/api/v1/process/run")
    assert client_response.status_code == 500
    run_id = DetectionRun.objects.for_tenant(owner.tenant).get().run_id
    summary = owner.get(f"/api/v1/process/runs/{run_id}").json()
    assert summary["status"] == "failed" and "secret_internal_table" not in json.dumps(summary)
    assert "secret_internal_table" in DetectionRun.objects.for_tenant(owner.tenant).get().error


# S3: points near the value bound must keep the engine, the band and the API finite.
def test_s3_extreme_values_keep_anomalies_and_bands_finite(owner):
    events = steady_then_spike(count=2000, base=2.0e108, spike=-2.3e108)
    for k, item in enumerate(events[:-1]):
        item["value"] = 2.0e108 if k % 2 else -2.0e108
    for start in range(0, 2000, 1000):
        assert owner.ingest(events[start:start + 1000]).json()["accepted"] == 1000
    assert owner.post("/api/v1/process/run").status_code == 200
    anomalies = owner.get("/api/v1/anomalies")
    assert anomalies.status_code == 200 and anomalies.json()["results"]
    series_id = owner.get("/api/v1/series").json()["results"][0]["series_id"]
    band = owner.get("/api/v1/baselines", {"series_id": series_id})
    assert band.status_code == 200
    for item in anomalies.json()["results"] + band.json()["results"]:
        for name in ("value", "expected", "lower", "upper", "score", "median", "scale"):
            if item.get(name) is not None:
                assert abs(item[name]) < float("inf"), (name, item[name])


def test_c12_the_series_limit_holds_against_concurrent_requests(make_tenant, transactional_db):
    import threading

    from django.db import connections

    owner = make_tenant("racer")
    owner.tenant.limits = {"MAX_SERIES_PER_TENANT": 5}
    owner.tenant.save()
    barrier = threading.Barrier(4)

    def send(k):
        barrier.wait()
        owner.ingest([event(1.0, NOW, resource_id=f"t{k}-r{i}") for i in range(3)])
        connections.close_all()

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(owner.get("/api/v1/series", {"limit": 100}).json()["results"]) == 5


# C11: insecure defaults.
def _manage(*args, env):
    import os
    import subprocess
    import sys

    from django.conf import settings

    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "PYTEST_VERSION")}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


PRODUCTION = {  # the README's Production settings
    "DATABASE_URL": "postgresql://cwd:secret@db.internal:5432/cloudwatchdog", "REDIS_URL": "redis://redis.internal:6379/0",
    "SECRET_KEY": "k3Y-" + "q7Zx" * 14, "ALLOWED_HOSTS": "metrics.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://metrics.example.com", "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    "SECURE_SSL_REDIRECT": "true", "SESSION_COOKIE_SECURE": "true", "CSRF_COOKIE_SECURE": "true",
    "SECURE_HSTS_SECONDS": "31536000", "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true", "SECURE_HSTS_PRELOAD": "true",
}


def test_c11_check_deploy_is_clean_under_the_documented_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_c11_a_deployment_without_a_secret_key_refuses_to_start():
    result = _manage("check", env={k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"})
    assert result.returncode != 0 and "Set SECRET_KEY" in result.stderr


def test_c11_behind_a_tls_proxy_next_links_are_https(owner, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    for k in range(3):
        owner.ingest([event(1.0, NOW, resource_id=f"r{k}")])
    page = owner.get("/api/v1/series", {"limit": 1}, HTTP_X_FORWARDED_PROTO="https").json()
    assert page["next"].startswith("https://")


def test_c11_the_default_hosts_are_local_only(db):
    from django.test import Client

    assert Client().get("/healthz", HTTP_HOST="evil.example.com").status_code == 400
    assert Client().get("/healthz", HTTP_HOST="127.0.0.1").status_code == 200


# S1: four parallel synchronous runs of one tenant held every web thread for up to 30 s each.
def test_s1_only_one_synchronous_run_waits_for_a_running_one(make_tenant, transactional_db):
    import time

    import psycopg2

    owner = make_tenant("busy")
    other = psycopg2.connect(**connection.get_connection_params())
    try:
        with other.cursor() as cursor:  # a run is going, and a first caller is already waiting for it
            cursor.execute("SELECT pg_advisory_lock(%s, %s), pg_advisory_lock(%s, %s)",
                           [Lock.RUN, owner.tenant.id, Lock.RUN_WAITER, owner.tenant.id])
        started = time.monotonic()
        response = owner.post("/api/v1/process/run")
        assert response.status_code == 409
        assert time.monotonic() - started < 3  # not PROCESS_RUN_WAIT_SECONDS (30)
    finally:
        other.close()


# S2: no statement_timeout; a query that runs past it answers 503 with a sentence, not 500.
def test_s2_web_processes_get_a_statement_timeout_and_a_cancelled_query_is_a_503(db, monkeypatch):
    import os

    from django.conf import settings
    from django.db import OperationalError, transaction

    from cloudwatchdog.errors import json_exception_handler

    monkeypatch.delenv("DATABASE_STATEMENT_TIMEOUT", raising=False)
    exec((settings.BASE_DIR / "cloudwatchdog" / "gunicorn.conf.py").read_text(), {})
    assert os.environ["DATABASE_STATEMENT_TIMEOUT"] == "60s"
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = '10ms'")
            cursor.execute("SELECT pg_sleep(1)")
    except OperationalError as error:
        response = json_exception_handler(error, {})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert "narrow the window" in response.data["detail"]


# S6: if the run's summary could not be saved, the run lock stayed on the pooled connection.
def test_s6_the_run_lock_is_released_even_when_the_summary_cannot_be_saved(owner, monkeypatch):
    from anomalies import runs
    from anomalies.models import DetectionRun

    real_save = DetectionRun.save

    def failing_save(self, *args, **kwargs):
        if self.finished_at is not None:
            raise RuntimeError("the summary could not be written")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(DetectionRun, "save", failing_save)
    with pytest.raises(RuntimeError):
        runs.detection_run(tenant=owner.tenant, trigger="command")
    other = psycopg2.connect(**connection.get_connection_params())  # advisory locks are re-entrant per session
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [Lock.RUN, owner.tenant.id])
            assert cursor.fetchone()[0], "the run lock was left held"
    finally:
        other.close()


# S7: when a pass took longer than its interval, beat's copies piled up in the queue.
def test_s7_each_scheduled_task_expires_when_its_next_one_is_due(settings):
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["options"]["expires"] == entry["schedule"], name


def test_the_console_and_the_api_answer_400_to_nul_and_odd_digits_never_500(make_tenant, django_user_model):
    from django.test import Client

    tenant = make_tenant("odd-digits")
    admin = django_user_model.objects.create_superuser("root-odd", "r@example.com", "pw")
    client = Client(raise_request_exception=False)
    client.force_login(admin)
    for url in ("/admin/anomalies/anomaly/?series__metric_name=%00", "/admin/anomalies/anomaly/?status=%00",
                "/admin/metrics/series/?service=%00", "/api/v1/anomalies?service=%00"):
        response = client.get(url)
        assert response.status_code == 400 and b"NUL" in response.content, url
    for url in (f"/admin/tenants/tenant/{tenant.tenant.id}/overview/?action=what_if&days=%C2%B2",
                f"/admin/tenants/tenant/{tenant.tenant.id}/overview/?action=what_if&series=%C2%B2&days=" + "9" * 5000,
                "/admin/anomalies/anomaly/?tenant=%C2%B2", "/admin/anomalies/incident/?tenant=" + "9" * 5000):
        assert client.get(url).status_code == 200, url
    anomaly_note = client.post("/admin/anomalies/anomaly/", {"note": "a\x00b"})
    assert anomaly_note.status_code == 400
