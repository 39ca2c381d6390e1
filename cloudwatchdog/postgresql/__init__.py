"""Django's PostgreSQL backend, with CONN_HEALTH_CHECKS' round trip only for a connection left idle (base.py)."""
