"""A niced role keeps its priority on a shared machine (cloudwatchdog/backend_priority.py): its PostgreSQL
backend runs at the role's nice level when the database shares the machine, and a role in a session of its
own gives the session's autogroup its nice level, so a flood of writes or a detection pass cannot outrank
reads."""
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
pid = connection.connection.info.backend_pid
autogroup = open(f"/proc/{pid}/autogroup").read().split()[-1] if os.path.exists(f"/proc/{pid}/autogroup") else "-"
print(os.getpriority(os.PRIO_PROCESS, pid), autogroup)
"""
# Prints this process's autogroup nice before and after a role's start-up call.
SESSION_NICE = """
import os
from cloudwatchdog.backend_priority import own_session_follows_nice
before = open("/proc/self/autogroup").read().split()[-1]
own_session_follows_nice(role_pid=os.getpid())
print(before, open("/proc/self/autogroup").read().split()[-1])
"""
needs_autogroups = pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="a kernel without autogroups")


def _backend_nice(*, share: str, nice: int) -> tuple[int, str]:
    done = subprocess.run(["nice", "-n", str(nice), sys.executable, "-c", BACKEND_NICE], cwd=ROOT,
                          env=app_process_env(DATABASE_BACKENDS_SHARE_NICE=share,
                                              DJANGO_SETTINGS_MODULE="cloudwatchdog.settings"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    priority, autogroup = done.stdout.split()[-2:]
    return int(priority), autogroup


@pytest.mark.django_db
def test_a_niced_process_backend_runs_at_its_nice_and_an_unniced_one_is_left_alone():
    assert _backend_nice(share="true", nice=7)[0] == 7
    assert _backend_nice(share="true", nice=0)[0] == 0


@needs_autogroups
@pytest.mark.django_db
def test_a_niced_process_backend_session_gets_its_nice_too():
    # Each backend is alone in its session: its nice level alone would count for nothing against others.
    assert _backend_nice(share="true", nice=7) == (7, "7")


@pytest.mark.django_db
def test_backends_keep_their_priority_when_the_database_is_not_shared():
    assert _backend_nice(share="false", nice=7)[0] == 0


def _session_nice(*, nice: int, own_session: bool) -> tuple[str, str]:
    command = ["nice", "-n", str(nice), sys.executable, "-c", SESSION_NICE]
    if not own_session:
        # under a shell that leads its session, as a terminal's does (setsid: a session of the test's own)
        command = ["setsid", "sh", "-c", '"$@"; exit $?', "sh", *command]
    done = subprocess.run(command, cwd=ROOT, start_new_session=own_session, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.split()
    return before, after


@needs_autogroups
def test_a_niced_role_in_its_own_session_gives_the_session_its_nice():
    assert _session_nice(nice=6, own_session=True) == ("0", "6")


@needs_autogroups
def test_a_niced_process_in_a_shared_session_leaves_the_session_alone():
    # Started from a terminal, the session is the shell's: its other processes keep their weight.
    before, after = _session_nice(nice=6, own_session=False)
    assert after == before
