"""Resolves the API key of a request to its tenant once, at the edge.

Sets `request.api_key` (None when there is no valid key). The DRF authentication class turns
a missing key into 401 and gives views the tenant; nothing below the edge looks the key up again.
Two ways to present a key: `Authorization: Bearer <key>`, or HTTP Basic with the tenant's slug as
the user name and the key as the password (what Prometheus' basic_auth and most agents offer).
"""
import base64
import binascii

from tenants.selectors import api_key_get_by_plaintext


def _presented_key(header: str) -> tuple[str | None, str | None]:
    """(key, tenant slug claimed by Basic or None) of an Authorization header; key None when unusable."""
    scheme, _, credentials = header.partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer" and credentials:
        return credentials, None
    if scheme == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        user, colon, password = decoded.partition(":")
        if colon and user and password:
            return password, user
    return None, None


class ApiKeyTenantMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.api_key = None
        request.api_key_presented = False
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header:
            request.api_key_presented = True
            plaintext, slug = _presented_key(header)
            if plaintext is not None:
                api_key = api_key_get_by_plaintext(plaintext=plaintext)
                # With Basic, the user name must be the key's own tenant: a key does not work under another name.
                if api_key is not None and (slug is None or api_key.tenant.slug == slug):
                    request.api_key = api_key
        return self.get_response(request)
