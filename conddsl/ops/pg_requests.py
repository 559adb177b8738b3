"""``conddsl run-task`` and ``conddsl terminate`` on a shared PostgreSQL history.

The same protocol as the SQLite ``requests`` table (``conddsl.ops.requests``), in the
table ``conddsl_requests`` of the shared schema: the asker inserts a row and NOTIFYs
channel ``conddsl_requests``; each live node (``conddsl run`` on that history) LISTENs and
takes, in one ``FOR UPDATE SKIP LOCKED`` update, the requests it serves — so exactly one
node takes each request and starts or terminates once:

- ``run``: any live node that has the task (the first to take it);
- ``terminate``: the node that owns an open run of the task; any node that has the task
  when no node runs it (then there is nothing to end, and it says so).

Nothing serves the history when no node holds a lease on it: the command exits 2 at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from conddsl.history.base import from_us, to_us
from conddsl.ops.requests import ACCEPTED, OPS, STALE_AFTER, WITHDRAWN, Answer, asker

__all__ = ["CHANNEL", "PgRequestBox", "PgRequestPoller", "accepted_terminations"]

log = logging.getLogger("conddsl.ops")

CHANNEL = "conddsl_requests"
# After its wait, an asker whose request a node took (and did not answer yet) waits this
# much longer for the answer: the node is applying it now, or died doing so.
TAKEN_GRACE = 5.0
_FIELDS = "id, task, op, asked_at, answer"


def _now_us() -> int:
    return to_us(datetime.now(timezone.utc))


def _answer(row: tuple) -> Answer:
    return Answer(row[0], row[1], row[2], from_us(row[3]), row[4])


class PgRequestBox:
    """The asking side: one connection to the shared history's ``conddsl_requests``."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._conn = connect()

    def ask(self, task: str, op: str) -> int:
        """Write a request and wake the nodes; returns its id."""
        if op not in OPS:
            raise ValueError(f"unknown request {op!r}: expected one of {', '.join(OPS)}")
        with self._conn.transaction():
            found = self._conn.execute(
                "INSERT INTO conddsl_requests (task, op, asked_at, asked_by)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                (task, op, _now_us(), asker()),
            ).fetchone()
            self._conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, task[:200]))
        return int(found[0])

    def answer_of(self, request: int) -> tuple[Answer, str | None] | None:
        """The request, its answer so far and the node that took it (None: no such request)."""
        row = self._conn.execute(
            f"SELECT {_FIELDS}, node FROM conddsl_requests WHERE id = %s", (request,)
        ).fetchone()
        return None if row is None else (_answer(row[:5]), row[5])

    def withdraw(self, request: int) -> bool:
        """Withdraw a request no node took; False if one took it meanwhile."""
        row = self._conn.execute(
            "UPDATE conddsl_requests SET answer = %s, answered_at = %s"
            " WHERE id = %s AND answer IS NULL AND node IS NULL RETURNING 1",
            (WITHDRAWN, _now_us(), request),
        ).fetchone()
        return row is not None

    def wait(
        self, request: int, wait: float, *, sleep: Callable[[float], None] = time.sleep
    ) -> tuple[Answer | None, str | None]:
        """The answer and the node that gave it; (None, node) when none came in time
        (withdrawn if no node took it; ``node`` then None)."""
        deadline = time.monotonic() + wait
        grace: float | None = None
        while True:
            found = self.answer_of(request)
            if found is not None and found[0].answer is not None:
                return found
            now = time.monotonic()
            if now >= deadline:
                if grace is None:
                    if self.withdraw(request):
                        return None, None
                    grace = now + TAKEN_GRACE  # taken meanwhile: its answer comes soon
                elif now >= grace:
                    return None, found[1] if found is not None else None
            sleep(0.05)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def accepted_terminations(connect: Callable[[], Any]) -> dict[str, datetime]:
    """Each task's latest terminate request a node accepted (for ``status``)."""
    with contextlib.closing(connect()) as conn:
        if conn.execute("SELECT to_regclass('conddsl_requests')").fetchone()[0] is None:
            return {}  # an older schema: nobody ever asked
        rows = conn.execute(
            "SELECT task, max(asked_at) FROM conddsl_requests WHERE op = 'terminate'"
            " AND answer = %s GROUP BY task",
            (ACCEPTED["terminate"],),
        ).fetchall()
    return {task: from_us(at) for task, at in rows}


