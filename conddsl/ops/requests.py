"""``conddsl run-task`` and ``conddsl terminate``: requests to the scheduler serving a file.

A request is a row of the ``requests`` table in the SQLite history file, so it works
from any process of the machine. The command writes it and waits for its answer; the
scheduler's :class:`RequestPoller` (a thread of ``conddsl run``) reads new rows a few
times a second, applies them with ``Scheduler.run_task`` / ``Scheduler.terminate``
(both safe from any thread) and writes the answer. Nothing serves a file when no
process holds its run lock (``<history>.run.lock``): the command then exits 2 at once.

Table ``requests``: ``id`` (grows), ``task``, ``op`` (``run`` or ``terminate``),
``asked_at`` (microseconds since the epoch, UTC), ``asked_by`` (user, host and pid),
``answered_at`` (NULL until the scheduler took it) and ``answer`` (``started``,
``terminating``, or why it was refused; ``withdrawn`` when the asker stopped waiting).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from conddsl.history.base import to_us

__all__ = [
    "OPS",
    "Answer",
    "RequestBox",
    "RequestPoller",
    "served_by",
    "ACCEPTED",
    "WITHDRAWN",
]

OPS = ("run", "terminate")
ACCEPTED = {"run": "started", "terminate": "terminating"}
WITHDRAWN = "withdrawn"
# Seconds: longer than any asker waits (``conddsl run-task --wait`` is capped below it).
STALE_AFTER = 600.0

_SCHEMA = """CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    op TEXT NOT NULL,
    asked_at INTEGER NOT NULL,
    asked_by TEXT,
    answered_at INTEGER,
    answer TEXT
)"""


@dataclass(frozen=True)
class Answer:
    """What became of a request: ``answer`` is None while nobody took it."""

    id: int
    task: str
    op: str
    asked_at: datetime
    answer: str | None

    @property
    def accepted(self) -> bool:
        """Whether the scheduler applied it."""
        return self.answer == ACCEPTED.get(self.op)


def _now_us() -> int:
    return to_us(datetime.now(timezone.utc))


def asker() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


class RequestBox:
    """The ``requests`` table of one SQLite history file."""

    def __init__(self, history_path: Path, *, timeout: float = 5.0) -> None:
        self.path = Path(history_path)
        self._conn = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute(_SCHEMA)

    def ask(self, task: str, op: str) -> int:
        """Write a request; returns its id."""
        if op not in OPS:
            raise ValueError(f"unknown request {op!r}: expected one of {', '.join(OPS)}")
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO requests (task, op, asked_at, asked_by) VALUES (?, ?, ?, ?)",
                (task, op, _now_us(), asker()),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def answer_of(self, request: int) -> Answer | None:
        """The request and its answer so far (None: no such request)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT id, task, op, asked_at, answer FROM requests WHERE id = ?", (request,)
            ).fetchone()
        return None if row is None else _answer(row)

    def withdraw(self, request: int) -> bool:
        """Withdraw a request nobody took yet; False if the scheduler took it meanwhile."""
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE requests SET answer = ?, answered_at = ? WHERE id = ? AND answer IS NULL",
                (WITHDRAWN, _now_us(), request),
            )
            return cursor.rowcount == 1

    def pending(self) -> list[Answer]:
        """The requests nobody answered yet, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, task, op, asked_at, answer FROM requests"
                " WHERE answer IS NULL ORDER BY id"
            ).fetchall()
        return [_answer(row) for row in rows]

    def answer(self, request: int, text: str) -> None:
        """Write the scheduler's answer to a request."""
        with self._lock:
            self._conn.execute(
                "UPDATE requests SET answer = ?, answered_at = ? WHERE id = ? AND answer IS NULL",
                (text, _now_us(), request),
            )

    def terminating(self) -> list[Answer]:
        """The terminate requests the scheduler accepted, newest first (for ``status``)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, task, op, asked_at, answer FROM requests"
                " WHERE op = 'terminate' AND answer = ? ORDER BY id DESC LIMIT 1000",
                (ACCEPTED["terminate"],),
            ).fetchall()
        return [_answer(row) for row in rows]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


def _answer(row: tuple) -> Answer:
    from conddsl.history.base import from_us

    return Answer(row[0], row[1], row[2], from_us(row[3]), row[4])


def accepted_terminations(history_path: Path) -> dict[str, datetime]:
    """Each task's latest terminate request the scheduler accepted, read only (``status``)."""
    uri = f"{Path(history_path).resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0)
    except sqlite3.Error:
        return {}
    try:
        rows = conn.execute(
            "SELECT task, MAX(asked_at) FROM requests WHERE op = 'terminate' AND answer = ?"
            " GROUP BY task",
            (ACCEPTED["terminate"],),
        ).fetchall()
    except sqlite3.Error:  # no requests table: nobody ever asked
        return {}
    finally:
        conn.close()
    from conddsl.history.base import from_us

    return {task: from_us(at) for task, at in rows}


