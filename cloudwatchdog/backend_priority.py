"""A niced role's database work runs at the role's nice level too, when PostgreSQL shares the machine.

The roles are niced so that on shared cores the kernel runs reads first (ingest workers at INGEST_NICE,
Celery workers at 5). On one machine most of a request's CPU is spent in its PostgreSQL backend, which the
postmaster starts at nice 0: without this, a flood of writes or a detection pass competes with reads at
full weight in the database, whatever the role's own priority. Connected only when DATABASE_BACKENDS_SHARE_NICE
is on (the default with the embedded PostgreSQL: same host, same user); with PostgreSQL on another host a
backend's pid means nothing here."""
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def carry_niceness_to_backend(sender, connection, **kwargs) -> None:
    """connection_created receiver: renice the new connection's backend to this process's nice level."""
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if nice <= 0 or connection.vendor != "postgresql":
        return
    pid = connection.connection.info.backend_pid
    try:
        # The pid is the server's: check it names a postgres process here before touching it.
        if not Path(f"/proc/{pid}/comm").read_text().startswith("postgres"):
            return
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    except OSError as error:  # not ours to renice (another user's server), or gone already
        log.info("database backend %s keeps its priority: %s", pid, error)
