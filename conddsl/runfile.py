"""``conddsl run FILE.toml``: build a scheduler from a task file and run it, printing each
start, finish and termination as it is recorded.

A history that fails (locked by another program, disk full) stops the run with exit code
1 and a message naming the file and the cause; the records it could not write are kept
in its journal (``SQLiteHistory.close(journal=True)``), written at its next opening.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from json import dumps as json_dumps
from pathlib import Path
from typing import IO

from conddsl.errors import printable
from conddsl.history import History, HistoryError, HistoryJournaled, Record, SQLiteHistory
from conddsl.lint.imports import check_imports
from conddsl.rules.diagnostics import has_errors
from conddsl.rules.taskfile import check_references, read_task_file
from conddsl.runlog import LEVELS, RECORD_LOGGER, event_data, record_words
from conddsl.runtime.records import Recorded
from conddsl.runtime.registry_place import registry_path
from conddsl.runtime.runlock import HistoryInUse, LockFileError, RunLock
from conddsl.taskoutput import TaskOutput
from conddsl.terminal import Escaped, names_from_outside
from conddsl.trust import HISTORY_FOLDER_HINT, history_folder_problem, others_may_change

THREAD_SWITCH_INTERVAL = 0.0005  # seconds; see run_task_file


class RecordPrinter:
    """Prints every record the scheduler writes as one line: a listener of
    :meth:`Scheduler.subscribe <conddsl.runtime.Scheduler.subscribe>`."""

    def __init__(self, out: IO[str], zone=None, *, json: bool = False) -> None:
        self.out: IO[str] | None = out
        self.zone = zone
        self.json = json  # one JSON object a line (``--log-format json``)
        self.counts: Counter[str] = Counter()  # the records of this session, by action
        self.store: History | None = None  # whose journal's replayed records are shown too
        self.where = "the history"  # where a failure's full traceback is kept

    def __call__(self, recorded: Recorded) -> None:
        record = recorded.record
        self.show_replayed()  # written before it: the journal goes first
        if record.action != "crash":  # crash records close the runs of an earlier session
            self.counts[record.action] += 1
        self._print(record)

    def show_replayed(self) -> None:
        """Print the records the store has just written from its journal (an earlier run's)."""
        take = getattr(self.store, "take_replayed", None)
        found = take() if take is not None else []
        if found:
            journal = getattr(self.store, "journal", None) or "its journal"
            count = f"{len(found)} record" + ("" if len(found) == 1 else "s")
            self._write(f"conddsl: {count} kept in {journal} by an earlier run, now written:")
        for record in found:
            self._print(record)

    def note(self, text: str, level: str = "info") -> None:
        """One of conddsl run's own lines (the start, the summary)."""
        if self.json:
            from datetime import datetime, timezone

            at = datetime.now(timezone.utc)
            self._write(json_dumps(event_data(at, level, "conddsl.run", text, zone=self.zone)))
        else:
            self._write(text)

    def task_line(self, task: str, line: str, stream: str | None = None) -> None:
        """A line a task printed (see :mod:`conddsl.taskoutput`); ``stream``: ``stdout``
        or ``stderr`` for a process or command run's (:mod:`conddsl.runtime.output`)."""
        if self.json:
            from datetime import datetime, timezone

            at = datetime.now(timezone.utc)
            data = event_data(at, "info", "conddsl.output", line, zone=self.zone)
            data["task"] = task
            if stream is not None:
                data["stream"] = stream
            self._write(json_dumps(data))
        else:
            self._write(f"{printable(task)} | {line}")

    def process_line(self, task: str, stream: str, line: str) -> None:
        """A line a process or command run printed (``Scheduler.task_output``)."""
        self.task_line(task, line, stream)

    def _print(self, record: Record) -> None:
        if self.json:
            level = logging.getLevelName(LEVELS.get(record.action, logging.INFO))
            words = record_words(record)
            data = event_data(record.at, level, RECORD_LOGGER, words, record, self.zone)
            self._write(json_dumps(data))
            return
        line = format_record(record, self.zone)
        if record.traceback:
            line += (
                f"\n    {exception_line(record.traceback)}\n    (full traceback: {self.where},"
                f" records.traceback of run_id {record.run_id})"
            )
        self._write(line)

    def _write(self, line: str) -> None:
        if self.out is None:
            return
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (OSError, ValueError):
            # The reader went away (`conddsl run … | head`): the run goes on, unprinted;
            # the records are in the history either way.
            self.out = None


_VERB = {
    "run": "start",
    "success": "success",
    "fail": "fail",
    "inaction": "inaction",
    "terminate": "terminate",
    "crash": "crash",
}


def format_record(record: Record, zone=None) -> str:
    """One line for a record: date, time and zone, what happened, the task, its reason or
    message."""
    at = record.at.astimezone(zone) if zone is not None else record.at.astimezone()
    zone_name = at.tzname() or at.strftime("%z")
    stamp = f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d} {zone_name}"
    parts = [stamp, f"{_VERB.get(record.action, record.action):<9}"]
    parts.append(printable(record.task))
    if record.reason:
        parts.append(f"reason={printable(record.reason)}")
    if record.message:
        message = " ".join(record.message.split())
        parts.append(f"({printable(message[:100])})")
    return "  ".join(parts)


