"""Ending a process tree: SIGTERM to the group and every descendant, SIGKILL after a grace.

A task's process starts in its own session, so its process group holds its
children; descendants that left the group (their own ``setsid``) are found by
walking ``/proc`` from the root. Each process is remembered with its start time,
so a recycled pid is never signalled. Without ``/proc`` only the group is signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass

_PROC = "/proc"
_POLL = 0.01  # seconds between looks at the process table while a tree dies
_AFTER_KILL = 2.0  # how long SIGKILLed processes get to disappear before we stop looking


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
        with open(f"{_PROC}/{pid}/stat", "rb") as file:
            data = file.read().decode(errors="replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces and ')'.
    fields = data[data.rindex(")") + 2 :].split()
    return ProcInfo(pid, int(fields[1]), int(fields[2]), fields[0], int(fields[19]))


class TreeKiller:
    """Terminates the tree under ``root``: SIGTERM now, SIGKILL after ``grace`` seconds."""

    def __init__(self, root: int, grace: float, loop: asyncio.AbstractEventLoop) -> None:
        self.root = root
        self.grace = grace
        self.loop = loop
        self.killed_at: float | None = None  # loop time of the SIGKILL
        self._known: dict[int, int] = {}  # pid -> start time of every process of the tree
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Send SIGTERM to the tree and arm the SIGKILL."""
        self._signal(signal.SIGTERM)
        self._timer = self.loop.call_later(self.grace, self.kill)

    def kill(self) -> None:
        """Send SIGKILL to whatever is left of the tree."""
        if self.killed_at is None:
            self.killed_at = self.loop.time()
            self._signal(signal.SIGKILL)

    def survivors(self) -> list[int]:
        """The pids of the tree still alive (zombies count as gone)."""
        return sorted(info.pid for info in self._members(process_table()))

    async def wait_gone(self) -> None:
        """Return once no process of the tree is left (SIGKILL comes at the grace)."""
        while self.survivors():
            if self.killed_at is not None and self.loop.time() - self.killed_at > _AFTER_KILL:
                return  # unkillable (uninterruptible sleep): nothing more we can do
            await asyncio.sleep(_POLL)
        if self._timer is not None:
            self._timer.cancel()

    def _members(self, table: dict[int, ProcInfo]) -> list[ProcInfo]:
        # The tree: the root, its process group, every process seen before,
        # and the descendants of all of those, alive or not.
        members = {
            info.pid: info
            for info in table.values()
            if info.pgid == self.root or self._known.get(info.pid) == info.start
        }
        root = table.get(self.root)
        if root is not None:
            members[root.pid] = root
        children: dict[int, list[ProcInfo]] = {}
        for info in table.values():
            children.setdefault(info.ppid, []).append(info)
        stack = list(members)
        while stack:
            for child in children.get(stack.pop(), ()):
                if child.pid not in members:
                    members[child.pid] = child
                    stack.append(child.pid)
        for info in members.values():
            self._known.setdefault(info.pid, info.start)
        return [info for info in members.values() if info.state not in ("Z", "X")]

    def _signal(self, sig: signal.Signals) -> None:
        first = not self._known
        members = self._members(process_table())
        for info in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(info.pid, sig)
        if first or any(info.pgid == self.root for info in members):
            # The group also catches processes forked after the table was read.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.root, sig)
        if first:
            # Not in /proc (no /proc, or not yet visible): signal the pid we started.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.root, sig)
