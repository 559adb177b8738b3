"""What every operating command shares: the task file read once, its history, times shown.

The commands (``status``, ``history``, ``next FILE``, ``timeline``) read a task file the
way ``conddsl run`` does, open the history it names through the ``History`` interface
only (so any store answers them: the SQLite file, or a shared PostgreSQL history opened
as a reader, which takes no lease), and show times with their zone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import IO

from conddsl.errors import TaskFileProblem, UsageError
from conddsl.history import History, HistoryError, MemoryHistory, Record, SQLiteHistory
from conddsl.history.base import FINISH_ACTIONS
from conddsl.rules.diagnostics import has_errors
from conddsl.rules.models import TaskFile
from conddsl.rules.taskfile import read_task_file
from conddsl.timeline.zones import local_zone, resolve_zone

__all__ = [
    "Setup",
    "load_setup",
    "open_history",
    "history_path_of",
    "PastRun",
    "runs_of",
    "show_time",
    "show_span",
    "read_since",
]


@dataclass
class Setup:
    """A task file read for an operating command: its model, zone and history.

    ``shared``: the connection string of a shared PostgreSQL history (``CONDDSL_HISTORY``
    or a ``postgresql://`` history setting), None for the SQLite file ``history_path``.
    """

    path: Path
    model: TaskFile
    zone: tzinfo
    history_path: Path
    shared: str | None = None

    @property
    def where(self) -> str:
        """The history in words (a connection string without its password)."""
        if self.shared is None:
            return str(self.history_path)
        from conddsl.history.postgres.store import describe_dsn

        return describe_dsn(self.shared)

    def condition(self, text: str | None):
        """A condition of this file compiled with its rules and zone (None: never starts)."""
        return self.model.condition(text or "false")


def history_path_of(path: Path, model: TaskFile) -> Path:
    """The SQLite history ``conddsl run`` keeps for a task file (its ``history`` key)."""
    named = model.history_path
    if named is not None:
        return named.resolve() if not named.is_absolute() else named
    return path.resolve().parent / f"{path.stem}.history.sqlite3"


def load_setup(file: str) -> Setup:
    """Read a task file (names unchecked: custom conditions may be registered by its funcs)."""
    path = Path(file)
    if not path.is_file():
        why = "not a regular file" if path.exists() else "no such task file"
        raise UsageError(f"{file}: {why}")
    try:
        report = read_task_file(path, check_names=False)
    except OSError as error:
        raise UsageError(f"{file}: cannot be read ({error.strerror or error})") from error
    findings = report.all_diagnostics()
    if has_errors(findings) or report.model is None:
        from conddsl.lint.output import full

        texts = {report.display: report.index}
        texts.update({rule.display: rule.index for rule in report.rule_files})
        raise TaskFileProblem(full(findings, texts) + f"\nconddsl: {file} has errors")
    model = report.model
    zone_name = model.scheduler.timezone
    zone = (resolve_zone(zone_name) if zone_name else None) or local_zone()
    from conddsl.runfile import shared_dsn

    shared = shared_dsn(model.scheduler.history)
    if isinstance(shared, ValueError):
        raise UsageError(str(shared))
    if shared is not None:  # the setting is a URL, not a file name
        return Setup(path, model, zone, path.resolve().parent, shared)
    return Setup(path, model, zone, history_path_of(path, model))


def open_history(setup: Setup) -> tuple[History, bool]:
    """The task file's history and whether it exists (an empty one in memory if not yet).

    A missing file is not created: looking must not leave files behind. A shared history
    is opened as a reader: no lease, no node row, no tables made.
    """
    if setup.shared is not None:
        from conddsl.history import PostgresHistory

        try:
            store = PostgresHistory(setup.shared, reader=True)
        except HistoryError as error:
            raise UsageError(
                f"{setup.path}: {error}\nhint: check that the database answers and that"
                " CONDDSL_HISTORY or the history setting names it"
            ) from None
        if not store.exists:
            store.close()
            return MemoryHistory(), False
        return store, True
    if not setup.history_path.exists():
        return MemoryHistory(), False
    return SQLiteHistory(setup.history_path), True


@dataclass(frozen=True)
class PastRun:
    """One run: its ``run`` record and its finishing record (None while open)."""

    start: Record
    finish: Record | None

    @property
    def task(self) -> str:
        """The task's name."""
        return self.start.task

    @property
    def outcome(self) -> str:
        """The finishing action, or ``running``."""
        return self.finish.action if self.finish is not None else "running"

    @property
    def duration(self) -> timedelta | None:
        """How long it ran (None while open)."""
        return None if self.finish is None else self.finish.at - self.start.at


def runs_of(records: Iterable[Record]) -> list[PastRun]:
    """Pair ``run`` records with their finishes (by run_id, else the oldest open one).

    Finishes whose ``run`` record lies before the records given are left out.
    """
    runs: list[list[Record | None]] = []
    by_id: dict[tuple[str, str], list[Record | None]] = {}
    anonymous: dict[str, list[list[Record | None]]] = {}
    for record in records:
        if record.action == "run":
            pair: list[Record | None] = [record, None]
            runs.append(pair)
            if record.run_id is not None:
                by_id[(record.task, record.run_id)] = pair
            else:
                anonymous.setdefault(record.task, []).append(pair)
        elif record.action in FINISH_ACTIONS:
            if record.run_id is not None:
                found = by_id.pop((record.task, record.run_id), None)
            else:
                queue = anonymous.get(record.task)
                found = queue.pop(0) if queue else None
            if found is not None:
                found[1] = record
    return [PastRun(start, finish) for start, finish in runs if start is not None]


def show_time(at: datetime | None, zone: tzinfo) -> str:
    """A time for people: date, seconds and the zone's abbreviation (``-`` for None)."""
    if at is None:
        return "-"
    local = at.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or local.strftime('%z')}"


def show_span(delta: timedelta | None) -> str:
    """A duration for people, two units at most: ``450ms``, ``12s``, ``3min 5s``, ``2h 10min``."""
    if delta is None:
        return "-"
    seconds = delta.total_seconds()
    if seconds < 0:
        return "-" + show_span(-delta)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{int(seconds)}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}min" if minutes else f"{hours}h"
    return f"{minutes}min {secs}s" if secs else f"{minutes}min"


def read_since(text: str, now: datetime, zone: tzinfo) -> datetime:
    """``--since``: a duration back from now (``2h``, ``3 days``) or an ISO time."""
    from conddsl.literals import LiteralError, read_duration_text

    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return at.replace(tzinfo=zone) if at.tzinfo is None else at
    try:
        return now - read_duration_text(text)
    except LiteralError as error:
        raise UsageError(
            f"--since {text!r}: neither a duration ('2h', '3 days') nor an ISO time"
            f" ('2024-01-05T08:00'): {error.message}"
        ) from None


def read_time(option: str, text: str | None, zone: tzinfo, default: datetime) -> datetime:
    """An ISO time option (naive: in the task file's zone); ``default`` when not given."""
    if text is None:
        return default
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an ISO time like 2024-01-01T08:00") from None
    return at.replace(tzinfo=zone) if at.tzinfo is None else at


def utc_now() -> datetime:
    """Now, UTC-aware (one place, so tests may see where the commands read the clock)."""
    return datetime.now(timezone.utc)


def write_lines(out: IO[str] | None, lines: Iterable[str]) -> None:
    """Print lines (to stdout by default)."""
    stream = out if out is not None else sys.stdout
    for line in lines:
        stream.write(line + "\n")
