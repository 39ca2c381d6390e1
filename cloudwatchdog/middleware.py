"""Checks every request passes before any view reads it."""
import io

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import JsonResponse
from django.urls import Resolver404, resolve


class ChunkedBodyMiddleware:
    """A body sent without Content-Length (Transfer-Encoding: chunked) is read, not taken as empty.

    Django reads a body with no Content-Length as empty, so a streamed request would be parsed as
    nothing at all (an OTLP export answered 200, its points lost). A server that decodes chunked
    bodies says so with wsgi.input_terminated (gunicorn does); then the body is read here, up to
    DATA_UPLOAD_MAX_MEMORY_SIZE (413 past it), or, for the views that read their own body under
    the tenant's MAX_BODY_BYTES (`reads_own_body`), handed to them as a stream. Without it: 411."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        meta = request.META
        if meta.get("CONTENT_LENGTH") or not meta.get("HTTP_TRANSFER_ENCODING"):
            return self.get_response(request)
        if not meta.get("wsgi.input_terminated"):
            return JsonResponse({"detail": "Send the body with a Content-Length: this server cannot read a chunked "
                                 "body.", "errors": {}}, status=411)
        if _reads_own_body(request.path_info):
            request._stream = LimitedStream(meta["wsgi.input"], settings.TENANT_LIMIT_CEILINGS["MAX_BODY_BYTES"] + 1)
            return self.get_response(request)
        body = meta["wsgi.input"].read(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
        if len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return JsonResponse({"detail": f"The request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
                                 "errors": {}}, status=413)
        request._stream, meta["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        return self.get_response(request)


def _reads_own_body(path: str) -> bool:
    try:
        view = resolve(path).func
    except Resolver404:
        return False
    return getattr(getattr(view, "cls", view), "reads_own_body", False)

from cloudwatchdog.forms import whole_number


class RefuseNulMiddleware:
    """A query parameter or form field holding NUL is a 400 before any view reads it: PostgreSQL stores
    no NUL, and every filter and form (the API's and the admin's, Django's own among them) would fail
    on one. JSON and protobuf bodies are their parsers' to check."""

    FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        fields = [request.GET] + ([request.POST] if request.content_type in self.FORMS else [])
        if any(_holds_nul(field) for field in fields):
            return JsonResponse({"detail": "A query parameter or form field holds a NUL character.", "errors": {}},
                                status=400)
        return self.get_response(request)


def _holds_nul(fields) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in fields.lists())



class RefuseBadAdminParametersMiddleware:
    """Two of the admin's own parameters that Django uses unchecked are a 400: an empty `_to_field` passes
    its check and is then looked up as a field name on every change and delete page (FieldDoesNotExist),
    and the rows an action is given (`_selected_action`) go into `pk__in` as they come ("²", 5,000 digits:
    ValueError). Both were 500s. The admin's own pages always name the field, and every model here has a
    whole-number primary key; nothing outside the admin reads either parameter."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        fields = [request.GET] + ([request.POST] if request.content_type in RefuseNulMiddleware.FORMS else [])
        if any(field.get("_to_field", None) == "" for field in fields):
            return _refused("_to_field, when given, names a field.")
        selected = [pk for field in fields for pk in field.getlist("_selected_action")]
        if any(whole_number(pk, at_most=2**63 - 1) is None for pk in selected):
            return _refused("_selected_action gives the ids of the rows to act on.")
        return self.get_response(request)


def _refused(detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail, "errors": {}}, status=400)
