"""A run history in PostgreSQL, shared by several schedulers (nodes) with exactly-once claims.

The table is the truth and every query reads it (no cache can go stale when another node
writes). A node also holds a lease (``leases.py``), claims starts (``claim``), takes lost
nodes' runs over, and hears other nodes' records (``listen.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from conddsl.history.base import (
    ACTION_CODES,
    ACTIONS,
    ClaimBusy,
    History,
    HistoryError,
    HistoryUnavailable,
    Record,
    RunLost,
    check_actions,
    check_record,
    from_us,
    to_us,
)
from conddsl.history.postgres import leases
from conddsl.history.postgres.leases import CHANNEL, NOW_US, Takeover, payload
from conddsl.history.postgres.listen import Listener, OnChange
from conddsl.history.postgres.schema import ensure_schema
from conddsl.history.retention import Retention

log = logging.getLogger("conddsl.history")

_RUN = ACTION_CODES["run"]
_COLUMNS = "task, action, at, run_id, reason, message, traceback, node"
_Row = tuple[str, int, int, str | None, str | None, str | None, str | None]
_NO_CUTOFF = 2**63 - 1
ON_LOST = ("fail", "retry")
# Retention keeps the open runs and the latest record of each (task, action), as SQLite does.
_DELETE_OLDEST = """
DELETE FROM conddsl_records WHERE id IN (
    SELECT r.id FROM conddsl_records AS r
    WHERE r.at < %s
      AND NOT EXISTS (SELECT 1 FROM conddsl_open_runs AS o WHERE o.id = r.id)
      AND r.id <> (
          SELECT m.id FROM conddsl_records AS m
          WHERE m.task = r.task AND m.action = r.action
          ORDER BY m.at DESC, m.id DESC LIMIT 1)
    ORDER BY r.at, r.id
    LIMIT %s)
"""
# Several histories in one process each need a node name of their own.
_SERIAL = itertools.count()


class _Busy(Exception):
    """A claim that waited too long for another node's claim of the same task."""


CheckClaim = Callable[[History, datetime], "int | None"]
"""Decides a claim inside its transaction: given the history (reading committed records)
and the database's time, the occurrence the start belongs to, or None not to start."""


def default_node() -> str:
    """``hostname:pid`` (with a serial number for a second history in the same process)."""
    serial = next(_SERIAL)
    base = f"{socket.gethostname()}:{os.getpid()}"
    return base if serial == 0 else f"{base}:{serial}"


def parse_lease(value: object) -> timedelta:
    """A lease from a timedelta, a number of seconds or text like ``"10 seconds"``."""
    from conddsl.errors import SettingValueError
    from conddsl.settings import read_duration

    found = read_duration(value, "lease")
    if found < timedelta(seconds=1):
        # Renewed every third of it over a network: shorter ones fence nodes for nothing.
        raise SettingValueError("lease", "value", "must be at least 1 second")
    return found


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a connection string, never its password."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(dsn)
    except Exception:  # a malformed DSN is reported when connecting
        return "postgresql (unreadable connection string)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"postgresql://{host}:{port}/{params.get('dbname') or params.get('user') or ''}"


