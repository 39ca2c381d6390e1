"""DRF policies: API-key authentication, scope permission and the per-tenant throttle."""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling

from tenants.models import ApiKey
from tenants.ratelimit import bucket_take
from tenants.services import api_key_touch

# Headers a client may name its tenant in: ours, and Mimir's and Cortex's (Grafana and their clients send it).
TENANT_HEADERS = ("X-Tenant-ID", "X-Scope-OrgID")


class TenantUser:
    """The authenticated principal of an API request: a tenant acting through one key."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        self.tenant = api_key.tenant

    def __str__(self) -> str:
        return f"tenant:{self.tenant.slug}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>` or HTTP Basic (tenant slug, key), already resolved by ApiKeyTenantMiddleware."""

    def authenticate(self, request):
        django_request = request._request
        api_key = getattr(django_request, "api_key", None)
        if api_key is None:
            if getattr(django_request, "api_key_presented", False):
                raise exceptions.AuthenticationFailed("The API key is invalid or revoked.")
            return None
        api_key_touch(api_key=api_key)
        return TenantUser(api_key), api_key

    def authenticate_header(self, request):
        # Both schemes, so a client that answers a challenge with Basic (collectd, curl --anyauth, urllib)
        # gets in; realm= on each, as urllib's parser needs.
        return 'Bearer realm="api", Basic realm="api"'


class HasTenantScope(permissions.BasePermission):
    """A key may call what its scope allows; X-Tenant-ID or X-Scope-OrgID, when sent, must name the key's tenant."""

    message = "This API key may not do that."

    def has_permission(self, request, view):
        user = request.user
        if not isinstance(user, TenantUser):
            raise exceptions.NotAuthenticated("Send an API key as 'Authorization: Bearer <key>', or with HTTP Basic as "
                                              "the password, the tenant's slug as the user name.")
        for header in TENANT_HEADERS:
            claimed = request.headers.get(header)
            if claimed is not None and claimed != user.tenant.slug:
                raise exceptions.PermissionDenied(f"{header} names a tenant this API key does not belong to.")
        required = getattr(view, "required_scope", None) or (
            ApiKey.SCOPE_READ if request.method in permissions.SAFE_METHODS else ApiKey.SCOPE_ALL
        )
        scope = user.api_key.scope
        if scope == ApiKey.SCOPE_ALL or scope == required:
            return True
        raise exceptions.PermissionDenied(f"This API key has scope '{scope}'; this call needs '{required}'.")


class TenantRateThrottle(throttling.BaseThrottle):
    """REQUESTS_PER_MINUTE per tenant (a token bucket in Redis), answered 429 with Retry-After."""

    def allow_request(self, request, view):
        user = request.user
        if not isinstance(user, TenantUser):
            return True
        per_minute = user.tenant.limit("REQUESTS_PER_MINUTE")
        wait = bucket_take(name="requests", tenant_id=user.tenant.id, rate=per_minute / 60, burst=per_minute)
        if wait is not None:
            from cloudwatchdog.errors import ApiError  # imports DRF's views, which import this module

            seconds = int(wait) + 1
            raise ApiError(429, f"Over this tenant's limit of {per_minute} requests a minute (REQUESTS_PER_MINUTE); "
                                f"retry in {seconds} seconds.", headers={"Retry-After": str(seconds)})
        return True


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Bearer <api key>` in the OpenAPI schema."""

    target_class = "tenants.drf.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key from create_tenant or the admin. HTTP "
                "Basic works too, with the tenant slug as the user name and the key as the password."}
