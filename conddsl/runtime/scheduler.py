"""The scheduler: starts tasks when their condition holds and ends them by timeout, end
condition or shutdown, sleeping until the next instant anything can change.

The loop keeps two heaps with lazy deletion: when each task's conditions can next
change (``next_change``) and when runs time out (one entry per instant, holding every
run due then: runs started in one cycle share it). It sleeps until the earlier of
the two tops or until an event (a run ended, a task was added, a shutdown or another
control request was made). A record written for task ``x`` wakes only the tasks
whose conditions read ``x``'s history. An idle scheduler touches no task whose time
has not come.

A session goes through three phases: *startup* (the ``on_startup`` tasks, one after
the other), *main* (the permanent tasks start, the others by their conditions) and,
once a shutdown has let every run end, *closing* (the ``on_shutdown`` tasks, one
after the other).

Control requests (``run_task``, ``terminate``, ``disable``, ``enable``, adding and
removing tasks, ``shut_down``) are safe from any thread. Made in the loop's own
thread (a coroutine beside the scheduler, an endpoint of a web app sharing its loop)
they take effect at once; from another thread they are queued and applied, in the
order they were made, at the start of the loop's next turn, which they wake.

Work is cut so that no run waits long for its termination:

- A finishing record is stamped when the run ends and written to the history
  right after the current turn of the event loop (and always before any condition
  is evaluated), so a burst of terminations is not slowed by history writes.
- Evaluating many tasks (thousands waking at once) yields to the event loop every
  ``SLICE`` seconds, and as soon as a run's timeout or a check comes due; the rest is
  evaluated at once after, at a fresh "now". Such a continuation is not a new cycle
  (``scheduler cycles`` counts wake-ups).
- A running task whose check comes due (its end condition may now hold) goes ahead of
  the other dirty tasks: end conditions are not kept behind a backlog of starts.
- While it serves, the objects that existed when it started (its tasks, conditions,
  the modules imported) are kept out of the garbage collector's way (``gc.freeze``):
  a full collection walks only what was made since, not the whole heap (in a big
  process it would hold the loop for tens of milliseconds).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import difflib
import gc
import heapq
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from conddsl import ast
from conddsl.custom import DEFAULT_RECHECK, ConditionRegistry, default_registry, known_phrase
from conddsl.errors import ConddslError, ConditionSyntaxError
from conddsl.history import History, HistoryError
from conddsl.runtime.clock import Clock, RealClock
from conddsl.runtime.conditions import (
    OWN_TASK_HINT,
    ConditionFailed,
    ConditionLike,
    Reads,
    is_true,
    next_change,
    own_task_problem,
    reads,
)
from conddsl.runtime.config import ConfigError, SchedulerConfig
from conddsl.runtime.executors import AsyncExecutor, MainExecutor, ThreadExecutor
from conddsl.runtime.flags import TerminationFlag
from conddsl.runtime.leftovers import recover
from conddsl.runtime.process_exec import ProcessExecutor
from conddsl.runtime.runs import Host, Run
from conddsl.runtime.tasks import Task, command_task, func_task, role_of

log = logging.getLogger("conddsl.runtime")

F = TypeVar("F", bound=Callable[..., Any])

# Scheduler states, in the only order they can follow.
IDLE, RUNNING, GRACEFUL, FORCED, DONE = "idle", "running", "graceful", "forced", "done"

# The phases of a session (see the module docstring).
STARTUP, MAIN, CLOSING = "startup", "main", "closing"

_SHUT = None  # the key of the shut condition among the task names

SLICE = 0.002  # seconds of condition evaluation before the loop lets other work through
# How much later than its timeout a process run whose process never came is ended (a
# burst of starts may take the fork server a while: that time is not the body's).
START_ALLOWANCE = timedelta(seconds=5)

# A run that ends this many seconds past its timeout, never asked to stop, overran it
# (less is the loop's ordinary lateness in noticing the deadline).
OVERRUN_NOTED = 0.1

# How many runs of a multilaunch task may be asked to stop and still be alive before it is
# not started any more: threads that ignore their flag do not pile up without bound.
MAX_DYING = 8

_TICK = timedelta(microseconds=1)  # the resolution of a history's timestamps


_frozen = 0  # schedulers serving with the heap frozen (see the module docstring)
_frozen_lock = threading.Lock()


_host_freezes = False  # the program froze objects itself: its heap is left to it


def _freeze_heap() -> None:
    global _frozen, _host_freezes
    with _frozen_lock:
        if _frozen == 0:
            _host_freezes = gc.get_freeze_count() > 0
        _frozen += 1
        if not _host_freezes:
            gc.freeze()  # what exists now: moved to a generation no collection walks


def _thaw_heap() -> None:
    global _frozen
    with _frozen_lock:
        _frozen -= 1
        if _frozen == 0 and not _host_freezes:
            gc.unfreeze()  # collectable again, once no scheduler serves


def _end_leftovers(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    """Cancel what still runs on ``loop`` (abandoned coroutines), waiting ``grace`` at most."""
    left = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in left:
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.wait(left, timeout=grace))
    stuck = [task for task in left if not task.done()]
    if stuck:
        log.warning("%d coroutine(s) still running when the scheduler stopped: closed", len(stuck))
    for task in stuck:
        # Closed now, not whenever the collector finds them (running their code then, at
        # a random point of the program); reported above, not again when destroyed.
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        with contextlib.suppress(BaseException):  # one that ignores GeneratorExit too
            task.get_coro().close()
    loop.run_until_complete(loop.shutdown_asyncgens())
    # As asyncio.run() does, but not forever: a to_thread() call may block for good.
    shutdown = loop.shutdown_default_executor()
    loop.run_until_complete(asyncio.wait([loop.create_task(shutdown)], timeout=grace))


class SchedulerError(ConddslError):
    """The scheduler stopped on a fatal error (a condition or the history failed)."""


class UnknownTaskError(ConddslError, KeyError):
    """No task has this name: a ``KeyError`` whose message suggests the closest name."""

    def __init__(self, name: object, known: Iterable[str]) -> None:
        known = list(known)
        close = difflib.get_close_matches(name, known, n=1) if isinstance(name, str) else []
        if close:
            hint = f"; did you mean {close[0]!r}?"
        elif not known:
            hint = "; the scheduler has no tasks"
        else:
            hint = ""
        super().__init__(f"no task named {name!r}{hint}")
        self.name = name

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


class ControlError(ConddslError, RuntimeError):
    """A control request that cannot be applied now (see :meth:`Scheduler.run_task`)."""


@dataclass
class Session:
    """The scheduler state that conditions may read (``scheduler …``, ``env``, ``param``)."""

    started_at: datetime | None = None
    cycles: int = 0  # loop iterations: each wake-up of the scheduler is one cycle
    env: str | None = None
    params: Mapping[str, object] = field(default_factory=dict)


class Scheduler:
    """Runs tasks by their conditions; the rules are in :mod:`conddsl.runtime`'s docstring."""

    def __init__(
        self,
        config: SchedulerConfig | Mapping[str, Any] | None = None,
        *,
        clock: Clock | None = None,
        rules: Mapping[str, ast.Node | str] | None = None,
    ) -> None:
        from conddsl.runtime.customs import parse_rules

        self.config = SchedulerConfig.load(config)  # type: ignore[arg-type]
        self.clock: Clock = clock if clock is not None else RealClock()
        self.history: History = self.config.history
        self.session = Session(env=self.config.env, params=self.config.params)
        self.tasks: dict[str, Task] = {}
        #: The scheduler's own custom conditions (``app.cond``), found by its conditions.
        self.registry = ConditionRegistry()
        #: Named conditions its conditions may use (``load_rules`` gives such a mapping).
        self.rules = parse_rules(rules)
        self.state = IDLE
        self.fatal_error: BaseException | None = None
        #: Why the scheduler stops, once it does: (cause, what happened); the cause is
        #: ``shut_cond``, ``shut_down`` (the API), ``interrupt`` (a signal), ``forced``
        #: or ``fatal error``.
        self.stopped_by: tuple[str, str] | None = None
        self._conditions: Any = None  # a SchedulerConditions, made on first use
        self._shut_cond: ConditionLike | None = None
        self._requests: list[tuple[str, Any]] = []  # control requests from other threads
        # Reentrant: a signal handler calling shut_down() runs in the thread it interrupts.
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake = asyncio.Event()
        self._seq = itertools.count()
        self._checks: list[tuple[datetime, int, str | None]] = []
        self._check_at: dict[str | None, datetime] = {}
        self._deadlines: list[datetime] = []  # a heap of the instants in _due
        self._due: dict[datetime, list[Run]] = {}  # runs by the instant they time out
        self._unwritten: list[tuple[Run, str, datetime, str | None, str | None]] = []
        self._ended_at: dict[str, datetime] = {}  # when each task's last run ended
        self._hold = getattr(self.clock, "hold", None)  # clocks without them never jump
        self._release = getattr(self.clock, "release", None)
        self._dirty: dict[str | None, None] = {}  # an ordered set
        # Tasks with a live run whose check came due (an end condition may now hold):
        # evaluated before the other dirty tasks, however many wait.
        self._urgent: dict[str | None, None] = {}  # an ordered set
        self._watchers: dict[str, set[str | None]] = {}
        self._watch_all: set[str | None] = set()
        self._watch_cycles: set[str | None] = set()
        self._runs: dict[str, dict[str, Run]] = {}
        self._active = 0
        self._process_runs = 0
        self._permanent_runs = 0
        self._waiting_slot: dict[str, None] = {}  # an ordered set
        self._background: set[asyncio.Task[None]] = set()
        self._executors: dict[str, Any] = {}
        # Every task by name, including those registered from another thread and not
        # applied yet: what control requests are checked against.
        self._known: dict[str, Task] = {}
        self._phase: str | None = None
        self._manual: dict[str, int] = {}  # manual starts asked for and not made yet
        self._permanent_pending: dict[str, None] = {}  # permanent tasks not started yet
        self._role_queue: collections.deque[Task] = collections.deque()
        self._role_run: Run | None = None  # the on_startup or on_shutdown run going on
        if self.config.shut_cond is not None:
            self._resolve_shut_cond(defer_unknown=True)

    # ---------------------------------------------------------------- conditions

    def cond(
        self,
        phrase: str,
        func: Callable[..., object] | None = None,
        *,
        recheck: timedelta | float | str = DEFAULT_RECHECK,
    ) -> Any:
        """Register a custom condition for this scheduler's conditions.

        ``@app.cond("holiday")`` decorates the function (returned unchanged);
        ``app.cond("file exists", func, recheck="30 seconds")`` registers it directly.
        Register it before the tasks whose conditions use it.
        """

        def register(function: F) -> F:
            self.registry.register(phrase, function, recheck=recheck)
            return function

        return register if func is None else register(func)  # type: ignore[arg-type]

    def recheck(self, phrase: str) -> None:
        """Custom condition ``phrase`` may have changed: the conditions that use it are looked
        at again at once (not at their ``recheck`` interval). Safe from any thread;
        ``registry.recheck(phrase)`` does the same for every scheduler serving with it."""
        from conddsl.runtime.customs import RegistryChain

        self._heard(known_phrase(RegistryChain((self.registry, default_registry)), phrase))

    def _heard(self, phrase: str) -> None:
        with self._lock:
            if self._queue_if_elsewhere("recheck", phrase):
                return
            self._apply("recheck", phrase)

    def _users_of(self, phrase: str) -> list[str | None]:
        """The keys (task names, _SHUT) whose conditions have custom part ``phrase``."""
        found: list[str | None] = []
        if phrase in getattr(self._shut_cond, "customs", ()):
            found.append(_SHUT)
        for name, task in self.tasks.items():
            if any(phrase in getattr(cond, "customs", ()) for cond in (task.start, task.end)):
                found.append(name)
        return found

    def _compile(self, value: object, what: str) -> ConditionLike:
        """A condition setting as this scheduler reads it (see conddsl.runtime.customs)."""
        from conddsl.compile import Condition
        from conddsl.runtime.customs import SchedulerConditions

        if isinstance(value, str | Condition):
            if self._conditions is None:
                self._conditions = SchedulerConditions(
                    self.config.timezone, self.registry, self.rules
                )
            return self._conditions.compile(value)  # type: ignore[return-value]
        if isinstance(value, ConditionLike):
            return value
        raise TypeError(f"{what} must be condition text or a Condition, not {type(value).__name__}")

    def _resolve_shut_cond(self, *, defer_unknown: bool = False) -> None:
        """Compile the shut condition; names unknown when the scheduler is made may be
        registered (``app.cond``) before it starts: they are resolved then."""
        try:
            self._shut_cond = self._compile(self.config.shut_cond, "shut_cond")
        except ConditionSyntaxError as exc:
            if defer_unknown and exc.code == "E120":
                return
            raise
        node = getattr(self._shut_cond, "ast", None)
        if isinstance(node, ast.Node):
            why = own_task_problem(node, getattr(self._shut_cond, "rules", None) or {})
            if why is not None:
                raise ConfigError(f"shut_cond {why}: {OWN_TASK_HINT}")
        self._index(_SHUT, reads(self._shut_cond))

    # ---------------------------------------------------------------- registration

    def task(
        self,
        start_cond: object = None,
        *,
        name: str | None = None,
        end_cond: object = None,
        timeout: object = None,
        execution: str | None = None,
        multilaunch: bool = False,
        disabled: bool = False,
        permanent: bool = False,
        on_startup: bool = False,
        on_shutdown: bool = False,
    ) -> Callable[[F], F]:
        """Register the decorated function as a task; it is returned unchanged.

        A task with ``permanent``, ``on_startup`` or ``on_shutdown`` is started by the
        scheduler itself and takes no start condition.
        """
        role = role_of(permanent, on_startup, on_shutdown)

        def register(func: F) -> F:
            task = func_task(
                func,
                start_cond,
                config=self.config,
                name=name,
                end_cond=end_cond,
                timeout=timeout,
                execution=execution,
                multilaunch=multilaunch,
                disabled=disabled,
                role=role,
                compile_cond=self._compile,
            )
            self._add(task)
            return func

        return register

    def command_task(
        self,
        start_cond: object = None,
        *,
        argv: Sequence[str] | str,
        name: str | None = None,
        end_cond: object = None,
        timeout: object = None,
        multilaunch: bool = False,
        disabled: bool = False,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        shell: bool = False,
        permanent: bool = False,
        on_startup: bool = False,
        on_shutdown: bool = False,
    ) -> Task:
        """Register a program run without a shell (``shell=True``: one string for /bin/sh -c).

        ``env`` replaces the inherited environment.
        """
        task = command_task(
            argv,
            start_cond,
            config=self.config,
            name=name,
            end_cond=end_cond,
            timeout=timeout,
            multilaunch=multilaunch,
            disabled=disabled,
            cwd=cwd,
            env=env,
            shell=shell,
            role=role_of(permanent, on_startup, on_shutdown),
            compile_cond=self._compile,
        )
        self._add(task)
        return task

    def _add(self, task: Task) -> None:
        with self._lock:
            if task.name in self._known:
                raise ConfigError(f"a task named {task.name!r} already exists")
            if task.on_startup and self._loop is not None:
                raise ConfigError(
                    f"task {task.name!r}: on_startup tasks are registered before the"
                    " scheduler starts"
                )
            self._known[task.name] = task
            if self._queue_if_elsewhere("add", task):
                return
            self._register(task)

    def _register(self, task: Task) -> None:
        self.tasks[task.name] = task
        self._index(task.name, task.reads)
        if self._phase == MAIN:  # added while the scheduler runs
            if task.permanent:
                self._permanent_pending[task.name] = None
            self._touch(task.name)

    def _unregister(self, task: Task) -> None:
        name = task.name
        if self.tasks.get(name) is not task:
            return
        del self.tasks[name]
        found = task.reads
        if found.any_task:
            self._watch_all.discard(name)
        for other in (*found.tasks, name):
            watchers = self._watchers.get(other)
            if watchers is not None:
                watchers.discard(name)
                if not watchers:
                    del self._watchers[other]
        if found.cycles:
            self._watch_cycles.discard(name)
        self._check_at.pop(name, None)
        self._waiting_slot.pop(name, None)
        self._manual.pop(name, None)
        self._permanent_pending.pop(name, None)
        self._dirty.pop(name, None)
        self._urgent.pop(name, None)
        if self._role_queue and task in self._role_queue:
            self._role_queue.remove(task)
        for run in list(self._runs.get(name, {}).values()):
            if run.task is task and run.task.terminable:
                self._terminate(run, "forced", "the task was removed (remove_task())")

    def _index(self, key: str | None, found: Reads) -> None:
        if found.any_task:
            self._watch_all.add(key)
        for name in found.tasks:
            self._watchers.setdefault(name, set()).add(key)
        if found.own and key is not None:
            self._watchers.setdefault(key, set()).add(key)
        if found.cycles:
            self._watch_cycles.add(key)

    def _touch(self, key: str | None) -> None:
        self._dirty[key] = None
        self._wake.set()

    # ---------------------------------------------------------------- control

    def run_task(self, name: str) -> None:
        """Start a run of ``name`` now, whatever its start condition (even if disabled).

        The run's ``run`` record has reason ``manual``; the run obeys the task's
        timeout and end condition like any other (started while the end condition
        holds, it is terminated at once, reason ``end_cond``). Asked before the
        scheduler starts, the run starts once the startup tasks are done.

        Raises :class:`UnknownTaskError` for an unknown name, and :class:`ControlError`
        when the task is running and not ``multilaunch`` (or a manual run of it is
        already asked for) or when the scheduler is shutting down or done.
        """
        with self._lock:
            task = self._lookup(name)
            if self.state != RUNNING and self.state != IDLE:
                now = "has stopped" if self.state == DONE else "is shutting down"
                raise ControlError(f"cannot run task {name!r}: the scheduler {now}")
            if not task.multilaunch:
                if name in self._runs:
                    raise ControlError(
                        f"task {name!r} is running (and not multilaunch): not started again"
                    )
                asked = self._manual.get(name) or ("run", name) in self._requests
                if asked:
                    raise ControlError(f"a run of task {name!r} is already asked for")
            if self._queue_if_elsewhere("run", name):
                return
            self._apply("run", name)

    def terminate(self, name: str) -> None:
        """Terminate every running run of ``name`` now: reason ``forced``.

        A manual run asked for and not started yet is dropped. Runs of a ``main``
        task cannot be terminated (:class:`ControlError`).
        """
        with self._lock:
            task = self._lookup(name)
            if not task.terminable:
                raise ControlError(
                    f"task {name!r} runs in the main execution, which cannot be terminated"
                )
            if self._queue_if_elsewhere("terminate", name):
                return
            self._apply("terminate", name)

    def disable(self, name: str) -> None:
        """Stop starting ``name`` by its condition; its running runs go on (see ``terminate``)."""
        self._set_disabled(name, True)

    def enable(self, name: str) -> None:
        """Let ``name`` start by its condition again; it is looked at at once."""
        self._set_disabled(name, False)

    def _set_disabled(self, name: str, disabled: bool) -> None:
        with self._lock:
            task = self._lookup(name)
            task.disabled = disabled
            if self._queue_if_elsewhere("touch", name):
                return
            self._apply("touch", name)

    def remove_task(self, name: str) -> Task:
        """Forget ``name`` and return its task; its running runs are terminated (``forced``).

        Its records stay in the history. A ``main`` run cannot be terminated, but none
        is running when this is applied: main runs hold the scheduler's thread.
        """
        with self._lock:
            task = self._lookup(name)
            del self._known[name]
            if not self._queue_if_elsewhere("remove", task):
                self._apply("remove", task)
            return task

    def _lookup(self, name: str) -> Task:
        task = self._known.get(name)
        if task is None:
            raise UnknownTaskError(name, self._known)
        return task

    def _queue_if_elsewhere(self, op: str, arg: Any) -> bool:
        """Queue the request for the loop if it runs in another thread; called with the lock.

        Otherwise (before serve(), after it, or in the loop's own thread) the caller
        applies it at once.
        """
        loop = self._loop
        if loop is None or self.state == DONE or threading.get_ident() == self._loop_thread:
            return False
        self._requests.append((op, arg))
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._wake.set)
        return True

    def _apply(self, op: str, arg: Any) -> None:
        """Apply a control request, in the loop's thread (or when no loop runs)."""
        serving = self._loop is not None and self.state != DONE
        if op == "add":
            self._register(arg)
        elif op == "remove":
            self._unregister(arg)
        elif op == "run":
            task = self.tasks.get(arg)
            if task is None or self.state not in (IDLE, RUNNING):
                log.warning("manual run of %r not started: the task or the scheduler is gone", arg)
                return
            self._manual[arg] = self._manual.get(arg, 0) + 1
            if serving:
                self._touch(arg)
        elif op == "terminate":
            self._manual.pop(arg, None)
            for run in list(self._runs.get(arg, {}).values()):
                self._terminate(run, "forced", "terminate() was called")
        elif op == "touch":
            if serving and arg in self.tasks:
                self._touch(arg)
        elif op == "recheck":
            if serving:
                for key in self._users_of(arg):
                    self._touch(key)
        else:  # pragma: no cover - every op is listed above
            raise ValueError(op)

    # ---------------------------------------------------------------- running

    def run(self) -> None:
        """Run until shut down (blocking); inside a running event loop use ``await serve()``."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("an event loop is running here: use 'await scheduler.serve()'")
        # Not asyncio.run(): it would wait forever for a coroutine that was abandoned
        # because it swallows its cancellation.
        loop = asyncio.new_event_loop()
        try:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.serve())
        finally:
            try:
                _end_leftovers(loop, self.config.kill_grace.total_seconds())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def serve(self) -> None:
        """Run in the current event loop until shut down; raise SchedulerError after a fatal one."""
        if self.state != IDLE:
            raise RuntimeError("a scheduler runs once; make a new one")
        if self.config.shut_cond is not None and self._shut_cond is None:
            self._resolve_shut_cond()  # names registered since the scheduler was made
        loop = asyncio.get_running_loop()
        with self._lock:  # from here on, other threads queue their requests
            self._loop = loop
            self._loop_thread = threading.get_ident()
        for registry in (self.registry, default_registry):
            registry.listen(self._heard)
        self._wake = asyncio.Event()
        # A store writing in the background (its file locked) reports a failure here.
        self.history.watch_failures(lambda e: loop.call_soon_threadsafe(self._history_failed, e))
        grace = self.config.kill_grace.total_seconds()
        # Processes a scheduler that died left running are ended first (before its
        # runs are marked crash); this one's are listed while they live.
        recovery = recover(self.history, grace, loop)
        procs, leftovers = recovery.registry, recovery.killer
        host = Host(
            loop,
            self._finish,
            grace,
            self._spawn,
            procs,
            stopping=lambda: self.state != RUNNING,
            unhold=self._unhold,
            began=self._began,
        )
        processes = ProcessExecutor(host)  # programs too: both go by the fork server
        self._executors = {
            "main": MainExecutor(host),
            "async": AsyncExecutor(host),
            "thread": ThreadExecutor(host),
            "process": processes,
            "command": processes,
        }
        now = self.clock.now()
        self.session.started_at = now
        self.state = RUNNING
        self._phase = STARTUP
        self._role_queue.extend(task for task in self.tasks.values() if task.on_startup)
        if self._shut_cond is not None:
            self._dirty[_SHUT] = None
        try:
            if not recovery.shared:  # a scheduler serving now has open runs, not crashed
                self.history.mark_crashed(now)  # runs left open by a scheduler that died
        except HistoryError as exc:
            self._fail(exc)
        _freeze_heap()
        try:
            await self._warm()
            await self._cycle()
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            if not cancelled and self.fatal_error is None:
                self.fatal_error = exc
            self._force(
                "forced" if cancelled else "shutdown",
                f"the scheduler stopped: {exc!r}",
                "forced" if cancelled else "fatal error",
            )
            await self._drain()
            raise
        finally:
            try:
                self._write_records()
            finally:
                self.state = DONE
            try:
                if leftovers is not None:
                    await leftovers.wait()
            finally:
                await self._executors["process"].close()
                for registry in (self.registry, default_registry):
                    registry.unlisten(self._heard)
                if procs is not None:
                    procs.write()  # every tree has ended: the file goes
                _thaw_heap()
        if self.fatal_error is not None:
            raise SchedulerError(f"the scheduler stopped: {self.fatal_error}") from self.fatal_error

    async def _warm(self) -> None:
        """Have the fork server (for process and command tasks) up before anything starts,
        unless a shutdown is asked meanwhile: a task module slow to import must not hold
        up a Ctrl-C (nothing has started yet, so nothing needs the server)."""
        # Listed now: tasks may be added while it warms.
        tasks = [task for task in self.tasks.values() if task.uses_process]
        warming = asyncio.ensure_future(self._executors["process"].warm(tasks))
        while not warming.done():
            with self._lock:
                shut = any(op == "shut" for op, _ in self._requests)
            if shut:
                warming.cancel()
                return
            waking = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({warming, waking}, return_when=asyncio.FIRST_COMPLETED)
            waking.cancel()
            self._wake.clear()  # (the cycle applies every request when it begins)
        warming.result()

    def shut_down(
        self, force: bool = False, *, why: str | None = None, cause: str = "shut_down"
    ) -> None:
        """Shut down gracefully; ``force=True`` or a second call terminates every run at once.

        ``why`` replaces the words the records and the log give for it, and ``cause``
        (see :attr:`stopped_by`) says who asked (``install_signal_handlers``: ``interrupt``).
        """
        with self._lock:
            self._requests.append(("shut", (force, why, cause)))
        loop = self._loop
        if loop is not None and self.state != DONE:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake.set)

    @property
    def running_runs(self) -> list[Run]:
        """The runs not finished yet."""
        return [run for runs in self._runs.values() for run in runs.values()]

    def task_state(self, name: str) -> str:
        """``"running"`` (a run is alive), ``"terminating"`` (every live run was asked to stop
        and its work has not ended yet), ``"pending"`` (a manual run is asked for and not
        started yet), ``"disabled"`` or ``"idle"``; safe from any thread."""
        with self._lock:
            task = self._lookup(name)
            pending = self._manual.get(name) or ("run", name) in self._requests
        runs = list(self._runs.get(name, {}).values())
        if runs:
            if all(run.state == "terminating" for run in runs):
                return "terminating"
            return "running"
        if pending:
            return "pending"
        return "disabled" if task.disabled else "idle"

    @property
    def phase(self) -> str | None:
        """``"startup"``, ``"main"`` or ``"closing"`` while serving (None before)."""
        return self._phase

    # ---------------------------------------------------------------- the loop

    async def _cycle(self) -> None:
        sliced = False  # the last pass stopped at its time slice, with tasks left to evaluate
        while True:
            self._wake.clear()
            now = self.clock.now()
            if not sliced:
                self.session.cycles += 1
            self._apply_requests()
            self._due_timeouts(now)
            self._due_checks(now, new_cycle=not sliced)
            if self._phase == STARTUP:
                await self._step_startup(now)
            sliced = await self._evaluate_dirty(now)
            if self.state == GRACEFUL and self._permanent_runs == self._active > 0:
                self._end_permanent()  # only permanent runs are left
            if self.state in (GRACEFUL, FORCED) and self._active == 0:
                if await self._step_closing():
                    continue  # an on_shutdown run is going on
                return
            if self._dirty or self._urgent:  # sliced, or deferred: dirtied again
                await asyncio.sleep(0)
                continue
            await self.clock.sleep_until(self._next_deadline(), self._wake)

    def _apply_requests(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        for op, arg in requests:
            if op != "shut":
                self._apply(op, arg)
            elif self._phase == CLOSING:
                self._cut_closing()
            else:
                force, why, cause = arg
                if force:
                    self._force("forced", why or "shut_down(force=True) was called", "forced")
                elif self.state == GRACEFUL:
                    self._force("forced", why or "shut_down() was called a second time", "forced")
                else:
                    self._begin_shutdown(why or "shut_down() was called", cause)

    # ---------------------------------------------------------------- phases

    async def _step_startup(self, now: datetime) -> None:
        """Start the next on_startup task once the one before has ended; then the main phase."""
        while self._phase == STARTUP:
            run = self._role_run
            if run is not None and not run.finished:
                return
            self._role_run = None
            self._write_records()  # the shut condition may read the records of the last one
            if self._role_queue and self.state == RUNNING and _SHUT in self._dirty:
                # Nothing starts once the shut condition is true: startup tasks neither.
                del self._dirty[_SHUT]
                self._evaluate_shut(now)
            if self.state != RUNNING or not self._role_queue:
                self._role_queue.clear()  # a shutdown during startup skips the rest
                self._enter_main()
                return
            task = self._role_queue.popleft()
            if not task.disabled:
                self._role_run = await self._start_role(task)

    def _enter_main(self) -> None:
        self._phase = MAIN
        if self.state != RUNNING:
            return
        for name, task in self.tasks.items():
            if task.permanent:
                self._permanent_pending[name] = None
        if self._shut_cond is not None:
            self._dirty[_SHUT] = None
        self._dirty.update(dict.fromkeys(self.tasks))

    async def _step_closing(self) -> bool:
        """Start the next on_shutdown task; False once none is left (the scheduler stops)."""
        if self._phase != CLOSING:
            self._phase = CLOSING
            self._role_queue = collections.deque(
                task for task in self.tasks.values() if task.on_shutdown and not task.disabled
            )
        while self._role_queue:
            run = await self._start_role(self._role_queue.popleft())
            if not run.finished:
                return True
        return False

    async def _start_role(self, task: Task) -> Run:
        """Start an on_startup or on_shutdown run (outside the process limit: nothing else runs)."""
        run, awaitable = self._start(task, self.clock.now())
        if awaitable is not None:
            await awaitable
        return run

    def _cut_closing(self) -> None:
        """A shut_down() while the on_shutdown tasks run: end the one running, skip the rest."""
        if self._role_queue:
            skipped = ", ".join(task.name for task in self._role_queue)
            log.warning("shut down again: on_shutdown tasks not run: %s", skipped)
            self._role_queue.clear()
        if self.state == GRACEFUL:
            self.state = FORCED
            self._stopping()
        for run in self.running_runs:
            if run.task.terminable:
                self._terminate(run, "forced", "shut_down() was called during the shutdown tasks")

    def _end_permanent(self) -> None:
        for run in self.running_runs:
            if run.task.permanent:
                self._terminate(run, "shutdown", "the scheduler is shutting down")

    def _begin_shutdown(self, why: str, cause: str = "shut_cond") -> None:
        if self.state != RUNNING:
            return
        if self.config.instant_shutdown:
            self._force("shutdown", why, cause)
        else:
            log.info("shutting down gracefully: %s", why)
            self.stopped_by = (cause, why)
            self.state = GRACEFUL
            self._stopping()

    def _force(self, reason: str, why: str, cause: str) -> None:
        if self.state in (FORCED, DONE):
            return
        log.info("shutting down now (%s): %s", reason, why)
        if self.stopped_by is None or cause in ("forced", "fatal error"):
            self.stopped_by = (cause, why)
        self.state = FORCED
        self._stopping()
        for run in self.running_runs:
            if run.task.terminable:
                self._terminate(run, reason, why)

    def _stopping(self) -> None:
        """Tell the executors the scheduler stops (thread runs past their grace are abandoned)."""
        for executor in self._executors.values():
            hook = getattr(executor, "shutting_down", None)
            if hook is not None:
                hook()

    def _fail(self, exc: BaseException) -> None:
        """A fatal error: terminate everything (reason ``shutdown``); serve() raises it."""
        if self.fatal_error is not None:
            log.error("another error while stopping: %s", exc)
            return
        self.fatal_error = exc
        log.error("fatal error, shutting down: %s", exc)
        self._force("shutdown", f"fatal error: {exc}", "fatal error")

    def _history_failed(self, exc: HistoryError) -> None:
        """The store gave up on records it had accepted (its file stayed locked): fatal."""
        self._fail(exc)
        self._wake.set()

    def _due_timeouts(self, now: datetime) -> None:
        deadlines, due = self._deadlines, self._due
        texts: dict[Task, str] = {}
        while deadlines and deadlines[0] <= now:
            deadline = heapq.heappop(deadlines)
            for run in due.pop(deadline):
                task = run.task
                if run.finished or run.reason is not None or task.timeout is None:
                    continue
                if run.deadline != deadline:
                    continue  # moved later: its process began after its start (_began)
                text = texts.get(task)
                if text is None:
                    text = texts[task] = f"ran longer than its timeout {task.timeout}"
                self._terminate(run, "timeout", text)

    def _due_checks(self, now: datetime, *, new_cycle: bool = True) -> None:
        checks, runs = self._checks, self._runs
        while checks and checks[0][0] <= now:
            at, _, key = heapq.heappop(checks)
            if self._check_at.get(key) == at:  # else a stale entry: lazy deletion
                del self._check_at[key]
                if key in runs:  # its end condition may hold: ahead of any backlog
                    self._urgent[key] = None
                else:
                    self._dirty[key] = None
        if new_cycle:
            for key in self._watch_cycles:
                self._dirty[key] = None

    def _next_deadline(self) -> datetime | None:
        checks, deadlines, due = self._checks, self._deadlines, self._due
        while checks and self._check_at.get(checks[0][2]) != checks[0][0]:
            heapq.heappop(checks)
        while deadlines:
            bucket = due[deadlines[0]]
            if not bucket[0].finished:
                break
            live = [run for run in bucket if not run.finished]  # each run is dropped once
            if live:
                due[deadlines[0]] = live
                break
            del due[heapq.heappop(deadlines)]
        times = []
        if checks:
            times.append(checks[0][0])
        if deadlines:
            times.append(deadlines[0])
        return min(times) if times else None

    def _schedule(self, key: str | None, at: datetime | None) -> None:
        if at is None:
            self._check_at.pop(key, None)
        elif self._check_at.get(key) != at:
            self._check_at[key] = at
            heapq.heappush(self._checks, (at, next(self._seq), key))

    async def _evaluate_dirty(self, now: datetime) -> bool:
        """Evaluate the dirty keys; True if it stopped at its time slice with some left.

        The shut condition goes first (nothing starts at the instant it turns true),
        then the urgent keys (running tasks whose check came due: their end conditions
        are not kept behind a backlog of start conditions), then the rest in order.
        """
        seen: set[str | None] = set()
        deferred: dict[str | None, None] = {}
        dirty, urgent = self._dirty, self._urgent
        ends = time.perf_counter() + SLICE
        soonest = self._deadlines[0] if self._deadlines else None
        if self._checks and (soonest is None or self._checks[0][0] < soonest):
            soonest = self._checks[0][0]
        if soonest is not None:  # what comes due meanwhile is not kept waiting for the slice
            ends = min(ends, time.perf_counter() + (soonest - now).total_seconds())
        sliced = False
        if self._unwritten:  # conditions see every record stamped before they are evaluated
            self._write_records()
        while dirty or urgent:
            if _SHUT in dirty:
                key = _SHUT
                del dirty[key]
            elif urgent:
                key = next(iter(urgent))
                del urgent[key]
                dirty.pop(key, None)
            else:
                key = next(iter(dirty))
                del dirty[key]
            if key in seen:
                deferred[key] = None
                continue
            seen.add(key)
            if key is _SHUT:
                self._evaluate_shut(now)
            elif key in self.tasks:
                await self._evaluate(self.tasks[key], now)
            if self._unwritten:
                self._write_records()
            if (dirty or urgent) and time.perf_counter() > ends:
                sliced = True
                break
        dirty.update(deferred)
        return sliced

    def _evaluate_shut(self, now: datetime) -> None:
        cond = self._shut_cond
        if cond is None or self.state != RUNNING:
            return
        context = self._context(None)
        if self._holds(cond, "shut_cond", now, context, on_error=False):
            self._begin_shutdown(f"the shut condition {str(cond)!r} became true")
            return
        self._schedule(_SHUT, self._next(cond, "shut_cond", now, context))

    async def _evaluate(self, task: Task, now: datetime) -> None:
        if self._phase == STARTUP:
            return  # every task is looked at when the main phase begins
        name = task.name
        context = self._context(name)
        ending = False
        why = ""
        if task.end is not None and self._watches_end(task):
            where = f"end condition of task {name!r}"
            ending = self._holds(task.end, where, now, context, on_error=True)
            if ending:
                why = f"its end condition {str(task.end)!r} became true"
                for run in list(self._runs.get(name, {}).values()):
                    self._terminate(run, "end_cond", why)
        if self.state == RUNNING:
            if name in self._manual:
                await self._start_manual(task, now, why if ending else None)
            elif task.permanent:
                await self._start_permanent(task, now)
            # A task is not started while its end condition holds: it would be ended at once.
            elif (
                not task.disabled
                and not ending
                and (task.multilaunch or name not in self._runs)
                and not self._dying_too_many(task)
            ):
                where = f"start condition of task {name!r}"
                if self._holds(task.start, where, now, context, on_error=False):
                    await self._launch(task, now)
        self._schedule(name, self._next_check(task, now, context))

    def _dying_too_many(self, task: Task) -> bool:
        """A multilaunch task whose runs asked to stop pile up (threads that ignore their
        flag) is not started again until one of them ends."""
        runs = self._runs.get(task.name)
        if not runs or len(runs) < MAX_DYING:
            return False
        dying = sum(1 for run in runs.values() if run.reason is not None)
        if dying < MAX_DYING:
            return False
        log.warning(
            "task %r: %d of its runs were asked to stop and have not ended; it is not started"
            " again until one ends",
            task.name,
            dying,
        )
        return True

    def _watches_end(self, task: Task) -> bool:
        """Whether the end condition matters: a run is alive, or one may start."""
        if task.name in self._runs:
            return True
        return self.state == RUNNING and (not task.disabled or task.name in self._manual)

    async def _launch(self, task: Task, now: datetime, reason: str | None = None) -> Run | None:
        """Start a run, or None when it must wait for a process slot (max_process_count)."""
        if task.uses_process and not self._process_slot():
            self._waiting_slot[task.name] = None
            return None
        run, awaitable = self._start(task, now, reason=reason)
        if awaitable is not None:
            await awaitable
        return run

    async def _start_permanent(self, task: Task, now: datetime) -> None:
        """Start a permanent task once per session (once enabled, if it is disabled)."""
        name = task.name
        if name not in self._permanent_pending or task.disabled or name in self._runs:
            return
        if await self._launch(task, now) is not None:
            del self._permanent_pending[name]

    async def _start_manual(self, task: Task, now: datetime, ending: str | None) -> None:
        """Make the manual starts asked for (``run_task``); ``ending``: why the end condition
        ends them at once."""
        name = task.name
        count = self._manual.pop(name)
        if task.permanent:
            self._permanent_pending.pop(name, None)  # started now: not started again
        while count:
            if not task.multilaunch and name in self._runs:
                log.warning("task %r is running: a manual run of it was not started", name)
                return
            run = await self._launch(task, now, reason="manual")
            if run is None:  # waits for a process slot
                self._manual[name] = count
                return
            count -= 1
            if ending is not None:
                self._terminate(run, "end_cond", ending)

    def _next_check(self, task: Task, now: datetime, context: dict[str, Any]) -> datetime | None:
        times = []
        # A running task that cannot start again needs no start check: its finish
        # record looks at it again (so a long run costs nothing per cycle). Tasks that
        # have a role, or are disabled, are not started by their condition.
        name = task.name
        startable = task.role is None and not task.disabled
        if self.state == RUNNING and startable and (task.multilaunch or name not in self._runs):
            times.append(self._next(task.start, f"start condition of {name!r}", now, context))
        if task.end is not None and self._watches_end(task):
            times.append(self._next(task.end, f"end condition of {name!r}", now, context))
        found = [at for at in times if at is not None]
        return min(found) if found else None

    def _context(self, name: str | None) -> dict[str, Any]:
        return {"task": name, "history": self.history, "session": self.session}

    def _holds(
        self,
        cond: ConditionLike,
        where: str,
        now: datetime,
        context: dict[str, Any],
        *,
        on_error: bool,
    ) -> bool:
        try:
            return is_true(cond, where, now, **context)
        except ConditionFailed as exc:
            if self.config.silence_cond_check:
                log.debug("%s (silenced: taken as %s)", exc, on_error)
            else:
                self._fail(exc)
            return on_error

    def _next(
        self, cond: ConditionLike, where: str, now: datetime, context: dict[str, Any]
    ) -> datetime | None:
        try:
            return next_change(cond, where, now, **context)
        except ConditionFailed as exc:
            if not self.config.silence_cond_check:
                self._fail(exc)
            return None

    def _process_slot(self) -> bool:
        limit = self.config.max_process_count
        return limit is None or self._process_runs < limit

    # ---------------------------------------------------------------- runs

    def _start(
        self, task: Task, now: datetime, *, reason: str | None = None
    ) -> tuple[Run, Awaitable[None] | None]:
        """Start a run (``reason``: on its ``run`` record); the awaitable is a main coroutine's."""
        executor = self._executors[task.execution]
        new_flag = getattr(executor, "new_flag", TerminationFlag)
        # Records in causal order: every finishing record stamped so far is written
        # first, and a run starts after the instant its task's last run ended (a
        # microsecond later at least: a history orders ties by action, not arrival).
        self._write_records()
        ended = self._ended_at.get(task.name)
        if ended is not None and ended >= now:
            now = ended + _TICK
        run = Run(task, uuid.uuid4().hex, now, flag=new_flag(), manual=reason == "manual")
        # Its timeout counts from now, or, for a process, from when the process exists
        # (which its run record says: _began); a process that never comes is still
        # timed out, START_ALLOWANCE later. Virtual time does not jump until it comes.
        if getattr(executor, "records_when_started", False):
            run.pending = True
            self._arm_timeout(run, now + START_ALLOWANCE)
            if self._hold is not None:
                self._hold()
        else:
            self._arm_timeout(run, now)
        self._runs.setdefault(task.name, {})[run.run_id] = run
        self._active += 1
        if task.uses_process:
            self._process_runs += 1
        if task.permanent:
            self._permanent_runs += 1
        if not run.pending:
            self._record(run, "run", now, reason=reason, own_change=False)
        if run.reason is not None:  # recording it failed fatally: it never starts
            self._finish(run, "terminate", "not started")
            return run, None
        try:
            awaitable = executor.start(run)
        except Exception as exc:  # the function could not even be called
            self._finish(run, "fail", f"could not start: {exc}")
            return run, None
        run.launched = True
        return run, awaitable

    def _arm_timeout(self, run: Run, now: datetime) -> None:
        """Time the run out at ``now`` + its timeout (runs due at one instant share it)."""
        if run.task.timeout is None:
            return
        deadline = run.deadline = now + run.task.timeout
        bucket = self._due.get(deadline)
        if bucket is None:
            self._due[deadline] = [run]
            heapq.heappush(self._deadlines, deadline)
        else:
            bucket.append(run)

    def _began(self, run: Run) -> None:
        """A pending run's process exists: its run record, stamped now; its timeout."""
        if not run.pending:
            return
        run.pending = False
        if self._release is not None:
            self._release()
        # Never before the instant _start chose: after its task's last run ended.
        now = run.started = max(self.clock.now(), run.started)
        if run.reason is None:
            self._arm_timeout(run, now)
        self._record(run, "run", now, reason="manual" if run.manual else None, own_change=False)
        # Its end condition may read how long it has run: when it next changes, from now.
        name = run.task.name
        if name in self.tasks:
            self._schedule(name, self._next_check(run.task, now, self._context(name)))
        self._wake.set()  # a new deadline

    def _terminate(self, run: Run, reason: str, message: str) -> None:
        if run.finished or run.reason is not None:
            return
        run.reason, run.message = reason, message
        if not run.launched:
            return  # _start sees the reason and does not launch it
        executor = self._executors[run.task.execution]
        if executor.holds_clock and self._hold is not None:
            run.held = True
            self._hold()
        executor.terminate(run)

    def _finish(self, run: Run, action: str, message: str | None) -> None:
        """Record how a run ended: exactly once, whatever reports it."""
        if run.finished:
            return
        self._began(run)  # never got a process: its run record still comes first
        run.finished = True
        self._unhold(run)
        task = run.task
        runs = self._runs[task.name]
        del runs[run.run_id]
        if not runs:
            del self._runs[task.name]
        self._active -= 1
        if task.uses_process:
            self._process_runs -= 1
            self._dirty.update(self._waiting_slot)
            self._waiting_slot.clear()
        if task.permanent:
            self._permanent_runs -= 1
            if run.reason is None and self.state == RUNNING:
                log.warning("permanent task %r ended (%s); it is not restarted", task.name, action)
        reason = None
        if run.reason is not None:  # we asked it to stop: whatever it did, it was terminated
            action, reason = "terminate", run.reason
            message = "; ".join(text for text in (run.message, message) if text) or None
        elif action == "terminate":
            reason = "task"  # it raised TaskTerminationException unasked
        # Stamped now, written after this turn of the loop (see the module docstring).
        stamp = max(self.clock.now(), run.started)  # (a start may be a tick ahead of now)
        self._ended_at[task.name] = stamp
        if run.reason is None and run.deadline is not None and stamp > run.deadline:
            message = self._overran(run, stamp, message)
        self._unwritten.append((run, action, stamp, reason, message))
        if action != "fail":
            run.traceback = None  # (a terminated run's failure is not its outcome)
        if self.state == DONE or self._loop is None:
            self._write_records()  # nothing would come back for it
        elif len(self._unwritten) == 1:
            self._loop.call_soon(self._write_records)
        self._wake.set()

    def _overran(self, run: Run, stamp: datetime, message: str | None) -> str | None:
        """``message``, saying so if the run went on past its timeout without being stoppable
        (it held the scheduler's loop: a blocking call in a main or async task)."""
        over = (stamp - run.deadline).total_seconds() if run.deadline is not None else 0.0
        if over < OVERRUN_NOTED:
            return message
        note = (
            f"overran its timeout {run.task.timeout} by {over:.3g} s: it could not be stopped"
            " (it blocked the scheduler's loop)"
        )
        log.warning("task %r %s", run.task.name, note)
        return "; ".join(text for text in (message, note) if text)

    def _unhold(self, run: Run) -> None:
        """Let time go on (a virtual clock jump again) while ``run`` is still dying."""
        if run.held:
            run.held = False
            if self._release is not None:
                self._release()

    def _write_records(self) -> None:
        """Write the finishing records stamped so far, in the order the runs ended."""
        while self._unwritten:
            records, self._unwritten = self._unwritten, []
            for run, action, at, reason, message in records:
                self._record(
                    run, action, at, reason=reason, message=message, traceback=run.traceback
                )

    def _record(
        self,
        run: Run,
        action: str,
        at: datetime,
        *,
        reason: str | None = None,
        message: str | None = None,
        traceback: str | None = None,
        own_change: bool = True,
    ) -> None:
        name = run.task.name
        # Only a failure passes a traceback: histories written before it existed still work.
        extra = {} if traceback is None else {"traceback": traceback}
        try:
            self.history.record(
                name, action, at=at, run_id=run.run_id, reason=reason, message=message, **extra
            )
        except Exception as exc:  # a HistoryError, or a history of the caller's that broke
            self._fail(exc)
        # Whose conditions may read this record. The task itself after its own
        # start is looked at again at its next_change (computed after the record).
        for key in (*self._watchers.get(name, ()), *self._watch_all):
            if own_change or key != name:
                self._dirty[key] = None
        if own_change:
            self._dirty[name] = None  # "not running" may have changed

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _drain(self) -> None:
        """Wait for every run to end after a forced stop (each ends within its grace)."""
        while self._active:
            self._wake.clear()
            await self._wake.wait()
