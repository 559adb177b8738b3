"""Who is looked at again when something changes: the wake index and the set of keys due.

A key is a task's name or :data:`SHUT`, the scheduler's shut condition (a key of its
own, never a task's name). A record written for task ``x`` wakes only the keys whose
conditions read ``x``'s history (or any task's); a new cycle wakes those that read
the cycle counter.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable

from conddsl.runtime.conditions import Reads


class Shut(enum.Enum):
    """The key of the scheduler's shut condition among the task names."""

    COND = "the shut condition"

    def __repr__(self) -> str:
        return "SHUT"


SHUT = Shut.COND
Key = str | Shut  # what the scheduler looks at: a task, by name, or the shut condition


class WakeIndex:
    """Which keys read which task's records, and which read the cycle counter."""

    def __init__(self) -> None:
        self._readers: dict[str, set[Key]] = {}  # task name -> keys reading its records
        self._read_all: set[Key] = set()  # keys reading any task's records
        self.cycles: set[Key] = set()  # keys reading the cycle counter

    def add(self, key: Key, found: Reads) -> None:
        """Index what ``key``'s conditions read."""
        if found.any_task:
            self._read_all.add(key)
        for name in found.tasks:
            self._readers.setdefault(name, set()).add(key)
        if found.own and isinstance(key, str):
            self._readers.setdefault(key, set()).add(key)
        if found.cycles:
            self.cycles.add(key)

    def remove(self, key: str, found: Reads) -> None:
        """Forget task ``key`` (what its conditions read is ``found``)."""
        if found.any_task:
            self._read_all.discard(key)
        for name in (*found.tasks, key):
            readers = self._readers.get(name)
            if readers is not None:
                readers.discard(key)
                if not readers:
                    del self._readers[name]
        if found.cycles:
            self.cycles.discard(key)

    def reads_records(self) -> bool:
        """Whether any key's conditions read records (else a record wakes no other key)."""
        return bool(self._readers or self._read_all)

    def reader_sets(self, name: str) -> tuple[Iterable[Key], Iterable[Key]]:
        """The keys whose conditions read task ``name``'s records, as two sets that may
        share keys (not a generator: a burst's thousand records each ask, most of them
        read by nobody)."""
        return self._readers.get(name, ()), self._read_all


class Due:
    """The keys to look at, in order: the shut condition first (nothing starts at the
    instant it turns true), then the urgent ones (running tasks whose check came due:
    their end conditions are not kept behind a backlog of starts), then the rest in the
    order they were marked."""

    def __init__(self) -> None:
        self._shut = False
        # Ordered sets. An OrderedDict, not a dict: taking a dict's first key after
        # deleting the k before it scans those k holes, so popping n keys cost n**2/2
        # steps (1.7 us a pop at 10,000 keys due, 0.38 at 1,000); popitem(last=False)
        # is O(1).
        self._urgent: OrderedDict[str, None] = OrderedDict()
        self._dirty: OrderedDict[str, None] = OrderedDict()

    def mark(self, key: Key) -> None:
        """Look at ``key`` again."""
        if key is SHUT:
            self._shut = True
        else:
            self._dirty[key] = None  # type: ignore[index]

    def mark_all(self, keys: Iterable[Key]) -> None:
        """Look at each of ``keys`` again, in this order."""
        dirty = self._dirty  # (mark()'s work inline: a burst marks a thousand keys)
        for key in keys:
            if key is SHUT:
                self._shut = True
            else:
                dirty[key] = None  # type: ignore[index]

    def mark_urgent(self, name: str) -> None:
        """Look at task ``name`` before the other tasks."""
        self._urgent[name] = None

    def put_back(self, key: Key) -> None:
        """Look at ``key`` first: it was taken, and not looked at."""
        if key is SHUT:
            self._shut = True
            return
        self._urgent[key] = None
        self._urgent.move_to_end(key, last=False)

    def take_shut(self) -> bool:
        """Whether the shut condition was due (it is not any more)."""
        was, self._shut = self._shut, False
        return was

    def discard(self, name: str) -> None:
        """Task ``name`` is gone."""
        self._dirty.pop(name, None)
        self._urgent.pop(name, None)

    def pop(self) -> Key:
        """The next key to look at (the set is not empty)."""
        key = self.take()
        if key is None:
            raise KeyError("no key is due")
        return key

    def take(self) -> Key | None:
        """The next key to look at, or None if there is none (:meth:`pop` without asking
        ``bool()`` first: a Python call less a key of a burst)."""
        if self._shut:
            self._shut = False
            return SHUT
        # An ordered set emptied by deletions keeps its table (~200 KiB once 10,000 tasks
        # were due at the start): a fresh one lets it go (issue 21).
        dirty = self._dirty
        if self._urgent:
            key = self._urgent.popitem(last=False)[0]
            if not self._urgent:
                self._urgent = OrderedDict()
            if key not in dirty:
                return key
            del dirty[key]
        elif dirty:
            key = dirty.popitem(last=False)[0]
        else:
            return None
        if not dirty:
            self._dirty = OrderedDict()
        return key

    def __bool__(self) -> bool:
        return self._shut or bool(self._urgent) or bool(self._dirty)
