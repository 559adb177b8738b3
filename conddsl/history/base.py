"""The run history interface: what a store must answer, and the record it keeps.

Every time a store returns is a UTC-aware ``datetime``: stores keep integer
microseconds since the epoch, so the caller's original UTC offset is not kept
(the instant is; aware datetimes compare by instant).
"""

from __future__ import annotations

import abc
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import TracebackType

from conddsl.errors import ClaimBusy as ClaimBusy
from conddsl.errors import HistoryError as HistoryError
from conddsl.errors import HistoryJournaled as HistoryJournaled
from conddsl.errors import HistoryUnavailable as HistoryUnavailable
from conddsl.errors import RunLost as RunLost

ACTIONS: tuple[str, ...] = ("run", "success", "fail", "terminate", "inaction", "crash")
FINISH_ACTIONS: frozenset[str] = frozenset(ACTIONS[1:])

# Stores keep actions as small integers; their order is also the tie-break
# between records at the same microsecond (a run sorts before its finish).
ACTION_CODES: dict[str, int] = {action: code for code, action in enumerate(ACTIONS)}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Record:
    """One event of a task: it started a run, or a run finished with an outcome."""

    task: str
    action: str
    at: datetime
    run_id: str | None = None
    reason: str | None = None
    message: str | None = None
    traceback: str | None = None  # a ``fail`` record's exception, its last MAX_TRACEBACK chars
    # The scheduler that wrote it (a shared PostgreSQL history; None elsewhere). Where a
    # record came from is not what it says: two records differing only here are equal.
    node: str | None = field(default=None, compare=False)


# Record's slots set directly (see new_record): a frozen dataclass sets each field
# through object.__setattr__, which costs twice the whole construction on a hot path.
_NEW = object.__new__
_SLOTS = tuple(Record.__dict__[name].__set__ for name in Record.__slots__)  # type: ignore[attr-defined]


def new_record(
    task: str,
    action: str,
    at: datetime,
    run_id: str | None,
    reason: str | None,
    message: str | None,
    traceback: str | None,
) -> Record:
    """``Record(task, action, at, run_id, reason, message, traceback)`` (no node), built
    at half the cost: for a store's batch, whose arguments are checked already."""
    rec = _NEW(Record)
    s_task, s_action, s_at, s_run_id, s_reason, s_message, s_traceback, s_node = _SLOTS
    s_task(rec, task)
    s_action(rec, action)
    s_at(rec, at)
    s_run_id(rec, run_id)
    s_reason(rec, reason)
    s_message(rec, message)
    s_traceback(rec, traceback)
    s_node(rec, None)
    return rec


