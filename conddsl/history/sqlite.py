"""A run history in a SQLite file, shared by the processes of one machine."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone

from conddsl.bounded import read_bounded
from conddsl.errors import JournalError as _JournalError
from conddsl.history.base import (
    ACTION_CODES,
    ACTIONS,
    FINISH_ACTIONS,
    Entry,
    History,
    HistoryError,
    HistoryJournaled,
    OpenRuns,
    Record,
    check_actions,
    check_record,
    from_us,
    to_us,
)
from conddsl.history.filecheck import copy_into, identity, reserve
from conddsl.history.retention import Retention
from conddsl.trust import (
    HISTORY_FOLDER_HINT,
    JOURNAL_SUFFIX,
    history_files,
    history_folder_problem,
    untrusted,
)

log = logging.getLogger("conddsl.history")

SCHEMA_VERSION = 2  # 2: records.traceback

# Times are integer microseconds since the epoch (UTC); actions are their index
# in ACTIONS. AUTOINCREMENT keeps ids growing even after the newest row is
# deleted, so "rows with id > the last one seen" finds every new row.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        task TEXT NOT NULL,
        action INTEGER NOT NULL,
        at INTEGER NOT NULL,
        run_id TEXT,
        reason TEXT,
        message TEXT,
        traceback TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS records_task_action_at ON records (task, action, at)",
    "CREATE INDEX IF NOT EXISTS records_at ON records (at)",
    # The live set of runs without a finish, written in the same transaction as
    # the records, so reopening the file needs no replay of the log.
    """CREATE TABLE IF NOT EXISTS open_runs (
        id INTEGER PRIMARY KEY,
        task TEXT NOT NULL,
        run_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS open_runs_task_run_id ON open_runs (task, run_id)",
)

_COLUMNS = "task, action, at, run_id, reason, message, traceback"
_INSERT = f"INSERT INTO records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
# What each older schema version needs to become the current one.
_MIGRATIONS = {1: ("ALTER TABLE records ADD COLUMN traceback TEXT",)}

# Retention drops neither an open run nor the latest record (by time, then id)
# of each (task, action): ``last`` must keep its answer.
_DELETE_OLDEST = """
DELETE FROM records WHERE id IN (
    SELECT r.id FROM records AS r
    WHERE r.at < ?
      AND r.id NOT IN (SELECT id FROM open_runs)
      AND r.id <> (
          SELECT m.id FROM records AS m
          WHERE m.task = r.task AND m.action = r.action
          ORDER BY m.at DESC, m.id DESC LIMIT 1)
    ORDER BY r.at, r.id
    LIMIT ?)
"""

_Row = tuple[str, int, int, str | None, str | None, str | None, str | None]
_NO_CUTOFF = 2**63 - 1

# In conddsl.trust, which `conddsl check` reads without importing the history.
trusted_files = history_files


# A journal holds what a failing history could not take: a few hundred bytes a record.
JOURNAL_MAX_BYTES = 256_000_000
# The keys of the journal lines already written to the table: a replay cut short after
# its commit (before the journal is deleted) must not write them twice. Created on the
# first replay; a file without it reads as before.
_REPLAYED = "CREATE TABLE IF NOT EXISTS journal_replayed (key TEXT PRIMARY KEY)"
_MARK_REPLAYED = "INSERT OR IGNORE INTO journal_replayed (key) VALUES (?)"
# A key is needed while something may still present it: a journal line (until the journal
# is deleted) or the history that queued the record, which holds the key in memory until
# its own transaction. When another history replays a line of a record still queued
# elsewhere (the line says "queued"), its key is also kept here until that history's
# transaction sees it marked; only then, with no journal left, may the mark go.
_UNCLAIMED = "CREATE TABLE IF NOT EXISTS journal_unclaimed (key TEXT PRIMARY KEY)"
_PRUNE_REPLAYED = (
    "DELETE FROM journal_replayed WHERE key NOT IN (SELECT key FROM journal_unclaimed)"
)
# Journal files are read, rewritten and deleted under this lock, so that two histories of
# one process on the same file never lose each other's lines.
_JOURNAL_LOCK = threading.Lock()
_LOCK_WAIT = 2.0  # seconds a journal lock held elsewhere is waited for (see _journal_locked)
# How often the writer thread tries a file locked by another connection again. It asks
# without waiting (busy_timeout 0) and sleeps between tries, so that it never holds the
# connection, which the event loop's reads need, while the lock lasts.
_RETRY_EVERY = 0.01
# The range of times a datetime can hold, in microseconds since the epoch (UTC).
_FIRST_US = to_us(datetime.min.replace(tzinfo=timezone.utc))
_LAST_US = to_us(datetime.max.replace(tzinfo=timezone.utc))


