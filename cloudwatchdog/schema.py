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
    "403": "The key's scope does not allow this call, or X-Tenant-ID (or X-Scope-OrgID) names another "
           "tenant.",
    "404": "Not found; an id of another tenant answers the same.",
    "429": "Over a rate limit of the tenant; retry after Retry-After seconds.",
    "503": "A dependency (PostgreSQL, Redis) is unavailable or busy; retry after Retry-After seconds.",
}


# The API docs group operations by area, each tag named by the path it serves (the first match wins).
PATH_TAGS = (
    ("/api/v1/ingest/", "ingest"),
    ("/api/v1/series/{series_id}/detection-config", "detection settings"),
    ("/api/v1/detection-rules", "detection settings"),
    ("/api/v1/series", "series"),
    ("/api/v1/metrics/", "series"),
    ("/api/v1/anomalies", "anomalies"),
    ("/api/v1/baselines", "anomalies"),
    ("/api/v1/incidents", "incidents"),
    ("/api/v1/channels", "alerting"),
    ("/api/v1/silences", "alerting"),
    ("/api/v1/process/", "runs"),
    ("/api/v1/write", "agents"),
    ("/v1/metrics", "agents"),
)


class ApiAutoSchema(AutoSchema):
    def get_tags(self):
        for prefix, tag in PATH_TAGS:
            if self.path.startswith(prefix):
                return [tag]
        return super().get_tags()

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, description in ERRORS.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(OpenApiResponse(ErrorSerializer, description), code)
        return responses
