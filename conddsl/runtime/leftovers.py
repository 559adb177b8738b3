"""The task processes a scheduler that died left running, ended by the next one.

Process and command tasks run in sessions of their own (so that their trees can be
signalled), so they outlive a scheduler killed by SIGKILL or a crash. A scheduler
whose history is a file keeps a registry of its live process trees beside it
(``<history file>.procs.json``): each tree's root pid, the root's start time (field
22 of ``/proc/<pid>/stat``: a recycled pid is never taken for it) and its process
group. The file is rewritten atomically (a temporary file, then ``os.replace``) at
the end of each turn of the event loop in which a tree was added or has ended; a run
forked by the fork server runs no line of its task before that write (its body
waits for the scheduler's go, sent after it: a go due earlier in the turn writes the
file first).

The next scheduler on the same history reads it when it starts, before it marks the
dead scheduler's runs as ``crash``: each root that is still the same process is
ended with its tree like a terminated run (SIGTERM to the tree, SIGKILL after
``kill_grace``), and so is what is left of its process group when the root itself
has ended. A warning names what was ended; each entry leaves the file once its tree
is gone, so a scheduler killed again meanwhile leaves it to the next one. While its
scheduler serves, the file stays even with no tree listed (it names the owner): a
scheduler running only coroutines and threads is still seen to be alive. It goes when
the scheduler stops (:meth:`ProcessRegistry.close`).

The registry also names its owner (pid, start time, a token of its own, and the boot
it was written in): a registry whose owner is alive (another process that is the same
one, or another scheduler of this process) belongs to a scheduler running now, whose
processes are left alone and whose runs are not marked ``crash`` (the new scheduler then
keeps no registry of its own). A registry written before the machine last booted lists
nothing alive: it is dropped unread.

A registry is obeyed only under the trust rule, and each tree only if it looks like a
task's (:mod:`conddsl.runtime.registry_trust`): a planted file must not make a scheduler
signal someone else's processes. ``conddsl check`` reports one (C602).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from conddsl.bounded import read_bounded
from conddsl.runtime.processes import Snapshot, TreeKiller, read_stat, snapshot
from conddsl.runtime.registry_trust import screen
from conddsl.trust import REGISTRY_SUFFIX, believed, history_folder_problem, untrusted

log = logging.getLogger("conddsl.runtime")

SUFFIX = REGISTRY_SUFFIX
MAX_BYTES = 16_000_000  # a registry read past this is not one of ours (a tree is ~100 bytes)
_VERSION = 1
_GONE = ("Z", "X")


@dataclass(frozen=True, slots=True)
class Tree:
    """A task's process tree as the registry names it."""

    key: str  # the run's id (a leftover keeps its dead scheduler's)
    task: str
    pid: int  # the root
    start: int  # the root's start time, in clock ticks after boot
    pgid: int  # its process group (the root's pid: it leads a session)

    def as_json(self) -> dict[str, Any]:
        return {"task": self.task, "pid": self.pid, "start": self.start, "pgid": self.pgid}


def registry_problems(path: str) -> list[str]:
    """What is wrong with the registry at ``path`` (for ``conddsl check``): empty if it is
    absent or fine."""
    if not os.path.lexists(path):
        return []
    why = untrusted(path)
    if why is not None:
        return [f"the process registry {path} is not trusted: {why}"]
    _, trees = ProcessRegistry(path).read()
    return [f"the process registry {path} lists {line}" for line in screen(trees)[1]]


# The registries of the schedulers serving in this process now, by token.
_LIVE: weakref.WeakValueDictionary[str, ProcessRegistry] = weakref.WeakValueDictionary()


def boot_id() -> str | None:
    """This boot's id (Linux), so that a registry from before a reboot is not believed."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return file.read().strip() or None
    except OSError:
        return None


def own_identity() -> tuple[int, int | None]:
    """This process's pid and start time."""
    pid = os.getpid()
    info = read_stat(pid)
    return pid, info.start if info is not None else None


