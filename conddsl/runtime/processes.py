"""Ending a process tree: SIGTERM to the group and every descendant, SIGKILL after a grace.

A task's process starts in its own session, so its process group holds its
children; descendants that left the group (their own ``setsid``) are found by
walking ``/proc`` from the root. Each process is remembered with its start time,
so a recycled pid is never signalled. Without ``/proc`` only the group is signalled.

Reading the whole of ``/proc`` costs 10-60 ms when a thousand processes run, so the
event loop never does it: a :class:`Scanner` reads it in a worker thread, and every
tree that asks while a reading is under way shares it. The signals do not wait for
a reading, though: the last one is brought up to date in the loop by looking only at
the pids created since it began (``/proc/loadavg`` names the newest pid; a
:class:`View`), which costs a few microseconds each. The tree is then signalled at
once: every member by pid, the group with one ``killpg``. Only when that is not
possible (no reading yet, too many pids created since, pids wrapped around) does the
tree wait for a reading, with its group stopped (``SIGSTOP``) meanwhile: nothing in
it can then die and orphan a descendant before it is found, nor fork. The grace
runs from the termination either way.

Waiting for a tree to go is event-driven where Linux has pidfds (5.3 and later):
the event loop watches a pidfd of each known process of the tree, and once they
have all ended, ``killpg(root, 0)`` says whether anything is left in the group.
Most often that is zombies waiting for their reaper (orphans go to init, which may
be slow to reap them): the last reading brought up to date says so at once, and the
tree is gone. Only else is ``/proc`` read again, to find who (and to signal newcomers). Without
pidfds the table is read every ``_POLL`` seconds.

Over 400 lines, one job: finding a tree's processes in /proc, watching them end
(pidfds, else polling) and signalling them are the parts of ending a tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

_PROC = "/proc"
_POLL = 0.01  # seconds between looks at the process table while a tree dies (no pidfds)
_AFTER_KILL = 2.0  # how long SIGKILLed processes get to disappear before we stop looking
_REAPING = 0.1  # seconds a group left with its known processes ended gets before /proc is read
# Seconds: a reading of /proc this recent serves every tree signalled now. What it
# misses (forked since) is in the group, which is signalled as a whole, or is found
# when the known processes have ended (newcomers get the signal then).
_FRESH = 0.01
_GONE = ("Z", "X")  # states of a process that has ended (a zombie waits for its reaper)
_LOADAVG = "/proc/loadavg"  # its last field: the newest pid
# A reading of /proc is brought up to date by looking at the pids created since it
# began, one by one, if there are no more than this many...
_PROBE_MAX = 256
# ... and if it was last brought up to date this recently (seconds: pids cannot
# have wrapped around and come back past it in that time).
_VIEW_AGE = 2.0
# A reading is handed to this many of the trees waiting for it a turn of the loop: each
# signals its tree then (0.1-0.2 ms), and a hundred at once held the loop for 20 ms.
_HAND_OUT = 8


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


def _read(path: str, size: int) -> bytes | None:
    """The first ``size`` bytes of a /proc file (one read), or None if it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def newest_pid() -> int | None:
    """The pid most recently handed out (to a process or a thread), None without /proc."""
    data = _read(_LOADAVG, 256)
    try:
        return int(data.split()[-1]) if data is not None else None
    except (ValueError, IndexError):
        return None


def is_thread(pid: int) -> bool:
    """Whether ``pid`` names a thread other than its process's first one (/proc shows
    one under its number too, with its process's parent and group)."""
    data = _read(f"{_PROC}/{pid}/status", 8192)
    if data is None:
        return False
    at = data.find(b"\nTgid:")
    if at < 0:
        return False
    return int(data[at + 6 : data.index(b"\n", at + 1)]) != pid


def read_stat(pid: int) -> ProcInfo | None:
    """The process's /proc entry, or None if it is gone."""
    data = _read(f"{_PROC}/{pid}/stat", 4096)
    if data is None:
        return None
    # The command name is in parentheses and may itself hold spaces and ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return ProcInfo(pid, int(fields[1]), int(fields[2]), fields[0].decode(), int(fields[19]))


class Snapshot:
    """The process table read at one instant (``taken``, monotonic), with each one's children."""

    def __init__(self) -> None:
        self.newest = newest_pid()  # before reading: every pid after it may be missing
        self.taken = time.monotonic()  # before reading: every change after it may be missing
        self.table = process_table()
        self._children: dict[int, list[ProcInfo]] | None = None
        self._groups: dict[int, list[ProcInfo]] | None = None

    def get(self, pid: int) -> ProcInfo | None:
        """The process ``pid`` as read."""
        return self.table.get(pid)

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


