"""The balanced gthread worker: keep-alive connections spread over workers, none left waiting."""
import http.client
import os
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


def _gunicorn_start(*options: str, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "tests.pid_app:app", "--bind", f"127.0.0.1:{port}", *options],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    _wait_listening(process, port)
    return process, port


def _wait_listening(process: subprocess.Popen, port: int) -> None:
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


@pytest.fixture
def server():
    process, port = _gunicorn_start("--workers", "2", "--threads", "1", "--keep-alive", "30",
                                    "--worker-class", "cloudwatchdog.gunicorn_worker.BalancedThreadWorker")
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


def test_two_instances_on_a_host_keep_apart_and_none_opens_the_shared_control_socket(tmp_path):
    home, runtime = tmp_path / "home", tmp_path / "runtime"
    home.mkdir(), runtime.mkdir()
    shared = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    config = ("--config", "cloudwatchdog/gunicorn.conf.py", "--workers", "1")
    plain, _ = _gunicorn_start(*config, env=shared)
    named, _ = _gunicorn_start(*config, env={**shared, "GUNICORN_CONTROL_SOCKET": str(tmp_path / "named.ctl")})
    try:
        time.sleep(1)
        assert [p.name for p in runtime.rglob("*")] == [] and [p.name for p in home.rglob("*")] == []
        assert (tmp_path / "named.ctl").is_socket()
        assert plain.poll() is None and named.poll() is None
    finally:
        for process in (plain, named):
            process.terminate()
            process.wait(timeout=10)