def is_alive(pid: int, start: int | None) -> bool:
    """Whether ``pid`` still names the process that started at ``start`` (not a zombie)."""
    info = read_stat(pid)
    return info is not None and info.start == start and info.state not in _GONE


class ProcessRegistry:
    """The durable list of a scheduler's live process trees (see the module docstring)."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.path = path
        self.loop = loop
        self.owner = own_identity()
        import uuid  # only a scheduler with a registry needs it

        self.token = uuid.uuid4().hex
        self.boot = boot_id()
        self.trees: dict[str, Tree] = {}
        self._write_soon = False
        self._failed = False  # a write failed: warned once
        self._closed = False  # its scheduler stopped: no owner to name any more

    # ---------------------------------------------------------------- reading

    def read(self) -> tuple[dict[str, Any] | None, list[Tree]]:
        """The owner and the trees the file lists (none if there is no file or it is unreadable)."""
        try:
            data = json.loads(read_bounded(self.path, MAX_BYTES, owned=True))
            owner = data.get("owner") or {}
            found = dict(owner, pid=int(owner["pid"])) if "pid" in owner else None
            trees = [
                Tree(str(key), str(entry.get("task", "?")), *_ints(entry))
                for key, entry in dict(data.get("trees") or {}).items()
            ]
        except FileNotFoundError:
            return None, []
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("process registry %s is unreadable (%s): ignored", self.path, exc)
            return None, []
        return found, trees

    def take_leftovers(self) -> list[Tree] | None:
        """The trees a dead scheduler left in the file; they stay listed until ended.

        None if the file belongs to a scheduler alive now (its trees are left alone and
        this registry is not to be used).
        """
        owner, trees = self.read()
        if owner is not None and owner.get("boot") not in (None, self.boot):
            trees = []  # written before the last boot: nothing it lists is alive
        elif owner is not None and self._alive(owner):
            log.warning(
                "another scheduler (pid %d) keeps its processes in %s: its processes are "
                "left alone, its runs are not marked crash, and this one keeps no registry",
                owner["pid"],
                self.path,
            )
            return None
        _LIVE[self.token] = self
        trees, refused = screen(trees)
        if refused:
            log.warning(
                "process registry %s lists processes no scheduler of ours started; they are "
                "left alone: %s",
                self.path,
                "; ".join(refused),
            )
        for tree in trees:
            self.trees[tree.key] = tree
        return trees

    def _alive(self, owner: dict[str, Any]) -> bool:
        """Whether the registry's owner is a scheduler serving now."""
        if owner["pid"] == self.owner[0]:  # this process: another scheduler of it?
            return owner.get("token") in _LIVE
        return is_alive(owner["pid"], owner.get("start"))

    # ---------------------------------------------------------------- writing

    def add(self, key: str, task: str, pid: int, start: int | None) -> None:
        """List a tree (its root just started)."""
        if start is None:  # no /proc: the root could not be told from a recycled pid
            return
        self.trees[key] = Tree(key, task, pid, start, pid)
        self._changed()

    def discard(self, key: str) -> None:
        """Drop a tree (it is gone)."""
        if self.trees.pop(key, None) is not None:
            self._changed()

    def _changed(self) -> None:
        if self.loop is None or self.loop.is_closed():
            self.write()
        elif not self._write_soon:
            self._write_soon = True
            self.loop.call_soon(self.flush)  # once per turn, whatever the number of changes

    def flush(self) -> None:
        """Write the file now if a change waits for its write (a body must not go before
        the file lists its tree)."""
        if self._write_soon:
            self.write()

    def close(self) -> None:
        """The scheduler stops: the file goes once no tree is listed."""
        self._closed = True
        self.write()

    def write(self) -> None:
        """Write the file now (atomically); remove it when closed and no tree is listed."""
        self._write_soon = False
        try:
            # Kept, naming its owner, while the scheduler serves: a second scheduler on
            # the history must not take its open runs for a dead one's.
            if not self.trees and self._closed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                return
            data = {
                "version": _VERSION,
                "owner": {
                    "pid": self.owner[0],
                    "start": self.owner[1],
                    "token": self.token,
                    "boot": self.boot,
                },
                "trees": {key: tree.as_json() for key, tree in self.trees.items()},
            }
            temporary = f"{self.path}.{self.token}.tmp"
            with open(temporary, "w", encoding="utf-8") as file:
                json.dump(data, file, separators=(",", ":"))
            os.replace(temporary, self.path)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("process registry %s could not be written: %s", self.path, exc)
            return
        self._failed = False


