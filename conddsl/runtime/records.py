"""The record writer: every record a scheduler makes goes to its history through here,
then to the listeners subscribed to it (the CLI's printing, logs, metrics).

A finishing record is stamped when its run ends and written right after the current
turn of the event loop (and always before any condition is evaluated), so a burst of
terminations is not slowed by history writes; ``FLUSH_SLICE`` seconds of writing a
turn, in the order they were stamped, so that a mass end's thousand records do not
hold the loop at once. A listener that raises is reported once
(in the log) and never breaks the scheduler: it is still called for later records. That
holds for ``SystemExit`` (a ``sys.exit()`` in a listener) and ``CancelledError`` too; only
``KeyboardInterrupt`` goes on up, as a Ctrl-C would anywhere else.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from conddsl.history import History, HistoryError, Record
from conddsl.history.base import Entry, batch_adder, batch_writer, from_us, to_us
from conddsl.runtime.runs import Run

log = logging.getLogger("conddsl.runtime")
# A record kept to write (see RecordWriter.stamp): run, action, at, reason, message.
_Stamped = tuple[Run, str, datetime, str | None, str | None]
# Seconds of writing stamped records in one turn of the loop (flush_slice): a mass end's
# thousand records, written one by one, held the loop for 2-6 ms.
FLUSH_SLICE = 0.001
# Records given to a history's batch at once by a flush with a time limit: the time is
# looked at between two records, or two batches of this many.
WRITE_BATCH = 256


@dataclass(frozen=True, slots=True)
class Recorded:
    """A record just written, with what the scheduler knows of its run besides it."""

    record: Record
    #: When the run started (its ``run`` record's time); None for a record of no live run
    #: (``crash`` records of a scheduler that died).
    started: datetime | None = None
    #: When the run was due to start: the instant the scheduler found its start condition
    #: true (the check that came due, or the change that woke it); None for runs not
    #: started by their condition (manual, permanent, startup and shutdown runs) and for
    #: ``crash`` records.
    due: datetime | None = None

    @property
    def start_delay(self) -> timedelta | None:
        """For a ``run`` record: how long after it was due the run started."""
        if self.record.action != "run" or self.due is None:
            return None
        return self.record.at - self.due

    @property
    def duration(self) -> timedelta | None:
        """For a finishing record: how long the run ran."""
        if self.record.action == "run" or self.started is None:
            return None
        return self.record.at - self.started


Listener = Callable[[Recorded], object]


class RecordWriter:
    """Writes records to ``history`` and tells the listeners; ``wake(task, own)`` is
    called after each record (``own``: the task's own state may have changed), or
    ``wake_all(entries)`` once after a batch no listener hears, if given (a record's own
    task changed unless it is a ``run`` record)."""

    def __init__(
        self,
        history: History,
        *,
        on_error: Callable[[BaseException], None],
        wake: Callable[[str, bool], None],
        wake_all: Callable[[list[Entry]], None] | None = None,
    ) -> None:
        self.history = history
        self._on_error = on_error
        self._wake = wake
        self._wake_all = wake_all
        self._listeners: tuple[Listener, ...] = ()  # replaced whole: read from any thread
        # Held while the tuple is rebuilt: a rebuild from a stale copy would drop a
        # listener another thread added meanwhile.
        self._subscribing = threading.Lock()
        self._failed: set[int] = set()  # ids of listeners whose failure was reported
        self.unwritten: list[_Stamped] = []
        # The history whose batch was looked up, its batch (None: it has none) and the
        # batch that returns no records (for a burst no listener hears; None: none).
        self._batch_of: object = None
        self._batch: Callable[[list[Entry]], list[Record]] | None = None
        self._adder: Callable[[list[Entry]], None] | None = None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every record written from now on; returns the unsubscribe."""
        if not callable(listener):
            raise TypeError(f"a listener is called with each record, not a {type(listener)}")
        with self._subscribing:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._subscribing:
                self._listeners = tuple(x for x in self._listeners if x is not listener)

        return unsubscribe

    def write(
        self,
        run: Run,
        action: str,
        at: datetime,
        *,
        reason: str | None = None,
        message: str | None = None,
        traceback: str | None = None,
        own_change: bool = True,
    ) -> None:
        """Write one record of ``run`` now."""
        name = run.task.name
        # Only a failure passes a traceback: histories written before it existed still work.
        extra = {} if traceback is None else {"traceback": traceback}
        stored: Record | None = None
        try:
            stored = self.history.record(
                name, action, at=at, run_id=run.run_id, reason=reason, message=message, **extra
            )
        except Exception as exc:  # a HistoryError, or a history of the caller's that broke
            self._on_error(exc)
        self._wake(name, own_change)
        if stored is not None and self._listeners:
            started = None if action == "run" else run.started
            self.tell(Recorded(stored, started, run.due if action == "run" else None))

    def written(self, run: Run, stored: Record, *, own_change: bool = True) -> None:
        """A record of ``run`` that the history wrote itself (a claim's run record): wake
        and tell the listeners as :meth:`write` does."""
        self._wake(run.task.name, own_change)
        if self._listeners:
            started = None if stored.action == "run" else run.started
            self.tell(Recorded(stored, started, run.due if stored.action == "run" else None))

    def stamp(
        self, run: Run, action: str, at: datetime, reason: str | None, message: str | None
    ) -> bool:
        """Keep a record to write with :meth:`flush` (a finishing record, or the ``run``
        record of a prepared start); True if it is the first kept."""
        self.unwritten.append((run, action, at, reason, message))
        return len(self.unwritten) == 1

    def flush(self, until: float | None = None) -> bool:
        """Write the records stamped so far, in the order they were stamped: several in
        one call of the history's batch (see :func:`~conddsl.history.base.batch_writer`)
        if it has one, else one by one.

        ``until`` (a ``time.perf_counter()`` reading): stop once it has passed, one record
        written at least, keeping the rest first in line; True if some are left."""
        while self.unwritten:
            records, self.unwritten = self.unwritten, []
            if until is not None and len(records) > WRITE_BATCH:
                # (those stamped while these are written come after the rest)
                records, self.unwritten = records[:WRITE_BATCH], records[WRITE_BATCH:]
            if len(records) > 1 and self._write_batch(records):
                if until is not None and self.unwritten and time.perf_counter() > until:
                    return True
                continue
            for done, (run, action, at, reason, message) in enumerate(records, 1):
                if action == "run":  # a start: the task itself is looked at when it ends
                    self.write(run, action, at, reason=reason, own_change=False)
                else:
                    self.write(
                        run, action, at, reason=reason, message=message, traceback=run.traceback
                    )
                if until is not None and time.perf_counter() > until:
                    left = records[done:]
                    if left or self.unwritten:
                        self.unwritten[:0] = left  # (before any stamped while writing)
                        return True
        return False

    def flush_slice(self) -> bool:
        """:meth:`flush` for ``FLUSH_SLICE`` seconds at most (a turn of the loop's share of
        the writing); True if some records are left."""
        return self.flush(time.perf_counter() + FLUSH_SLICE)

    def _write_batch(self, records: list[_Stamped]) -> bool:
        """Write ``records`` in one call of the history's batch, then wake and tell as
        :meth:`write` does for each; False (nothing written) if it has no batch, or it
        refused them before writing any (they are then written one by one)."""
        history = self.history
        if history is not self._batch_of:
            self._batch_of, self._batch = history, batch_writer(history)
            self._adder = batch_adder(history)
        batch = self._batch
        if batch is None:
            return False
        entries: list[Entry] = [
            (run.task.name, action, at, run.run_id, reason, None, None)
            if action == "run"
            else (run.task.name, action, at, run.run_id, reason, message, run.traceback)
            for run, action, at, reason, message in records
        ]
        # With no listener, the store need not make the records.
        listening = bool(self._listeners)
        stored: list[Record] | None = None
        added = False
        try:
            if listening or self._adder is None:
                stored = batch(entries)
            else:
                self._adder(entries)
                added = True
        except HistoryError as exc:  # kept pending by the store, as a single record would be
            self._on_error(exc)
        except Exception:  # refused before any was written: each gets its own answer
            return False
        if added and self._listeners:  # subscribed meanwhile (from another thread), before
            # the batch was written: it hears the batch, as a record's would
            listening, stored = True, [_as_stored(entry) for entry in entries]
        if stored is None or not listening:  # (the usual case: no Recorded to make)
            if self._wake_all is not None:
                self._wake_all(entries)
                return True
            wake = self._wake
            for run, action, _, _, _ in records:
                wake(run.task.name, action != "run")  # a start: looked at when it ends
            return True
        for (run, action, _, _, _), rec in zip(records, stored, strict=True):
            self.written(run, rec, own_change=action != "run")
        return True

    async def mark_crashed(self, now: datetime) -> None:
        """Close the runs a scheduler that died left open (``crash`` records).

        In a worker thread: a store may first write records a journal kept (waiting up
        to its timeout for a file another connection locked) or put back a file deleted
        in use, and the event loop goes on meanwhile. The listeners hear of them here."""
        found = await asyncio.to_thread(self.history.mark_crashed, now)
        for record in found or ():
            self.tell(Recorded(record))

    def tell(self, recorded: Recorded) -> None:
        """Give ``recorded`` to every listener; one that raises is reported once."""
        for listener in self._listeners:
            try:
                listener(recorded)
            except KeyboardInterrupt:
                raise
            # Not just Exception: a SystemExit or CancelledError raised here would unwind
            # the scheduler's loop in the middle of a start or a stop.
            except BaseException:
                if id(listener) not in self._failed:
                    self._failed.add(id(listener))
                    log.exception(
                        "record listener %r failed (reported once; it is still called)", listener
                    )


def _as_stored(entry: Entry) -> Record:
    """The record a store returns for ``entry`` written (its ``at`` in UTC)."""
    task, action, at, run_id, reason, message, traceback = entry
    return Record(task, action, from_us(to_us(at)), run_id, reason, message, traceback)