class SQLiteHistory(Retention, History):
    """A run history in a SQLite file (WAL mode), safe for several readers and threads.

    - Times come back as UTC-aware datetimes (the original offset is not stored).
    - One process may write while others read; each ``SQLiteHistory`` has its own
      connection, usable from several threads (one lock serialises the calls).
    - ``last``, ``running`` and ``tasks`` are served from caches loaded at open and
      refreshed when another connection commits (``PRAGMA data_version``); the
      table is the truth. The other queries read the indexed table.
    - ``record`` never waits for the file's lock (an event loop calls it): it writes
      at once when the file is free; when another connection holds the lock, the
      record is kept pending and a writer thread of the history writes every pending
      record, in order, in one transaction as soon as the lock goes, trying every
      ``_RETRY_EVERY`` seconds without holding the connection. Pending records are
      part of every answer at once (``last``, ``running``, ``records``...). Reads
      never wait either: a WAL file can be read while another connection writes.
    - A record queued for the lock is *accepted* (``record`` returns it) only once it
      is appended to the journal (below) with a key of its own: from then on a kill
      of the process, SIGKILL included, cannot lose it, since the line is in the
      kernel. The writer thread then syncs the journal to the disk (one ``fsync``
      for every line appended since its last one, so a burst costs one, and never on
      the caller's thread), after which a power cut cannot lose it either. The
      transaction that writes a queued record also marks its key as replayed, so a
      restart after a kill replays each journaled record exactly once, whether or
      not the writer got to it. If the journal cannot be appended to, ``record``
      raises HistoryError (the record kept pending, in memory only).
    - If the lock lasts past ``timeout`` seconds, the writer gives up: the callback
      of ``watch_failures`` hears the ``HistoryError`` (naming the file and the
      cause), and so does every later ``record`` (its record is kept pending too, so
      do not record it again) until a write succeeds. Any other failure (disk full)
      raises from ``record`` at once, the record kept pending. The next ``record``
      or ``flush`` writes pending records first, in order; ``close`` refuses to drop
      them.
    - Retention (``max_age``, ``max_records``) works as in ``MemoryHistory``,
      deleting in batches of ``batch_size`` rows, one short transaction each.
      A retention pass that fails is retried after the next write.
    - ``close(journal=True)`` (and leaving a ``with`` block) does not leave pending
      records to die with the process: if they still cannot be written, they are
      saved in the journal file beside the database (``journal``, the file name plus
      ``.pending.jsonl``; written to a temporary file, synced, then renamed over it, so
      it is always whole) and ``HistoryJournaled`` says so. Opening the file, and
      before that every write, first writes the journal's records to the table, in
      their order, in one transaction with a key per record (so a replay cut short
      never writes a record twice), then deletes the journal. A journal that cannot be
      replayed at open (the file is locked) waits for the next write; ``mark_crashed``
      replays it first, so a run whose finish is in the journal is not taken for a crash.
      The keys go again at the first write with no journal file (see ``_prune_marks``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_age: timedelta | None = None,
        max_records: int | None = None,
        timeout: float = 5.0,
        batch_size: int = 10_000,
    ) -> None:
        self._init_retention(max_age, max_records)
        self._batch_size = batch_size
        self._path = os.fspath(path)
        self._timeout = timeout
        self._lock = threading.RLock()
        self._pending: list[_Row] = []
        # The journal keys of the first pending records: those appended to the journal
        # (records queued for a lock; it takes every pending record, so they lead).
        self._keys: list[str] = []
        self._unsynced = False  # journal lines appended and not yet fsynced
        self._journal_created = False  # ...and the journal's folder entry is new
        self._last: dict[str, dict[int, int]] = {}  # task -> action code -> latest microseconds
        self._runs = OpenRuns()
        self._count = 0
        self._max_id = 0
        self._now: int | None = None
        self._data_version: int | None = None
        self._closed = False
        memory = self._path in ("", ":memory:")
        self._journal = None if memory else self._path + JOURNAL_SUFFIX
        self._journal_waiting = False  # a journal file may hold records to replay
        # journal_replayed may hold keys nothing can present any more (see _prune_marks);
        # at open too: a file written by an older conddsl kept every key.
        self._prune_due = not memory
        self._replayed: list[Record] = []  # written from the journal, not yet taken
        # The writer thread (started at the first locked write) and what it shares.
        self._writer: threading.Thread | None = None
        self._kick = threading.Event()  # there is work, or the writer must stop
        self._writing = False  # the writer owns the pending records until it is done
        self._stop_writer = False
        self._failure: HistoryError | None = None  # the writer's last failure
        self._on_failure: Callable[[HistoryError], None] | None = None
        on_disk = not memory and not self._path.startswith("file:")
        if on_disk:
            self._check_trusted()
        try:
            self._conn = sqlite3.connect(
                self._path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        self._identity: tuple[int, int] | None = None  # of the file opened (see filecheck)
        self._replaced_copy: str | None = None  # where this run's records went, if replaced
        # A file deleted or replaced in use, noticed by ``record``: the copy it reserved
        # (made by the writer thread, off the caller's thread), and whether it is under way.
        self._copy_due: str | None = None
        self._copy_identity: tuple[int, int] | None = None  # of that file, once made
        self._copying = False
        self._copied = threading.Condition(self._lock)
        try:
            self._setup()
            self._identity = identity(self._path) if on_disk else None
            self._load()
            self._open_journal()
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._error("open", exc) from exc
            raise

    def _check_trusted(self) -> None:
        """Refuse a database, its SQLite side files or its journal that another user could
        have written (:mod:`conddsl.trust`): their records would decide what runs."""
        # Its folder first: in one others may add files to, its side files can be
        # planted or swapped between any check and SQLite's own open by name.
        folder = history_folder_problem(self._path)
        if folder is not None:
            raise HistoryError(
                f"history file {self._path}: not opened: {folder}; {HISTORY_FOLDER_HINT}",
                path=self._path,
                reason=f"its folder is not private: {folder}",
            )
        for candidate in trusted_files(self._path):
            why = untrusted(candidate)
            if why is not None:
                raise HistoryError(
                    f"history file {self._path}: not opened: {why}",
                    path=self._path,
                    reason=f"it is not trusted: {why}",
                )

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    def take_replayed(self) -> list[Record]:
        """The records written from the journal since the last call (to show them)."""
        with self._lock:
            found, self._replayed = self._replayed, []
            return found

    @property
    def journal(self) -> str | None:
        """The journal file of records kept by ``close(journal=True)`` (None in memory)."""
        return self._journal

    @property
    def pending(self) -> list[Record]:
        """The records accepted but not written yet (the file is locked, or failed)."""
        with self._lock:
            return [_to_record(row) for row in self._pending]

    def watch_failures(self, callback: Callable[[HistoryError], None] | None) -> None:
        """Have ``callback`` called, from the writer thread, when it gives up on a locked file."""
        self._on_failure = callback

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
        """Write (or, while the file is locked, queue) a record and return it, never waiting.

        Raise HistoryError, the record kept pending, if the write fails otherwise, or
        after the writer thread gave up on the lock (see the class docstring).
        """
        check_record(task, action)
        row: _Row = (task, ACTION_CODES[action], to_us(at), run_id, reason, message, traceback)
        self._accept([row])
        return _to_record(row)

    def record_many(self, entries: list[Entry]) -> list[Record]:
        """Write (or queue) records in order as :meth:`record` does, in one transaction
        (see :func:`~conddsl.history.base.batch_writer`): every entry is checked before
        any is accepted; a failed write keeps them all pending and raises HistoryError."""
        rows = _checked_rows(entries)
        self._accept(rows)
        return [_to_record(row) for row in rows]

    def add_many(self, entries: list[Entry]) -> None:
        """:meth:`record_many` without making the records (see
        :func:`~conddsl.history.base.batch_adder`)."""
        self._accept(_checked_rows(entries))

    def _accept(self, rows: list[_Row]) -> None:
        """Write checked rows in one transaction, or queue them behind what waits: the one
        path of :meth:`record` and :meth:`record_many`."""
        with self._lock:
            self._check_open()
            self._pending.extend(rows)
            if self._replaced_copy is not None:  # nothing more goes through the connection
                raise self._replaced_error()
            if self._writing:  # behind the records the writer waits to write: in order
                self._to_journal()  # accepted once they are there
                return
            try:
                self._write_pending(wait=False, copy=False)
            except _Moved:
                # The file was deleted: the writer thread copies it back, then writes.
                if self._failure is not None:
                    raise self._failure from None
                self._start_writer()
                self._to_journal()
            except HistoryError as exc:
                if self._copy_due is not None:  # replaced: this run's records go beside it
                    self._start_writer()
                if self._failure is not None or not _is_lock(exc):
                    raise
                self._start_writer()  # the lock is somebody else's for now: not our wait
                self._to_journal()
            else:
                self._failure = None
                self._retain()

    def flush(self) -> None:
        """Write the pending records (and the journal's); raise HistoryError if that fails again."""
        with self._lock:
            self._check_open()
            if self._pending or self._journal_waiting:
                self._write_pending()
                self._failure, self._writing = None, False
                self._retain()

    def mark_crashed(self, at: datetime) -> list[Record]:
        """Record ``crash`` for every run still open, once the journal's records are written."""
        with self._lock:
            self._check_open()
            if self._journal_waiting:
                self._write_pending()  # its finishes close runs that did not crash
            return super().mark_crashed(at)

    def _start_writer(self) -> None:
        """Hand the pending records to the writer thread (started on first use)."""
        self._writing = True
        if self._writer is None or not self._writer.is_alive():
            self._stop_writer = False
            self._writer = threading.Thread(
                target=self._write_behind, name=f"conddsl history {self._path}", daemon=True
            )
            self._writer.start()
        self._kick.set()

    def _write_behind(self) -> None:
        """The writer thread: write what is pending once the lock is free, or give up."""
        while True:
            self._kick.wait()
            self._kick.clear()
            if self._stop_writer:
                return
            failure = self._write_when_free()
            self._sync_journal()  # lines appended since its last try (it gave up, or wrote)
            callback = self._on_failure
            if failure is not None and callback is not None:
                try:
                    callback(failure)
                except Exception as exc:  # e.g. its event loop closed; the next record raises
                    log.warning("the history failure could not be reported: %s", exc)

    def _write_when_free(self) -> HistoryError | None:
        """Try to write the pending records until done, ``timeout`` passed, or told to stop."""
        deadline = time.monotonic() + self._timeout
        while not self._stop_writer:
            self._sync_journal()
            try:
                self._copy_behind()
            except HistoryError as exc:
                return self._give_up(exc)
            found: HistoryError | None = None  # a replaced file, found by this write
            with self._lock:
                if self._closed or not self._writing:
                    return None
                if self._replaced_copy is not None:  # the record that found it said so
                    self._writing = False
                    return None
                if not self._pending and not self._journal_waiting:  # flush() wrote them
                    self._writing = False
                    return None
                try:
                    self._write_pending(wait=False, copy=False)
                except _Moved:
                    continue  # deleted (again) meanwhile: copied back first
                except HistoryError as exc:
                    if self._copy_due is not None:
                        found = exc
                    elif _is_lock(exc) and time.monotonic() < deadline:
                        pass  # tried again below, the connection free meanwhile
                    else:
                        if _is_lock(exc) and isinstance(exc.__cause__, sqlite3.Error):
                            exc = self._error("write", exc.__cause__)  # "waited N s"
                        return self._give_up(exc)
                else:
                    self._writing = False
                    self._failure = None
                    self._retain()
                    return None
            if found is not None:  # this run's records copied beside it first
                try:
                    self._copy_behind()
                except HistoryError as exc:
                    found = exc
                return self._give_up(found)
            time.sleep(_RETRY_EVERY)
        return None

    def _give_up(self, failure: HistoryError) -> HistoryError:
        """The writer thread stops trying: later records hear ``failure`` (see ``record``)."""
        with self._lock:
            self._failure = failure
            self._writing = False
        log.error("%s", failure)
        return failure

    def _to_journal(self) -> None:
        """Append the pending records not in the journal yet to it, each with a key, so
        that a kill of the process cannot lose them (the writer thread fsyncs them).

        Raise HistoryError if it cannot be written: the records stay pending."""
        if self._journal is None:
            return  # in memory: nothing outlives the process anyway
        rows = self._pending[len(self._keys) :]
        if not rows:
            return
        keys = [uuid.uuid4().hex for _ in rows]
        lines = "".join(
            _journal_line(key, row, queued=True) for key, row in zip(keys, rows, strict=True)
        )
        try:
            with _journal_locked(self._journal):
                created = _append(self._journal, lines.encode("utf-8"))
        except OSError as exc:
            raise HistoryError(
                f"history file {self._path} is locked by another connection, and the"
                f" journal {self._journal} that would keep {len(rows)} record(s) safe"
                f" meanwhile cannot be written: {exc.strerror or exc}; the record(s) are"
                " kept pending in memory only",
                path=self._path,
                reason=f"its journal cannot be written: {exc.strerror or exc}",
            ) from exc
        self._keys.extend(keys)
        self._journal_waiting = True
        self._unsynced = True
        self._journal_created = self._journal_created or created
        self._kick.set()

    def _sync_journal(self) -> None:
        """On the writer thread: fsync the journal lines appended since the last sync."""
        with self._lock:
            if not self._unsynced or self._journal is None:
                return
            self._unsynced = False
            created, self._journal_created = self._journal_created, False
        # Outside the lock: ``record`` may append meanwhile (synced by the next call).
        try:
            fd = os.open(self._journal, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _sync_folder(self._journal)
        except FileNotFoundError:
            pass  # written to the table and dropped meanwhile
        except OSError as exc:
            log.warning("history journal %s could not be synced: %s", self._journal, exc)

    def _stop(self) -> None:
        """Stop the writer thread (the caller writes what is pending itself)."""
        writer = self._writer
        if writer is None:
            return
        self._stop_writer = True
        self._kick.set()
        if writer is not threading.current_thread():
            writer.join()
        self._writer = None
        self._writing = False
        self._sync_journal()  # what it had no time to sync

    def _write_pending(self, *, wait: bool = True, copy: bool = True) -> None:
        # Before and after: a write to a file that is gone, or to one renamed over ours
        # (whose WAL shares our WAL's name), would be lost or fail. Without ``copy`` the
        # copy such a file needs is left to the writer thread (_Moved or HistoryError).
        self._check_file(copy=copy)
        conn = self._conn
        written: list[tuple[int, _Row]] = []
        replayed: bytes | None = None
        try:
            if not wait:
                conn.execute("PRAGMA busy_timeout = 0")
            try:
                conn.execute("BEGIN IMMEDIATE")
            finally:
                if not wait:
                    conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            try:
                # Under the write lock nobody else can add rows, so after this sync
                # our own ids are the next ones and the caches miss nothing.
                self._sync()
                own = set(self._keys)
                if self._journal_waiting:  # older than anything pending: first
                    replayed = self._replay(written, own)
                from_journal = len(written)
                if own:
                    conn.execute(_REPLAYED)
                    conn.execute(_UNCLAIMED)
                claimed = False
                for i, row in enumerate(self._pending):
                    # A journaled record is marked replayed in the same transaction: a
                    # restart after a kill finds it written and skips its journal line.
                    # Already marked: another history on the file replayed it, and kept
                    # the key for us to see; seen now, it may go with the journal.
                    key = self._keys[i] if i < len(self._keys) else None
                    if key is None or conn.execute(_MARK_REPLAYED, (key,)).rowcount:
                        self._insert(row, written)
                    else:
                        conn.execute("DELETE FROM journal_unclaimed WHERE key = ?", (key,))
                        claimed = True
                pruned = self._prune_due and replayed is None and self._prune_marks()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error("write", exc, waited=wait) from exc
        self._pending.clear()
        self._keys.clear()
        self._unsynced = self._journal_created = False  # in the table now: no sync needed
        if pruned:
            self._prune_due = False
        if claimed:
            self._prune_due = True
        if replayed is not None:
            self._replayed.extend(_to_record(row) for _, row in written[:from_journal])
            self._drop_journal(replayed)
        for rid, row in written:
            self._note(row[0], row[1], row[2])
            self._runs.apply(_to_record(row))
            self._count += 1
            self._max_id = rid
        self._check_file(copy=copy)

    def _check_file(self, *, copy: bool = True) -> None:
        """The file at the path is still the one open: put a deleted one back, keep this
        run's records beside a replaced one and raise (see :mod:`conddsl.history.filecheck`).

        Without ``copy`` (on the caller's thread: an event loop) only the copy's file is
        made; the copy is left to the writer thread: :class:`_Moved` for a deleted file,
        the HistoryError of a replaced one at once."""
        if self._identity is None:
            return
        if copy:
            self._finish_copy()
        elif self._copy_due is not None:
            raise _Moved()  # nothing goes through the connection before the copy
        if self._replaced_copy is not None:
            # Nothing more goes through this connection: the newcomer may share its WAL's
            # name. Later records stay pending (and go to the journal at close).
            raise self._replaced_error()
        now = identity(self._path)
        if now == self._identity:
            return
        deleted = now is None
        try:
            target = reserve(self._path, beside=not deleted)
        except OSError as exc:
            raise self._copy_error(deleted, exc) from exc
        self._copy_due, self._copy_identity = target, identity(target)
        if target != self._path:
            # Replaced, or another file took the name of the deleted one meanwhile.
            self._replaced_copy = target
        if copy:
            self._finish_copy()
        elif target == self._path:
            raise _Moved()
        if self._replaced_copy is not None:
            raise self._replaced_error()

    def _finish_copy(self) -> None:
        """Under the lock: make the copy a check reserved, or wait for the writer's."""
        while self._copying:
            self._copied.wait()
        target = self._copy_due
        if target is None:
            return
        try:
            copy_into(self._conn, target)
            self._copied_out(target)
        except sqlite3.Error as exc:
            raise self._copy_error(target == self._path, exc) from exc

    def _copy_behind(self) -> None:
        """On the writer thread: make the copy a check reserved, without the history's
        lock (its readers go on meanwhile; records are queued while ``_writing``)."""
        with self._lock:
            target = self._copy_due
            if target is None or self._copying or self._closed:
                return
            self._copying = True
        failure: sqlite3.Error | None = None
        try:
            copy_into(self._conn, target)
        except sqlite3.Error as exc:
            failure = exc
        finally:
            with self._lock:
                self._copying = False
                try:
                    if failure is None:
                        self._copied_out(target)
                except sqlite3.Error as exc:
                    failure = exc
                finally:
                    self._copied.notify_all()
        if failure is not None:
            raise self._copy_error(target == self._path, failure) from failure

    def _copied_out(self, target: str) -> None:
        """Under the lock, the copy made: go on with it, or leave the newcomer alone."""
        self._copy_due = None
        if target == self._path:
            if not self._reopen(self._copy_identity):
                # Deleted (or replaced) again during the copy: this connection still holds
                # every record, and the next check copies them out again.
                log.warning("history file %s changed again while it was written back", target)
                return
            log.warning(
                "history file %s was deleted while in use: written again from the open"
                " connection, with all %d records",
                self._path,
                self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0],
            )
        else:
            # Our WAL is named after the path: emptied, the newcomer never reads our pages.
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _copy_error(self, deleted: bool, exc: Exception) -> HistoryError:
        what = "deleted" if deleted else "replaced by another file"
        return HistoryError(
            f"history file {self._path} was {what} while in use, and its records could"
            f" not be copied out of the open connection: {exc}",
            path=self._path,
            reason=f"it was {what} while in use",
        )

    def _replaced_error(self) -> HistoryError:
        return HistoryError(
            f"history file {self._path} was replaced by another file while in use: the"
            f" records of this history are kept in {self._replaced_copy}",
            path=self._path,
            reason="it was replaced by another file while in use",
        )

    def _reopen(self, copied: tuple[int, int] | None) -> bool:
        """Connect to the file written back at the path (its identity ``copied``) in place
        of this connection; False, this connection kept, if the path holds another.

        The new connection is made (never creating a file) and checked before the old one
        closes: a file deleted again during the copy leaves this connection, which holds
        every record, in use. The new one reads nothing before the old one has closed:
        a WAL connection deletes its WAL and shared-memory files by name when it closes,
        and those names are the new one's."""
        name = self._path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
        try:
            conn = sqlite3.connect(
                f"file:{name}?mode=rw",
                uri=True,
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error:
            return False  # gone again
        if copied is None or identity(self._path) != copied:
            conn.close()
            return False
        self._conn.close()
        self._conn = conn
        self._setup()
        self._data_version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        self._identity = copied
        return True

    def _insert(self, row: _Row, written: list[tuple[int, _Row]]) -> None:
        rid = self._conn.execute(_INSERT, row).lastrowid
        assert rid is not None
        self._track_run(rid, row)
        written.append((rid, row))

    def _track_run(self, rid: int, row: _Row) -> None:
        """Mirror OpenRuns.apply in the open_runs table (same rules, same order)."""
        task, code, _, run_id = row[0], row[1], row[2], row[3]
        action = ACTIONS[code]
        if action == "run":
            if run_id is not None:
                self._conn.execute(
                    "DELETE FROM open_runs WHERE task = ? AND run_id = ?", (task, run_id)
                )
            self._conn.execute(
                "INSERT INTO open_runs (id, task, run_id) VALUES (?, ?, ?)", (rid, task, run_id)
            )
        elif action in FINISH_ACTIONS:
            if run_id is None:
                self._conn.execute(
                    "DELETE FROM open_runs WHERE id = (SELECT MIN(id) FROM open_runs"
                    " WHERE task = ? AND run_id IS NULL)",
                    (task,),
                )
            else:
                self._conn.execute(
                    "DELETE FROM open_runs WHERE task = ? AND run_id = ?", (task, run_id)
                )

    # Reading -------------------------------------------------------------------

    def records(
        self,
        task: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        actions: str | Iterable[str] | None = None,
    ) -> list[Record]:
        """The records with ``since <= at < until``, oldest first."""
        where: list[str] = []
        params: list[object] = []
        if task is not None:
            where.append("task = ?")
            params.append(task)
        if actions is not None:
            codes = [ACTION_CODES[action] for action in check_actions(actions)]
            if not codes:
                return []
            where.append(f"action IN ({', '.join('?' * len(codes))})")
            params.extend(codes)
        if since is not None:
            where.append("at >= ?")
            params.append(to_us(since, "since"))
        if until is not None:
            where.append("at < ?")
            params.append(to_us(until, "until"))
        sql = f"SELECT {_COLUMNS} FROM records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # Ties at one microsecond: by task, then action order, then arrival.
        sql += " ORDER BY at, task, action, id"
        with self._lock:
            rows = self._read(sql, params)
            if not self._pending:
                return [_to_record(row) for row in rows]
            # Pending records arrived after every written one: the same order rule.
            codes = None if actions is None else {ACTION_CODES[a] for a in check_actions(actions)}
            lo = None if since is None else to_us(since, "since")
            hi = None if until is None else to_us(until, "until")
            rows.extend(
                row
                for row in self._pending
                if (task is None or row[0] == task)
                and (codes is None or row[1] in codes)
                and (lo is None or row[2] >= lo)
                and (hi is None or row[2] < hi)
            )
        ordered = sorted((row[2], row[0], row[1], arrival, row) for arrival, row in enumerate(rows))
        return [_to_record(item[-1]) for item in ordered]

    def last(self, task: str, actions: str | Iterable[str]) -> datetime | None:
        """The time of the task's latest record with one of the actions."""
        actions = check_actions(actions)
        with self._lock:
            self._check_open()
            self._refresh()
            by_action = self._last.get(task, {})
            codes = {ACTION_CODES[a] for a in actions}
            best = max((by_action.get(code, -1) for code in codes), default=-1)
            for row in self._pending_of(task):
                if row[1] in codes and row[2] > best:
                    best = row[2]
        return None if best < 0 else from_us(best)

    def first_in(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> datetime | None:
        """The earliest time of such a record with ``since <= at < until``."""
        found = self._edge(task, actions, since, until, "ASC")
        return from_us(min(found)) if found else None

    def last_in(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> datetime | None:
        """The latest time of such a record with ``since <= at < until``."""
        found = self._edge(task, actions, since, until, "DESC")
        return from_us(max(found)) if found else None

    def count_in(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> int:
        """How many such records have ``since <= at < until``.

        An index range count: O(log n + k) for k matching records, as SQLite's
        b-trees keep no subtree counts.
        """
        codes = [ACTION_CODES[a] for a in check_actions(actions)]
        lo, hi = to_us(since, "since"), to_us(until, "until")
        if not codes:
            return 0
        sql = (
            "SELECT COUNT(*) FROM records WHERE task = ?"
            f" AND action IN ({', '.join('?' * len(codes))}) AND at >= ? AND at < ?"
        )
        with self._lock:
            count = self._read(sql, [task, *codes, lo, hi])[0][0]
            pending = self._pending_of(task)
        return count + sum(1 for row in pending if row[1] in codes and lo <= row[2] < hi)

    def running(self, task: str) -> list[Record]:
        """The task's ``run`` records whose run has no finishing record yet, oldest first."""
        with self._lock:
            self._check_open()
            self._refresh()
            written = self._runs.running(task)
            pending = self._pending_of(task)
        if not pending:
            return written
        runs = OpenRuns()  # the written open runs, then the pending records, in order
        for rec in written:
            runs.apply(rec)
        for row in pending:
            runs.apply(_to_record(row))
        return runs.running(task)

    def tasks(self) -> list[str]:
        """The names of the tasks with records, sorted."""
        with self._lock:
            self._check_open()
            self._refresh()
            return sorted({*self._last, *(row[0] for row in self._pending)})

    def _edge(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime, order: str
    ) -> list[int]:
        """The first (ASC) or last (DESC) time in the window of each action: one index seek each."""
        codes = [ACTION_CODES[a] for a in check_actions(actions)]
        lo, hi = to_us(since, "since"), to_us(until, "until")
        sql = (
            "SELECT at FROM records WHERE task = ? AND action = ? AND at >= ? AND at < ?"
            f" ORDER BY at {order} LIMIT 1"
        )
        found = []
        with self._lock:
            self._check_open()
            try:
                for code in codes:
                    row = self._conn.execute(sql, (task, code, lo, hi)).fetchone()
                    if row is not None:
                        found.append(row[0])
            except sqlite3.Error as exc:
                raise self._error("read", exc) from exc
            found.extend(
                row[2] for row in self._pending_of(task) if row[1] in codes and lo <= row[2] < hi
            )
        return found

    def _pending_of(self, task: str) -> list[_Row]:
        """The task's pending records, in order (few: only while the file is locked)."""
        return [row for row in self._pending if row[0] == task] if self._pending else []

    def action_counts(self) -> dict[str, int]:
        """How many records of each action the file holds (one query, nothing loaded)."""
        with self._lock:
            rows = self._read("SELECT action, COUNT(*) FROM records GROUP BY action", ())
            counts = {ACTIONS[code]: count for code, count in rows}
            for row in self._pending:
                counts[ACTIONS[row[1]]] = counts.get(ACTIONS[row[1]], 0) + 1
        return counts

    def _read(self, sql: str, params: Iterable[object]) -> list[tuple]:
        with self._lock:
            self._check_open()
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise self._error("read", exc) from exc

    # Closing -------------------------------------------------------------------

    def close(self, *, journal: bool = False) -> None:
        """Write any pending records and close the file.

        If pending records still cannot be written (after waiting up to ``timeout``
        for a lock), raise HistoryError and stay open, so ``flush`` and ``close`` can
        be tried again: nothing is dropped. With ``journal=True`` they are saved in the
        journal file instead, the file is closed, and ``HistoryJournaled`` (a
        HistoryError) says where they are; they are written to the table the next time
        the file is opened. If the journal cannot be written either, HistoryError
        names both failures and the history stays open with the records pending.
        """
        self._stop()  # close waits for the lock itself (bounded by ``timeout``)
        with self._lock:
            if self._closed:
                return
            if self._pending:
                try:
                    self._write_pending()
                except HistoryError as exc:
                    if not journal or self._journal is None:
                        raise HistoryError(
                            f"{exc}; not closing {self._path} with"
                            f" {len(self._pending)} record(s) unwritten",
                            path=self._path,
                            reason=exc.reason,
                        ) from exc
                    self._close_to_journal(exc)
            try:
                self._check_file()  # a file deleted or replaced since the last write
            finally:
                self._conn.close()
                self._closed = True

    def __exit__(self, exc_type, exc, tb) -> None:
        # Nothing retries after the block: records that cannot be written go to the journal.
        self.close(journal=True)

    def _close_to_journal(self, failure: HistoryError) -> None:
        assert self._journal is not None
        count = len(self._pending)
        try:
            self._save_journal()
        except OSError as exc:
            raise HistoryError(
                f"{failure}; and the journal {self._journal} could not be written either:"
                f" {exc.strerror or exc}; not closing {self._path} with {count} record(s)"
                " unwritten",
                path=self._path,
                reason=failure.reason,
            ) from exc
        self._conn.close()
        self._closed = True
        cause = failure.reason or str(failure)
        raise HistoryJournaled(
            f"history file {self._path}: could not write {count} record(s): {cause};"
            f" they are kept in {self._journal} and written to the history the next time"
            " it is opened",
            path=self._path,
            reason=failure.reason,
            journal=self._journal,
            count=count,
        ) from failure

    # The journal ---------------------------------------------------------------

    def _open_journal(self) -> None:
        """At open: replay a journal left by an earlier close, if the file can be written."""
        if self._journal is None or not os.path.exists(self._journal):
            return
        self._journal_waiting = True
        with self._lock:
            try:
                self._write_pending()
            except _JournalError:
                raise
            except HistoryError:
                pass  # locked or full: replayed before the next write, or the next open

    def _save_journal(self) -> None:
        """Append the pending records to the journal (atomically); they are no longer pending."""
        assert self._journal is not None
        # Records queued for a lock are in it already (with their keys): not twice.
        lines = [
            _journal_line(uuid.uuid4().hex, row, queued=False)
            for row in self._pending[len(self._keys) :]
        ]
        with _journal_locked(self._journal):
            try:
                old = read_bounded(self._journal, JOURNAL_MAX_BYTES, owned=True)
            except FileNotFoundError:
                old = b""
            # This history gives its queued records up: their lines say so, and a replay
            # need not keep their keys for it.
            old = _given_up(old, set(self._keys))
            if old and not old.endswith(b"\n"):
                old += b"\n"
            # Rewritten and synced whole, the lines appended for a lock included.
            _write_atomically(self._journal, old + "".join(lines).encode("utf-8"))
        self._pending.clear()
        self._keys.clear()
        self._unsynced = False
        self._journal_waiting = True

    def _read_journal(self) -> tuple[bytes, list[tuple[str, _Row, bool]]] | None:
        """The journal's bytes and its (key, row, queued) entries; None if there is none."""
        assert self._journal is not None
        try:
            data = read_bounded(self._journal, JOURNAL_MAX_BYTES, owned=True)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _JournalError(
                f"history journal {self._journal}: cannot be read: {exc.strerror or exc}",
                path=self._path,
            ) from exc
        entries = []
        for number, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            if _cut_short(line):
                # A kill in the middle of an append (that record was never accepted: the
                # append had not returned); the next append began a line apart.
                log.warning(
                    "history journal %s, line %d: cut short (a process killed while writing"
                    " it); skipped",
                    self._journal,
                    number,
                )
                continue
            try:
                entries.append(_journal_entry(line))
            except (ValueError, KeyError, TypeError, RecursionError) as exc:  # (nested deep)
                raise _JournalError(
                    f"history journal {self._journal}, line {number}: not a record ({exc});"
                    " fix it, or move it away to open the history without its records",
                    path=self._path,
                ) from exc
        return data, entries

    def _replay(self, written: list[tuple[int, _Row]], own: set[str]) -> bytes | None:
        """Insert the journal's records not replayed before (inside the write transaction),
        but those still pending here (keys ``own``): they are written as pending records."""
        found = self._read_journal()
        if found is None:
            self._journal_waiting = False
            return None
        data, entries = found
        conn = self._conn
        conn.execute(_REPLAYED)
        conn.execute(_UNCLAIMED)
        for key, row, queued in entries:
            if key not in own and conn.execute(_MARK_REPLAYED, (key,)).rowcount:
                self._insert(row, written)
                if queued:  # its history may still hold it: kept until it sees the mark
                    conn.execute("INSERT OR IGNORE INTO journal_unclaimed (key) VALUES (?)", (key,))
        return data

    def _prune_marks(self) -> bool:
        """Inside the write transaction: delete the journal keys nothing can present again;
        True if done (else tried again at the next write).

        A key is presented again only by a journal line or by the history that queued it
        (the keys kept in journal_unclaimed). With no journal file, seen under the journal
        lock (so nobody is rewriting one from what they read), no line holds a key already
        marked: lines appended from now on carry new keys. Never waits for the lock."""
        assert self._journal is not None
        conn = self._conn
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal_replayed'"
        ).fetchone()
        if not exists or conn.execute("SELECT 1 FROM journal_replayed LIMIT 1").fetchone() is None:
            return True  # no key kept (no side file made for the lock either)
        with _journal_locked(self._journal, wait=False) as held:
            if not held or os.path.lexists(self._journal):
                return False  # a journal to replay first, or somebody writing one
            conn.execute(_UNCLAIMED)
            conn.execute(_PRUNE_REPLAYED)
        return True

    def _drop_journal(self, replayed: bytes) -> None:
        """After the replay's commit: delete the journal, unless records were added to it since."""
        assert self._journal is not None
        try:
            with _journal_locked(self._journal):
                now = read_bounded(self._journal, JOURNAL_MAX_BYTES, owned=True)
                if now == replayed:
                    os.remove(self._journal)
            if now == replayed:
                _sync_folder(self._journal)
                self._journal_waiting = False
                self._prune_due = True  # its keys can go at the next write
        except FileNotFoundError:
            self._journal_waiting = False
        except OSError:
            pass  # replayed again later: its keys are already marked, nothing is written twice

    # Caches --------------------------------------------------------------------

    def _setup(self) -> None:
        conn = self._conn
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt.
        conn.execute("PRAGMA synchronous = NORMAL")
        if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return  # a reader opening a live file need not wait for the write lock
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION, *_MIGRATIONS):
                raise HistoryError(
                    f"history file {self._path}: schema version {version} is not"
                    f" {SCHEMA_VERSION}; was it written by a newer conddsl?"
                )
            for statement in _MIGRATIONS.get(version, ()):  # an older file, brought up to date
                conn.execute(statement)
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _load(self) -> None:
        conn = self._conn
        # Read the version first: a commit landing during the load is then seen
        # again by the next refresh, never missed.
        self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        conn.execute("BEGIN")  # one snapshot for every cache
        try:
            self._max_id = conn.execute("SELECT COALESCE(MAX(id), 0) FROM records").fetchone()[0]
            if self._max_records is not None:
                self._count = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            self._now = conn.execute("SELECT MAX(at) FROM records").fetchone()[0]
            self._last.clear()
            # Skip from task to task through the index: a few seeks per task
            # instead of a scan of every record.
            task = conn.execute("SELECT MIN(task) FROM records").fetchone()[0]
            while task is not None:
                for code in range(len(ACTIONS)):
                    at = conn.execute(
                        "SELECT MAX(at) FROM records WHERE task = ? AND action = ?", (task, code)
                    ).fetchone()[0]
                    if at is not None:
                        self._last.setdefault(task, {})[code] = at
                task = conn.execute(
                    "SELECT MIN(task) FROM records WHERE task > ?", (task,)
                ).fetchone()[0]
            self._load_runs()
        finally:
            conn.execute("COMMIT")

    def _load_runs(self) -> None:
        self._runs.clear()
        rows = self._conn.execute(
            "SELECT r.task, r.action, r.at, r.run_id, r.reason, r.message, r.traceback"
            " FROM open_runs AS o JOIN records AS r ON r.id = o.id ORDER BY o.id"
        )
        for row in rows:
            self._runs.apply(_to_record(row))

    def _refresh(self) -> None:
        """Bring the caches up to date if another connection committed since we looked."""
        try:
            self._sync()
        except sqlite3.Error as exc:
            raise self._error("read", exc) from exc

    def _sync(self) -> None:
        conn = self._conn
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        rows = conn.execute(
            "SELECT id, task, action, at FROM records WHERE id > ? ORDER BY id", (self._max_id,)
        )
        for rid, task, code, at in rows:
            self._note(task, code, at)
            self._count += 1
            self._max_id = rid
        self._load_runs()

    def _note(self, task: str, code: int, at: int) -> None:
        by_action = self._last.setdefault(task, {})
        if at > by_action.get(code, at - 1):
            by_action[code] = at
        if self._now is None or at > self._now:
            self._now = at

    # Retention -----------------------------------------------------------------

    def _retain(self) -> None:
        # Never waited for: the record is written, and a retention pass that could not
        # get the lock simply runs again after the next write.
        if not self._count_trim_due() and not self._age_sweep_due():
            return
        conn = self._conn
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            if self._count_trim_due():
                self._trim_count()
            if self._age_sweep_due():
                self._run_age_sweep(self._delete_older)
        except sqlite3.Error:
            pass
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")

    def _trim_count(self) -> None:
        # Other processes may have added or deleted rows: count the truth.
        self._count = self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        target = self._trim_target()
        while self._count > target:
            deleted = self._delete_batch(_NO_CUTOFF, min(self._batch_size, self._count - target))
            if deleted == 0:
                break  # only protected records are left
        self._count_trimmed()

    def _delete_older(self, cutoff: int) -> None:
        while self._delete_batch(cutoff, self._batch_size) == self._batch_size:
            pass

    def _delete_batch(self, cutoff: int, limit: int) -> int:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = conn.execute(_DELETE_OLDEST, (cutoff, limit)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._count -= deleted
        return deleted

    # Errors --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise HistoryError(f"history file {self._path} is closed")

    def _error(self, doing: str, exc: sqlite3.Error, *, waited: bool = True) -> HistoryError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            waiting = (
                f"waited {self._timeout:g} s"
                if waited
                else "not waited for: the last write failed moments ago"
            )
            cause = f"the database is locked by another connection ({waiting})"
        elif "full" in text:
            cause = "the disk (or the database's size limit) is full"
        else:
            cause = text
        message = f"history file {self._path}: could not {doing}: {cause} [sqlite: {text}]"
        if doing == "write" and self._pending:
            message += (
                f"; {len(self._pending)} record(s) kept pending,"
                " retried by the next write or flush()"
            )
        return HistoryError(message, path=self._path, reason=cause)


class _Moved(Exception):
    """The history file was deleted in use: the writer thread copies it back."""


def _is_lock(exc: HistoryError) -> bool:
    """Whether the write failed only because another connection holds the file's lock."""
    cause = exc.__cause__
    if not isinstance(cause, sqlite3.OperationalError):
        return False
    text = str(cause)
    return "locked" in text or "busy" in text


def _journal_line(key: str, row: _Row, *, queued: bool) -> str:
    """One journal line: the record, its key, and whether the history that wrote it still
    holds it queued (read back by :func:`_journal_entry`)."""
    task, code, at, run_id, reason, message, traceback = row
    entry = {
        "key": key,
        "queued": queued,
        "task": task,
        "action": ACTIONS[code],
        "at": at,
        "run_id": run_id,
        "reason": reason,
        "message": message,
        "traceback": traceback,
    }
    return json.dumps(entry, ensure_ascii=False) + "\n"


def _cut_short(line: bytes) -> bool:
    """Whether ``line`` is the start of a line :func:`_journal_line` wrote, cut short (its
    object never closed); any other line that is not a record is reported, not skipped."""
    if not line.startswith(b'{"key": "') or line.rstrip().endswith(b"}"):
        return False
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return True
    return False


def _journal_entry(line: bytes) -> tuple[str, _Row, bool]:
    item = json.loads(line)
    key, task, action, at = item["key"], item["task"], item["action"], item["at"]
    # A line without the flag (an older conddsl) is taken as queued: its key is kept.
    queued = item.get("queued", True)
    if not isinstance(queued, bool):
        raise TypeError("queued is true or false")
    check_record(task, action)
    texts = [item.get(name) for name in ("run_id", "reason", "message", "traceback")]
    if not isinstance(key, str) or type(at) is not int:
        raise TypeError("a key and an integer time are required")
    if not _FIRST_US <= at <= _LAST_US:
        raise ValueError(f"the time {at} is outside the years 1 to 9999")
    if any(text is not None and not isinstance(text, str) for text in texts):
        raise TypeError("run_id, reason, message and traceback are text or null")
    return key, (task, ACTION_CODES[action], at, *texts), queued


def _given_up(data: bytes, keys: set[str]) -> bytes:
    """The journal ``data`` with the lines of ``keys`` no longer marked queued (other
    lines, whole or not, kept byte for byte)."""
    if not keys:
        return data
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):  # not a line of ours: kept as it is
            continue
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            continue
        if item["key"] in keys and item.get("queued", True):
            item["queued"] = False
            lines[i] = json.dumps(item, ensure_ascii=False).encode("utf-8")
    return b"\n".join(lines)


@contextlib.contextmanager
def _journal_locked(journal: str, *, wait: bool = True):
    """Hold the journal for a read-modify-write, against threads and other processes;
    yields whether the lock is held.

    Other processes closing the same history at once (each saving its records) would
    otherwise read the same journal and the last rename would win; the lock is an
    advisory ``flock`` on ``<journal>.lock``, left in place. It is never a symlink (one
    planted beside a history in /tmp would make root create the file it names), and it
    is waited for at most ``_LOCK_WAIT`` seconds: anybody who may open the file may
    hold it, and then the journal is written without it. With ``wait=False`` it is
    only tried, once.
    """
    if not _JOURNAL_LOCK.acquire(blocking=wait):
        yield False
        return
    try:
        try:
            import fcntl

            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
            handle = os.open(f"{journal}.lock", flags, 0o600)
        except (ImportError, OSError):  # no flock here, no room, or a symlink
            yield False
            return
        try:
            deadline = time.monotonic() + (_LOCK_WAIT if wait else 0.0)
            held = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = True
                    break
                except BlockingIOError:
                    if not wait:
                        break
                    if time.monotonic() >= deadline:
                        log.warning(
                            "history journal lock %s.lock is held by another process: "
                            "the journal is written without it",
                            journal,
                        )
                        break
                    time.sleep(0.02)
            yield held
        finally:
            os.close(handle)  # releases the flock
    finally:
        _JOURNAL_LOCK.release()


def _append(path: str, data: bytes) -> bool:
    """Append ``data`` to the journal at ``path`` (not synced); True if it was created.

    The same rule as reading it: never through a symlink, only a regular file of ours
    (or root's) that nobody else may write."""
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
        created = False
    except FileNotFoundError:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        created = True
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if info.st_uid not in (0, os.geteuid()) or info.st_mode & stat.S_IWOTH:
            raise OSError(f"{path} is another user's, or anybody may write it")
        if info.st_size and os.pread(fd, 1, info.st_size - 1) != b"\n":
            data = b"\n" + data  # after a line cut short (a kill mid-write): a line apart
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            # Not appended (the disk full midway): the lines that went in would be replayed
            # beside the records, still pending, written again later under other keys.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, info.st_size)
            raise
    finally:
        os.close(fd)
    return created


def _write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data``: a synced temporary file renamed over it."""
    temporary = f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    _sync_folder(path)


def _sync_folder(path: str) -> None:
    """Make a rename or delete in the file's folder durable (where the OS allows it)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _checked_rows(entries: list[Entry]) -> list[_Row]:
    """The rows of ``entries``, each checked as :meth:`SQLiteHistory.record` checks one."""
    rows: list[_Row] = []
    for task, action, at, run_id, reason, message, traceback in entries:
        check_record(task, action)
        rows.append((task, ACTION_CODES[action], to_us(at), run_id, reason, message, traceback))
    return rows


def _to_record(row: tuple) -> Record:
    task, code, at, run_id, reason, message, traceback = row
    return Record(task, ACTIONS[code], from_us(at), run_id, reason, message, traceback)
