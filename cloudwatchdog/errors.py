"""The one JSON exception handler: {"detail": "<sentence>", "errors": {field: [reason]}}, never a trace."""
import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with an explicit status, sentence and field errors."""

    def __init__(self, status_code: int, detail: str, errors: dict | None = None, headers: dict | None = None):
        super().__init__(detail)
        self.status_code = status_code
        self.errors = errors or {}
        self.headers = headers or {}


def _flatten(detail) -> dict:
    if isinstance(detail, dict):
        return {
            field: [str(item) for item in (value if isinstance(value, list) else [value])]
            for field, value in detail.items()
        }
    return {}


def json_exception_handler(exc, context):
    if isinstance(exc, ApiError):
        body = {"detail": str(exc.detail)}
        if exc.errors:
            body["errors"] = exc.errors
        return Response(body, status=exc.status_code, headers=exc.headers)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail) if isinstance(exc.detail, dict) else {"non_field_errors": [str(d) for d in exc.detail]}
        first = next(iter(errors.items()), ("request", ["is invalid"]))
        response = Response(
            {"detail": f"Invalid input: {first[0]} {first[1][0].rstrip('.')}.", "errors": errors},
            status=status.HTTP_400_BAD_REQUEST,
        )
        return response
    if isinstance(exc, exceptions.ParseError):
        return Response({"detail": "The body is not valid JSON.", "errors": {"body": [str(exc.detail)]}}, status=400)
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in %s", context.get("view"))
        return Response({"detail": "Internal error; it has been logged."}, status=500)
    detail = response.data.get("detail") if isinstance(response.data, dict) else None
    response.data = {"detail": str(detail) if detail else "Request failed."}
    if isinstance(exc, exceptions.Throttled):
        response.data["detail"] = f"Rate limit exceeded; retry in {int(exc.wait or 1)} seconds."
    return response


def not_found_json(request, exception=None):
    return JsonResponse({"detail": "Not found."}, status=404)


def server_error_json(request):
    return JsonResponse({"detail": "Internal error; it has been logged."}, status=500)
