"""Django's PostgreSQL backend, checking a reused connection only when it has been idle a while.

CONN_HEALTH_CHECKS sends a `SELECT 1` before the first query of every request: one round trip on
each ingest request, most of them seconds apart from the last on a busy worker. A connection used
less than DATABASE_CONN_HEALTH_CHECK_IDLE_SECONDS ago is trusted instead. If PostgreSQL restarted in
between, that request fails with OperationalError, answered 503 with Retry-After
(cloudwatchdog/errors.py), and the error makes Django check and close the connection when the request
ends, so the next request reconnects.
"""
import time

from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._first_used_at = float("-inf")  # the last request's first query, on this connection

    def close_if_health_check_failed(self):
        if self.connection is not None and self.health_check_enabled and not self.health_check_done:
            now = time.monotonic()
            recently_used = now - self._first_used_at < settings.DATABASE_CONN_HEALTH_CHECK_IDLE_SECONDS
            self._first_used_at = now
            if recently_used:
                self.health_check_done = True
                return
        super().close_if_health_check_failed()

    def connect(self):
        super().connect()
        self._first_used_at = time.monotonic()
