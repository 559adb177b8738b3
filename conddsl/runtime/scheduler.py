"""The scheduler: starts tasks when their condition holds and ends them by timeout, end
condition or shutdown, sleeping until the next instant anything can change.

The loop keeps two heaps with lazy deletion: when each task's conditions can next
change (``next_change``) and when runs time out (one entry per instant, holding every
run due then: runs started in one cycle share it). It sleeps until the earlier of
the two tops or until an event (a run ended, a task was added, a shutdown was
asked). A record written for task ``x`` wakes only the tasks whose conditions read
``x``'s history. An idle scheduler touches no task whose time has not come.

Work is cut so that no run waits long for its termination:

- A finishing record is stamped when the run ends and written to the history
  right after the current turn of the event loop (and always before any condition
  is evaluated), so a burst of terminations is not slowed by history writes.
- Evaluating many tasks (thousands waking at once) yields to the event loop every
  ``SLICE`` seconds, and as soon as a run's timeout comes due; the rest is evaluated
  at once after, at a fresh "now". Such a continuation is not a new cycle
  (``scheduler cycles`` counts wake-ups).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from conddsl.errors import ConddslError
from conddsl.history import History, HistoryError
from conddsl.runtime.clock import Clock, RealClock
from conddsl.runtime.conditions import (
    ConditionFailed,
    ConditionLike,
    Reads,
    compile_setting,
    is_true,
    next_change,
    reads,
)
from conddsl.runtime.config import ConfigError, SchedulerConfig
from conddsl.runtime.executors import AsyncExecutor, MainExecutor, ThreadExecutor
from conddsl.runtime.flags import TerminationFlag
from conddsl.runtime.process_exec import CommandExecutor, ProcessExecutor
from conddsl.runtime.runs import Host, Run
from conddsl.runtime.tasks import Task, command_task, func_task

log = logging.getLogger("conddsl.runtime")

F = TypeVar("F", bound=Callable[..., Any])

# Scheduler states, in the only order they can follow.
IDLE, RUNNING, GRACEFUL, FORCED, DONE = "idle", "running", "graceful", "forced", "done"

_SHUT = None  # the key of the shut condition among the task names

SLICE = 0.002  # seconds of condition evaluation before the loop lets other work through


class SchedulerError(ConddslError):
    """The scheduler stopped on a fatal error (a condition or the history failed)."""


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
    ) -> None:
        self.config = SchedulerConfig.load(config)  # type: ignore[arg-type]
        self.clock: Clock = clock if clock is not None else RealClock()
        self.history: History = self.config.history
        self.session = Session(env=self.config.env, params=self.config.params)
        self.tasks: dict[str, Task] = {}
        self.state = IDLE
        self.fatal_error: BaseException | None = None
        self._shut_cond: ConditionLike | None = None
        if self.config.shut_cond is not None:
            self._shut_cond = compile_setting(
                self.config.shut_cond, "shut_cond", self.config.timezone
            )
        self._requests: list[bool] = []  # shut_down() calls not yet applied: force or not
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake = asyncio.Event()
        self._seq = itertools.count()
        self._checks: list[tuple[datetime, int, str | None]] = []
        self._check_at: dict[str | None, datetime] = {}
        self._deadlines: list[datetime] = []  # a heap of the instants in _due
        self._due: dict[datetime, list[Run]] = {}  # runs by the instant they time out
        self._unwritten: list[tuple[Run, str, datetime, str | None, str | None]] = []
        self._hold = getattr(self.clock, "hold", None)  # clocks without them never jump
        self._release = getattr(self.clock, "release", None)
        self._dirty: dict[str | None, None] = {}  # an ordered set
        self._watchers: dict[str, set[str | None]] = {}
        self._watch_all: set[str | None] = set()
        self._watch_cycles: set[str | None] = set()
        self._runs: dict[str, dict[str, Run]] = {}
        self._active = 0
        self._process_runs = 0
        self._waiting_slot: dict[str, None] = {}  # an ordered set
        self._background: set[asyncio.Task[None]] = set()
        self._executors: dict[str, Any] = {}
        if self._shut_cond is not None:
            self._index(_SHUT, reads(self._shut_cond))

    # ---------------------------------------------------------------- registration

    def task(
        self,
        start_cond: object,
        *,
        name: str | None = None,
        end_cond: object = None,
        timeout: object = None,
        execution: str | None = None,
        multilaunch: bool = False,
        disabled: bool = False,
    ) -> Callable[[F], F]:
        """Register the decorated function as a task; it is returned unchanged."""

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
            )
            self._add(task)
            return func

        return register

    def command_task(
        self,
        start_cond: object,
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
        )
        self._add(task)
        return task

    def _add(self, task: Task) -> None:
        if task.name in self.tasks:
            raise ConfigError(f"a task named {task.name!r} already exists")
        loop = self._loop
        if loop is None or self.state != RUNNING:
            self._register(task)
        elif threading.get_ident() == self._loop_thread:
            self._register(task)
            self._touch(task.name)
        else:  # the loop owns the task tables while it runs
            loop.call_soon_threadsafe(self._register_and_touch, task)

    def _register(self, task: Task) -> None:
        self.tasks[task.name] = task
        self._index(task.name, task.reads)

    def _register_and_touch(self, task: Task) -> None:
        self._register(task)
        self._touch(task.name)

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

    # ---------------------------------------------------------------- running

    def run(self) -> None:
        """Run until shut down (blocking); inside a running event loop use ``await serve()``."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.serve())
            return
        raise RuntimeError("an event loop is running here: use 'await scheduler.serve()'")

    async def serve(self) -> None:
        """Run in the current event loop until shut down; raise SchedulerError after a fatal one."""
        if self.state != IDLE:
            raise RuntimeError("a scheduler runs once; make a new one")
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        host = Host(loop, self._finish, self.config.kill_grace.total_seconds(), self._spawn)
        self._executors = {
            "main": MainExecutor(host),
            "async": AsyncExecutor(host),
            "thread": ThreadExecutor(host),
            "process": ProcessExecutor(host),
            "command": CommandExecutor(host),
        }
        now = self.clock.now()
        self.session.started_at = now
        self.state = RUNNING
        try:
            self.history.mark_crashed(now)  # runs left open by a scheduler that died
        except HistoryError as exc:
            self._fail(exc)
        if self._shut_cond is not None:
            self._dirty[_SHUT] = None
        self._dirty.update(dict.fromkeys(self.tasks))
        try:
            await self._cycle()
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            if not cancelled and self.fatal_error is None:
                self.fatal_error = exc
            self._force("forced" if cancelled else "shutdown", f"the scheduler stopped: {exc!r}")
            await self._drain()
            raise
        finally:
            self._write_records()
            self.state = DONE
            await self._wait_threads()
        if self.fatal_error is not None:
            raise SchedulerError(f"the scheduler stopped: {self.fatal_error}") from self.fatal_error

    def shut_down(self, force: bool = False) -> None:
        """Shut down gracefully; ``force=True`` or a second call terminates every run at once."""
        with self._lock:
            self._requests.append(force)
        loop = self._loop
        if loop is not None and self.state != DONE:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake.set)

    @property
    def running_runs(self) -> list[Run]:
        """The runs not finished yet."""
        return [run for runs in self._runs.values() for run in runs.values()]

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
            sliced = await self._evaluate_dirty(now)
            if self.state in (GRACEFUL, FORCED) and self._active == 0:
                return
            if self._dirty:  # sliced, or deferred: dirtied again by its own evaluation
                await asyncio.sleep(0)
                continue
            await self.clock.sleep_until(self._next_deadline(), self._wake)

    def _apply_requests(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        for force in requests:
            if force:
                self._force("forced", "shut_down(force=True) was called")
            elif self.state == GRACEFUL:
                self._force("forced", "shut_down() was called a second time")
            else:
                self._begin_shutdown("shut_down() was called")

    def _begin_shutdown(self, why: str) -> None:
        if self.state != RUNNING:
            return
        if self.config.instant_shutdown:
            self._force("shutdown", why)
        else:
            log.info("shutting down gracefully: %s", why)
            self.state = GRACEFUL

    def _force(self, reason: str, why: str) -> None:
        if self.state in (FORCED, DONE):
            return
        log.info("shutting down now (%s): %s", reason, why)
        self.state = FORCED
        for run in self.running_runs:
            if run.task.terminable:
                self._terminate(run, reason, why)

    def _fail(self, exc: BaseException) -> None:
        """A fatal error: terminate everything (reason ``shutdown``); serve() raises it."""
        if self.fatal_error is not None:
            log.error("another error while stopping: %s", exc)
            return
        self.fatal_error = exc
        log.error("fatal error, shutting down: %s", exc)
        self._force("shutdown", f"fatal error: {exc}")

    def _due_timeouts(self, now: datetime) -> None:
        deadlines, due = self._deadlines, self._due
        texts: dict[Task, str] = {}
        while deadlines and deadlines[0] <= now:
            for run in due.pop(heapq.heappop(deadlines)):
                task = run.task
                if run.finished or run.reason is not None or task.timeout is None:
                    continue
                text = texts.get(task)
                if text is None:
                    text = texts[task] = f"ran longer than its timeout {task.timeout}"
                self._terminate(run, "timeout", text)

    def _due_checks(self, now: datetime, *, new_cycle: bool = True) -> None:
        checks = self._checks
        while checks and checks[0][0] <= now:
            at, _, key = heapq.heappop(checks)
            if self._check_at.get(key) == at:  # else a stale entry: lazy deletion
                del self._check_at[key]
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
        """Evaluate the dirty keys; True if it stopped at its time slice with some left."""
        seen: set[str | None] = set()
        deferred: dict[str | None, None] = {}
        dirty = self._dirty
        ends = time.perf_counter() + SLICE
        if self._deadlines:  # a run timing out meanwhile is not kept waiting for the slice
            ends = min(ends, time.perf_counter() + (self._deadlines[0] - now).total_seconds())
        sliced = False
        if self._unwritten:  # conditions see every record stamped before they are evaluated
            self._write_records()
        while dirty:
            # The shut condition goes first: nothing starts at the instant it turns true.
            key = _SHUT if _SHUT in dirty else next(iter(dirty))
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
            if dirty and time.perf_counter() > ends:
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
        if task.disabled:
            return
        name = task.name
        context = self._context(name)
        ending = False
        if task.end is not None and (self.state == RUNNING or name in self._runs):
            where = f"end condition of task {name!r}"
            ending = self._holds(task.end, where, now, context, on_error=True)
            if ending:
                why = f"its end condition {str(task.end)!r} became true"
                for run in list(self._runs.get(name, {}).values()):
                    self._terminate(run, "end_cond", why)
        # A task is not started while its end condition holds: it would be ended at once.
        may_start = self.state == RUNNING and not ending
        if may_start and (task.multilaunch or name not in self._runs):
            where = f"start condition of task {name!r}"
            if self._holds(task.start, where, now, context, on_error=False):
                if task.uses_process and not self._process_slot():
                    self._waiting_slot[name] = None
                else:
                    awaitable = self._start(task, now)
                    if awaitable is not None:
                        await awaitable
        self._schedule(name, self._next_check(task, now, context))

    def _next_check(self, task: Task, now: datetime, context: dict[str, Any]) -> datetime | None:
        times = []
        # A running task that cannot start again needs no start check: its finish
        # record looks at it again (so a long run costs nothing per cycle).
        if self.state == RUNNING and (task.multilaunch or task.name not in self._runs):
            times.append(self._next(task.start, f"start condition of {task.name!r}", now, context))
        if task.end is not None and (self.state == RUNNING or task.name in self._runs):
            times.append(self._next(task.end, f"end condition of {task.name!r}", now, context))
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

    def _start(self, task: Task, now: datetime) -> Awaitable[None] | None:
        executor = self._executors[task.execution]
        new_flag = getattr(executor, "new_flag", TerminationFlag)
        run = Run(task, uuid.uuid4().hex, now, flag=new_flag())
        if task.timeout is not None:
            deadline = run.deadline = now + task.timeout
            bucket = self._due.get(deadline)
            if bucket is None:
                self._due[deadline] = [run]
                heapq.heappush(self._deadlines, deadline)
            else:
                bucket.append(run)
        self._runs.setdefault(task.name, {})[run.run_id] = run
        self._active += 1
        if task.uses_process:
            self._process_runs += 1
        self._record(run, "run", now, own_change=False)
        if run.reason is not None:  # recording it failed fatally: it never starts
            self._finish(run, "terminate", "not started")
            return None
        try:
            awaitable = executor.start(run)
        except Exception as exc:  # the function could not even be called
            self._finish(run, "fail", f"could not start: {exc}")
            return None
        run.launched = True
        return awaitable

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
        run.finished = True
        if run.held and self._release is not None:
            self._release()
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
        reason = None
        if run.reason is not None:  # we asked it to stop: whatever it did, it was terminated
            action, reason = "terminate", run.reason
            message = "; ".join(text for text in (run.message, message) if text) or None
        elif action == "terminate":
            reason = "task"  # it raised TaskTerminationException unasked
        # Stamped now, written after this turn of the loop (see the module docstring).
        self._unwritten.append((run, action, self.clock.now(), reason, message))
        if self.state == DONE or self._loop is None:
            self._write_records()  # nothing would come back for it
        elif len(self._unwritten) == 1:
            self._loop.call_soon(self._write_records)
        self._wake.set()

    def _write_records(self) -> None:
        """Write the finishing records stamped so far, in the order the runs ended."""
        while self._unwritten:
            records, self._unwritten = self._unwritten, []
            for run, action, at, reason, message in records:
                self._record(run, action, at, reason=reason, message=message)

    def _record(
        self,
        run: Run,
        action: str,
        at: datetime,
        *,
        reason: str | None = None,
        message: str | None = None,
        own_change: bool = True,
    ) -> None:
        name = run.task.name
        try:
            self.history.record(
                name, action, at=at, run_id=run.run_id, reason=reason, message=message
            )
        except HistoryError as exc:
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

    async def _wait_threads(self) -> None:
        executor = self._executors.get("thread")
        if executor is None or executor.exited.is_set():
            return
        grace = self.config.kill_grace.total_seconds()
        try:
            await asyncio.wait_for(executor.exited.wait(), grace)
        except asyncio.TimeoutError:
            log.warning("abandoned threads still running after %s s; not waiting longer", grace)
