"""The one JSON exception handler: {"detail": "<sentence>", "errors": {field: [reason]}}, never a trace.

A dependency that is down (PostgreSQL unreachable, a statement cancelled, a lock not granted in
time) is answered 503 with Retry-After, never 500: 5xx means "our fault, retry", and clients
such as OpenTelemetry exporters retry only 429/502/503/504.
"""
import logging
import sys

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent
from django.db import InterfaceError, OperationalError
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


RETRY_AFTER_SECONDS = 5


def statement_cancelled(exc: BaseException) -> bool:
    """Whether a database error is PostgreSQL's query_canceled (statement_timeout ran out)."""
    return getattr(exc.__cause__, "pgcode", None) == "57014"


def unavailable_body(exc: BaseException) -> dict | None:
    """The 503 body for an exception that means a dependency is down, else None."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        if statement_cancelled(exc):
            logger.warning("statement cancelled: %s", str(exc).strip()[:300])
            return {"detail": "The query took longer than the server allows; narrow the window or use a coarser step."}
        logger.warning("database unavailable: %s", str(exc).strip()[:300])
        return {"detail": "The database is unavailable or busy; retry in a few seconds."}
    return None


def json_exception_handler(exc, context):
    unavailable = unavailable_body(exc)
    if unavailable is not None:
        return Response(unavailable, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
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


# The Prometheus API (promql/) answers in Prometheus' envelope, errors raised before its views included.
PROMETHEUS_PREFIX = "/prometheus/"


def _answer(request, status: int, detail: str, error_type: str) -> JsonResponse:
    if request.path.startswith(PROMETHEUS_PREFIX):
        return JsonResponse({"status": "error", "errorType": error_type, "error": detail}, status=status)
    return JsonResponse({"detail": detail}, status=status)


def not_found_json(request, exception=None):
    return _answer(request, 404, "Not found.", "not_found")


def server_error_json(request):
    # Django calls this inside its `except` around the request, so the exception is at hand.
    unavailable = unavailable_body(sys.exc_info()[1])
    if unavailable is not None:
        response = _answer(request, 503, unavailable["detail"], "unavailable")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return _answer(request, 500, "Internal error; it has been logged.", "internal")


def bad_request_json(request, exception=None):
    if isinstance(exception, RequestDataTooBig):
        return _answer(request, 413, "The request body is too large.", "payload_too_large")
    if isinstance(exception, TooManyFieldsSent):
        return _answer(request, 400, f"Too many form fields: more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,}, "
                       "this server's limit (DATA_UPLOAD_MAX_NUMBER_FIELDS).", "bad_data")
    return _answer(request, 400, "Bad request.", "bad_data")

