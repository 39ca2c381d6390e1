"""The balanced gthread worker: keep-alive connections spread over workers, none left waiting."""
import http.client
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "tests.pid_app:app", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--threads", "1", "--worker-class", "cloudwatchdog.gunicorn_worker.BalancedThreadWorker",
         "--keep-alive", "30"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.1)
    time.sleep(1)  # both workers booted and polling the listener
    yield port
    process.terminate()
    process.wait(timeout=10)


def _pid(connection: http.client.HTTPConnection) -> int:
    connection.request("GET", "/")
    return int(connection.getresponse().read())


def test_keep_alive_connections_are_spread_over_the_workers_and_an_extra_one_is_still_served(server):
    first = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    second = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    first_pid = _pid(first)
    second_pid = _pid(second)
    assert first_pid != second_pid
    assert _pid(first) == first_pid and _pid(second) == second_pid  # kept alive on their workers
    # Every worker holds a connection: a third one is taken anyway after a short wait.
    third = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    began = time.monotonic()
    assert _pid(third) in (first_pid, second_pid)
    assert time.monotonic() - began < 5
    for connection in (first, second, third):
        connection.close()
