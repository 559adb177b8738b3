"""A run history kept in this process's memory, small enough for millions of records."""

from __future__ import annotations

import heapq
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone

from conddsl.history.base import (
    ACTION_CODES,
    ACTIONS,
    Entry,
    History,
    OpenRuns,
    Record,
    check_actions,
    check_record,
    from_us,
    new_record,
    to_us,
)
from conddsl.history.retention import Retention

# What a record keeps besides its time: None (nothing), the run_id alone (a str),
# or a (run_id, reason, message[, traceback]) tuple. Most records cost one shared pointer.
_Extra = (
    str
    | tuple[str | None, str | None, str | None]
    | tuple[str | None, str | None, str | None, str | None]
    | None
)


_NONE = object()  # no stamp seen yet (None is a stamp to refuse, not this)


class _Series:
    """The records of one (task, action), sorted by time.

    Times are an ``array('q')`` of microseconds: 8 bytes a record, where a list
    of ints would cost 8 for the slot plus 32 for each int object.
    """

    __slots__ = ("times", "extras")

    def __init__(self) -> None:
        self.times = array("q")
        self.extras: list[_Extra] = []

    def add(self, us: int, extra: _Extra) -> None:
        times = self.times
        if not times or us >= times[-1]:
            times.append(us)
            self.extras.append(extra)
        else:
            # Late records go after equal times, so the last element is always the
            # latest record written at the latest time (the one retention keeps).
            index = bisect_right(times, us)
            times.insert(index, us)
            self.extras.insert(index, extra)


def _pack(
    run_id: str | None, reason: str | None, message: str | None, traceback: str | None = None
) -> _Extra:
    if traceback is not None:
        return (run_id, reason, message, traceback)
    if reason is None and message is None:
        return run_id
    return (run_id, reason, message)


def _unpack(extra: _Extra) -> tuple[str | None, str | None, str | None, str | None]:
    if extra is None or isinstance(extra, str):
        return extra, None, None, None
    if len(extra) == 3:
        return (*extra, None)
    return extra  # type: ignore[return-value]


