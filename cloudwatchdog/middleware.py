"""Checks every request passes before any view reads it."""
from django.http import JsonResponse


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
