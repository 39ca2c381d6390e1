"""Resolves the API key of a request to its tenant once, at the edge.

Sets `request.api_key` (None when there is no valid key). The DRF authentication class turns
a missing key into 401 and gives views the tenant; nothing below the edge looks the key up again.
"""
from tenants.selectors import api_key_get_by_plaintext


class ApiKeyTenantMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.api_key = None
        request.api_key_presented = False
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header:
            request.api_key_presented = True
            scheme, _, credentials = header.partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                api_key = api_key_get_by_plaintext(plaintext=credentials.strip())
                if api_key is not None:
                    request.api_key = api_key
        return self.get_response(request)
