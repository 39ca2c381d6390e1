"""The OpenAPI schema's view of errors: every operation documents the JSON error answers the API
gives, so that clients (and the schemathesis run in the test suite) can check them."""
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="One sentence saying what went wrong.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text="The reasons, by the name of the field at fault.",
    )


ERRORS = {
    "400": "Invalid input: `errors` names each field at fault and why.",
    "401": "No API key, or one that is invalid or revoked (see WWW-Authenticate).",
    "403": "The key's scope does not allow this call, or X-Tenant-ID names another tenant.",
    "404": "Not found; an id of another tenant answers the same.",
    "429": "Over a rate limit of the tenant; retry after Retry-After seconds.",
    "503": "A dependency (PostgreSQL, Redis) is unavailable or busy; retry after Retry-After seconds.",
}


class ApiAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, description in ERRORS.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(OpenApiResponse(ErrorSerializer, description), code)
        return responses
