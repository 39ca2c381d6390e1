"""The tenant and key admin: a new key is shown once, and only there."""
from django.contrib.auth.models import User
from django.test import Client

from tenants.models import ApiKey


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
