"""The WSGI application gunicorn serves: Django's handler, and for the ingest paths a second one with a
short middleware list (INGEST_MIDDLEWARE).

An agent's POST with an API key needs none of the session, CSRF, auth, messages, static-file, admin
and Prometheus-form middlewares; on a 100-point batch they were a measurable share of the request
(bench/ingest_profile.py). Both handlers share the URLconf, views, DRF and error handlers, so answers,
auth refusals and each protocol's error bodies are the same whichever handler serves a path.
"""
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")
application_full = get_wsgi_application()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402 (after setup)

from cloudwatchdog.routes import INGEST_ROUTES  # noqa: E402

# The exact paths of the ingest endpoints, as the ingest pool is routed (cloudwatchdog/routes.py); anything
# else, a trailing slash or a typo included, goes to the full handler and is answered as before.
INGEST_PATHS = frozenset(path for _, path in INGEST_ROUTES)
INGEST_MIDDLEWARE = [
    "cloudwatchdog.telemetry.RequestTimingMiddleware",
    "cloudwatchdog.middleware.ChunkedBodyMiddleware",
    "cloudwatchdog.middleware.RefuseNulMiddleware",
    "django.middleware.security.SecurityMiddleware",  # HTTPS redirect, HSTS, nosniff as on every answer
    "tenants.middleware.ApiKeyTenantMiddleware",
]


class IngestHandler(WSGIHandler):
    """Django's WSGI handler with INGEST_MIDDLEWARE instead of MIDDLEWARE."""

    def load_middleware(self, is_async=False):
        # BaseHandler reads settings.MIDDLEWARE; swapped only while this handler is built, at import.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = INGEST_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full

    def get_response(self, request):
        response = super().get_response(request)
        # CommonMiddleware's one step an agent relies on: without it gunicorn would answer chunked.
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        return response


application_ingest = IngestHandler()


def application(environ, start_response):
    handler = application_ingest if environ.get("PATH_INFO") in INGEST_PATHS else application_full
    return handler(environ, start_response)