class MemoryHistory(Retention, History):
    """A run history in memory with optional retention.

    Retention (applied on insert, in batches so its cost is amortised):

    - ``max_age``: records older than ``now - max_age`` are dropped, where now is
      the newest ``at`` seen; a sweep runs each time now advances by a tenth of
      ``max_age``, so a record may outlive ``max_age`` by up to that tenth.
    - ``max_records``: past that count the oldest records are dropped, down to
      nine tenths of it.

    Neither ever drops a task's latest record of each action (``last`` needs it)
    nor the record of an open run. Times are returned in UTC.
    """

    def __init__(self, *, max_age: timedelta | None = None, max_records: int | None = None) -> None:
        self._init_retention(max_age, max_records)
        self._series: dict[str, dict[str, _Series]] = {}
        self._runs = OpenRuns()
        self._count = 0
        self._now: int | None = None
        # One lock for every public call: several threads may record and query.
        self._lock = threading.RLock()

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
        """Add a record and return it (with ``at`` in UTC)."""
        check_record(task, action)
        us = to_us(at)
        rec = Record(task, action, from_us(us), run_id, reason, message, traceback)
        with self._lock:
            self._add(rec, us)
            self._retain()
        return rec

    def record_many(self, entries: list[Entry]) -> list[Record]:
        """Add records in order (see :func:`~conddsl.history.base.batch_writer`): every
        entry is checked before any is added, then they are added under one lock."""
        return [new_record(*entry) for entry in self._add_entries(entries)]

    def add_many(self, entries: list[Entry]) -> None:
        """:meth:`record_many` without making the records (see
        :func:`~conddsl.history.base.batch_adder`)."""
        self._add_entries(entries)

    def _add_entries(self, entries: list[Entry]) -> list[Entry]:
        """Check then add ``entries`` (the path of :meth:`record_many` and :meth:`add_many`);
        the entries as added, each ``at`` the UTC instant a record of it says."""
        checked: list[tuple[int, _Extra]] = []
        added: list[Entry] = entries
        last_at: object = _NONE  # a burst's records share one stamp: converted once
        us, exact = 0, datetime.min  # (set by the first entry)
        for index, entry in enumerate(entries):
            task, action, at, run_id, reason, message, traceback = entry
            if action not in ACTION_CODES or type(task) is not str or not task:
                check_record(task, action)  # (raises, saying what is wrong)
            if at is not last_at:
                us = to_us(at)
                # A UTC datetime is its own microsecond instant (what the scheduler stamps).
                exact = at if type(at) is datetime and at.tzinfo is timezone.utc else from_us(us)
                last_at = at
            if exact is not at:  # (rare: the scheduler stamps UTC) the entries, copied
                if added is entries:
                    added = list(entries)
                added[index] = (task, action, exact, run_id, reason, message, traceback)
            if reason is None and message is None and traceback is None:
                checked.append((us, run_id))  # (_pack's answer, without its call)
            else:
                checked.append((us, _pack(run_id, reason, message, traceback)))
        with self._lock:
            # _add's work inline (a call per record was a fifth of the batch).
            series_of, count, now = self._series, self._count, self._now
            try:
                for entry, (us, extra) in zip(added, checked, strict=True):
                    by_action = series_of.get(entry[0])
                    if by_action is None:
                        by_action = series_of[entry[0]] = {}
                    series = by_action.get(entry[1])
                    if series is None:
                        series = by_action[entry[1]] = _Series()
                    times = series.times
                    if not times or us >= times[-1]:
                        times.append(us)
                        series.extras.append(extra)
                    else:
                        series.add(us, extra)
                    count += 1
                    if now is None or us > now:
                        now = us
            finally:
                self._count, self._now = count, now
            self._runs.apply_entries(added)
            self._retain()  # (amortised: once a batch is as good as once a record)
        return added

    def _add(self, rec: Record, us: int) -> None:
        """Add one checked record (the lock held)."""
        by_action = self._series.setdefault(rec.task, {})
        series = by_action.get(rec.action)
        if series is None:
            series = by_action[rec.action] = _Series()
        series.add(us, _pack(rec.run_id, rec.reason, rec.message, rec.traceback))
        self._count += 1
        if self._now is None or us > self._now:
            self._now = us
        self._runs.apply(rec)

    def records(
        self,
        task: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        actions: str | Iterable[str] | None = None,
    ) -> list[Record]:
        """The records with ``since <= at < until``, oldest first."""
        wanted = set(ACTIONS if actions is None else check_actions(actions))
        lo = None if since is None else to_us(since, "since")
        hi = None if until is None else to_us(until, "until")
        with self._lock:
            tasks = self._series if task is None else (task,)
            streams = [
                _stream(name, action, series, lo, hi)
                for name in tasks
                for action, series in self._series.get(name, {}).items()
                if action in wanted
            ]
            # Ties at one microsecond: by task, then action order, then arrival.
            merged = heapq.merge(*streams, key=_stream_key)
            return [
                Record(name, action, from_us(us), *_unpack(extra))
                for us, name, _, action, extra in merged
            ]

    def last(self, task: str, actions: str | Iterable[str]) -> datetime | None:
        """The time of the task's latest record with one of the actions."""
        actions = check_actions(actions)
        best = None
        with self._lock:
            by_action = self._series.get(task)
            if by_action:
                for action in actions:
                    series = by_action.get(action)
                    # Retention never drops the latest of a series: times[-1] is it.
                    if series is not None and (best is None or series.times[-1] > best):
                        best = series.times[-1]
        return None if best is None else from_us(best)

    def first_in(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> datetime | None:
        """The earliest time of such a record with ``since <= at < until``."""
        spans = self._spans(task, actions, since, until)
        return from_us(min(first for first, _, _ in spans)) if spans else None

    def last_in(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> datetime | None:
        """The latest time of such a record with ``since <= at < until``."""
        spans = self._spans(task, actions, since, until)
        return from_us(max(last for _, last, _ in spans)) if spans else None

    def count_in(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> int:
        """How many such records have ``since <= at < until``."""
        return sum(count for _, _, count in self._spans(task, actions, since, until))

    def running(self, task: str) -> list[Record]:
        """The task's ``run`` records whose run has no finishing record yet, oldest first."""
        with self._lock:
            return self._runs.running(task)

    def tasks(self) -> list[str]:
        """The names of the tasks with records, sorted."""
        with self._lock:
            return sorted(self._series)

    def close(self) -> None:
        """Nothing to release: the records live as long as this object."""

    def _spans(
        self, task: str, actions: str | Iterable[str], since: datetime, until: datetime
    ) -> list[tuple[int, int, int]]:
        """(first, last, count) of each wanted series' records in ``since <= at < until``."""
        actions = check_actions(actions)
        lo, hi = to_us(since, "since"), to_us(until, "until")
        spans = []
        # Read the values under the lock: an insert or a trim shifts the indexes.
        with self._lock:
            by_action = self._series.get(task)
            if by_action:
                for action in actions:
                    series = by_action.get(action)
                    if series is not None:
                        times = series.times
                        start, stop = bisect_left(times, lo), bisect_left(times, hi)
                        if start < stop:
                            spans.append((times[start], times[stop - 1], stop - start))
        return spans

    # Retention -----------------------------------------------------------------

    def _retain(self) -> None:
        if self._count_trim_due():
            self._trim_count()
        if self._age_sweep_due():
            self._run_age_sweep(self._drop_older)

    def _drop_older(self, cutoff: int) -> None:
        """Drop the records older than cutoff that retention may drop."""
        for task, by_action in self._series.items():
            for action, series in by_action.items():
                # The last element is the latest of its action: never dropped.
                drop = min(bisect_left(series.times, cutoff), len(series.times) - 1)
                if drop > 0:
                    self._drop_prefix(task, action, series, drop)

    def _trim_count(self) -> None:
        """Drop the oldest droppable records until the count is back to 9/10 of the limit."""
        excess = self._count - self._trim_target()
        # A merge over the heads of every series, oldest first: each pop is one
        # candidate, so the cost follows the number dropped, not the store size.
        heap = []
        for task, by_action in self._series.items():
            for action, series in by_action.items():
                if len(series.times) > 1:
                    heap.append((series.times[0], task, action, 0))
        heapq.heapify(heap)
        drop: dict[tuple[str, str], int] = {}
        protected: dict[str, Counter[tuple[int, str | None]]] = {}
        while excess > 0 and heap:
            us, task, action, index = heapq.heappop(heap)
            series = self._series[task][action]
            if not (action == "run" and _take(protected, self._runs, task, us, series, index)):
                drop[task, action] = index + 1
                excess -= 1
            if index + 2 < len(series.times):  # never reach the last element
                heapq.heappush(heap, (series.times[index + 1], task, action, index + 1))
        for (task, action), count in drop.items():
            self._drop_prefix(task, action, self._series[task][action], count)
        self._count_trimmed()

    def _drop_prefix(self, task: str, action: str, series: _Series, count: int) -> None:
        """Drop the first ``count`` records of a series, keeping open runs among them."""
        kept_times: list[int] = []
        kept_extras: list[_Extra] = []
        if action == "run":
            protected: dict[str, Counter[tuple[int, str | None]]] = {}
            for index in range(count):
                if _take(protected, self._runs, task, series.times[index], series, index):
                    kept_times.append(series.times[index])
                    kept_extras.append(series.extras[index])
        del series.times[:count]
        del series.extras[:count]
        if kept_times:
            series.times[0:0] = array("q", kept_times)
            series.extras[0:0] = kept_extras
        self._count -= count - len(kept_times)


def _take(
    protected: dict[str, Counter[tuple[int, str | None]]],
    runs: OpenRuns,
    task: str,
    us: int,
    series: _Series,
    index: int,
) -> bool:
    """Whether the run record at ``index`` is an open run (consuming one match if so)."""
    counter = protected.get(task)
    if counter is None:
        counter = protected[task] = runs.protected(task)
    key = (us, _unpack(series.extras[index])[0])
    if counter[key] > 0:
        counter[key] -= 1
        return True
    return False


def _stream(
    task: str, action: str, series: _Series, lo: int | None, hi: int | None
) -> Iterator[tuple[int, str, int, str, _Extra]]:
    times, extras = series.times, series.extras
    start = 0 if lo is None else bisect_left(times, lo)
    stop = len(times) if hi is None else bisect_left(times, hi)
    code = ACTION_CODES[action]
    for index in range(start, stop):
        yield times[index], task, code, action, extras[index]


def _stream_key(item: tuple[int, str, int, str, _Extra]) -> tuple[int, str, int]:
    return item[0], item[1], item[2]