class View:
    """A reading of /proc (``base``) brought up to date without reading it all again:
    each pid handed out since it began is looked at, once (see the module docstring).

    What it holds of a process the reading saw may be out of date (its parent died,
    it left the group): a tree taken from it is checked process by process."""

    def __init__(self, base: Snapshot) -> None:
        self.base = base
        self.upto = base.newest if base.newest is not None else -1  # pids looked at
        self.upto_at_start = self.upto
        self.checked = base.taken  # monotonic: when it was last brought up to date
        self.new: dict[int, ProcInfo] = {}  # the pids handed out since, alive when looked at
        self._children: dict[int, list[ProcInfo]] = {}
        self._groups: dict[int, list[ProcInfo]] = {}
        self._threads: dict[int, bool] = {}

    def update(self) -> bool:
        """Look at the pids handed out since the last time; False if that cannot be
        done cheaply (too many, wrapped around, too long since, no /proc)."""
        newest = newest_pid()
        now = time.monotonic()
        if (
            newest is None
            or self.upto < 0
            or now - self.checked > _VIEW_AGE
            or not 0 <= newest - self.upto <= _PROBE_MAX
        ):
            return False
        for pid in range(self.upto + 1, newest + 1):
            info = read_stat(pid)
            if info is not None:
                self.new[pid] = info
                self._children.setdefault(info.ppid, []).append(info)
                self._groups.setdefault(info.pgid, []).append(info)
        self.upto = newest
        self.checked = now
        return True

    def get(self, pid: int) -> ProcInfo | None:
        """The process ``pid`` as last seen."""
        info = self.new.get(pid)
        return info if info is not None else self.base.table.get(pid)

    def children(self, pid: int) -> list[ProcInfo]:
        """The processes whose parent is ``pid``."""
        return self._merge(self.base.children(pid), self._children.get(pid))

    def group(self, pgid: int) -> list[ProcInfo]:
        """The processes of the process group ``pgid``."""
        return self._merge(self.base.group(pgid), self._groups.get(pgid))

    def _merge(self, old: list[ProcInfo], new: list[ProcInfo] | None) -> list[ProcInfo]:
        # A pid handed out again since the reading names its new process; a thread
        # of a process is no process of its own.
        found = [info for info in old if info.pid not in self.new]
        for info in new or ():
            thread = self._threads.get(info.pid)
            if thread is None:
                thread = self._threads[info.pid] = is_thread(info.pid)
            if not thread:
                found.append(info)
        return found


_last: Snapshot | None = None
_view: View | None = None


def current_view() -> View | None:
    """The last reading brought up to now, if that is cheap (see :class:`View`); None
    if a tree has to wait for a new reading."""
    last = _last
    return view_of(last) if last is not None else None


def view_of(base: Snapshot) -> View | None:
    """``base`` brought up to now (None if that is not cheap), by the view made of it
    before if there is one: the trees handed one reading share the looks at what came
    since, instead of each looking at every new pid again (a hundred trees that waited
    for a reading took 20 ms of the loop's time in one turn)."""
    global _view
    view = _view
    if view is None or view.base is not base:
        view = _view = View(base)
    return view if view.update() else None


def snapshot(since: float) -> Snapshot:
    """A reading of /proc begun at or after ``since`` (monotonic): the last one, or a new one
    read here (blocking: the event loop uses a :class:`Scanner`)."""
    global _last
    last = _last
    if last is None or last.taken < since:
        last = _last = Snapshot()
    return last


