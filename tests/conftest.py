"""Settings of the whole test run."""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """One worker more than there are cores (``-n auto`` in addopts): many tests wait on
    subprocesses and real seconds, and the extra worker runs meanwhile (2 cores: 101 s with
    two workers, 79 s with three)."""
    return (os.cpu_count() or 1) + 1


# PostgreSQL ---------------------------------------------------------------------------

# The server the PostgreSQL tests use (a database of their own is created on it).
POSTGRES_ADMIN = os.environ.get(
    "CONDDSL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
POSTGRES_TABLES = (
    "conddsl_records",
    "conddsl_open_runs",
    "conddsl_tasks",
    "conddsl_claims",
    "conddsl_nodes",
    "conddsl_requests",
)


def _postgres_missing(reason: str) -> None:
    """Skip a PostgreSQL test with the reason, or fail it where CI requires the server."""
    if os.environ.get("CONDDSL_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"CONDDSL_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server():
    """The administration DSN of a reachable server (skips or fails when there is none)."""
    try:
        import psycopg
    except ImportError:
        _postgres_missing("psycopg is not installed (pip install -e '.[test]')")
    try:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        _postgres_missing(f"PostgreSQL is not reachable at {POSTGRES_ADMIN}: {exc}")
    return POSTGRES_ADMIN


@pytest.fixture(scope="session")
def postgres_database(postgres_server: str):
    """The DSN of a fresh database for this test run (each xdist worker its own), dropped after."""
    from tests.postgres_helpers.databases import scratch_database

    with scratch_database(postgres_server, "conddsl_test") as dsn:
        yield dsn


@pytest.fixture
def postgres_dsn(postgres_database: str) -> str:
    """The test run's database, emptied of conddsl's rows for this test."""
    import psycopg

    with psycopg.connect(postgres_database, autocommit=True) as conn:
        # Connections an earlier test left (a node it could not stop, a store it did not
        # close) would hold locks the TRUNCATE waits on: this test starts on its own.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        found = conn.execute("SELECT to_regclass('conddsl_records')").fetchone()[0]
        if found is not None:
            # DELETE and rewinding the sequences, not TRUNCATE ... RESTART IDENTITY: the
            # tables hold a test's few rows, and TRUNCATE makes new files for every table
            # and index (150 ms a test here against 20 ms; 129 tests use this fixture).
            with conn.transaction():
                for table in POSTGRES_TABLES:
                    conn.execute(f"DELETE FROM {table}")
                conn.execute("SELECT setval(oid, 1, false) FROM pg_class WHERE relkind = 'S'")
    return postgres_database
