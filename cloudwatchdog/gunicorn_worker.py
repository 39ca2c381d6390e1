"""A gthread worker that spreads keep-alive connections over the workers.

Gunicorn's workers race to accept, and the winner keeps a keep-alive connection for its life: four
agents often land three and one on two workers while a third idles, and the busy one is bound by
its GIL. This worker stops accepting while it holds as many connections as it has threads, leaving
new ones to the others. A connection that no worker took within OVERFLOW_SECONDS is taken anyway,
so when every worker is full a new connection waits about a second at most, once.
"""
import select
import time

from gunicorn.workers.gthread import ThreadWorker

OVERFLOW_SECONDS = 0.2


class BalancedThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        self._overflow = 0  # connections taken beyond one per thread because nobody else took them
        self._pending_since = None
        super().__init__(*args, **kwargs)

    @property
    def worker_connections(self) -> int:
        return min(self._configured_connections, self.cfg.threads + self._overflow)

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._configured_connections = value

    def wait_for_and_dispatch_events(self, timeout):
        # Overflow granted for connections that have since closed is given back (one spare slot kept).
        self._overflow = max(0, min(self._overflow, self.nr_conns + 1 - self.cfg.threads))
        if not self._accepting:
            # The listener is not watched while full: look at it, and take a connection that has
            # been waiting for OVERFLOW_SECONDS.
            waiting = select.select(self.sockets, [], [], 0)[0]
            now = time.monotonic()
            if not waiting:
                self._pending_since = None
            elif self._pending_since is None:
                self._pending_since = now
            elif now - self._pending_since >= OVERFLOW_SECONDS:
                self._overflow += 1
                self._pending_since = None
            if waiting:
                timeout = min(timeout, OVERFLOW_SECONDS / 2)
        super().wait_for_and_dispatch_events(timeout)