class PgRequestPoller:
    """The serving side on one node: a daemon thread that LISTENs for requests, takes those
    this node serves and applies them (``apply(op, task)`` raises to refuse)."""

    def __init__(
        self,
        connect: Callable[[], Any],
        node: str,
        tasks: Iterable[str],
        apply: Callable[[str, str], None],
        *,
        exclusive: Iterable[str] = (),
        interval: float = 2.0,
    ) -> None:
        self._connect = connect
        self._exclusive = set(exclusive)  # the tasks that are not multilaunch
        self.node = node
        self._tasks = sorted(tasks)
        self._apply = apply
        self._interval = interval  # a missed NOTIFY costs at most this long
        self._stop = threading.Event()
        self._conn = connect()
        self._listen: Any = None
        self._thread = threading.Thread(target=self._loop, name="conddsl-requests", daemon=True)
        cutoff = _now_us() - int(STALE_AFTER * 1e6)
        self._conn.execute(
            "UPDATE conddsl_requests SET answer = 'stale: nobody waits for it any more',"
            " answered_at = %s WHERE answer IS NULL AND asked_at < %s",
            (_now_us(), cutoff),
        )

    def start(self) -> PgRequestPoller:
        """Start listening; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop (requests taken so far are answered) and close the connections."""
        self._stop.set()
        # Wakes our listening thread (and, harmlessly, the other nodes' for one look).
        with contextlib.suppress(Exception):
            self._conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
        if self._thread.is_alive():
            self._thread.join(self._interval + 5)
        with contextlib.suppress(Exception):  # a broken connection may fail to close
            self._conn.close()

    def take(self) -> list[Answer]:
        """Take the pending requests this node serves (no other node gets them)."""
        with self._conn.transaction():
            rows = self._conn.execute(
                f"UPDATE conddsl_requests SET node = %s WHERE id IN ("
                " SELECT r.id FROM conddsl_requests AS r"
                " WHERE r.answer IS NULL AND r.node IS NULL AND r.task = ANY(%s)"
                " AND (r.op = 'run'"
                "  OR EXISTS (SELECT 1 FROM conddsl_open_runs AS o"
                "             WHERE o.task = r.task AND o.node = %s)"
                "  OR NOT EXISTS (SELECT 1 FROM conddsl_open_runs AS o WHERE o.task = r.task))"
                " ORDER BY r.id FOR UPDATE SKIP LOCKED)"
                f" RETURNING {_FIELDS}",
                (self.node, self._tasks, self.node),
            ).fetchall()
        found = []
        for row in sorted(rows):
            # The rows are taken (committed) already: one written by hand with a value
            # we cannot read is answered here, or the others taken with it would be
            # left unanswered for good.
            try:
                found.append(_answer(row))
            except (OverflowError, TypeError, ValueError) as error:
                self.answer(row[0], f"refused: malformed request ({error})")
        return found

    def answer(self, request: int, text: str) -> None:
        """Write this node's answer to a request it took."""
        self._conn.execute(
            "UPDATE conddsl_requests SET answer = %s, answered_at = %s"
            " WHERE id = %s AND node = %s AND answer IS NULL",
            (text, _now_us(), request, self.node),
        )

    def poll(self) -> int:
        """Take and apply the requests this node serves, once; returns how many."""
        found = self.take()
        for request in found:
            elsewhere = self._running_elsewhere(request)
            if elsewhere is not None:
                # Said now; the start's claim would refuse it too, after "started".
                self.answer(
                    request.id,
                    f"refused: task {request.task!r} is running on node {elsewhere}"
                    " (and not multilaunch)",
                )
                continue
            try:
                self._apply(request.op, request.task)
            except Exception as error:  # refused: the scheduler's own words
                self.answer(request.id, f"refused: {error}")
            else:
                self.answer(request.id, ACCEPTED[request.op])
        return len(found)

    def _running_elsewhere(self, request: Answer) -> str | None:
        """The other node running a non-multilaunch task asked to run, if one does."""
        if request.op != "run" or request.task not in self._exclusive:
            return None
        row = self._conn.execute(
            "SELECT node FROM conddsl_open_runs WHERE task = %s AND node <> %s LIMIT 1",
            (request.task, self.node),
        ).fetchone()
        return None if row is None else str(row[0])

    def _listening(self) -> Any:
        """The LISTEN connection, made again after a failure."""
        if self._listen is None or self._listen.closed or self._listen.broken:
            self._listen = self._connect()
            self._listen.execute(f"LISTEN {CHANNEL}")
        return self._listen

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._conn.closed or self._conn.broken:
                    self._conn = self._connect()
                # Listening before looking: a request asked in between wakes the wait.
                listen = self._listening()
                self.poll()
                for _ in listen.notifies(timeout=self._interval, stop_after=1):
                    pass
            except Exception as error:  # the database away a moment: try again
                log.warning("node %s: requests not served now: %s", self.node, error)
                self._stop.wait(self._interval)
        if self._listen is not None:
            with contextlib.suppress(Exception):
                self._listen.close()
