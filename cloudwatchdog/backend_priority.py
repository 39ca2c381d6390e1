"""Niced roles keep their priority on a shared machine: in their own session, and in their database work.

The roles are niced so that on shared cores the kernel runs reads and agents' writes first (a flood's
ingest_bulk workers at INGEST_BULK_NICE, Celery workers at 10 and 12, ingest workers at INGEST_NICE). Two things undo a nice level on Linux:

- **Autogroups** (kernel.sched_autogroup_enabled, on by default in most distributions): the scheduler
  shares the CPU between sessions first, and a nice level only counts inside its own session. `make run`
  and systemd start each role in a session of its own, and every PostgreSQL backend makes its own (the
  postmaster's children call setsid), so a niced worker or backend competed with reads at full weight.
  A session's weight is its autogroup's nice value (/proc/<pid>/autogroup, sched(7)); a process may
  raise its own without privileges.
- **The backend's own nice**: the postmaster starts every backend at nice 0, and on one machine most of
  a request's CPU is spent there.

So a niced role gives its session's autogroup its nice level when it leads that session (`own_session_follows_nice`,
at start: never a terminal's, which its shell leads), and
a connection's backend gets the nice level of the process it serves (`carry_niceness_to_backend`,
connected only when DATABASE_BACKENDS_SHARE_NICE is on: the default with the embedded PostgreSQL, same
host and user; with PostgreSQL on another host a backend's pid means nothing here).
"""
import errno
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

# The kernel takes one autogroup change every 100 ms from unprivileged processes, machine-wide (EAGAIN
# otherwise): a role at start-up waits its turn; a new connection's backend, on a request's path, tries briefly.
_ROLE_TRIES, _BACKEND_TRIES, _AUTOGROUP_PAUSE = 40, 3, 0.11


def carry_niceness_to_backend(sender, connection, **kwargs) -> None:
    """connection_created receiver: renice the new connection's backend (and its session) to this process's nice level."""
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if nice <= 0 or connection.vendor != "postgresql":
        return
    pid = connection.connection.info.backend_pid
    try:
        # The pid is the server's: check it names a postgres process here before touching it.
        if not Path(f"/proc/{pid}/comm").read_text().startswith("postgres"):
            return
        os.setpriority(os.PRIO_PROCESS, pid, nice)
        if os.getsid(pid) == pid:  # a backend alone in its session: its autogroup is its own
            autogroup_nice_set(pid, nice, tries=_BACKEND_TRIES)
    except OSError as error:  # not ours to renice (another user's server), or gone already
        log.info("database backend %s keeps its priority: %s", pid, error)


def own_session_follows_nice(*, role_pid: int) -> None:
    """Give this process's session (autogroup) its nice level when the role's process `role_pid` (this one,
    or a gunicorn worker's master) leads it, as make run and systemd start a role: a role started from a
    terminal shares the shell's session, which keeps its weight."""
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > 0 and os.getsid(0) == role_pid:
        try:
            autogroup_nice_set(os.getpid(), nice, tries=_ROLE_TRIES)
        except OSError as error:
            log.info("this role's session keeps its priority: %s", error)


def autogroup_nice_set(pid: int, nice: int, *, tries: int) -> None:
    """Set the nice level of `pid`'s autogroup, unless it has it already (another process of the session
    may set it meanwhile) or the kernel has no autogroups."""
    path = Path(f"/proc/{pid}/autogroup")
    for attempt in range(tries):
        try:
            if path.read_text().split()[-1] == str(nice):
                return
        except FileNotFoundError:  # a kernel built without autogroups: nice levels count as they are
            return
        try:
            path.write_text(str(nice))
            return
        except OSError as error:
            if error.errno != errno.EAGAIN or attempt == tries - 1:
                raise
            time.sleep(_AUTOGROUP_PAUSE)