class PostgresHistory(Retention, History):
    """A run history in PostgreSQL that several schedulers share (see docs/deployment.md).

    - The same queries as the other stores; every record also says which ``node`` wrote it.
    - ``node`` names this scheduler (default ``hostname:pid``); it holds a lease of
      ``lease`` on the database's clock, renewed every lease/3 by a thread of its own,
      which also takes over nodes whose lease has passed.
    - ``claim`` starts a run exactly once across nodes; a finishing record of a claimed
      run is only written by its owner while it owns it (else ``RunLost``).
    - A write that cannot reach the server raises ``HistoryUnavailable`` and stays
      pending: it is written, in order, by the next write or the lease thread.
    - ``watch(on_change)`` hears the other nodes' records (LISTEN/NOTIFY).
    """

    def __init__(
        self,
        dsn: str,
        *,
        node: str | None = None,
        lease: object = "10 seconds",
        max_age: timedelta | None = None,
        max_records: int | None = None,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        on_fenced: Callable[[str], None] | None = None,
        reader: bool = False,
    ) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise HistoryError(
                "a PostgreSQL history needs psycopg 3: pip install 'conddsl[postgres]'",
                reason="psycopg is not installed",
            ) from exc
        self._psycopg = psycopg
        self._dsn = dsn
        self._where = describe_dsn(dsn)
        self.node = node if node is not None else default_node()
        if not isinstance(self.node, str) or not self.node or "\n" in self.node:
            raise ValueError(f"node must be a non-empty one-line name, got {self.node!r}")
        self.lease = parse_lease(lease)
        self._margin = max(self.lease / 5, timedelta(milliseconds=500))
        # How long a claim waits for another node's claim of the same task (then it is
        # not won now); also how long the server lets a session idle inside a transaction.
        self._lock_wait_ms = max(500, int(self.lease.total_seconds() * 1000 / 2))
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._on_fenced = on_fenced
        self._init_retention(max_age, max_records)
        self._count = 0
        self._now: int | None = None
        self._lock = threading.RLock()
        self._pending: list[_Row] = []
        self._closed = False
        self._renewed = time.monotonic()  # the last renewal that reached the server
        self._fenced = False  # lost its lease: claims nothing until it has one again
        self.clock_offset: float | None = None  # database minus local clock, in seconds
        self._warned_offset = False
        self.takeovers: list[Takeover] = []  # what this node took over (for status and tests)
        self._listener: Listener | None = None
        self._on_change: OnChange | None = None  # the watcher, told of our takeovers too
        self._conn: Any = None
        # A reader (the operating commands) only queries: no lease, no node row, no
        # schema made, so that looking at a shared history never looks like a node.
        self.reader = reader
        self.exists = True  # whether the tables are there (a reader may find none)
        if reader:
            try:
                conn = self._connection("open")
                found = conn.execute("SELECT to_regclass('conddsl_records')").fetchone()
                self.exists = found is not None and found[0] is not None
            except self._psycopg.Error as exc:
                self._close_conn()
                raise self._error("open", exc) from exc
            self._heart = None
            return
        try:
            conn = self._connection("open")
            ensure_schema(conn, self._where)
            with conn.transaction():
                ok, taken = leases.register(conn, self.node, self.lease)
            if not ok:
                raise HistoryError(
                    f"history {self._where}: node name {self.node!r} is held by a live"
                    " scheduler (its lease has not passed); give each node its own name",
                    reason="node name in use",
                )
            self.takeovers.extend(taken)
            self._renewed = time.monotonic()
            self._measure(conn)
            # Shown by `conddsl status` at once, not only after the first renewal.
            conn.execute(
                "UPDATE conddsl_nodes SET clock_offset = %s WHERE node = %s",
                (self.clock_offset, self.node),
            )
            self._load()
        except self._psycopg.Error as exc:
            self._close_conn()
            raise self._error("open", exc) from exc
        except BaseException:
            self._close_conn()
            raise
        self._stop = threading.Event()
        self._heart: threading.Thread | None = threading.Thread(
            target=self._beat, name="conddsl-lease", daemon=True
        )
        self._heart.start()

    # Connections ---------------------------------------------------------------

    def connect(self) -> Any:
        """A new autocommit connection to the history's database (with dead-peer timeouts)."""
        conn = self._psycopg.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=max(1, round(self._connect_timeout)),
            application_name=f"conddsl {self.node}"[:63],
            # A cut network would otherwise hang a query for the kernel's TCP timeout
            # (minutes): these bound it to seconds.
            keepalives=1,
            keepalives_idle=2,
            keepalives_interval=1,
            keepalives_count=3,
            tcp_user_timeout=max(1000, int(self._connect_timeout * 1000)),
        )
        # A node frozen (SIGSTOP) inside a transaction would hold its row locks, and every
        # other node's claims of that task would wait: the server ends such a session.
        conn.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
            (str(self._lock_wait_ms),),
        )
        return conn

    def _connection(self, doing: str) -> Any:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._close_conn()
            try:
                conn = self._conn = self.connect()
            except self._psycopg.Error as exc:
                raise self._error(doing, exc) from exc
        return conn

    def _close_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                self._conn.close()
            self._conn = None

    def _error(self, doing: str, exc: Exception) -> HistoryError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # libpq quotes a connection string it cannot parse whole, password and all.
        if self._dsn:
            text = text.replace(self._dsn, self._where)
        unreachable = isinstance(exc, self._psycopg.OperationalError)
        cause = f"the database cannot be reached ({text})" if unreachable else text
        message = f"history {self._where}: could not {doing}: {cause}"
        if doing == "write" and self._pending:
            message += f"; {len(self._pending)} record(s) kept pending, written when it answers"
        kind = HistoryUnavailable if unreachable else HistoryError
        return kind(message, reason=cause)

    def _read(self, doing: str, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            self._check_open()
            conn = self._connection(doing)
            try:
                return conn.execute(sql, params).fetchall()
            except self._psycopg.Error as exc:
                raise self._error(doing, exc) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise HistoryError(f"history {self._where} is closed")

    def _check_writer(self) -> None:
        self._check_open()
        if self.reader:
            raise HistoryError(
                f"history {self._where} was opened to read only (reader=True): it neither"
                " records, claims nor watches",
                reason="read only",
            )

    # Writing -------------------------------------------------------------------

    def record(
        self,
        task: str,
        action: str,
        *,
        at: datetime,
        run_id: str | None = None,
        reason: str | None = None,
        message: str | None = None,
        traceback: str | None = None,
    ) -> Record:
        """Write a record; a finish of a run taken over is refused with ``RunLost``."""
        check_record(task, action)
        row: _Row = (task, ACTION_CODES[action], to_us(at), run_id, reason, message, traceback)
        with self._lock:
            self._check_writer()
            self._pending.append(row)
            refused = self._write_pending()
            self._retain()
        if row in refused:
            raise RunLost(
                f"history {self._where}: run {run_id!r} of task {task!r} was taken over by"
                f" another node; its {action!r} is not recorded (node {self.node})",
                reason="run lost",
            )
        return _to_record(row, self.node)

    def flush(self) -> None:
        """Write the pending records; raise HistoryUnavailable if the server still fails."""
        with self._lock:
            self._check_open()
            if self._pending:
                self._write_pending()

    @property
    def pending(self) -> list[Record]:
        """The records not written yet (the server could not be reached)."""
        with self._lock:
            return [_to_record(row, self.node) for row in self._pending]

    def _write_pending(self) -> list[_Row]:
        """Write the pending rows in order, one transaction each; return those refused."""
        refused: list[_Row] = []
        conn = self._connection("write")
        while self._pending:
            row = self._pending[0]
            try:
                with conn.transaction():
                    written = self._write_row(conn, row)
            except self._psycopg.Error as exc:
                raise self._error("write", exc) from exc
            self._pending.pop(0)
            if written:
                self._count += 1
                if self._now is None or row[2] > self._now:
                    self._now = row[2]
            else:
                refused.append(row)
                log.warning(
                    "history: %s of run %r (task %r) not recorded: the run was taken over",
                    ACTIONS[row[1]],
                    row[3],
                    row[0],
                )
        return refused

    def _write_row(self, conn: Any, row: _Row, node: str | None = None) -> bool:
        """Insert one record and update the open runs (inside a transaction); fenced."""
        task, code, us, run_id, _, _, _ = row
        if code != _RUN and run_id is not None:
            # A claimed run is finished only by its owner while it owns it.
            claim = conn.execute(
                "SELECT node, state FROM conddsl_claims WHERE task = %s AND run_id = %s FOR UPDATE",
                (task, run_id),
            ).fetchone()
            if claim is not None:
                if claim != (self.node, "live"):
                    return False
                conn.execute(
                    "UPDATE conddsl_claims SET state = 'done' WHERE task = %s AND run_id = %s",
                    (task, run_id),
                )
        rid = conn.execute(
            f"INSERT INTO conddsl_records ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (*row, node or self.node),
        ).fetchone()[0]
        if code == _RUN:
            if run_id is not None:  # a second run with the same run_id replaces the first
                conn.execute(
                    "DELETE FROM conddsl_open_runs WHERE task = %s AND run_id = %s",
                    (task, run_id),
                )
            conn.execute(
                "INSERT INTO conddsl_open_runs (id, task, run_id, node) VALUES (%s, %s, %s, %s)",
                (rid, task, run_id, self.node),
            )
        elif run_id is not None:
            conn.execute(
                "DELETE FROM conddsl_open_runs WHERE task = %s AND run_id = %s", (task, run_id)
            )
        else:  # the oldest open run without a run_id
            conn.execute(
                "DELETE FROM conddsl_open_runs WHERE id = (SELECT id FROM conddsl_open_runs"
                " WHERE task = %s AND run_id IS NULL ORDER BY id LIMIT 1)",
                (task,),
            )
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload(self.node, task)))
        return True

    # Claims ----------------------------------------------------------------------

    @property
    def fenced(self) -> bool:
        """Whether this node may not claim: its lease was lost or could not be renewed."""
        overdue = time.monotonic() - self._renewed > (self.lease - self._margin).total_seconds()
        return self._fenced or overdue

    def claim(
        self,
        task: str,
        check: CheckClaim,
        *,
        run_id: str | None = None,
        on_lost: str = "fail",
        reason: str | None = None,
        wait: bool = True,
    ) -> Record | None:
        """Start a run of ``task`` if this node wins it; its ``run`` record, or None.

        In one transaction: the task's row is locked (claims of one task are serial),
        this node's lease is checked on the database's clock, ``check(history, now)``
        decides against the committed history at the database's time (``now``) and names
        the occurrence, and the run is inserted under the uniqueness of (task, occurrence,
        attempt 1). Exactly one node wins an occurrence; the others get None.

        ``wait=False``: when another node is claiming the task at this instant, raise
        ``ClaimBusy`` at once instead of waiting for its decision (up to lease/2).
        """
        check_record(task, "run")
        if on_lost not in ON_LOST:
            raise ValueError(f"on_lost must be 'fail' or 'retry', got {on_lost!r}")
        run_id = run_id if run_id is not None else uuid.uuid4().hex
        with self._lock:
            self._check_writer()
            if self.fenced:
                return None
            self._flush_quietly()  # our finishes first: the check must see them
            conn = self._connection("claim")
            try:
                with conn.transaction():
                    return self._claim_in(conn, task, check, run_id, on_lost, reason, wait)
            except _Busy:
                if not wait:
                    raise ClaimBusy(
                        f"history {self._where}: another node is claiming task {task!r} now",
                        reason="claim busy",
                    ) from None
                log.warning("claim of task %r: another node holds it; not started now", task)
                return None
            except self._psycopg.Error as exc:
                raise self._error("claim", exc) from exc

    def _claim_in(
        self,
        conn: Any,
        task: str,
        check: CheckClaim,
        run_id: str,
        on_lost: str,
        reason: str | None,
        wait: bool,
    ) -> Record | None:
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (str(self._lock_wait_ms),))
        conn.execute("INSERT INTO conddsl_tasks (task) VALUES (%s) ON CONFLICT DO NOTHING", (task,))
        lock = "FOR UPDATE" if wait else "FOR UPDATE NOWAIT"
        try:
            conn.execute(f"SELECT 1 FROM conddsl_tasks WHERE task = %s {lock}", (task,))
        except self._psycopg.errors.LockNotAvailable:
            # Another node holds the task (its claim hangs): not won now. The transaction
            # is aborted: raised to roll it back, caught in claim().
            raise _Busy() from None
        # After the lock: READ COMMITTED gives each later statement a fresh snapshot, so
        # everything the previous claimant committed is seen.
        valid, now_us = conn.execute(
            f"SELECT lost_at IS NULL AND lease_until > clock_timestamp(), {NOW_US}"
            " FROM conddsl_nodes WHERE node = %s",
            (self.node,),
        ).fetchone()
        if not valid:
            return None
        occurrence = check(self, from_us(now_us))
        if occurrence is None:
            return None
        won = conn.execute(
            "INSERT INTO conddsl_claims"
            " (task, occurrence, attempt, run_id, node, state, on_lost, claimed_at)"
            " VALUES (%s, %s, 1, %s, %s, 'live', %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (task, int(occurrence), run_id, self.node, on_lost, now_us),
        ).fetchone()
        if won is None:
            return None
        row: _Row = (task, _RUN, now_us, run_id, reason, None, None)
        self._write_row(conn, row)
        self._count += 1
        return _to_record(row, self.node)

    def take_retries(self, tasks: Iterable[str]) -> list[Record]:
        """Claim the pending retries (``on_lost = "retry"``) of these tasks; their run records.

        ``FOR UPDATE SKIP LOCKED``: each pending retry goes to exactly one node.
        """
        names = list(tasks)
        if not names:
            return []
        with self._lock:
            self._check_writer()
            if self.fenced:
                return []
            conn = self._connection("claim")
            try:
                with conn.transaction():
                    valid = conn.execute(
                        "SELECT lost_at IS NULL AND lease_until > clock_timestamp()"
                        " FROM conddsl_nodes WHERE node = %s",
                        (self.node,),
                    ).fetchone()
                    if not valid or not valid[0]:
                        return []
                    found = conn.execute(
                        f"SELECT task, occurrence, attempt, {NOW_US} FROM conddsl_claims"
                        " WHERE state = 'pending' AND task = ANY(%s)"
                        " ORDER BY claimed_at, task FOR UPDATE SKIP LOCKED",
                        (names,),
                    ).fetchall()
                    started = []
                    for task, occurrence, attempt, now_us in found:
                        run_id = uuid.uuid4().hex
                        conn.execute(
                            "UPDATE conddsl_claims SET state = 'live', node = %s, run_id = %s,"
                            " claimed_at = %s WHERE task = %s AND occurrence = %s AND attempt = %s",
                            (self.node, run_id, now_us, task, occurrence, attempt),
                        )
                        message = f"attempt {attempt}: its node was lost"
                        row: _Row = (task, _RUN, now_us, run_id, "retry", message, None)
                        self._write_row(conn, row)
                        self._count += 1
                        started.append(_to_record(row, self.node))
                    return started
            except self._psycopg.Error as exc:
                raise self._error("claim", exc) from exc

    def database_time(self) -> float:
        """Seconds since the epoch on the database's clock, as last measured (no query):
        the local clock plus the measured offset, for a scheduler's clock."""
        return self._clock() + (self.clock_offset or 0.0)

    def now(self) -> datetime:
        """The database's clock (a query)."""
        return from_us(self._read("read the clock", f"SELECT {NOW_US}")[0][0])

    # Queries ---------------------------------------------------------------------

    def records(
        self,
        task: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        actions: str | Iterable[str] | None = None,
    ) -> list[Record]:
        """The records with ``since <= at < until``, oldest first."""
        codes = [ACTION_CODES[a] for a in (ACTIONS if actions is None else check_actions(actions))]
        where, params = ["action = ANY(%s)"], [codes]
        if task is not None:
            where.append("task = %s")
            params.append(task)
        if since is not None:
            where.append("at >= %s")
            params.append(to_us(since, "since"))
        if until is not None:
            where.append("at < %s")
            params.append(to_us(until, "until"))
        rows = self._read(
            "read",
            f"SELECT {_COLUMNS} FROM conddsl_records WHERE {' AND '.join(where)}"
            " ORDER BY at, task, action, id",
            tuple(params),
        )
        return [_to_record(row[:7], row[7]) for row in rows]

    def last(self, task: str, actions: str | Iterable[str]) -> datetime | None:
        """The time of the task's latest record with one of the actions."""
        codes = _codes(actions)
        if not codes:
            return None
        found = self._read(
            "read",
            "SELECT max(at) FROM conddsl_records WHERE task = %s AND action = ANY(%s)",
            (task, codes),
        )[0][0]
        return None if found is None else from_us(found)

    def _span(
        self,
        what: str,
        task: str,
        actions: str | Iterable[str],
        since: datetime,
        until: datetime,
    ) -> Any:
        codes = _codes(actions)
        lo, hi = to_us(since, "since"), to_us(until, "until")
        if not codes:
            return None
        return self._read(
            "read",
            f"SELECT {what} FROM conddsl_records"
            " WHERE task = %s AND action = ANY(%s) AND at >= %s AND at < %s",
            (task, codes, lo, hi),
        )[0][0]

    def first_in(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> datetime | None:
        """The earliest time of such a record with ``since <= at < until``."""
        found = self._span("min(at)", task, actions, since, until)
        return None if found is None else from_us(found)

    def last_in(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> datetime | None:
        """The latest time of such a record with ``since <= at < until``."""
        found = self._span("max(at)", task, actions, since, until)
        return None if found is None else from_us(found)

    def count_in(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> int:
        """How many such records have ``since <= at < until``."""
        return self._span("count(*)", task, actions, since, until) or 0

    def running(self, task: str) -> list[Record]:
        """The task's ``run`` records whose run has no finishing record yet, oldest first."""
        rows = self._read(
            "read",
            "SELECT r.task, r.action, r.at, r.run_id, r.reason, r.message, r.traceback, r.node"
            " FROM conddsl_open_runs AS o JOIN conddsl_records AS r ON r.id = o.id"
            " WHERE o.task = %s ORDER BY r.at, r.id",
            (task,),
        )
        return [_to_record(row[:7], row[7]) for row in rows]

    def tasks(self) -> list[str]:
        """The names of the tasks with records, sorted."""
        # A loose index scan: one seek a task instead of reading every record.
        rows = self._read(
            "read",
            "WITH RECURSIVE t(task) AS ("
            " (SELECT min(task) FROM conddsl_records)"
            " UNION ALL"
            " SELECT (SELECT min(task) FROM conddsl_records WHERE task > t.task)"
            " FROM t WHERE t.task IS NOT NULL)"
            " SELECT task FROM t WHERE task IS NOT NULL",
        )
        return sorted(task for (task,) in rows)

    def nodes(self) -> list[tuple[str, datetime, datetime | None, float | None]]:
        """Every node known: (name, lease until, lost at, clock offset in seconds)."""
        rows = self._read(
            "read",
            "SELECT node, lease_until, lost_at, clock_offset FROM conddsl_nodes ORDER BY node",
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]

    def live_nodes(self) -> list[tuple[str, datetime, float | None]]:
        """The nodes holding a lease now, on the database's clock: (name, lease until,
        clock offset in seconds: database minus node)."""
        rows = self._read(
            "read",
            "SELECT node, lease_until, clock_offset FROM conddsl_nodes"
            " WHERE lost_at IS NULL AND lease_until > clock_timestamp() ORDER BY node",
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]

    def publish_tasks(
        self, fingerprint: str, digests: dict[str, str]
    ) -> list[tuple[str, str, dict[str, str]]]:
        """Say in this node's row which task definitions it serves (see
        :mod:`conddsl.runtime.claims`); the other live nodes serving others: (name,
        fingerprint, digests)."""
        self._check_writer()
        text = json.dumps(digests, ensure_ascii=False, sort_keys=True)
        with self._lock:
            conn = self._connection("write")
            try:
                conn.execute(
                    "UPDATE conddsl_nodes SET tasks_fingerprint = %s, tasks_digests = %s"
                    " WHERE node = %s",
                    (fingerprint, text, self.node),
                )
                rows = conn.execute(
                    "SELECT node, tasks_fingerprint, tasks_digests FROM conddsl_nodes"
                    " WHERE lost_at IS NULL AND lease_until > clock_timestamp()"
                    " AND node <> %s AND tasks_fingerprint IS NOT NULL"
                    " AND tasks_fingerprint <> %s ORDER BY node",
                    (self.node, fingerprint),
                ).fetchall()
            except self._psycopg.Error as exc:
                raise self._error("write", exc) from exc
        return [(node, found, _digests(raw)) for node, found, raw in rows]

    def task_fingerprints(self) -> dict[str, str | None]:
        """The fingerprint of the task definitions each live node serves (None: not said,
        e.g. an older conddsl)."""
        rows = self._read(
            "read",
            "SELECT node, tasks_fingerprint FROM conddsl_nodes"
            " WHERE lost_at IS NULL AND lease_until > clock_timestamp() ORDER BY node",
        )
        return dict(rows)

    def mark_crashed(self, at: datetime) -> list[Record]:
        """Record ``crash`` for this node's runs still open (other nodes' runs are theirs)."""
        to_us(at)
        self._check_writer()
        crashed = []
        rows = self._read(
            "read",
            "SELECT r.task, r.run_id FROM conddsl_open_runs AS o"
            " JOIN conddsl_records AS r ON r.id = o.id WHERE o.node = %s ORDER BY r.at, r.id",
            (self.node,),
        )
        for task, run_id in rows:
            crashed.append(
                self.record(task, "crash", at=at, run_id=run_id, reason="scheduler died")
            )
        return crashed

    # Wake-ups ------------------------------------------------------------------------

    def watch(self, on_change: OnChange, *, poll: float | None = None) -> Listener:
        """Call ``on_change(task)`` (from a thread) when another node records for ``task``,
        and ``on_change(None)`` after a reconnect or every ``poll`` seconds (default: the
        lease) when nothing came: then everything may have changed."""
        with self._lock:
            self._check_writer()
            if self._listener is not None:
                raise HistoryError("this history already has a listener")
            wait = poll if poll is not None else self.lease.total_seconds()
            self._listener = Listener(self.connect, self.node, on_change, poll=wait)
            self._on_change = on_change
        self._listener.start()
        return self._listener

    # The lease thread -----------------------------------------------------------------

    def _beat(self) -> None:
        interval = self.lease.total_seconds() / 3
        conn: Any = None
        last_measure = 0.0
        while not self._stop.wait(interval):
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self.connect()
                if time.monotonic() - last_measure > 60 or self.clock_offset is None:
                    self._measure(conn)
                    last_measure = time.monotonic()
                with conn.transaction():
                    kept = leases.renew(conn, self.node, self.lease, self.clock_offset)
                    if not kept:
                        # Declared lost while we could not renew: everything we ran was
                        # crashed by another node. Join again as a new incarnation.
                        self._lose("its lease was taken over by another node")
                        leases.register(conn, self.node, self.lease)
                self._renewed = time.monotonic()
                self._fenced = False
                with conn.transaction():
                    taken = leases.take_over_expired(conn, self.node)
                for takeover in taken:
                    log.log(
                        logging.WARNING if takeover.crashed else logging.INFO,
                        "node %s lost (lease passed): %d run(s) recorded as crashed, %d retried",
                        takeover.node,
                        len(takeover.crashed),
                        takeover.retries,
                    )
                self.takeovers.extend(taken)
                # Our own NOTIFYs are not echoed to us: tell our watcher of the crashes
                # (a dependent task may start, a retry is waiting).
                for task in sorted({r.task for t in taken for r in t.crashed}):
                    if self._on_change is not None:
                        self._on_change(task)
                if self._pending and self._lock.acquire(timeout=interval / 2):
                    try:
                        self._flush_quietly()
                    finally:
                        self._lock.release()
            except Exception as exc:  # the thread must outlive any failure
                if conn is not None:
                    with contextlib.suppress(Exception):  # a broken connection may fail to close
                        conn.close()
                    conn = None
                overdue = time.monotonic() - self._renewed
                if overdue > (self.lease - self._margin).total_seconds() and not self._fenced:
                    self._lose(f"its lease could not be renewed for {overdue:.1f} s ({exc})")
                else:
                    log.warning("history lease of node %s not renewed: %s", self.node, exc)
        if conn is not None:  # close() ends the lease, on the store's connection
            with contextlib.suppress(Exception):
                conn.close()

    def _lose(self, why: str) -> None:
        self._fenced = True
        log.error("node %s fenced: %s; its runs end and it claims nothing", self.node, why)
        if self._on_fenced is not None:
            try:
                self._on_fenced(why)
            except Exception:
                log.exception("fencing callback failed")

    def set_on_fenced(self, callback: Callable[[str], None] | None) -> None:
        """Call ``callback(why)`` (from the lease thread) when this node loses its lease."""
        self._on_fenced = callback

    def _measure(self, conn: Any) -> None:
        # The sample with the shortest round trip bounds the error best (half of it).
        samples = []
        for _ in range(3):
            before = self._clock()
            db_us = conn.execute(f"SELECT {NOW_US}").fetchone()[0]
            after = self._clock()
            samples.append((after - before, db_us / 1e6 - (before + after) / 2))
        self.clock_offset = min(samples)[1]
        if abs(self.clock_offset) > 1.0 and not self._warned_offset:
            self._warned_offset = True
            log.warning(
                "node %s: its clock differs from the database's by %+.3f s; claims and"
                " leases use the database's clock",
                self.node,
                -self.clock_offset,
            )

    def _flush_quietly(self) -> None:
        if self._pending:
            with contextlib.suppress(HistoryError):
                self._write_pending()

    # Retention -------------------------------------------------------------------------

    def _load(self) -> None:
        conn = self._conn
        self._now = conn.execute("SELECT max(at) FROM conddsl_records").fetchone()[0]
        if self._max_records is not None:
            self._count = conn.execute("SELECT count(*) FROM conddsl_records").fetchone()[0]

    def _retain(self) -> None:
        try:
            if self._count_trim_due():
                self._trim_count()
            if self._age_sweep_due():
                self._run_age_sweep(self._delete_older)
        except (self._psycopg.Error, HistoryError):
            pass  # the records are written; retention runs again after the next write

    def _delete_older(self, cutoff: int) -> None:
        while self._delete_batch(cutoff, 10_000) == 10_000:
            pass

    def _trim_count(self) -> None:
        conn = self._connection("trim")
        self._count = conn.execute("SELECT count(*) FROM conddsl_records").fetchone()[0]
        target = self._trim_target()
        while self._count > target:
            if self._delete_batch(_NO_CUTOFF, min(10_000, self._count - target)) == 0:
                break  # only protected records are left
        self._count_trimmed()

    def _delete_batch(self, cutoff: int, limit: int) -> int:
        conn = self._connection("trim")
        deleted = conn.execute(_DELETE_OLDEST, (cutoff, limit)).rowcount
        self._count -= deleted
        return deleted

    # Closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the threads, end the lease and close; pending records are written or reported."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.reader:
                self._close_conn()
                return
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        if self._heart is not None and self._heart is not threading.current_thread():
            self._heart.join(timeout=self.lease.total_seconds())
        with self._lock:
            left = len(self._pending)
            if left:
                try:
                    self._write_pending()
                    left = 0
                except HistoryError:
                    pass
            try:
                conn = self._connection("close")
                with conn.transaction():
                    leases.release(conn, self.node)
            except (self._psycopg.Error, HistoryError):
                pass
            self._close_conn()
        if left:
            raise HistoryError(
                f"history {self._where}: closed with {left} record(s) the server never took",
                reason="unreachable at close",
            )


def _digests(raw: str | None) -> dict[str, str]:
    """A node's task digests as it wrote them (anything unreadable: none)."""
    try:
        found = json.loads(raw or "{}")
    except (ValueError, RecursionError):  # (anybody may write the row: nested deep too)
        return {}
    if not isinstance(found, dict):
        return {}
    return {str(name): str(digest) for name, digest in found.items()}


def _codes(actions: str | Iterable[str]) -> list[int]:
    return [ACTION_CODES[action] for action in check_actions(actions)]


def _to_record(row: tuple, node: str | None) -> Record:
    task, code, at, run_id, reason, message, traceback = row
    return Record(task, ACTIONS[code], from_us(at), run_id, reason, message, traceback, node)