class Scanner:
    """Readings of /proc for an event loop, made in its default executor (a worker thread).

    ``read(since)`` gives a future of a reading begun at or after ``since``: the last
    one if it is recent enough, else the next one. One reading at a time: the trees
    that ask while one is under way share the one after it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: the scanners are kept by their loop (_scanners), and a scanner that held
        # its loop would keep it, and all it refers to, for as long as the process lives.
        self._loop = weakref.ref(loop)
        self._waiting: list[tuple[float, asyncio.Future[Snapshot]]] = []
        self._busy = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the readings are for (RuntimeError once it is gone)."""
        loop = self._loop()
        if loop is None:
            raise RuntimeError("the scanner's event loop is gone")
        return loop

    def read(self, since: float) -> asyncio.Future[Snapshot]:
        """A future of a reading begun at or after ``since`` (monotonic)."""
        future: asyncio.Future[Snapshot] = self.loop.create_future()
        last = _last
        if last is not None and last.taken >= since:
            future.set_result(last)
            return future
        self._waiting.append((since, future))
        if not self._busy:
            self._begin()
        return future

    def next(self) -> asyncio.Future[Snapshot]:
        """A future of the reading under way, or of a new one if none is."""
        last = _last
        return self.read(last.taken + 1e-9 if last is not None else float("-inf"))

    def refresh(self) -> None:
        """Begin a reading if none is under way (nobody waits for it: the next tree will
        find fewer new pids to look at)."""
        if self._busy:
            return
        try:
            work = self.loop.run_in_executor(None, _indexed_snapshot)
        except RuntimeError:  # the executor is shut down: not worth a reading in the loop
            return
        self._busy = True
        work.add_done_callback(self._done)

    def _begin(self) -> None:
        self._busy = True
        try:
            work = self.loop.run_in_executor(None, _indexed_snapshot)
        except RuntimeError:  # the executor is shut down (the loop is closing): read here
            self._deliver(Snapshot())
            return
        work.add_done_callback(self._done)

    def _done(self, work: asyncio.Future[Snapshot]) -> None:
        if work.cancelled() or work.exception() is not None:
            self._deliver(Snapshot())  # the executor went away under us: read here
        else:
            self._deliver(work.result())

    def _deliver(self, table: Snapshot) -> None:
        global _last
        self._busy = False
        if _last is None or table.taken > _last.taken:
            _last = table
        waiting, self._waiting = self._waiting, []
        served = []
        for since, future in waiting:
            if since > table.taken:
                self._waiting.append((since, future))  # asked after it began: the next one
            else:
                served.append(future)
        self._hand_out(table, served)
        if self._waiting:
            self._begin()

    def _hand_out(self, table: Snapshot, futures: list[asyncio.Future[Snapshot]]) -> None:
        """Give ``table`` to the first ``_HAND_OUT`` of ``futures``, and the next ones at
        the loop's next turn: each signals its tree when it gets it."""
        for future in futures[:_HAND_OUT]:
            if not future.done():
                future.set_result(table)
        rest = futures[_HAND_OUT:]
        if rest:
            try:
                self.loop.call_soon(self._hand_out, table, rest)
            except RuntimeError:  # the loop is closed (or gone): no turn comes, all at once
                for future in rest:
                    if not future.done():
                        future.set_result(table)


def _indexed_snapshot() -> Snapshot:
    """A reading with its indexes built (in the worker thread: not in the loop's)."""
    table = Snapshot()
    table.children(0)
    table.group(0)
    return table


def keep_view(scanner: Scanner) -> View | None:
    """:func:`current_view`, and a new reading begun in the background if the view is
    getting old or long to bring up to date: called when a tree starts or is ended, so
    that ending the next ones seldom waits for a reading."""
    view = current_view()
    if (
        view is None
        or view.checked - view.base.taken > _VIEW_AGE / 2
        or view.upto - view.upto_at_start > _PROBE_MAX // 2
    ):
        scanner.refresh()
    return view


_scanners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Scanner] = (
    weakref.WeakKeyDictionary()
)


def scanner_for(loop: asyncio.AbstractEventLoop) -> Scanner:
    """The loop's scanner (one per loop, so its trees share their readings)."""
    # A loop closed while a reading was asked for is still held by that request's future
    # (the scanner's, so the weak key never dies): forget such loops now.
    for closed in [other for other in _scanners if other.is_closed()]:
        del _scanners[closed]
    found = _scanners.get(loop)
    if found is None:
        found = _scanners[loop] = Scanner(loop)
    return found


_pidfds = hasattr(os, "pidfd_open")  # turned off if the kernel refuses them


