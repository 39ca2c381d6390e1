"""The Celery app and its beat schedule (detection every DETECTION_INTERVAL_SECONDS)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudwatchdog.settings")

app = Celery("cloudwatchdog")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
