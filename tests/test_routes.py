"""One route list (cloudwatchdog/routes.py) decides which pool serves a request: the README's nginx
map must say the same, the Procfile must start both pools, and each pool's gunicorn takes its size
from its role."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cloudwatchdog import front
from cloudwatchdog.routes import INGEST, INGEST_ROUTES, POOL_SIZES, WEB, pool_for
from scripts.serve import procfile_roles

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_nginx_map_routes_exactly_the_ingest_routes():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r'map "\$request_method:\$uri" \$cwd_pool \{(.*?)\}', readme, re.S)
    assert block, "the README's Production section has no nginx map"
    entries = re.findall(r'^\s*(\S+)\s+(\S+);', block.group(1), re.M)
    assert ("default", "cwd_web") in entries
    mapped = {tuple(key.strip('"').split(":", 1)) for key, pool in entries if pool == "cwd_ingest"}
    assert mapped == set(INGEST_ROUTES)
    assert all(pool in ("cwd_ingest", "cwd_web") for _, pool in entries)


def test_ingest_is_only_post_to_the_ingest_paths_whatever_the_query_string():
    assert pool_for("POST", "/api/v1/ingest/metrics?dry=1") == INGEST
    assert pool_for("GET", "/api/v1/ingest/metrics") == WEB
    assert pool_for("POST", "/api/v1/ingest/metrics/") == WEB  # both pools run the same app: answered all the same
    assert pool_for("POST", "/prometheus/api/v1/query") == WEB


def test_the_procfile_starts_both_pools_with_their_roles():
    roles = procfile_roles()
    assert "GUNICORN_ROLE=web" in roles["web"] and "GUNICORN_ROLE=ingest" in roles["ingest"]
    assert "${INGEST_BIND" in roles["ingest"] and "${WEB_BIND" in roles["web"]
    assert "GUNICORN_ROLE=ingest_bulk" in roles["ingest_bulk"] and "${INGEST_BULK_BIND" in roles["ingest_bulk"]


def _gunicorn_settings(**environ) -> str:
    code = ("import runpy; c = runpy.run_path('cloudwatchdog/gunicorn.conf.py'); "
            "print(c['workers'], c['threads'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_")}
    answer = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, **environ}, capture_output=True, text=True)
    return answer.stdout.strip() or answer.stderr.strip().splitlines()[-1]


def test_each_role_gets_its_pool_size_and_an_unknown_role_is_refused():
    assert _gunicorn_settings(GUNICORN_ROLE="ingest") == "%d %d" % POOL_SIZES[INGEST]
    assert _gunicorn_settings(GUNICORN_ROLE="web") == "%d %d" % POOL_SIZES[WEB]
    assert _gunicorn_settings() == "4 1"
    assert _gunicorn_settings(GUNICORN_ROLE="web", GUNICORN_WORKERS="5") == "5 %d" % POOL_SIZES[WEB][1]
    assert "GUNICORN_ROLE='reads'" in _gunicorn_settings(GUNICORN_ROLE="reads")


def test_the_front_reads_any_body_a_tenant_may_be_allowed():
    from django.conf import settings

    assert front.MAX_BODY_BYTES >= settings.TENANT_LIMIT_CEILINGS["MAX_BODY_BYTES"]


def test_the_slim_ingest_handler_serves_the_paths_the_ingest_pool_gets():
    from cloudwatchdog import wsgi

    assert set(wsgi.INGEST_PATHS) == {path for _, path in INGEST_ROUTES}


@pytest.mark.django_db
def test_a_connection_budget_over_postgresqls_limit_is_a_warning_at_migrate_time(monkeypatch):
    from django.core.checks import run_checks
    from django.db import connection

    def budget_warnings():
        return [m for m in run_checks(databases=["default"]) if m.id == "cloudwatchdog.W001"]

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int")
        accepted = cursor.fetchone()[0]
    assert budget_warnings() == []  # the defaults: 18 connections
    monkeypatch.setenv("GUNICORN_WORKERS", str(accepted))
    monkeypatch.setenv("GUNICORN_THREADS", "2")
    [warning] = budget_warnings()
    assert f"ingest pool {2 * accepted}, ingest_bulk pool {2 * accepted}, web pool {2 * accepted}," in warning.msg and f"PostgreSQL accepts {accepted}." in warning.msg
    assert "max_connections" in warning.hint
    assert [m for m in run_checks() if m.id == "cloudwatchdog.W001"] == []  # only where a database is checked