def exception_line(traceback: str) -> str:
    """The last line of a traceback: the exception's type and text."""
    lines = [line for line in traceback.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def run_task_file(
    path: Path,
    *,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    log_format: str = "text",
    metrics_port: int | None = None,
) -> int:
    """Run the scheduler a task file describes; returns the exit code.

    ``log_format``: ``text`` (a line a record, with date and zone) or ``json`` (one JSON
    object a line). ``metrics_port``: serve Prometheus metrics on 127.0.0.1 at that port
    (0: any free port, printed).
    """
    # A path, a task's name or a message may hold terminal escapes: none are printed.
    out = Escaped(out if out is not None else sys.stdout)
    err = Escaped(err if err is not None else sys.stderr)
    names_from_outside(path)
    from conddsl.runtime.config import ConfigError

    # The funcs are imported before names are checked: their modules may register
    # the custom conditions the task file uses (as `conddsl check --import-funcs`).
    try:
        report = read_task_file(path, check_names=False)
    except OSError as error:  # unreadable (permissions, EIO of a /proc file)
        err.write(f"conddsl: {path}: cannot be read ({error.strerror or error})\n")
        return 2
    if report.model is not None and not has_errors(report.all_diagnostics()):
        report.diagnostics.extend(check_imports(report))
    check_references(report)
    findings = report.all_diagnostics()
    if has_errors(findings) or report.model is None:
        from conddsl.lint.output import full

        texts = {report.display: report.index}
        texts.update({rule_file.display: rule_file.index for rule_file in report.rule_files})
        err.write(full(findings, texts) + "\n")  # as `conddsl check --output-format full`
        err.write(f"conddsl: {path} has errors; nothing was run\n")
        return 1
    model = report.model
    for source in (path, *(rule.path for rule in report.rule_files)):
        warning = others_may_change(source)
        if warning is not None:  # what the user pointed at is read, but they are told
            err.write(f"conddsl: warning: {warning}\n")
    base = path.resolve().parent
    settings = model.scheduler
    zone = settings.timezone
    shared = shared_dsn(settings.history)
    if isinstance(shared, Exception):
        err.write(f"conddsl: cannot start {path}: {shared}\n")
        return 1
    history_path = base / (settings.history or f"{path.stem}.history.sqlite3")
    names_from_outside(path, history_path)
    # Before anything is imported or made: see trust.history_folder_problem (a shared
    # history makes no file).
    folder_problem = None if shared is not None else history_folder_problem(history_path)
    if folder_problem is not None:
        err.write(f"conddsl: cannot start {path}: {folder_problem}\nhint: {HISTORY_FOLDER_HINT}\n")
        return 1

    from conddsl.history import MemoryHistory
    from conddsl.runtime import scheduler_from_task_file
    from conddsl.timeline.zones import local_zone, resolve_zone

    # Tasks are registered against a placeholder; the SQLite file is opened only once
    # everything imported and validated, so a broken setup leaves no file behind.
    printer = RecordPrinter(
        out, resolve_zone(zone) if zone else local_zone(), json=log_format == "json"
    )
    try:
        app = scheduler_from_task_file(model, history=MemoryHistory())
    except (ConfigError, ImportError, AttributeError, ValueError) as error:
        err.write(f"conddsl: cannot start {path}: {error}\n")
        return 1
    if any(task.execution == "thread" for task in app.tasks.values()):
        # Busy task threads hand the GIL back every switch interval, and the loop waits
        # behind each of them: at the default 5 ms, ten busy threads made other runs'
        # timeouts 264 ms late (p99), at 0.5 ms 57 ms (benchmarks/busy_threads.py).
        sys.setswitchinterval(min(sys.getswitchinterval(), THREAD_SWITCH_INTERVAL))
    if shared is not None:  # several schedulers share it: no run lock, no process registry
        return _serve_shared(app, path, model, printer, shared, out, err, metrics_port)
    lock = RunLock(history_path)
    try:
        lock.acquire()
    except HistoryInUse as error:
        err.write(f"conddsl: cannot start {path}: {error}\n")
        return 2
    except LockFileError as error:
        err.write(f"conddsl: cannot start {path}: {error}\n")
        return 1
    try:
        metrics = _start_metrics(app, metrics_port, printer, err)
        if metrics is False:
            return 1
        try:
            return _serve(app, path, model, printer, history_path, out, err)
        finally:
            if metrics is not None:
                metrics.shutdown()
                metrics.server_close()
    finally:
        lock.release()


def _serve(app, path: Path, model, printer: RecordPrinter, history_path: Path, out, err) -> int:
    """Open the history, run the scheduler until it stops, and say how it ended."""
    from conddsl.runtime import SchedulerError

    try:
        # Opening writes first what an earlier run kept in the journal.
        # [scheduler] keep: older records are deleted while serving (never an open run's).
        store = SQLiteHistory(history_path, max_age=model.scheduler.keep)
    except HistoryError as error:
        err.write(f"conddsl: cannot start {path}: {error}\nhint: {_history_hint(error)}\n")
        return 1
    # The scheduler marks runs a dead process left open as crash; its process registry
    # is the file beside the history's.
    app.history = printer.store = store
    app.process_registry = registry_path(store) or False
    app.subscribe(printer)
    printer.show_replayed()
    printer.where = _shown(history_path)
    printer.note(
        f"conddsl: running {len(model.tasks)} tasks from {path} "
        f"(history: {_shown(history_path)}); Ctrl-C stops gracefully, twice forces"
    )
    console = _RunConsole(app, printer, out)
    requests = _serve_requests(app, history_path)
    failure: HistoryError | None = None
    try:
        app.run()
    except (SchedulerError, HistoryError) as error:
        failure = _history_failure(error)
        if failure is None:
            raise
    finally:
        console.restore_signals()
        requests.stop()
        console.restore_output()  # never raises: the history must be closed below
        printer.show_replayed()  # a journal replayed by the crash marking, nothing recorded since
        closed = _close(store)
        if failure is not None:
            err.write(f"conddsl: the run stopped: {_history_problem(failure)}\n")
        err.writelines(closed.lines)
    if failure is not None or closed.error is not None:
        err.write(f"hint: {_history_hint(failure or closed.error)}\n")
        return 1
    try:
        summary = _summary(history_path)
    except HistoryError as error:
        summary = f"the history cannot be read now: {error}"
    printer.note(f"conddsl: {_stopped(app.stopped_by, printer.counts)} ({summary})")
    return 0


class _RunConsole:
    """What a run takes over of the process while it lasts: stdout and the signal handlers."""

    def __init__(self, app, printer: RecordPrinter, out) -> None:
        from conddsl.runtime.signals import install_signal_handlers

        # What thread and async tasks print is shown with their name (conddsl.taskoutput).
        self._task_output = TaskOutput(sys.stdout, emit=printer.task_line)
        app.task_output = printer.process_line  # and process and command tasks' (their pipes)
        self._real_stdout, sys.stdout = sys.stdout, self._task_output
        self._restore_signals = install_signal_handlers(app, out=out, exit_when_stuck=True)

    def restore_signals(self) -> None:
        """Give Ctrl-C back to the handlers the process had before the run."""
        self._restore_signals()

    def restore_output(self) -> None:
        """Give stdout back, with what tasks printed last flushed (never raises)."""
        sys.stdout = self._real_stdout
        self._task_output.finish()


def _start_metrics(app, port: int | None, printer: RecordPrinter, err):
    """Serve the run's Prometheus metrics on 127.0.0.1 (None: not asked; False: failed)."""
    if port is None:
        return None
    try:
        from conddsl.metrics import SchedulerMetrics
    except ImportError as error:
        err.write(f"conddsl: --metrics-port: {error}\n")
        return False
    metrics = SchedulerMetrics()
    try:
        server, _ = metrics.serve(port)
    except OSError as error:
        err.write(f"conddsl: --metrics-port {port}: cannot listen on 127.0.0.1: {error}\n")
        return False
    app.subscribe(metrics)
    app.on_loop_lag = metrics.observe_loop_lag
    printer.note(f"conddsl: metrics at http://127.0.0.1:{server.server_port}/metrics")
    return server


def _serve_requests(app, history_path: Path):
    """Answer `conddsl run-task` and `conddsl terminate` (conddsl.ops.requests) while serving."""
    from conddsl.ops.requests import RequestPoller

    return RequestPoller(history_path, _request_applier(app)).start()


def _request_applier(app):
    """Apply a `run-task` / `terminate` request to ``app``; raising refuses it (the
    error's text is the asker's answer)."""
    from conddsl.errors import ControlError

    def apply(op: str, task: str) -> None:
        if op == "run":
            app.run_task(task)
        elif app.task_state(task) in ("idle", "disabled"):
            # Said, not pretended: "asked to terminate" for a task nobody runs misleads.
            raise ControlError(f"task {task!r} is not running: nothing to terminate")
        else:
            app.terminate(task)

    return apply


SHARED_SCHEMES = ("postgresql://", "postgres://")


def shared_dsn(setting: str | None) -> str | ValueError | None:
    """The connection string of a shared (PostgreSQL) history: ``CONDDSL_HISTORY`` (so that a
    password need not live in the task file), else the ``history`` setting when it is one;
    None for a SQLite history; a ValueError for an environment variable of another kind."""
    found = os.environ.get("CONDDSL_HISTORY", "").strip()
    if found:
        # A URL or libpq's key=value form; a file name is not a connection string.
        if not found.startswith(SHARED_SCHEMES) and "=" not in found:
            return ValueError(
                f"CONDDSL_HISTORY={found!r} is not a PostgreSQL connection string (postgresql://"
                "... or host=... dbname=...); a SQLite history is the task file's history setting"
            )
        return found
    if setting is not None and setting.startswith(SHARED_SCHEMES):
        return setting
    return None


def _serve_shared(
    app, path: Path, model, printer: RecordPrinter, dsn: str, out, err, metrics_port: int | None
) -> int:
    """Run the scheduler as one node of a shared PostgreSQL history (docs/deployment.md).

    The node answers ``conddsl run-task`` and ``terminate`` through the history's
    ``conddsl_requests`` table (conddsl.ops.pg_requests)."""
    from conddsl.history import PostgresHistory
    from conddsl.history.postgres.store import describe_dsn
    from conddsl.runtime import SchedulerError

    settings = model.scheduler
    lease = settings.lease if settings.lease is not None else "10 seconds"
    try:
        store = PostgresHistory(dsn, node=settings.node, lease=lease)
    except (HistoryError, ValueError) as error:
        err.write(
            f"conddsl: cannot start {path}: {error}\nhint: check that the database answers"
            " and that CONDDSL_HISTORY or the history setting names it\n"
        )
        return 1
    app.history = printer.store = store
    app.process_registry = False  # a killed node's task processes die with it
    app.subscribe(printer)
    where = describe_dsn(dsn)
    printer.where = where
    metrics = _start_metrics(app, metrics_port, printer, err)
    if metrics is False:
        store.close()
        return 1
    printer.note(
        f"conddsl: running {len(model.tasks)} tasks from {path} as node {store.node}"
        f" (history: {where}); Ctrl-C stops gracefully, twice forces"
    )
    console = _RunConsole(app, printer, out)
    failure: HistoryError | None = None
    requests = None
    try:
        requests = _serve_shared_requests(app, store)
        app.run()
    except (SchedulerError, HistoryError) as error:
        failure = _history_failure(error)
        if failure is None:
            raise
    finally:
        console.restore_signals()
        if requests is not None:
            requests.stop()
        console.restore_output()
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
        try:
            store.close()
        except HistoryError as error:
            failure = failure or error
    if failure is not None:
        err.write(f"conddsl: the run stopped: {failure}\n")
        return 1
    printer.note(f"conddsl: {_stopped(app.stopped_by, printer.counts)}")
    return 0


def _serve_shared_requests(app, store):
    """Answer `conddsl run-task` and `terminate` for this node (conddsl.ops.pg_requests)."""
    from conddsl.ops.pg_requests import PgRequestPoller

    apply = _request_applier(app)
    try:
        exclusive = [name for name, task in app.tasks.items() if not task.multilaunch]
        poller = PgRequestPoller(store.connect, store.node, app.tasks, apply, exclusive=exclusive)
    except Exception as error:  # psycopg.Error: the node runs on, unasked
        raise HistoryError(f"the requests table cannot be read: {error}") from error
    return poller.start()


def _stopped(stopped_by: tuple[str, str] | None, counts: Counter[str]) -> str:
    """The last line's start: why the run stopped, and what this session recorded."""
    cause, why = stopped_by if stopped_by is not None else ("shut_down", "")
    shown = ", ".join(f"{counts[a]} {a}" for a in _VERB if counts[a])
    session = f"this session: {shown}" if shown else "this session recorded nothing"
    return f"stopped by {cause}: {why}; {session}"


@dataclass
class _Closed:
    """How closing the history went: what to tell, and the error closing raised, if any."""

    lines: list[str] = field(default_factory=list)
    error: HistoryError | None = None


def _close(store: SQLiteHistory) -> _Closed:
    """Close the history; what it could not write goes to its journal. Never raises."""
    unwritten = store.pending
    try:
        store.close(journal=True)
    except HistoryJournaled as error:
        count = error.count
        kept = f"{count} record is" if count == 1 else f"{count} records are"
        line = (
            f"conddsl: the history could not take everything: {kept} kept in"
            f" {_shown(Path(error.journal or ''))} and written to the history the next time"
            " it is opened (by the next `conddsl run` of this file); nothing is lost\n"
        )
        return _Closed([line], error)
    except HistoryError as error:
        lines = [f"conddsl: {error}\n"]
        lines.append(f"conddsl: these {len(unwritten)} record(s) could not be kept anywhere:\n")
        lines.extend(f"  {format_record(r)}  run_id={r.run_id}\n" for r in unwritten)
        return _Closed(lines, error)
    if unwritten:
        line = (
            f"conddsl: the {len(unwritten)} record(s) the history could not take were"
            " written when it closed; nothing is lost\n"
        )
        return _Closed([line])
    return _Closed()


def _history_failure(error: BaseException) -> HistoryError | None:
    """The HistoryError that stopped the scheduler, if a history failure did."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, HistoryError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _history_problem(error: HistoryError) -> str:
    if error.path is not None and error.reason is not None:
        return f"the history file {_shown(Path(error.path))} failed: {error.reason}"
    return str(error)


def _history_hint(error: HistoryError | None) -> str:
    reason = (error.reason or str(error)) if error is not None else ""
    if reason.startswith("history journal"):
        return (
            "the journal holds records an earlier run could not write: fix that line, or"
            " move the journal away to run without its records"
        )
    if "locked" in reason:
        return (
            "another program holds the history file locked (a second `conddsl run` of"
            " this file, or an open sqlite3 shell?): stop it, then run again"
        )
    if "full" in reason:
        return "free some disk space, then run again"
    if reason.startswith("it is not trusted"):
        return (
            "another user could have written it: keep the history in a folder only you (or"
            " root) may write, and remove files you did not make"
        )
    return "check that the history file and its folder can be written, then run again"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _summary(path: Path) -> str:
    """What a history file holds, by action (the closing line of a run)."""
    with SQLiteHistory(path) as history:
        counts = history.action_counts()
    shown = ", ".join(f"{counts[a]} {a}" for a in _VERB if a in counts)
    return f"history holds {shown}" if shown else "history is empty"
