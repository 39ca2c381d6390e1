"""`make run` as a user meets it: started in a terminal's process group, stopped with Ctrl-C (SIGINT
to the whole group), started again at once, every time; and left in a mess by kill -9 of a part.
Each test uses a data directory of its own (embedded PostgreSQL and Redis included)."""
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from scripts.serve import _group_alive

ROOT = Path(__file__).resolve().parent.parent
STOP_LIMIT_SECONDS = 15
CYCLES = int(os.environ.get("MAKE_RUN_CYCLES", "10"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _session_processes(sid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid and "Z" not in Path(f"/proc/{entry}/stat").read_text().split()[2]:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def _processes_using(data_dir: Path) -> list[str]:
    """Every live process whose command line names the data directory (postgres, redis-server)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                line = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(data_dir) in line:
                found.append(f"{entry} {line[:120]}")
    return found


class MakeRun:
    def __init__(self, data_dir: Path, port: int):
        self.data_dir, self.port = data_dir, port
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "REDIS_URL", "PYTEST_VERSION", "DATABASE_STATEMENT_TIMEOUT")}
        self.env.update(CLOUDWATCHDOG_DATA_DIR=str(data_dir), PORT=str(port), GUNICORN_WORKERS="2",
                        CELERY_CONCURRENCY="1")
        self.process = None

    def start(self) -> None:
        log_path = self.data_dir / "make-run.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        log = open(log_path, "a")
        # A session of its own, as a terminal gives a foreground job: SIGINT goes to all of it.
        self.process = subprocess.Popen(["make", "run"], cwd=ROOT, env=self.env, start_new_session=True,
                                        stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_tail()
            if "CloudWatchDog is up" not in log_path.read_text()[offset:]:
                time.sleep(0.2)
                continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("make run did not become ready:\n" + self.log_tail())

    def ctrl_c(self) -> float:
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        while _session_processes(self.process.pid) and time.monotonic() - started < STOP_LIMIT_SECONDS + 5:
            self.process.poll()
            time.sleep(0.1)
        return time.monotonic() - started

    def log_tail(self) -> str:
        return (self.data_dir / "make-run.log").read_text()[-3000:]

    def supervisor_pid(self) -> int:
        for pid in _session_processes(self.process.pid):
            if b"scripts/serve.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        raise AssertionError("no supervisor")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # One for the module: PostgreSQL's initdb costs seconds, and every test starts from a stopped state.
    return tmp_path_factory.mktemp("make-run")


@pytest.fixture
def make_run(data_dir):
    runner = MakeRun(data_dir, _free_port())
    yield runner
    if runner.process is not None and _session_processes(runner.process.pid):
        os.killpg(runner.process.pid, signal.SIGKILL)
    for pid_file in (data_dir / "run").glob("*.pid"):  # roles a failed test left running
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass
    subprocess.run([str(ROOT / ".venv/bin/python"), "-c",
                    "from pathlib import Path; from cloudwatchdog import embedded; embedded.stop_all(Path('.'))"],
                   cwd=ROOT, env=runner.env, capture_output=True)


def _assert_all_stopped(make_run, took):
    assert took < STOP_LIMIT_SECONDS, f"stopping took {took:.1f} s\n" + make_run.log_tail()
    assert _session_processes(make_run.process.pid) == []
    assert _processes_using(make_run.data_dir) == [], make_run.log_tail()
    assert _port_free(make_run.port)


def test_ctrl_c_stops_everything_and_make_run_starts_again_every_time(make_run):
    for cycle in range(CYCLES):
        make_run.start()
        took = make_run.ctrl_c()
        _assert_all_stopped(make_run, took)
        assert "CloudWatchDog stopped." in make_run.log_tail(), f"cycle {cycle}"


def test_kill_9_of_the_supervisor_leaves_nothing_in_the_way_of_the_next_start(make_run):
    make_run.start()
    os.kill(make_run.supervisor_pid(), signal.SIGKILL)  # its roles get SIGTERM from the kernel
    make_run.process.wait(timeout=10)
    make_run.start()  # whatever of the roles is still stopping is stopped by its pid file first
    _assert_all_stopped(make_run, make_run.ctrl_c())


def _answer_status(port: int, method: str, path: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"{}" if method == "POST" else None,
                                     method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("role", ["web", "ingest", "front"])
def test_kill_9_of_the_front_or_a_pool_stops_the_rest_and_the_next_start_works(make_run, role):
    make_run.start()
    # One port, two pools: a read and an ingest request are each answered by a live gunicorn.
    assert _answer_status(make_run.port, "GET", "/healthz") == 200
    assert _answer_status(make_run.port, "POST", "/api/v1/ingest/metrics") == 401  # no key: the ingest pool's answer
    process = int((make_run.data_dir / "run" / f"{role}.pid").read_text())
    os.kill(process, signal.SIGKILL)
    assert make_run.process.wait(timeout=STOP_LIMIT_SECONDS) != 0
    assert _session_processes(make_run.process.pid) == []
    make_run.start()
    _assert_all_stopped(make_run, make_run.ctrl_c())


def test_kill_9_of_the_worker_starts_it_again_and_the_rest_stays_up(make_run):
    make_run.start()
    pid_file = make_run.data_dir / "run" / "worker.pid"
    worker = int(pid_file.read_text())
    os.killpg(worker, signal.SIGKILL)  # the worker and its pool, as an OOM kill or a crash leaves it
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not pid_file.exists() or int(pid_file.read_text()) == worker):
        time.sleep(0.2)
    restarted = int(pid_file.read_text())
    assert restarted != worker and _group_alive(restarted), make_run.log_tail()
    for role in ("worker", "worker_bulk", "web"):  # inline detection never spawns a process per core
        role_pid = int((make_run.data_dir / "run" / f"{role}.pid").read_text())
        assert b"\0DETECTION_PROCESSES=1\0" in b"\0" + Path(f"/proc/{role_pid}/environ").read_bytes()
    assert make_run.process.poll() is None  # make run is still up
    assert "starting it again" in make_run.log_tail()
    _assert_all_stopped(make_run, make_run.ctrl_c())


def test_a_cut_short_pgserver_handle_file_does_not_stop_the_next_start(make_run):
    make_run.start()
    _assert_all_stopped(make_run, make_run.ctrl_c())
    (make_run.data_dir / "postgres" / ".handle_pids.json").write_text("")  # as a killed writer leaves it
    make_run.start()
    _assert_all_stopped(make_run, make_run.ctrl_c())