class TreeKiller:
    """Terminates the tree under ``root``: SIGTERM now, SIGKILL after ``grace`` seconds.

    ``start``: the root's start time (``/proc/<pid>/stat``), when known: a process that
    took the root's pid after it ended is then never signalled, nor its group.
    ``on_kill``: called once SIGKILL went to the tree, with the monotonic time before it.
    """

    def __init__(
        self,
        root: int,
        grace: float,
        loop: asyncio.AbstractEventLoop,
        *,
        start: int | None = None,
        scanner: Scanner | None = None,
        on_kill: Callable[[float], None] | None = None,
    ) -> None:
        self.root = root
        self._on_kill = on_kill
        self.grace = grace
        self.loop = loop
        self.start_time = start
        self.scanner = scanner if scanner is not None else scanner_for(loop)
        self.killed_at: float | None = None  # loop time of the SIGKILL
        self._known: dict[int, int] = {}  # pid -> start time of every process of the tree
        if start is not None:
            self._known[root] = start
        self._signalled = False
        self._timer: asyncio.TimerHandle | None = None
        self._give_up_timer: asyncio.TimerHandle | None = None
        self._given_up = False
        self._closed = False
        self._pending = 0  # signals waiting for their reading of /proc
        self._sent: asyncio.Future[None] | None = None  # set once none is pending
        self._watched: dict[int, int] = {}  # pid -> its pidfd, while it lives
        self._all_ended: asyncio.Future[None] | None = None
        self._last_end = 0.0  # monotonic time the last watched process was seen to end

    def start(self) -> None:
        """Send SIGTERM to the tree (at once, or once /proc is read: see the module
        docstring) and arm the SIGKILL, ``grace`` seconds from now."""
        if self._timer is None:
            self._timer = self.loop.call_later(self.grace, self.kill)
        self._signal_soon(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL to whatever is left of the tree (at once, or once /proc is read)."""
        if self.killed_at is None:
            self.killed_at = self.loop.time()
            if not self._closed:
                self._give_up_timer = self.loop.call_later(_AFTER_KILL, self._give_up)
            self._signal_soon(signal.SIGKILL)

    def term_again(self) -> None:
        """Send the group SIGTERM again: a process joined it after the first one went (and
        may have missed it), one that a second SIGTERM cannot harm (it runs none of its
        task's code yet: a program's body before its exec). Not before the first went (the
        group gets it then), nor once SIGKILL did, nor if the root's pid names another
        process now."""
        if not self._signalled or self.killed_at is not None or self._closed:
            return
        if self._root_is_ours():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.root, signal.SIGTERM)

    def survivors(self) -> list[int]:
        """The pids of the tree still alive (zombies count as gone); reads /proc here."""
        return sorted(info.pid for info in self._members(snapshot(time.monotonic())))

    def gone_now(self) -> bool:
        """Whether nothing of the tree is left by a quick look (no reading of all /proc):
        no signal is waiting to go out, every process known is gone and the group is empty."""
        if self._pending:
            return False
        for pid, start in self._known.items():
            info = read_stat(pid)
            if info is not None and info.start == start and info.state not in _GONE:
                return False
        return not self._group_exists()

    def close(self) -> None:
        """Stop the timers (the SIGKILL, giving up): the tree is gone."""
        self._closed = True
        for timer in (self._timer, self._give_up_timer):
            if timer is not None:
                timer.cancel()

    async def wait_gone(self, since: float | None = None) -> None:
        """Return once no process of the tree is left (SIGKILL comes at the grace).

        ``since`` (monotonic): when the root was seen to end, if it was.
        """
        global _pidfds
        try:
            await self._signals_sent()  # the tree is known then
            if _pidfds:
                try:
                    await self._wait_for_pidfds(time.monotonic() if since is None else since)
                    return
                except OSError:  # no pidfds here after all (old kernel, seccomp)
                    _pidfds = False
                    self._unwatch()
            while not self._given_up:
                table = await self.scanner.read(time.monotonic())
                if not self._members(table):
                    return
                await asyncio.sleep(_POLL)
        finally:
            self._unwatch()
            self.close()

    async def _signals_sent(self) -> None:
        """Return once no signal waits for its reading of /proc."""
        while self._pending:
            if self._sent is None or self._sent.done():
                self._sent = self.loop.create_future()
            await self._sent

    def _signal_soon(self, sig: signal.Signals) -> None:
        """Signal the tree now if the last reading of /proc can be brought up to date in
        a moment; else stop its group and signal it once /proc is read (in a worker
        thread, shared)."""
        if self._closed:
            return
        view = keep_view(self.scanner)
        if view is not None:
            self._signal(sig, view)
            return
        self._pending += 1
        stopped = self._stop_group()
        asked = time.monotonic()  # the group cannot change after this
        reading = self.scanner.next()
        reading.add_done_callback(lambda done: self._signal_read(sig, done, asked, stopped))

    def _signal_read(
        self, sig: signal.Signals, reading: asyncio.Future[Snapshot], asked: float, stopped: bool
    ) -> None:
        table: Snapshot | View = reading.result()
        if table.taken < asked:
            # Begun before the group was stopped: good enough if what came since can be
            # looked at, else the next reading (begun after the stop) will do.
            view = view_of(table)
            if view is None:
                again = self.scanner.read(asked)
                again.add_done_callback(lambda done: self._signal_read(sig, done, asked, stopped))
                return
            table = view
        self._pending -= 1
        try:
            if not self._closed:
                self._signal(sig, table)
        finally:
            if stopped:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.root, signal.SIGCONT)  # the signal is there for them
        if not self._pending and self._sent is not None and not self._sent.done():
            self._sent.set_result(None)

    def _stop_group(self) -> bool:
        """Stop every process of the group (SIGSTOP) while its tree waits for /proc."""
        root = read_stat(self.root)
        if root is not None and self.start_time is not None and root.start != self.start_time:
            return False  # the pid names another process now: so may the group
        try:
            os.killpg(self.root, signal.SIGSTOP)
        except (ProcessLookupError, PermissionError):
            return False
        return True

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
            if self.killed_at is not None:
                if self._pending:
                    await self._signals_sent()
                    continue
                # SIGKILL went to the group: nothing in it can live, or fork, after
                # that. What is left is zombies, waiting for their reaper.
                return
            # Most often what is left is zombies (orphans wait for whoever reaps them,
            # which may be slow: an init that is no init): a look at the pids created
            # since the last reading says so at once. Else give them a moment before
            # reading /proc.
            if self._only_zombies_left():
                return
            if not await self._group_lasts():
                return
            table = await self.scanner.read(since)
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

    def _only_zombies_left(self) -> bool:
        """Whether every process of the tree has ended, by the last reading of /proc
        brought up to now (False when that is not cheap): each member is looked at
        again, as the reading may be older than its death."""
        view = current_view()
        if view is None:
            return False
        for info in self._members(view):
            now = read_stat(info.pid)
            if now is not None and now.start == info.start and now.state not in _GONE:
                return False
        return True

    async def _group_lasts(self) -> bool:
        """Whether the group is still there after up to ``_REAPING`` seconds."""
        ends = time.monotonic() + _REAPING
        while self._group_exists():
            if time.monotonic() >= ends or self._given_up:
                return True
            await asyncio.sleep(_POLL)
        return False

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

    def _recycled(self, table: Snapshot | View) -> bool:
        """Whether the root's pid now names another process (its start time differs)."""
        root = table.get(self.root)
        return root is not None and self.start_time is not None and root.start != self.start_time

    def _members(self, table: Snapshot | View) -> list[ProcInfo]:
        # The tree: the root, its process group, every process seen before,
        # and the descendants of all of those, alive or not.
        recycled = self._recycled(table)
        members = {} if recycled else {info.pid: info for info in table.group(self.root)}
        for pid, start in self._known.items():
            info = table.get(pid)
            if info is not None and info.start == start:
                members[pid] = info
        root = table.get(self.root)
        if root is not None and not recycled:
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

    def _signal(self, sig: signal.Signals, table: Snapshot | View) -> None:
        began = time.monotonic()
        first, self._signalled = not self._signalled, True
        grouped = first and not self._recycled(table)
        alive = []
        for info in self._members(table):
            # Each after a fresh look at it, as what was read may be out of date (it may
            # have left the group, or not be in it yet: a child before its setsid), and
            # so that a recycled pid is spared.
            now = read_stat(info.pid)
            if now is None or now.start != info.start or now.state in _GONE:
                continue
            alive.append(info)
            if now.pgid == self.root:
                grouped = True  # the group signal below reaches the rest of it
        if grouped:
            # The group also catches processes forked after the table was read.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.root, sig)
        for info in alive:
            # By its pid only if the group's signal missed it: a process signalled twice
            # runs its SIGTERM handler twice (two signals in a row are one only while the
            # first is still pending).
            if grouped:
                now = read_stat(info.pid)
                if now is None or now.start != info.start or now.pgid == self.root:
                    continue  # gone meanwhile (its pid may name another now), or signalled
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(info.pid, sig)
        if first and not grouped and table.get(self.root) is None and self._root_is_ours():
            # Not in /proc (no /proc, or not read since it started): signal the pid we started.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.root, sig)
        if sig == signal.SIGKILL and self._on_kill is not None:
            on_kill, self._on_kill = self._on_kill, None
            on_kill(began)

    def _root_is_ours(self) -> bool:
        """Whether the root pid still names the process started (unknown start: assumed)."""
        if self.start_time is None:
            return True
        info = read_stat(self.root)
        return info is not None and info.start == self.start_time