def _ints(entry: dict[str, Any]) -> tuple[int, int, int]:
    pid = int(entry["pid"])
    return pid, int(entry["start"]), int(entry.get("pgid", pid))


class LeftoverKiller:
    """Ends the trees a dead scheduler left (SIGTERM, SIGKILL after ``grace``)."""

    def __init__(
        self, registry: ProcessRegistry, grace: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.registry = registry
        self.grace = grace
        self.loop = loop
        self.ended: list[Tree] = []  # the trees found alive and ended
        self._waiting: asyncio.Future[None] | None = None

    def start(self, trees: Iterable[Tree]) -> None:
        """Signal each tree still alive (the signals go out once /proc is read); forget the rest."""
        waits = []
        table: Snapshot | None = None  # read once, if some root has ended
        for tree in trees:
            root = read_stat(tree.pid)
            if root is not None and root.start == tree.start and root.state not in _GONE:
                alive = True
            elif root is not None and root.start != tree.start:
                alive = False  # the pid was recycled: the root is gone, and its group too
            else:
                # The root has ended. Its group, if any is left, still holds the number
                # (a pid is not reused while a group has it): what lives in it is ours.
                table = table if table is not None else snapshot(time.monotonic())
                alive = any(
                    info.state not in _GONE and info.start >= tree.start
                    for info in table.group(tree.pgid)
                )
            if not alive:
                self.registry.discard(tree.key)
                continue
            killer = TreeKiller(tree.pid, self.grace, self.loop, start=tree.start)
            killer.start()
            self.ended.append(tree)
            waits.append(self._wait(tree, killer))
        if self.ended:
            names = ", ".join(f"{tree.task} (pid {tree.pid})" for tree in self.ended)
            count = len(self.ended)
            log.warning(
                "ending the process tree%s of %d task run%s left running by a scheduler "
                "that died: %s",
                "" if count == 1 else "s",
                count,
                "" if count == 1 else "s",
                names,
            )
        if waits:
            self._waiting = asyncio.ensure_future(_gather(waits))

    async def _wait(self, tree: Tree, killer: TreeKiller) -> None:
        await killer.wait_gone()
        self.registry.discard(tree.key)

    async def wait(self) -> None:
        """Return once every tree signalled is gone."""
        if self._waiting is not None:
            await self._waiting


async def _gather(waits: list[Any]) -> None:
    await asyncio.gather(*waits)


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a scheduler found at its start (see :func:`recover`)."""

    registry: ProcessRegistry | None  # None unless its history is a file of its own
    killer: LeftoverKiller | None  # ending what a dead scheduler left; None if nothing
    shared: bool = False  # another scheduler serves on the same history file now


def recover(path: str | None, grace: float, loop: asyncio.AbstractEventLoop) -> Recovery:
    """At a scheduler's start: its registry (the file ``path``; None: none), and the trees
    a dead scheduler left, ended."""
    if path is not None and (why := history_folder_problem(path)) is not None:
        # Anybody may create or swap the registry's name there (see the trust module).
        log.warning(
            "the process registry %s is not kept: %s; no process is signalled from it",
            path,
            why,
        )
        return Recovery(None, None)
    if path is None or not believed(
        path,
        "the process registry",
        "no process it lists is signalled, and this scheduler keeps no registry",
    ):
        return Recovery(None, None)
    registry = ProcessRegistry(path, loop)
    trees = registry.take_leftovers()
    if trees is None:
        return Recovery(None, None, shared=True)
    if not trees:
        registry.write()  # an empty or stale file is replaced by one naming its owner
        return Recovery(registry, None)
    killer = LeftoverKiller(registry, grace, loop)
    killer.start(trees)
    return Recovery(registry, killer)
