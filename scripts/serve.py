"""`make run`'s supervisor: starts the Procfile's roles (web, ingest, ingest_bulk, worker, worker_bulk,
beat) and the front on BIND (cloudwatchdog/front.py: make run's one port, routing each request to the
ingest (or, for a flooding key, ingest_bulk) or the web pool's unix socket under .data/run/), prints the demo tenant's key, and stops everything,
the embedded servers included, on Ctrl-C, TERM or when the front or a gunicorn pool dies. A
background role (worker, worker_bulk, beat) that dies is started again after a
growing pause (1 s up to 30 s): a Celery worker can die of its broker going away (seen: kombu's reconnect race while
Redis was down took the whole stack with it); one that dies again and again (10 times in 10
minutes) stops everything, as something is wrong at start-up.

Each role runs in a session of its own, so the terminal's Ctrl-C (SIGINT to its whole process
group) reaches only this supervisor, which then sends each role's main process one SIGTERM: a
gunicorn or Celery worker that got the terminal's signal and its master's at once could hang in
its shutdown (seen: a gthread worker deadlocked, orphaned and holding the port). A role still
running after STOP_SECONDS is killed with its whole process group. Each role also gets SIGTERM
from the kernel if this supervisor dies (PR_SET_PDEATHSIG), and a leftover of an earlier
supervisor that was killed -9 is found by its pid file and stopped before starting again.
"""
from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STOP_SECONDS = 12  # within the 15 s a user waits for Ctrl-C; gunicorn's graceful_timeout is 10
RESTARTED_ROLES = ("worker", "worker_bulk", "beat")
RESTART_PAUSES = (1, 2, 5, 10, 30)  # seconds before the 1st, 2nd, ... restart within the window
RESTART_WINDOW_SECONDS = 600
MAX_RESTARTS_IN_WINDOW = 10
_PR_SET_PDEATHSIG = 1


def procfile_roles(path: Path = ROOT / "Procfile") -> dict[str, str]:
    roles = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            roles[name.strip()] = command.strip()
    return roles