def served_by(history_path: Path) -> str | None:
    """Who serves this history now (the run lock's holder, in words), or None."""
    import fcntl
    import json

    lock = Path(f"{history_path}.run.lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None  # `conddsl run` removes it when it stops
    try:
        try:
            # A shared lock conflicts with the server's exclusive one and with nothing
            # else; held for a moment only.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 4096)
            try:
                info = json.loads(text)
                return f"pid {int(info['pid'])} on {info['host']}, since {info['since']}"
            except (ValueError, KeyError, TypeError, RecursionError):
                return "a `conddsl run` starting now"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class RequestPoller:
    """The serving side: a daemon thread that applies new requests to a scheduler.

    ``apply(op, task)`` runs the request (``Scheduler.run_task`` or ``terminate``) and
    raises to refuse it; the error's text is the answer. Unanswered requests older than
    ``STALE_AFTER`` seconds when it starts are answered ``stale``: their askers, who
    wait less than that, are gone (killed while waiting).
    """

    def __init__(
        self,
        history_path: Path,
        apply: Callable[[str, str], None],
        *,
        interval: float = 0.2,
    ) -> None:
        self.box = RequestBox(history_path)
        self._apply = apply
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="conddsl-requests", daemon=True)
        cutoff = datetime.now(timezone.utc).timestamp() - STALE_AFTER
        for old in self.box.pending():
            if old.asked_at.timestamp() < cutoff:
                self.box.answer(old.id, "stale: nobody waits for it any more")

    def start(self) -> RequestPoller:
        """Start polling; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling (requests taken so far are answered) and close the table."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.box.close()

    def poll(self) -> int:
        """Apply the pending requests once; returns how many."""
        found = self.box.pending()
        for request in found:
            try:
                self._apply(request.op, request.task)
            except Exception as error:  # refused: the scheduler's own words
                self.box.answer(request.id, f"refused: {error}")
            else:
                self.box.answer(request.id, ACCEPTED[request.op])
        return len(found)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(sqlite3.Error):  # locked a moment: next time
                self.poll()


TAKER_GRACE = 5.0  # seconds a scheduler that took a request has to answer it


def wait_for_answer(
    box: RequestBox, request: int, wait: float, *, sleep: Callable[[float], None] = time.sleep
) -> Answer | None:
    """The request's answer once given, or None after ``wait`` seconds (then withdrawn)."""
    deadline = time.monotonic() + wait
    taken_by = None  # when a withdrawal found it taken: its taker gets a few seconds more
    while True:
        found = box.answer_of(request)
        if found is not None and found.answer is not None:
            return found
        now = time.monotonic()
        if taken_by is not None and now >= taken_by:
            return None  # the taker died or hangs before answering: stop waiting
        if taken_by is None and now >= deadline:
            if box.withdraw(request):
                return None
            taken_by = now + TAKER_GRACE  # taken meanwhile: wait for its answer, bounded
        sleep(0.05)
