"""A niced role's PostgreSQL backend runs at the role's nice level when the database shares the machine
(cloudwatchdog/backend_priority.py), so a flood of writes or a detection pass cannot outrank reads there."""
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import app_process_env

ROOT = Path(__file__).resolve().parent.parent
# Connects as the app does and prints the priority the kernel gives the backend serving it.
BACKEND_NICE = """
import os, django
django.setup()
from django.db import connection
connection.ensure_connection()
print(os.getpriority(os.PRIO_PROCESS, connection.connection.info.backend_pid))
"""


def _backend_nice(*, share: str, nice: int) -> int:
    done = subprocess.run(["nice", "-n", str(nice), sys.executable, "-c", BACKEND_NICE], cwd=ROOT,
                          env=app_process_env(DATABASE_BACKENDS_SHARE_NICE=share,
                                              DJANGO_SETTINGS_MODULE="cloudwatchdog.settings"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.django_db
def test_a_niced_process_backend_runs_at_its_nice_and_an_unniced_one_is_left_alone():
    assert _backend_nice(share="true", nice=7) == 7
    assert _backend_nice(share="true", nice=0) == 0


@pytest.mark.django_db
def test_backends_keep_their_priority_when_the_database_is_not_shared():
    assert _backend_nice(share="false", nice=7) == 0
