"""Shared test fixtures: tenants built through the services, API clients with their keys, a real Celery worker."""
import shutil
import subprocess
import uuid

import pytest

from tenants.services import api_key_issue, tenant_create
from tests.helpers import ApiClient, apt_install


@pytest.fixture
def make_tenant(db):
    def make(slug=None, scope="all"):
        tenant = tenant_create(slug=slug or f"t-{uuid.uuid4().hex[:8]}")
        issued = api_key_issue(tenant=tenant, scope=scope)
        return ApiClient(issued.plaintext, tenant)

    return make


@pytest.fixture
def owner(make_tenant):
    return make_tenant("owner")


@pytest.fixture
def outsider(make_tenant):
    return make_tenant("outsider")


@pytest.fixture(autouse=True)
def _ingest_finishes_inline(settings):
    """Each ingest request's charge lands before the test's next request (tests of the background thread
    turn it back on)."""
    settings.INGEST_FINISH_IN_BACKGROUND = False


@pytest.fixture(autouse=True)
def _forget_process_caches():
    """Per-process caches of series ids and partitions would outlive a test's rolled-back rows."""
    from metrics.services import series_cache
    from metrics.storage import forget_known_partitions
    from tenants.selectors import api_key_cache_clear

    forget_known_partitions()
    series_cache.clear()
    api_key_cache_clear()
    yield
    forget_known_partitions()
    series_cache.clear()


@pytest.fixture(scope="session")
def prometheus_binaries() -> tuple[str, str]:
    """Paths of Debian's prometheus and promtool, installed with apt-get when missing (as on CI's clean
    machine, where the suite runs as root)."""
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        apt_install("prometheus")
        # The package may start its own server on :9090; the tests run theirs on free ports.
        subprocess.run(["pkill", "-x", "prometheus"], capture_output=True)
    return shutil.which("prometheus"), shutil.which("promtool")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium for the browser tests, installed with apt-get when missing (as CI's clean machine)."""
    if not shutil.which("chromium"):
        apt_install("chromium")
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium(chromium_path):
    """One headless Chromium for a test module (tests/browser_checks.py says how it starts)."""
    from playwright.sync_api import sync_playwright

    from tests.browser_checks import CHROMIUM_ARGS

    # Playwright's sync API runs an event loop in this thread, and Django refuses ORM calls where
    # one runs; the test's own ORM calls are synchronous all the same (Django's documented way out).
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        launched = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def browser(chromium):
    """A fresh page (its own cookies and storage) at 1,400 x 1,000."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker (in a thread of this process) on the real Redis broker."""
    from celery.contrib.testing.worker import start_worker
    from django.conf import settings

    from cloudwatchdog.celery import app

    queues = [settings.CELERY_TASK_DEFAULT_QUEUE, *settings.TASK_QUEUES.values()]
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30, queues=queues) as worker:
        yield worker
