"""Reads for tenants and API keys: the few audited lookups everything else goes through."""
from __future__ import annotations

import hmac
import time

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from tenants.keys import key_hash, key_prefix
from tenants.models import ApiKey, Tenant

# Keys seen in the last few seconds, by plaintext hash: agents send many requests a second,
# and a revocation or tenant change still takes effect within API_KEY_CACHE_SECONDS.
API_KEY_CACHE_SECONDS = 5.0
_recent_keys: dict[str, tuple[float, ApiKey]] = {}


def api_key_get_by_plaintext(*, plaintext: str) -> ApiKey | None:
    """The active key (with its active tenant) matching this plaintext, or None."""
    digest = key_hash(plaintext)
    cached = _recent_keys.get(digest)
    now = time.monotonic()
    if cached is not None and now - cached[0] < API_KEY_CACHE_SECONDS:
        return cached[1]
    api_key = _api_key_lookup(plaintext=plaintext, digest=digest)
    if api_key is not None:
        if len(_recent_keys) > 10_000:
            _recent_keys.clear()
        _recent_keys[digest] = (now, api_key)
    else:
        _recent_keys.pop(digest, None)
    return api_key


def api_key_cache_clear() -> None:
    _recent_keys.clear()


def _api_key_lookup(*, plaintext: str, digest: str) -> ApiKey | None:
    prefix = key_prefix(plaintext)
    if prefix is None:
        return None
    api_key = (
        ApiKey.objects.unscoped()
        .select_related("tenant")
        .filter(prefix=prefix, revoked_at__isnull=True, tenant__is_active=True)
        .first()
    )
    if api_key is None or not hmac.compare_digest(api_key.key_hash, digest):
        return None
    return api_key


def tenant_get(*, slug: str | None = None, tenant_id: int | None = None) -> Tenant | None:
    """The tenant with this slug (or id), active or not, or None."""
    tenants = Tenant.objects.filter(slug=slug) if slug is not None else Tenant.objects.filter(id=tenant_id)
    return tenants.first()


def tenant_list(*, slug: str | None = None) -> QuerySet[Tenant]:
    """The active tenants (with `slug`: that one, if active)."""
    tenants = Tenant.objects.filter(is_active=True)
    return tenants.filter(slug=slug) if slug else tenants


def tenant_list_for_staff(*, user: AbstractBaseUser) -> QuerySet[Tenant]:
    """Tenants a user may see in the admin: all for superusers, the assigned ones for support staff."""
    if user.is_superuser:
        return Tenant.objects.all()
    return Tenant.objects.filter(tenantstaff__user=user)
