"""The tenant and key admin: a new key is shown once, and only there; support staff change a tenant's
detection settings, nothing else of it."""
from django.contrib.auth.models import User
from django.test import Client

from tenants.models import ApiKey, Tenant
from tenants.services import support_user_assign


def _login(user):
    client = Client()
    client.force_login(user)
    return client


def test_a_key_created_in_the_admin_is_shown_once(make_tenant):
    tenant = make_tenant("keyed").tenant
    admin = User.objects.create_superuser("root", password="x")
    response = _login(admin).post("/admin/tenants/apikey/add/", {"tenant": tenant.id, "scope": "read", "name": "grafana"},
                                  follow=True)
    assert response.status_code == 200
    message = [str(m) for m in response.context["messages"]][0]
    plaintext = message.rsplit(" ", 1)[-1]
    assert plaintext.startswith("cwd_read_")
    key = ApiKey.objects.for_tenant(tenant).get(name="grafana")
    assert plaintext not in key.key_hash


def _tenant_form(**changes) -> dict:
    form = {"slug": "renamed", "name": "Renamed", "limits": '{"MAX_SERIES_PER_TENANT": 1}', "detection_config": '{"sensitivity": 0.5}',
            "max_point_age_days": "3", "retention_days": "4", "late_window_seconds": "", "no_data_alerts": "on",
            "tenantstaff_set-TOTAL_FORMS": "0", "tenantstaff_set-INITIAL_FORMS": "0"}  # is_active left out: an unticked box
    return {**form, **changes}


def test_support_staff_who_may_act_change_detection_settings_and_nothing_else_of_the_tenant(make_tenant):
    tenant = make_tenant("kept").tenant
    actor, _ = support_user_assign(username="actor", tenant=tenant, can_act=True)
    client = _login(User.objects.get(id=actor.id))
    page = client.get(f"/admin/tenants/tenant/{tenant.id}/change/").content.decode()
    assert 'name="detection_config"' in page and 'name="slug"' not in page and 'name="is_active"' not in page

    saved = client.post(f"/admin/tenants/tenant/{tenant.id}/change/", _tenant_form())
    assert saved.status_code == 302
    tenant = Tenant.objects.get(id=tenant.id)
    assert (tenant.slug, tenant.is_active, tenant.limits, tenant.retention_days) == ("kept", True, {}, None)
    assert tenant.detection_config == {"sensitivity": 0.5}


def test_a_superuser_changes_every_field_of_a_tenant(make_tenant):
    tenant = make_tenant("renamable").tenant
    client = _login(User.objects.create_superuser("root", password="x"))
    assert client.post(f"/admin/tenants/tenant/{tenant.id}/change/", _tenant_form()).status_code == 302
    tenant = Tenant.objects.get(id=tenant.id)
    assert (tenant.slug, tenant.is_active, tenant.limits, tenant.retention_days) == ("renamed", False, {"MAX_SERIES_PER_TENANT": 1}, 4)