def _die_with_parent():
    os.setsid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Supervisor:
    def __init__(self, data_dir: Path, env: dict[str, str]):
        self.pid_dir = data_dir / "run"
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.children: dict[str, subprocess.Popen] = {}
        self.roles: dict[str, str] = {}
        self.restarts: dict[str, list[float]] = {}  # when each role was restarted, within the window
        self.pending: dict[str, float] = {}  # roles waiting to start again, and when
        self.stopping = False

    def stop_leftovers(self) -> None:
        """Stop the roles of an earlier supervisor that died without stopping them."""
        for pid_file in self.pid_dir.glob("*.pid"):
            try:
                pgid = int(pid_file.read_text())
            except ValueError:
                pgid = 0
            if pgid > 1 and _group_alive(pgid) and _is_ours(pgid):
                print(f"stopping a leftover {pid_file.stem} (process group {pgid}) of an earlier run", file=sys.stderr)
                self._stop_groups([pgid])
            pid_file.unlink(missing_ok=True)

    def start(self, roles: dict[str, str]) -> None:
        self.roles = dict(roles)
        for name in roles:
            self._start_role(name)

    def _start_role(self, name: str) -> None:
        child = subprocess.Popen(["/bin/sh", "-c", f"exec {self.roles[name]}"], cwd=ROOT, env=self.env,
                                 preexec_fn=_die_with_parent)
        self.children[name] = child
        (self.pid_dir / f"{name}.pid").write_text(str(child.pid))

    def listen_for_signals(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def wait(self) -> int:
        """Until a signal, the web server's exit or a role that keeps dying; returns the exit status for make."""
        while not self.stopping:
            now = time.monotonic()
            for name, child in list(self.children.items()):
                if name in self.pending:
                    if now >= self.pending[name]:
                        del self.pending[name]
                        print(f"starting {name} again", file=sys.stderr)
                        self._start_role(name)
                    continue
                if child.poll() is None:
                    continue
                recent = [t for t in self.restarts.get(name, []) if now - t < RESTART_WINDOW_SECONDS]
                if name not in RESTARTED_ROLES or len(recent) >= MAX_RESTARTS_IN_WINDOW:
                    print(f"\n{name} exited with status {child.returncode}; stopping the others", file=sys.stderr)
                    return 1
                # Whatever of its process group is left (a Celery worker's pool) goes first.
                self._stop_groups([child.pid])
                pause = RESTART_PAUSES[min(len(recent), len(RESTART_PAUSES) - 1)]
                print(f"\n{name} exited with status {child.returncode}; starting it again in {pause} s", file=sys.stderr)
                self.restarts[name] = recent + [now]
                self.pending[name] = now + pause
            time.sleep(0.2)
        return 0

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True  # a second Ctrl-C changes nothing: the stop is already bounded

    def stop(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # the role's main process only; it stops its own workers
        self._stop_groups([child.pid for child in self.children.values()])
        for name in self.children:
            (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)

    def _stop_groups(self, pgids: list[int]) -> None:
        deadline = time.monotonic() + STOP_SECONDS
        for pgid in pgids:
            if not _group_alive(pgid):
                continue
            if pgid not in [child.pid for child in self.children.values()]:
                os.killpg(pgid, signal.SIGTERM)
            while _group_alive(pgid) and time.monotonic() < deadline:
                _reap(self.children)
                time.sleep(0.1)
            if _group_alive(pgid):
                print(f"process group {pgid} did not stop in {STOP_SECONDS} s; killing it", file=sys.stderr)
                os.killpg(pgid, signal.SIGKILL)
        _reap(self.children)


def _reap(children: dict[str, subprocess.Popen]) -> None:
    for child in children.values():
        child.poll()


def _is_ours(pgid: int) -> bool:
    """Whether a process group's leader runs from this checkout (pids are reused)."""
    try:
        return str(ROOT) in Path(f"/proc/{pgid}/cwd").resolve().as_posix() or \
            str(ROOT) in Path(f"/proc/{pgid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _port_free(bind: str) -> bool:
    host, _, port = bind.rpartition(":")
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
            return True
        except OSError:
            return False


def roles_environment(data_dir: Path, run_dir: Path) -> dict:
    """The roles' environment: this one's, with make run's defaults for what it leaves unset."""
    venv_bin = Path(sys.executable).parent
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    port = env.setdefault("PORT", "8000")
    env.setdefault("BIND", f"127.0.0.1:{port}")
    env.setdefault("CELERY_BEAT_SCHEDULE_FILE", str(data_dir / "celerybeat-schedule"))
    # One machine serves the web and detection here: a large pass must not spawn a process per core
    # and take the cores the web needs (production sets it per role, see the README).
    env.setdefault("DETECTION_PROCESSES", "1")
    # Every role counts into files here, and /metrics sums them (cloudwatchdog.telemetry); counts of
    # an earlier run are not this run's, so the directory starts empty.
    metrics_dir = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(data_dir / "run" / "prometheus")))
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    # The pools listen on unix sockets; the front alone holds BIND (issue 26: reads apart from ingest).
    env.setdefault("FRONT_BIND", env["BIND"])
    env.setdefault("INGEST_BIND", f"unix:{run_dir / 'ingest.sock'}")
    env.setdefault("INGEST_BULK_BIND", f"unix:{run_dir / 'ingest_bulk.sock'}")
    env.setdefault("WEB_BIND", f"unix:{run_dir / 'web.sock'}")
    # The front sends a flood to ingest_bulk (nice 15), so the ingest pool serves tenants that do not flood;
    # their agents wait on each request as readers do: another tenant's ingest p99 while one floods was
    # 2.1x its figure alone at nice 5, 1.4-1.6x at 0 (bench/mixed_load.py).
    env.setdefault("INGEST_NICE", "0")
    return env


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from cloudwatchdog import embedded

    data_dir = embedded.data_dir(ROOT)
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = roles_environment(data_dir, run_dir)
    supervisor = Supervisor(data_dir, env)
    supervisor.listen_for_signals()  # from here on, Ctrl-C at any moment ends in stop() below
    status = 1
    try:
        supervisor.stop_leftovers()
        if not _port_free(env["BIND"]):
            print(f"{env['BIND']} is in use by another program; stop it or set PORT (or BIND).", file=sys.stderr)
            return 1
        # Migrations, this week's partitions, static files and the demo key, in one process.
        demo = subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare.py")], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True)
        if supervisor.stopping or demo.returncode != 0:
            return 1
        for name in ("ingest.sock", "ingest_bulk.sock", "web.sock"):  # an earlier run killed -9 leaves them
            (run_dir / name).unlink(missing_ok=True)
        supervisor.start({**procfile_roles(), "front": f"{shlex.quote(sys.executable)} -m cloudwatchdog.front"})
        print(f"""
CloudWatchDog is up:
  API      http://{env['BIND']}/api/v1/   (schema: /api/schema/, docs: /api/docs/)
  admin    http://{env['BIND']}/admin/    (create a user: .venv/bin/python manage.py createsuperuser)
  health   http://{env['BIND']}/healthz    metrics (Prometheus): http://{env['BIND']}/metrics
  agents   OTLP/HTTP http://{env['BIND']}/v1/metrics, remote write http://{env['BIND']}/api/v1/write
Demo tenant 'demo', new API key (shown once):
{demo.stdout.strip()}
""", flush=True)
        status = supervisor.wait()
    finally:
        supervisor.stop()
        if not env.get("DATABASE_URL") or not env.get("REDIS_URL"):
            embedded.stop_all(ROOT)
        print("CloudWatchDog stopped.", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