def to_us(at: datetime, name: str = "at") -> int:
    """Microseconds since the epoch (UTC) of an aware datetime; a naive one is a ValueError."""
    if not isinstance(at, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        # A naive time means a caller forgot a time zone: guessing one would file
        # records hours away from where conditions look for them.
        raise ValueError(f"{name} must be timezone-aware, got naive {at.isoformat()}")
    return (at - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """The UTC-aware datetime of microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def check_actions(actions: str | Iterable[str]) -> tuple[str, ...]:
    """The actions as a tuple (a single string is one action); unknown ones are a ValueError."""
    # A bare string is taken as one action, not iterated letter by letter.
    result = (actions,) if isinstance(actions, str) else tuple(actions)
    for action in result:
        if action not in ACTION_CODES:
            raise ValueError(unknown_action(action))
    return result


def unknown_action(action: object) -> str:
    """The message for an action outside ACTIONS."""
    return f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}"


def check_record(task: str, action: str) -> None:
    """Reject a record whose task or action is not usable."""
    if not isinstance(task, str) or not task:
        raise ValueError(f"task must be a non-empty string, got {task!r}")
    if action not in ACTION_CODES:
        raise ValueError(unknown_action(action))


def check_retention(max_age: timedelta | None, max_records: int | None) -> int | None:
    """Validate retention settings; return max_age in microseconds (or None)."""
    if max_records is not None and max_records < 1:
        raise ValueError(f"max_records must be at least 1, got {max_records}")
    if max_age is None:
        return None
    if max_age <= timedelta(0):
        raise ValueError(f"max_age must be positive, got {max_age}")
    return max_age // _ONE_US


class History(abc.ABC):
    """A store of task records that answers scheduling conditions without scanning.

    Queries take half-open windows: ``since <= at < until``. ``actions`` is one
    action name or an iterable of them.
    """

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # The writing methods as the class statement defined them: one replaced on the
        # class later (a spy, mock.patch.object) is then told apart (see batch_writer).
        cls._as_defined = {name: cls.__dict__[name] for name in _WRITERS if name in cls.__dict__}

    @abc.abstractmethod
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
        """Add a record and return it (with ``at`` in UTC); ``traceback``: see :class:`Record`."""

    @abc.abstractmethod
    def records(
        self,
        task: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        actions: str | Iterable[str] | None = None,
    ) -> list[Record]:
        """The records with ``since <= at < until``, oldest first."""

    @abc.abstractmethod
    def last(self, task: str, actions: str | Iterable[str]) -> datetime | None:
        """The time of the task's latest record with one of the actions."""

    @abc.abstractmethod
    def first_in(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> datetime | None:
        """The earliest time of such a record with ``since <= at < until``."""

    @abc.abstractmethod
    def last_in(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> datetime | None:
        """The latest time of such a record with ``since <= at < until``."""

    @abc.abstractmethod
    def count_in(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> int:
        """How many such records have ``since <= at < until``."""

    @abc.abstractmethod
    def running(self, task: str) -> list[Record]:
        """The task's ``run`` records whose run has no finishing record yet, oldest first."""

    @abc.abstractmethod
    def tasks(self) -> list[str]:
        """The names of the tasks with records, sorted."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's resources."""

    def flush(self) -> None:  # noqa: B027 - a default, not an abstract method
        """Write every record accepted so far; raise HistoryError if that fails."""
        # The default store writes before ``record`` returns: nothing waits.

    def watch_failures(  # noqa: B027 - a default, not an abstract method
        self, callback: Callable[[HistoryError], None] | None
    ) -> None:
        """Have ``callback`` called, from any thread, when records ``record`` accepted fail later.

        A store that writes in the background (``SQLiteHistory`` while its file is locked)
        cannot raise from ``record``: this is how its owner (the scheduler) hears of it at
        once. The default does nothing: a store that writes before ``record`` returns
        raises from it. ``None`` stops the calls.
        """

    def mark_crashed(self, at: datetime) -> list[Record]:
        """Record ``crash`` at ``at`` for every run still open and return the new records."""
        to_us(at)  # reject a naive time before anything is written
        crashed = []
        for task in self.tasks():
            for run in self.running(task):
                # A crash without run_id closes the oldest open anonymous run, and
                # running() lists those oldest first, so each run gets its own crash.
                crashed.append(
                    self.record(task, "crash", at=at, run_id=run.run_id, reason="scheduler died")
                )
        return crashed

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


#: One record to write: (task, action, at, run_id, reason, message, traceback), the
#: arguments of :meth:`History.record` in its order.
Entry = tuple[str, str, datetime, str | None, str | None, str | None, str | None]


def batch_writer(history: object) -> Callable[[list[Entry]], list[Record]] | None:
    """``history.record_many`` if it writes as ``history.record`` does, else None.

    A store may write many records in one call (one lock, one transaction): the
    scheduler writes the ``run`` records of a burst of starts that way. The contract of
    ``record_many(entries)``: it writes (or keeps pending, as ``record`` would) every
    entry in order and returns their records, or raises a ``HistoryError`` with the
    entries kept pending, or raises another error having written none of them. It is
    used only where the class that defines it is (or derives from) the one that
    defines ``record``: a subclass that overrides ``record`` alone, or a wrapper that
    forwards unknown names, is written to one record at a time, through its ``record``;
    so is a store whose ``record`` was replaced on the store itself or on its class (a
    spy, a wrapper, ``mock.patch.object``).
    """
    if "record" in getattr(history, "__dict__", ()):
        return None
    mro = type(history).__mro__
    batching = next((cls for cls in mro if "record_many" in cls.__dict__), None)
    recording = next((cls for cls in mro if "record" in cls.__dict__), None)
    if batching is None or recording is None or not issubclass(batching, recording):
        return None
    if _replaced(recording, "record"):
        return None  # a spy on the class: the batch (defined beside it) would pass it by
    return history.record_many  # type: ignore[attr-defined, no-any-return]


def batch_adder(history: object) -> Callable[[list[Entry]], None] | None:
    """``history.add_many``: its :func:`batch_writer` without the records returned, or None.

    ``add_many(entries)`` keeps ``record_many``'s contract but makes no ``Record`` for the
    caller (a burst's writer that no listener hears: making them was a third of the
    write). It is used only where ``record_many`` is (see :func:`batch_writer`) and the
    class that defines ``add_many`` is (or derives from) the one that defines
    ``record_many``: a subclass that overrides ``record_many`` (a spy counting batches)
    is written through it, and so is a store whose ``record_many`` was replaced on the
    store itself or on its class.
    """
    if batch_writer(history) is None or "record_many" in getattr(history, "__dict__", ()):
        return None
    mro = type(history).__mro__
    adding = next((cls for cls in mro if "add_many" in cls.__dict__), None)
    batching = next(cls for cls in mro if "record_many" in cls.__dict__)
    if adding is None or not issubclass(adding, batching) or _replaced(batching, "record_many"):
        return None
    return history.add_many  # type: ignore[attr-defined, no-any-return]


#: The methods :func:`batch_writer` and :func:`batch_adder` choose between.
_WRITERS = ("record", "record_many", "add_many")


def _replaced(cls: type, name: str) -> bool:
    """Whether ``cls``'s own ``name`` was replaced on the class after its definition (a
    store class that is no :class:`History` is taken as it is)."""
    defined = cls.__dict__.get("_as_defined")
    return defined is not None and defined.get(name) is not cls.__dict__.get(name)


class OpenRuns:
    """The live set of runs without a finishing record, kept per task.

    A finish with a run_id closes the open run with that run_id; a finish
    without one closes the oldest (first recorded) open run without run_id.
    A second open run with the same run_id replaces the first.
    """

    __slots__ = ("_by_id", "_anonymous")

    def __init__(self) -> None:
        # An open run is its Record, or the Entry it was written from (a batch's: see
        # apply_entries), made a Record when first asked for.
        self._by_id: dict[str, dict[str, Record | Entry]] = {}
        self._anonymous: dict[str, deque[Record]] = {}

    def apply(self, rec: Record) -> None:
        """Update the set with a record, in the order records were written."""
        task, run_id = rec.task, rec.run_id
        if rec.action == "run":
            if run_id is None:
                self._anonymous.setdefault(task, deque()).append(rec)
            else:
                self._by_id.setdefault(task, {})[run_id] = rec
        elif run_id is None:
            queue = self._anonymous.get(task)
            if queue:
                queue.popleft()
                if not queue:
                    del self._anonymous[task]
        else:
            by_id = self._by_id.get(task)
            if by_id and by_id.pop(run_id, None) is not None and not by_id:
                del self._by_id[task]

    def apply_entries(self, entries: list[Entry]) -> None:
        """:meth:`apply` each entry in order, its ``at`` a UTC datetime: a run with a run_id
        is kept as its entry (no Record is made for a run nobody asks about)."""
        by_id = self._by_id
        for entry in entries:
            if entry[1] == "run" and entry[3] is not None:
                runs = by_id.get(entry[0])
                if runs is None:
                    runs = by_id[entry[0]] = {}
                runs[entry[3]] = entry
            else:
                self.apply(new_record(*entry))

    def running(self, task: str) -> list[Record]:
        """The task's open runs, oldest first."""
        by_id = self._by_id.get(task)
        runs: list[Record] = []
        if by_id:
            for run_id, run in by_id.items():
                if type(run) is tuple:
                    run = by_id[run_id] = new_record(*run)  # (once; an existing key: no resize)
                runs.append(run)  # type: ignore[arg-type]
        runs.extend(self._anonymous.get(task, ()))
        runs.sort(key=_record_time)
        return runs

    def protected(self, task: str) -> Counter[tuple[int, str | None]]:
        """The (microseconds, run_id) of the task's open runs, which retention must keep."""
        return Counter((to_us(run.at), run.run_id) for run in self.running(task))

    def clear(self) -> None:
        """Forget every open run."""
        self._by_id.clear()
        self._anonymous.clear()


def _record_time(rec: Record) -> datetime:
    return rec.at
