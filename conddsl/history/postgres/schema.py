"""The PostgreSQL history's tables, created on first use and migrated by a version row."""

from __future__ import annotations

from typing import Any

from conddsl.history.base import HistoryError

SCHEMA_VERSION = 3  # 2: conddsl_requests (conddsl run-task / terminate); 3: node task digests

# Every table is prefixed so that the history can live in a database used for other things.
# Times are integer microseconds since the epoch (UTC), as in the SQLite store; actions
# are their index in ``base.ACTIONS``.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS conddsl_records (
        id BIGSERIAL PRIMARY KEY,
        task TEXT NOT NULL,
        action SMALLINT NOT NULL,
        at BIGINT NOT NULL,
        run_id TEXT,
        reason TEXT,
        message TEXT,
        traceback TEXT,
        node TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS conddsl_records_task_action_at"
    " ON conddsl_records (task, action, at)",
    "CREATE INDEX IF NOT EXISTS conddsl_records_at ON conddsl_records (at)",
    # The runs without a finishing record, kept in the same transaction as the records.
    # ``node`` is the scheduler that started the run: a lost node's runs are crashed.
    """CREATE TABLE IF NOT EXISTS conddsl_open_runs (
        id BIGINT PRIMARY KEY,
        task TEXT NOT NULL,
        run_id TEXT,
        node TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS conddsl_open_runs_task ON conddsl_open_runs (task, run_id)",
    "CREATE INDEX IF NOT EXISTS conddsl_open_runs_node ON conddsl_open_runs (node)",
    # One row a task: a claim locks it (FOR UPDATE), so claims of one task are serial and
    # each sees the history its predecessor committed.
    "CREATE TABLE IF NOT EXISTS conddsl_tasks (task TEXT PRIMARY KEY)",
    # The claims: at most one run per task, occurrence and attempt. ``state`` is 'live'
    # (its owner runs it), 'done' (finished by its owner), 'lost' (its node was lost and
    # another node crashed it) or 'pending' (a retry nobody has taken yet).
    """CREATE TABLE IF NOT EXISTS conddsl_claims (
        task TEXT NOT NULL,
        occurrence BIGINT NOT NULL,
        attempt INTEGER NOT NULL,
        run_id TEXT,
        node TEXT,
        state TEXT NOT NULL,
        on_lost TEXT NOT NULL,
        claimed_at BIGINT NOT NULL,
        PRIMARY KEY (task, occurrence, attempt)
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS conddsl_claims_run ON conddsl_claims (task, run_id)",
    "CREATE INDEX IF NOT EXISTS conddsl_claims_state ON conddsl_claims (state, node)",
    # One lease a node, on database time.
    """CREATE TABLE IF NOT EXISTS conddsl_nodes (
        node TEXT PRIMARY KEY,
        lease_until TIMESTAMPTZ NOT NULL,
        renewed TIMESTAMPTZ NOT NULL,
        started TIMESTAMPTZ NOT NULL,
        lost_at TIMESTAMPTZ,
        clock_offset DOUBLE PRECISION
    )""",
)

# Requests of ``conddsl run-task`` and ``conddsl terminate`` (conddsl.ops.pg_requests): the
# asker writes a row, exactly one live node takes it (``node``) and answers it.
_REQUESTS = (
    """CREATE TABLE IF NOT EXISTS conddsl_requests (
        id BIGSERIAL PRIMARY KEY,
        task TEXT NOT NULL,
        op TEXT NOT NULL,
        asked_at BIGINT NOT NULL,
        asked_by TEXT,
        node TEXT,
        answered_at BIGINT,
        answer TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS conddsl_requests_open ON conddsl_requests (id)"
    " WHERE answer IS NULL",
)
# What each node serves (conddsl.runtime.claims): nodes that judge a task differently
# would claim it differently, so a node starting beside them says so.
_TASK_DIGESTS = (
    "ALTER TABLE conddsl_nodes ADD COLUMN IF NOT EXISTS tasks_fingerprint TEXT",
    "ALTER TABLE conddsl_nodes ADD COLUMN IF NOT EXISTS tasks_digests TEXT",
)
_SCHEMA = _SCHEMA + _REQUESTS + _TASK_DIGESTS

# What each older schema version needs to become the next one.
MIGRATIONS: dict[int, tuple[str, ...]] = {1: _REQUESTS, 2: _TASK_DIGESTS}

# Nodes starting together would race on CREATE TABLE IF NOT EXISTS (a unique violation
# in the catalog): the setup holds this transaction-level advisory lock.
_SETUP_LOCK = 0x636F6E6464736C  # "conddsl"


def ensure_schema(conn: Any, where: str) -> None:
    """Create the tables, or bring an older schema up to date, in one transaction."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS conddsl_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM conddsl_schema").fetchone()
        version = row[0] if row and row[0] is not None else 0
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"history {where}: schema version {version} is newer than {SCHEMA_VERSION};"
                " was it written by a newer conddsl?",
                reason="newer schema",
            )
        # A new database (version 0) needs none: _SCHEMA makes everything.
        for old in range(version, SCHEMA_VERSION) if version else ():
            for statement in MIGRATIONS.get(old, ()):
                conn.execute(statement)
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("DELETE FROM conddsl_schema")
        conn.execute("INSERT INTO conddsl_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
