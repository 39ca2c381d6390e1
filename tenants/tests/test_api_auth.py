"""Authentication, scopes and X-Tenant-ID on every endpoint."""
import pytest

from tenants.services import api_key_issue, api_key_revoke
from tests.helpers import ApiClient, event

READ_ENDPOINTS = ["/api/v1/series", "/api/v1/anomalies", "/api/v1/baselines",
                  "/api/v1/metrics/timeseries?service=ec2&metric_name=cpu_utilization&minutes=60"]


@pytest.mark.parametrize("path", READ_ENDPOINTS + ["/api/v1/process/runs/00000000-0000-0000-0000-000000000000"])
def test_a_read_without_a_key_is_401(db, path):
    response = ApiClient(None).get(path)
    assert response.status_code == 401
    assert response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/api/v1/ingest/metrics", "/api/v1/process/run"])
def test_a_write_with_a_made_up_key_is_401(db, path):
    response = ApiClient("cwd_all_0123456789abcdef0123456789abcdef").post(path, {"events": [event()]})
    assert response.status_code == 401
    assert response.json() == {"detail": "The API key is invalid or revoked."}


def test_a_revoked_key_is_401(owner):
    api_key_revoke(tenant=owner.tenant, api_key_id=owner.tenant.apikey_set.get().id)
    assert owner.get("/api/v1/series").status_code == 401


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_x_tenant_id_naming_another_tenant_is_403(owner, outsider, path):
    response = owner.get(path, HTTP_X_TENANT_ID=outsider.tenant.slug)
    assert response.status_code == 403
    assert "X-Tenant-ID" in response.json()["detail"]
    assert owner.get(path, HTTP_X_TENANT_ID=owner.tenant.slug).status_code == 200


def test_x_tenant_id_naming_another_tenant_cannot_ingest(owner, outsider):
    response = owner.ingest([event()], HTTP_X_TENANT_ID=outsider.tenant.slug)
    assert response.status_code == 403
    assert outsider.get("/api/v1/series").json()["results"] == []


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_an_ingest_only_key_cannot_read(make_tenant, path):
    agent = make_tenant("agent", scope="ingest")
    response = agent.get(path)
    assert response.status_code == 403
    assert response.json()["detail"] == "This API key has scope 'ingest'; this call needs 'read'."


def test_a_read_key_reads(make_tenant):
    assert make_tenant("dashboard", scope="read").get("/api/v1/series").status_code == 200


def test_keys_are_stored_hashed_and_their_prefix_shows_the_scope(owner):
    issued = api_key_issue(tenant=owner.tenant, scope="ingest")
    assert issued.plaintext.startswith("cwd_ingest_")
    assert issued.api_key.prefix == issued.plaintext[: len(issued.api_key.prefix)]
    assert issued.plaintext not in (issued.api_key.key_hash, issued.api_key.prefix)


def test_authenticated_use_is_recorded(owner):
    owner.get("/api/v1/series")
    assert owner.tenant.apikey_set.get().last_used_at is not None
