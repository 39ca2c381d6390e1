"""manage.py create_tenant."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from conftest import ApiClient
from tenants.models import ApiKey, Tenant


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
