"""Checks every request passes before any view reads it."""
import io
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream, get_bytes_from_wsgi
from django.http import JsonResponse, QueryDict
from django.urls import Resolver404, resolve
from django.utils.datastructures import MultiValueDict

from cloudwatchdog.errors import PROMETHEUS_PREFIX
from cloudwatchdog.forms import whole_number


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


# Prometheus limits a form by its size alone; Grafana and API clients send a `match[]` per series they ask about.
# Each `match[]` is a series lookup of its own (about 1 ms), so 10,000 bound a request to seconds.
PROMETHEUS_MAX_FORM_FIELDS = 10_000


class PrometheusFormMiddleware:
    """The Prometheus API's URL and urlencoded body are parsed here, with up to PROMETHEUS_MAX_FORM_FIELDS
    fields (its body stays under DATA_UPLOAD_MAX_MEMORY_SIZE, 413 past it), before any other middleware reads
    them: Django's DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000) refused 2,000 `match[]` as a bare "Bad request.".
    Past the limit: Prometheus' bad_data, naming it. Every other path keeps Django's parsing and limit."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path_info.startswith(PROMETHEUS_PREFIX):
            return self.get_response(request)
        try:
            request.GET = _form(get_bytes_from_wsgi(request.META, "QUERY_STRING", ""), request.encoding, "URL")
            if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
                request.POST = _form(request.body, request.encoding, "body")
                request._files = MultiValueDict()
        except _TooManyFields as error:
            return JsonResponse({"status": "error", "errorType": "bad_data", "error": str(error)}, status=400)
        return self.get_response(request)


class _TooManyFields(Exception):
    pass


def _form(raw: bytes, encoding: str | None, where: str) -> QueryDict:
    """The form as Django's QueryDict parses it, with the Prometheus API's limit on its fields."""
    encoding = encoding or settings.DEFAULT_CHARSET
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        text = raw.decode("iso-8859-1")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding=encoding, max_num_fields=PROMETHEUS_MAX_FORM_FIELDS)
    except ValueError:
        raise _TooManyFields(f"too many form fields in the {where}: more than {PROMETHEUS_MAX_FORM_FIELDS:,}, this "
                             "server's limit (PROMETHEUS_MAX_FORM_FIELDS)") from None
    form = QueryDict(mutable=True, encoding=encoding)
    for key, value in pairs:
        form.appendlist(key, value)
    form._mutable = False
    return form




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
