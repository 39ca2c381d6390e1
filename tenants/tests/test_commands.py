"""manage.py create_tenant."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tenants.models import ApiKey, Tenant
from tests.helpers import ApiClient


def _create(*args):
    out, err = StringIO(), StringIO()
    call_command("create_tenant", *args, stdout=out, stderr=err)
    return out.getvalue().strip().splitlines()


def test_create_tenant_prints_a_working_key_alone_on_the_last_line(db):
    key = _create("acme", "--name", "Acme Inc")[-1]
    assert key.startswith("cwd_all_") and " " not in key
    assert Tenant.objects.get(slug="acme").name == "Acme Inc"
    assert ApiClient(key).get("/api/v1/series").status_code == 200


def test_create_tenant_again_issues_another_key_for_the_same_tenant(db):
    first = _create("acme")[-1]
    second = _create("acme", "--scope", "ingest")[-1]
    assert first != second and second.startswith("cwd_ingest_")
    assert Tenant.objects.filter(slug="acme").count() == 1
    assert ApiKey.objects.for_tenant(Tenant.objects.get(slug="acme")).count() == 2


def test_create_tenant_refuses_a_bad_slug(db):
    with pytest.raises(CommandError, match="not a valid slug"):
        _create("not a slug")


def test_create_support_user_assigns_a_staff_user_to_one_tenant(db, monkeypatch):
    import io

    from django.contrib.auth.models import User
    from django.core.management import call_command

    from tenants.models import TenantStaff
    from tenants.services import tenant_create

    tenant = tenant_create(slug="acme")
    monkeypatch.setattr("sys.stdin", io.StringIO("a support password\n"))
    out = io.StringIO()
    call_command("create_support_user", "ada", "--tenant", "acme", "--password-stdin", stdout=out)
    user = User.objects.get(username="ada")
    assert user.is_staff and not user.is_superuser and user.check_password("a support password")
    assert list(TenantStaff.objects.filter(user=user).values_list("tenant__slug", flat=True)) == ["acme"]
    assert "created staff user ada: tenant acme" in out.getvalue()
    assert not user.has_perm("tenants.change_tenant")
    call_command("create_support_user", "ada", "--tenant", "acme", "--can-act", "--no-password", stdout=io.StringIO())
    assert User.objects.get(username="ada").has_perm("tenants.change_tenant")
    assert tenant.slug == "acme"


def test_a_global_burst_below_the_batch_limit_is_refused_at_settings_load_so_no_command_runs(db):
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers import app_process_env

    env = app_process_env(POINTS_BURST="5000", MAX_EVENTS_PER_REQUEST="10000")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "manage.py", "create_tenant", "burst-too-small"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "ImproperlyConfigured: POINTS_BURST (5000) must be at least MAX_EVENTS_PER_REQUEST (10000)" in done.stderr
    assert not Tenant.objects.filter(slug="burst-too-small").exists()
