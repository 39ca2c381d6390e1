"""The Celery app, configured from Django's settings (its beat schedule is CELERY_BEAT_SCHEDULE there)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")

app = Celery("cloudwatchdog")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
