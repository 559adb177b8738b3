"""Node leases on database time: registering a node, renewing it, and taking over lost ones.

A node owns one row of ``conddsl_nodes`` whose ``lease_until`` it pushes forward every
lease/3. A node whose lease has passed (on the database's clock, never a node's) is lost:
the first other node to see it records each of its open runs as ``crash`` (reason
``node lost``), marks its claims lost (so the lost node can finish none of them) and, for
a task whose claim says ``on_lost = "retry"``, leaves a pending claim of the next attempt
that exactly one node takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from conddsl.history.base import ACTION_CODES, Record, from_us

# The database's clock as microseconds since the epoch: extract() is exact (numeric).
NOW_US = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
CHANNEL = "conddsl_records"
# NOTIFY payloads must stay under 8000 bytes; a longer task name wakes every task.
MAX_PAYLOAD = 7000
RETRY_ATTEMPTS = 2  # on_lost = "retry" starts the occurrence once more, never more
NODE_LOST = "node lost"


@dataclass(frozen=True)
class Takeover:
    """What taking over one lost node did: its runs crashed, its retries left pending."""

    node: str
    crashed: list[Record]
    retries: int


def payload(node: str, task: str | None) -> str:
    """The NOTIFY payload of a record: the writer and the task (empty: every task)."""
    name = task or ""
    if len(name.encode("utf-8")) > MAX_PAYLOAD:
        name = ""
    return f"{node}\n{name}"


def micros(delta: timedelta) -> int:
    """A duration in whole microseconds."""
    return delta // timedelta(microseconds=1)


def register(conn: Any, node: str, lease: timedelta) -> tuple[bool, list[Takeover]]:
    """Take the node's lease row inside the caller's transaction.

    Returns (True, takeovers) when the row is ours; (False, []) when a live scheduler
    holds the name. An expired row of the same name (a previous incarnation) is taken
    over first, so its runs are crashed before this one starts anything.
    """
    conn.execute(
        "INSERT INTO conddsl_nodes (node, lease_until, renewed, started, lost_at)"
        " VALUES (%s, clock_timestamp(), clock_timestamp(), clock_timestamp(), clock_timestamp())"
        " ON CONFLICT (node) DO NOTHING",
        (node,),
    )
    row = conn.execute(
        "SELECT lost_at IS NULL AND lease_until > clock_timestamp(), lost_at IS NULL"
        " FROM conddsl_nodes WHERE node = %s FOR UPDATE",
        (node,),
    ).fetchone()
    live, not_lost = row
    if live:
        return False, []
    takeovers = [take_over_node(conn, node, node)] if not_lost else []
    conn.execute(
        "UPDATE conddsl_nodes SET lease_until = clock_timestamp() + %s * interval '1 microsecond',"
        " renewed = clock_timestamp(), started = clock_timestamp(), lost_at = NULL"
        " WHERE node = %s",
        (micros(lease), node),
    )
    return True, takeovers


def renew(conn: Any, node: str, lease: timedelta, offset: float | None) -> bool:
    """Push the lease forward; False when the node was declared lost (fenced)."""
    row = conn.execute(
        "UPDATE conddsl_nodes SET lease_until = clock_timestamp() + %s * interval '1 microsecond',"
        " renewed = clock_timestamp(), clock_offset = %s"
        " WHERE node = %s AND lost_at IS NULL RETURNING 1",
        (micros(lease), offset, node),
    ).fetchone()
    return row is not None


def release(conn: Any, node: str) -> Takeover:
    """End the lease now (a clean close): a run still open is recorded as crashed at once,
    and no other node needs to take this one over."""
    return take_over_node(conn, node, node, why="closed its history")


def take_over_expired(conn: Any, me: str) -> list[Takeover]:
    """Take over every other node whose lease has passed, in the caller's transaction.

    ``SKIP LOCKED``: a node being taken over by another scheduler is left to it.
    """
    rows = conn.execute(
        "SELECT node FROM conddsl_nodes WHERE lost_at IS NULL AND node <> %s"
        " AND lease_until < clock_timestamp() ORDER BY node FOR UPDATE SKIP LOCKED",
        (me,),
    ).fetchall()
    return [take_over_node(conn, lost, me) for (lost,) in rows]


def take_over_node(
    conn: Any, lost: str, me: str, *, why: str = "stopped renewing its lease"
) -> Takeover:
    """Crash the lost node's open runs, mark its claims lost, leave its retries pending."""
    conn.execute("UPDATE conddsl_nodes SET lost_at = clock_timestamp() WHERE node = %s", (lost,))
    runs = conn.execute(
        "DELETE FROM conddsl_open_runs WHERE node = %s RETURNING id, task, run_id", (lost,)
    ).fetchall()
    crashed: list[Record] = []
    retries = 0
    who = "its previous run" if lost == me else f"node {me}"
    message = f"node {lost} {why}; {who} recorded the crash"
    for _, task, run_id in sorted(runs):
        claim = None
        if run_id is not None:
            claim = conn.execute(
                "UPDATE conddsl_claims SET state = 'lost' WHERE task = %s AND run_id = %s"
                " AND state = 'live' RETURNING occurrence, attempt, on_lost",
                (task, run_id),
            ).fetchone()
        at = conn.execute(
            f"INSERT INTO conddsl_records (task, action, at, run_id, reason, message, node)"
            f" VALUES (%s, %s, {NOW_US}, %s, %s, %s, %s) RETURNING at",
            (task, ACTION_CODES["crash"], run_id, NODE_LOST, message, me),
        ).fetchone()[0]
        crashed.append(Record(task, "crash", from_us(at), run_id, NODE_LOST, message, node=me))
        if claim is not None:
            occurrence, attempt, on_lost = claim
            if on_lost == "retry" and attempt < RETRY_ATTEMPTS:
                conn.execute(
                    "INSERT INTO conddsl_claims"
                    " (task, occurrence, attempt, run_id, node, state, on_lost, claimed_at)"
                    f" VALUES (%s, %s, %s, NULL, NULL, 'pending', %s, {NOW_US})"
                    " ON CONFLICT DO NOTHING",
                    (task, occurrence, attempt + 1, on_lost),
                )
                retries += 1
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload(me, task)))
    return Takeover(lost, crashed, retries)
