"""The Celery app, configured from Django's settings (its beat schedule is CELERY_BEAT_SCHEDULE there)."""
import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")

app = Celery("cloudwatchdog")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _session_follows_nice(**kwargs) -> None:
    # The Procfile nices the workers below web and ingest; in a session of their own that only counts
    # once the session's autogroup has the same level (cloudwatchdog/backend_priority.py).
    from cloudwatchdog.backend_priority import own_session_follows_nice

    own_session_follows_nice(role_pid=os.getpid())
