"""A benchmark's own database, made fresh and migrated beside the one Django is configured with (after
django.setup()), so a benchmark's load never mixes with `make run`'s data."""
import psycopg2
from django.core.management import call_command
from django.db import connection


def fresh_database(name: str) -> None:
    admin = plain_connection()
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name}")
    admin.close()
    connection.close()
    connection.settings_dict["NAME"] = name
    call_command("migrate", verbosity=0)


def plain_connection():
    """A psycopg2 connection of its own to the database Django uses now."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg2.connect(**params)
