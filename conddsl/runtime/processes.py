"""Ending a process tree: SIGTERM to the group and every descendant, SIGKILL after a grace.

A task's process starts in its own session, so its process group holds its
children; descendants that left the group (their own ``setsid``) are found by
walking ``/proc`` from the root. Each process is remembered with its start time,
so a recycled pid is never signalled. Without ``/proc`` only the group is signalled.

Waiting for a tree to go is event-driven where Linux has pidfds (5.3 and later):
the event loop watches a pidfd of each known process of the tree, and once they
have all ended, ``killpg(root, 0)`` says whether anything is left in the group;
only then is ``/proc`` read again, to find who (and to signal newcomers). Without
pidfds the table is read every ``_POLL`` seconds. Trees ended at the same moment
share their readings of ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass

_PROC = "/proc"
_POLL = 0.01  # seconds between looks at the process table while a tree dies (no pidfds)
_AFTER_KILL = 2.0  # how long SIGKILLed processes get to disappear before we stop looking
# Seconds: a reading of /proc this recent serves every tree signalled now. What it
# misses (forked since) is in the group, which is signalled as a whole, or is found
# when the known processes have ended (newcomers get the signal then).
_FRESH = 0.01
_GONE = ("Z", "X")  # states of a process that has ended (a zombie waits for its reaper)


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """One line of the process table."""

    pid: int
    ppid: int
    pgid: int
    state: str
    start: int  # clock ticks after boot: with the pid, names a process uniquely


def process_table() -> dict[int, ProcInfo]:
    """Every process in /proc (an empty table where there is no /proc)."""
    table = {}
    try:
        names = os.listdir(_PROC)
    except OSError:
        return table
    for name in names:
        if name.isdigit():
            info = read_stat(int(name))
            if info is not None:
                table[info.pid] = info
    return table


def read_stat(pid: int) -> ProcInfo | None:
    """The process's /proc entry, or None if it is gone."""
    try:
        fd = os.open(f"{_PROC}/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name is in parentheses and may itself hold spaces and ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return ProcInfo(pid, int(fields[1]), int(fields[2]), fields[0].decode(), int(fields[19]))


class Snapshot:
    """The process table read at one instant (``taken``, monotonic), with each one's children."""

    def __init__(self) -> None:
        self.taken = time.monotonic()  # before reading: every change after it may be missing
        self.table = process_table()
        self._children: dict[int, list[ProcInfo]] | None = None
        self._groups: dict[int, list[ProcInfo]] | None = None

    def children(self, pid: int) -> list[ProcInfo]:
        """The processes whose parent is ``pid``."""
        if self._children is None:
            self._children = self._index("ppid")
        return self._children.get(pid, [])

    def group(self, pgid: int) -> list[ProcInfo]:
        """The processes of the process group ``pgid``."""
        if self._groups is None:
            self._groups = self._index("pgid")
        return self._groups.get(pgid, [])

    def _index(self, key: str) -> dict[int, list[ProcInfo]]:
        # Built once per reading, shared by every tree looked up in it.
        index: dict[int, list[ProcInfo]] = {}
        for info in self.table.values():
            index.setdefault(getattr(info, key), []).append(info)
        return index


_last: Snapshot | None = None


def snapshot(since: float) -> Snapshot:
    """A reading of /proc begun at or after ``since`` (monotonic): the last one, or a new one."""
    global _last
    last = _last
    if last is None or last.taken < since:
        last = _last = Snapshot()
    return last


_pidfds = hasattr(os, "pidfd_open")  # turned off if the kernel refuses them


class TreeKiller:
    """Terminates the tree under ``root``: SIGTERM now, SIGKILL after ``grace`` seconds."""

    def __init__(self, root: int, grace: float, loop: asyncio.AbstractEventLoop) -> None:
        self.root = root
        self.grace = grace
        self.loop = loop
        self.killed_at: float | None = None  # loop time of the SIGKILL
        self._known: dict[int, int] = {}  # pid -> start time of every process of the tree
        self._timer: asyncio.TimerHandle | None = None
        self._give_up_timer: asyncio.TimerHandle | None = None
        self._given_up = False
        self._watched: dict[int, int] = {}  # pid -> its pidfd, while it lives
        self._all_ended: asyncio.Future[None] | None = None
        self._last_end = 0.0  # monotonic time the last watched process was seen to end

    def start(self) -> None:
        """Send SIGTERM to the tree and arm the SIGKILL."""
        self._signal(signal.SIGTERM, snapshot(time.monotonic() - _FRESH))
        self._timer = self.loop.call_later(self.grace, self.kill)

    def kill(self) -> None:
        """Send SIGKILL to whatever is left of the tree."""
        if self.killed_at is None:
            self.killed_at = self.loop.time()
            self._signal(signal.SIGKILL, snapshot(time.monotonic() - _FRESH))
            self._give_up_timer = self.loop.call_later(_AFTER_KILL, self._give_up)

    def survivors(self) -> list[int]:
        """The pids of the tree still alive (zombies count as gone)."""
        return sorted(info.pid for info in self._members(snapshot(time.monotonic())))

    def gone_now(self) -> bool:
        """Whether nothing of the tree is left by a quick look (no reading of all /proc):
        every process known is gone and the group is empty."""
        for pid, start in self._known.items():
            info = read_stat(pid)
            if info is not None and info.start == start and info.state not in _GONE:
                return False
        return not self._group_exists()

    def close(self) -> None:
        """Stop the timers (the SIGKILL, giving up): the tree is gone."""
        for timer in (self._timer, self._give_up_timer):
            if timer is not None:
                timer.cancel()

    async def wait_gone(self, since: float | None = None) -> None:
        """Return once no process of the tree is left (SIGKILL comes at the grace).

        ``since`` (monotonic): when the root was seen to end, if it was.
        """
        global _pidfds
        try:
            if _pidfds:
                try:
                    await self._wait_for_pidfds(time.monotonic() if since is None else since)
                    return
                except OSError:  # no pidfds here after all (old kernel, seccomp)
                    _pidfds = False
                    self._unwatch()
            while self.survivors() and not self._given_up:
                await asyncio.sleep(_POLL)
        finally:
            self._unwatch()
            self.close()

    async def _wait_for_pidfds(self, since: float) -> None:
        while not self._given_up:
            for pid, start in list(self._known.items()):
                self._watch(pid, start)
            if self._watched:
                self._all_ended = self.loop.create_future()
                await self._all_ended
                since = self._last_end
                continue
            # Every process we know of has ended. A newcomer can only be in the group
            # (one that left it after our last reading is out of reach, as its parent
            # is gone): read /proc again only if the group is not empty.
            if not self._group_exists():
                return
            table = snapshot(since)
            before = set(self._known)
            members = self._members(table)
            new = [info for info in members if info.pid not in before]
            sig = signal.SIGTERM if self.killed_at is None else signal.SIGKILL
            for info in new:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(info.pid, sig)
            if not any(self._watch(info.pid, info.start) for info in members):
                if not members:
                    return  # only zombies are left in the group
                since = time.monotonic()  # they ended after the reading: read again

    def _group_exists(self) -> bool:
        try:
            os.killpg(self.root, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # someone else's group now: look in /proc
        return True

    def _watch(self, pid: int, start: int) -> bool:
        """Watch the process's pidfd; False if it has ended."""
        if pid in self._watched:
            return True
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        now = read_stat(pid)  # the pid may have been recycled: check its start
        if now is None or now.start != start or now.state in _GONE:
            os.close(fd)
            return False
        self._watched[pid] = fd
        self.loop.add_reader(fd, self._ended, pid)
        return True

    def _ended(self, pid: int) -> None:
        self._last_end = time.monotonic()
        fd = self._watched.pop(pid, None)
        if fd is not None:
            self.loop.remove_reader(fd)
            os.close(fd)
        if not self._watched:
            self._wake()

    def _unwatch(self) -> None:
        for fd in self._watched.values():
            self.loop.remove_reader(fd)
            os.close(fd)
        self._watched.clear()

    def _give_up(self) -> None:
        self._given_up = True  # unkillable (uninterruptible sleep): nothing more we can do
        self._wake()

    def _wake(self) -> None:
        if self._all_ended is not None and not self._all_ended.done():
            self._all_ended.set_result(None)

    def _members(self, table: Snapshot) -> list[ProcInfo]:
        # The tree: the root, its process group, every process seen before,
        # and the descendants of all of those, alive or not.
        members = {info.pid: info for info in table.group(self.root)}
        for pid, start in self._known.items():
            info = table.table.get(pid)
            if info is not None and info.start == start:
                members[pid] = info
        root = table.table.get(self.root)
        if root is not None:
            members[root.pid] = root
        stack = list(members)
        while stack:
            for child in table.children(stack.pop()):
                if child.pid not in members:
                    members[child.pid] = child
                    stack.append(child.pid)
        for info in members.values():
            self._known.setdefault(info.pid, info.start)
        return [info for info in members.values() if info.state not in _GONE]

    def _signal(self, sig: signal.Signals, table: Snapshot) -> None:
        first = not self._known
        grouped = first
        for info in self._members(table):
            if info.pgid == self.root:
                grouped = True  # the group signal below reaches it
            else:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(info.pid, sig)
        if grouped:
            # The group also catches processes forked after the table was read.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.root, sig)
        if first and self.root not in table.table:
            # Not in /proc (no /proc, or not read since it started): signal the pid we started.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.root, sig)
