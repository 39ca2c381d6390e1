"""Writes for tenants and API keys."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from tenants.keys import KEY_PREFIX, key_hash, key_prefix
from tenants.models import ApiKey, Tenant
from tenants.selectors import api_key_cache_clear


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str


def tenant_create(*, slug: str, name: str = "") -> Tenant:
    """Create a tenant, or return the existing one with that slug."""
    tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name or slug})
    return tenant


@transaction.atomic
def api_key_issue(*, tenant: Tenant, scope: str = ApiKey.SCOPE_ALL, name: str = "") -> IssuedKey:
    """Issue a new key; its plaintext exists only in the returned value."""
    if scope not in dict(ApiKey.SCOPES):
        raise ValueError(f"unknown scope {scope!r}; use one of {', '.join(dict(ApiKey.SCOPES))}")
    plaintext = f"{KEY_PREFIX}_{scope}_{secrets.token_hex(24)}"
    api_key = ApiKey.objects.create(
        tenant=tenant, name=name, scope=scope, prefix=key_prefix(plaintext), key_hash=key_hash(plaintext)
    )
    return IssuedKey(api_key=api_key, plaintext=plaintext)


def api_key_revoke(*, tenant: Tenant, api_key_id: int) -> None:
    """Revoke a key of this tenant (idempotent)."""
    ApiKey.objects.for_tenant(tenant).filter(id=api_key_id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key_cache_clear()  # this process at once; others within API_KEY_CACHE_SECONDS


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use, at most once a minute per key, so authentication does not write on every request."""
    now = timezone.now()
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() >= 60:
        ApiKey.objects.for_tenant(api_key.tenant).filter(id=api_key.id).update(last_used_at=now)
        api_key.last_used_at = now


def support_user_assign(*, username: str, tenant: Tenant, password: str | None = None, can_act: bool = False):
    """Create (or reuse) a staff user and assign it to the tenant. With `can_act`, it may also run
    detection, replay and save detection settings on the tenant's console page (tenants.change_tenant).
    Returns (user, created)."""
    from django.contrib.auth.models import Permission, User

    from tenants.models import TenantStaff

    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True})
        if created:
            user.set_password(password) if password else user.set_unusable_password()
        user.is_staff = True
        user.save()
        TenantStaff.objects.get_or_create(tenant=tenant, user=user)
        if can_act:
            user.user_permissions.add(Permission.objects.get(content_type__app_label="tenants", codename="change_tenant"))
    return user, created
