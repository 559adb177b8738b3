"""Scratch PostgreSQL databases for tests: made with a unique name, dropped after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def scratch_database(server_dsn: str, prefix: str) -> Iterator[str]:
    """Create a database named ``prefix`` plus a random suffix; yield its DSN; drop it."""
    import psycopg  # imported here: the tests without PostgreSQL need no psycopg
    from psycopg.conninfo import make_conninfo

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(server_dsn, dbname=name)
    finally:
        # FORCE: a test that failed may have left a connection open.
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
