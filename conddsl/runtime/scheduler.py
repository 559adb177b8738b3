"""The scheduler: starts tasks when their condition holds and ends them by timeout, end
condition or shutdown, sleeping until the next instant anything can change.

This module is the public API and the core loop; each subsystem is a collaborator of
its own, and this module only says when each is asked:

- :mod:`~conddsl.runtime.taskbook`: the tasks and what is pending for each (manual and
  permanent starts, retries, when each is next looked at, the keys due now);
- :mod:`~conddsl.runtime.evaluator`: the evaluation of the keys due (ends, starts, next
  checks), in time slices;
- :mod:`~conddsl.runtime.requests`: what each control request checks and does, applied
  through :mod:`~conddsl.runtime.control` (queued callables, safe from any thread);
- :mod:`~conddsl.runtime.deadlines` and :mod:`~conddsl.runtime.wake`: the timers (checks,
  timeouts), which tasks a record wakes, the order of the keys due;
- :mod:`~conddsl.runtime.lifecycle` and :mod:`~conddsl.runtime.phases`: the state and the
  session's phase, and the steps that move them (startup and closing tasks, graceful
  and forced shutdown, fatal errors);
- :mod:`~conddsl.runtime.runtable`, :mod:`~conddsl.runtime.launcher`,
  :mod:`~conddsl.runtime.judge`, :mod:`~conddsl.runtime.records`: the live runs and
  process slots; starting runs and recording how they end; what a condition that fails
  makes of the answer; the record writer and its listeners (``subscribe``);
- :mod:`~conddsl.runtime.session`, :mod:`~conddsl.runtime.eventloop`,
  :mod:`~conddsl.runtime.frozen_heap`: what conditions read of the scheduler; ``run()``'s
  own event loop; ``gc.freeze`` while serving.

The loop sleeps until the earlier of the next check and the next timeout, or until an
event (a run ended, a task was added, a control request was made); an idle scheduler
touches no task whose time has not come. Each turn applies the control requests, then
has the evaluator collect and evaluate the keys due; a turn the evaluator cut at its
time slice goes on at once and is not a new cycle (``scheduler cycles`` counts
wake-ups). A session goes through three phases: *startup* (the ``on_startup`` tasks,
one after the other), *main* (the permanent tasks start, the others by their
conditions) and, once a shutdown has let every run end, *closing* (the
``on_shutdown`` tasks, one after the other).

Over 400 lines (about 570): half is the public API, each method documented here and a
line or a few over the collaborators; the rest is their wiring, ``serve()`` (the order
in which a session's resources are taken and given back) and the loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal, TypeVar

from conddsl import ast
from conddsl.custom import DEFAULT_RECHECK, ConditionRegistry, default_registry, known_phrase
from conddsl.errors import ConditionSyntaxError, ControlError, SchedulerError, UnknownTaskError
from conddsl.history import History, HistoryError
from conddsl.runtime.claims import announce_tasks
from conddsl.runtime.clock import Clock, RealClock
from conddsl.runtime.conditions import ConditionLike
from conddsl.runtime.config import SchedulerConfig
from conddsl.runtime.control import Control, Request
from conddsl.runtime.deadlines import Timeouts
from conddsl.runtime.evaluator import Evaluator
from conddsl.runtime.eventloop import run_on_new_loop
from conddsl.runtime.frozen_heap import freeze, thaw
from conddsl.runtime.judge import Judge
from conddsl.runtime.launcher import Launcher
from conddsl.runtime.lifecycle import Lifecycle
from conddsl.runtime.phases import Phase, State
from conddsl.runtime.records import Listener, RecordWriter
from conddsl.runtime.registry_place import registry_file, registry_setting
from conddsl.runtime.requests import Requests
from conddsl.runtime.runs import Run
from conddsl.runtime.runtable import RunTable
from conddsl.runtime.session import Session
from conddsl.runtime.shared import SharedNode, shared_store
from conddsl.runtime.taskbook import TaskBook
from conddsl.runtime.tasks import Task, command_task, func_task, role_of
from conddsl.runtime.wake import SHUT

__all__ = ["ControlError", "Scheduler", "SchedulerError", "Session", "UnknownTaskError"]

F = TypeVar("F", bound=Callable[..., Any])


class Scheduler:
    """Runs tasks by their conditions; the rules are in :mod:`conddsl.runtime`'s docstring."""

    def __init__(
        self,
        config: SchedulerConfig | Mapping[str, Any] | None = None,
        *,
        clock: Clock | None = None,
        rules: Mapping[str, ast.Node | str] | None = None,
        on_record: Listener | None = None,
        process_registry: str | os.PathLike[str] | Literal[False] | None = None,
    ) -> None:
        """``on_record``: a first listener (see :meth:`subscribe`). ``process_registry``:
        the file listing this scheduler's live process trees, so that the next one can end
        what it left if it dies (see :mod:`conddsl.runtime.leftovers`); None: beside the
        history when it is a SQLite file (else none), False: none."""
        from conddsl.runtime.customs import parse_rules

        self.config = SchedulerConfig.load(config)  # type: ignore[arg-type]
        self.clock: Clock = clock if clock is not None else RealClock()
        self._own_clock = clock is None  # on a shared history: set to the database's
        self.session = Session(env=self.config.env, params=self.config.params)
        self._book = book = TaskBook()
        #: The tasks by name (the task book's, applied in the loop's thread).
        self.tasks: dict[str, Task] = book.tasks
        #: The scheduler's own custom conditions (``app.cond``), found by its conditions.
        self.registry = ConditionRegistry()
        #: Named conditions its conditions may use (``load_rules`` gives such a mapping).
        self.rules = parse_rules(rules)
        #: See ``process_registry`` above; may be changed before serving.
        self.process_registry = registry_setting(process_registry)
        #: Where the lines process and command runs print go, as ``(task, stream, line)``
        #: with stream ``"stdout"`` or ``"stderr"`` (read from pipes on a thread: see
        #: :mod:`conddsl.runtime.output`); None (the default): the children write to the
        #: scheduler's stdout and stderr themselves. Set before serving.
        self.task_output: Callable[[str, str, str], None] | None = None
        #: Called with how many seconds late the loop woke for a deadline (metrics).
        self.on_loop_lag: Callable[[float], None] | None = None
        self._conditions: Any = None  # a SchedulerConditions, made on first use
        self._control = Control()
        self._wake = asyncio.Event()
        self._records = RecordWriter(
            self.config.history,
            on_error=lambda exc: self._life.fail(exc),
            wake=book.woken,
            wake_all=book.woken_all,
        )
        if on_record is not None:
            self._records.subscribe(on_record)
        self._timeouts = Timeouts()
        missing = [name for name in ("hold", "release") if not hasattr(self.clock, name)]
        if missing:
            raise TypeError(
                f"the clock has no {' or '.join(m + '()' for m in missing)}: a Clock holds"
                " time still while runs die (a clock whose time never jumps does nothing in them)"
            )
        self._runs = RunTable(self.config.max_process_count)
        self._launcher = Launcher(
            self.clock,
            self._runs,
            self._timeouts,
            self._records,
            began=self._began,
            ended=self._ended,
            serving=lambda: self.state is State.RUNNING,
            done=lambda: self.state is State.DONE or not self._control.attached,
        )
        self._life = Lifecycle(
            self._launcher,
            self._runs,
            self._records,
            instant_shutdown=self.config.instant_shutdown,
            wake=lambda: self._wake.set(),  # (the event is made anew when serving begins)
        )
        self._judge = Judge(silence=self.config.silence_cond_check, fail=self._life.fail)
        self._requests = Requests(
            book,
            self._control,
            self._runs,
            self._launcher,
            self._life,
            wake=lambda: self._wake.set(),  # (the event is made anew when serving begins)
        )
        self._evaluator = Evaluator(
            book,
            self._runs,
            self._timeouts,
            launcher=self._launcher,
            judge=self._judge,
            life=self._life,
            records=self._records,
            session=self.session,
        )
        if self.config.shut_cond is not None:
            self._resolve_shut_cond(defer_unknown=True)

    @property
    def history(self) -> History:
        """Where the records go (the ``history`` setting); may be replaced before serving."""
        return self._records.history

    @history.setter
    def history(self, history: History) -> None:
        if self._control.attached:  # its runs' records would be split between two stores
            raise ControlError(
                "the history cannot be replaced once the scheduler serves (or served):"
                " give it before serve(), as the history setting or this attribute"
            )
        self._records.history = history

    @property
    def state(self) -> State:
        """Where the scheduler is: a :class:`~conddsl.runtime.phases.State`."""
        return self._life.state

    @property
    def fatal_error(self) -> BaseException | None:
        """The error that stopped the scheduler, if one did (``serve()`` raises it)."""
        return self._life.fatal_error

    @property
    def stopped_by(self) -> tuple[str, str] | None:
        """Why the scheduler stops, once it does: (cause, what happened); the cause is
        ``shut_cond``, ``shut_down`` (the API), ``interrupt`` (a signal), ``forced`` or
        ``fatal error``."""
        return self._life.stopped_by

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(recorded)`` after each record is written; returns the unsubscribe.

        ``recorded`` is a :class:`~conddsl.runtime.records.Recorded`: the
        :class:`~conddsl.history.Record` as the history stored it, and when its run
        started and was due (``recorded.duration``, ``recorded.start_delay``). Listeners
        are called in the scheduler's thread, in the order records are written (the
        ``crash`` records of a scheduler that died included), and must be quick: the loop
        waits for them. One that raises is logged once and called again for the next
        records; it never stops the scheduler. Safe from any thread, at any time.
        """
        return self._records.subscribe(listener)

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

        self._requests.recheck(
            known_phrase(RegistryChain((self.registry, default_registry)), phrase)
        )

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
            cond = self._book.shut_cond = self._compile(self.config.shut_cond, "shut_cond")
        except ConditionSyntaxError as exc:
            if defer_unknown and exc.code == "E120":
                return
            raise
        self._book.watch_shut_cond(cond)

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
        on_node_lost: str = "fail",
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
                on_node_lost=on_node_lost,
            )
            self._requests.add(task)
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
        on_node_lost: str = "fail",
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
            on_node_lost=on_node_lost,
        )
        self._requests.add(task)
        return task

    # ---------------------------------------------------------------- control

    def run_task(self, name: str) -> None:
        """Start a run of ``name`` now, whatever its start condition (even if disabled).

        The run's ``run`` record has reason ``manual``; the run obeys the task's
        timeout and end condition like any other (started while the end condition
        holds, it is terminated at once, reason ``end_cond``). Asked before the
        scheduler starts, the run starts once the startup tasks are done.

        Raises :class:`UnknownTaskError` for an unknown name, and :class:`ControlError`
        when the task is running and not ``multilaunch`` (or a manual run of it is
        already asked for) or when the scheduler is shutting down or done. A run
        accepted before a shutdown began still starts (a forced shutdown ends it at once).
        """
        self._requests.run(name)

    def terminate(self, name: str) -> None:
        """Terminate every running run of ``name`` now: reason ``forced``.

        A manual run asked for and not started yet is dropped. Runs of a ``main``
        task cannot be terminated (:class:`ControlError`).
        """
        self._requests.terminate(name)

    def disable(self, name: str) -> None:
        """Stop starting ``name`` by its condition; its running runs go on (see ``terminate``)."""
        self._requests.set_disabled(name, True)

    def enable(self, name: str) -> None:
        """Let ``name`` start by its condition again; it is looked at at once."""
        self._requests.set_disabled(name, False)

    def remove_task(self, name: str) -> Task:
        """Forget ``name`` and return its task; its running runs are terminated (``forced``).

        Its records stay in the history. A ``main`` run cannot be terminated, but none
        is running when this is applied: main runs hold the scheduler's thread.
        """
        return self._requests.remove(name)

    # ---------------------------------------------------------------- running

    def run(self) -> None:
        """Run until shut down (blocking); inside a running event loop use ``await serve()``."""
        run_on_new_loop(self.serve, self.config.kill_grace.total_seconds())

    async def serve(self) -> None:
        """Run in the current event loop until shut down; raise SchedulerError after a fatal one."""
        if self.state is not State.IDLE:
            raise RuntimeError("a scheduler runs once; make a new one")
        if self.config.shut_cond is not None and self._book.shut_cond is None:
            self._resolve_shut_cond()  # names registered since the scheduler was made
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._control.attach(loop, self._wake.set)
        for registry in (self.registry, default_registry):
            registry.listen(self._requests.recheck)
        # A store writing in the background (its file locked) reports a failure here.
        self.history.watch_failures(
            lambda e: loop.call_soon_threadsafe(self._life.history_failed, e)
        )
        grace = self.config.kill_grace.total_seconds()
        # Processes a scheduler that died left running are ended first (before its
        # runs are marked crash); this one's are listed while they live.
        path = registry_file(self.process_registry, self.history)
        procs = leftovers = None
        shared = False
        if path is not None:  # (else nothing to read or keep: the registry's code not loaded)
            from conddsl.runtime.leftovers import recover

            recovery = recover(path, grace, loop)
            procs, leftovers, shared = recovery.registry, recovery.killer, recovery.shared
        self._join_shared(loop)
        self._launcher.open(loop, grace, procs, self.task_output)
        now = self.clock.now()
        self.session.started_at = now
        self._life.begin(self.tasks.values())
        if self._book.shut_cond is not None:
            self._book.due.mark(SHUT)
        freeze()
        try:
            try:
                if not shared:  # a scheduler serving now has open runs, not crashed
                    await self._records.mark_crashed(now)  # left open by one that died
            except HistoryError as exc:
                self._life.fail(exc)
            # Listed now: tasks may be added while it warms.
            tasks = [task for task in self.tasks.values() if task.uses_process]
            await self._launcher.warm(tasks, lambda: self._control.asked("shut"), self._wake)
            await self._cycle()
        except BaseException as exc:
            self._life.stopped(exc)
            await self._drain()
            raise
        finally:
            try:
                self._evaluator.drop_prepared()
                self._records.flush()
            finally:
                self._life.finish()
                for request in self._control.close():  # the loop stopped on an error
                    request.apply()
            try:
                if leftovers is not None:
                    await leftovers.wait()
            finally:
                await self._launcher.close()
                for registry in (self.registry, default_registry):
                    registry.unlisten(self._requests.recheck)
                if procs is not None:
                    procs.close()  # every tree has ended: the file goes
                thaw()
        if self.fatal_error is not None:
            raise SchedulerError(f"the scheduler stopped: {self.fatal_error}") from self.fatal_error

    def shut_down(
        self, force: bool = False, *, why: str | None = None, cause: str = "shut_down"
    ) -> None:
        """Shut down gracefully; ``force=True`` or a second call terminates every run at once.

        ``why`` replaces the words the records and the log give for it, and ``cause``
        (see :attr:`stopped_by`) says who asked (``install_signal_handlers``: ``interrupt``).
        """
        self._control.queue(Request(partial(self._life.shut, force, why, cause), "shut"))

    @property
    def running_runs(self) -> list[Run]:
        """The runs not finished yet."""
        return list(self._runs)

    def task_state(self, name: str) -> str:
        """``"running"`` (a run is alive), ``"terminating"`` (every live run was asked to stop
        and its work has not ended yet), ``"pending"`` (a manual run is asked for and not
        started yet), ``"disabled"`` or ``"idle"``; safe from any thread."""
        return self._requests.task_state(name)

    @property
    def phase(self) -> Phase | None:
        """``"startup"``, ``"main"`` or ``"closing"`` while serving (None before): a
        :class:`~conddsl.runtime.phases.Phase`, a ``str`` enum equal to those words."""
        return self._life.phase

    # ---------------------------------------------------------------- the loop

    async def _cycle(self) -> None:
        evaluator = self._evaluator
        sliced = False  # the last pass stopped at its time slice, with tasks left to evaluate
        while True:
            self._wake.clear()
            now = self.clock.now()
            if not sliced:
                self.session.cycles += 1
            for request in self._control.take():
                request.apply()
            evaluator.collect(now, new_cycle=not sliced)
            if self._life.phase is Phase.STARTUP:
                if await self._life.step_startup(partial(evaluator.check_shut_now, now)):
                    self._book.enter_main()
                elif self._life.phase is Phase.MAIN:  # shut down during startup
                    self._book.due.mark_all(self._book.manual)  # asked for before: they run
            sliced = await evaluator.evaluate_due(now)
            self._life.end_permanent()
            # Manual runs accepted before the shutdown began start first; the records of
            # the last runs are written (a slice a pass) before it closes.
            unwritten = bool(self._records.unwritten)
            if (
                self.state.stopping
                and self._runs.active == 0
                and not self._book.manual
                and not unwritten
            ):
                if await self._life.step_closing(self.tasks.values()):
                    continue  # an on_shutdown run is going on
                if self._control.seal():
                    return
                continue  # a request came meanwhile: applied (or refused) first
            if sliced or self._book.due or unwritten:  # sliced, deferred (dirtied again), unwritten
                await asyncio.sleep(0)
                continue
            deadline = evaluator.next_deadline()
            early = evaluator.prepare_at(deadline)
            if early is not None:
                if early > self.clock.now():
                    await self.clock.sleep_until(early, self._wake)
                    if self._wake.is_set():
                        continue  # an event came first
                evaluator.prepare(deadline)  # (not a cycle: nothing is evaluated yet)
            await self.clock.sleep_until(deadline, self._wake)
            if self.on_loop_lag is not None and deadline is not None:
                late = (self.clock.now() - deadline).total_seconds()
                if late >= 0:  # woke for the deadline, not for an event before it
                    self.on_loop_lag(late)

    # ---------------------------------------------------------------- shared history

    def _join_shared(self, loop: asyncio.AbstractEventLoop) -> None:
        """On a history several schedulers share: claims, wake-ups, fencing, its clock."""
        store = shared_store(self.history)
        if store is None:
            return
        if self._own_clock:
            # Records and deadlines on the database's clock, whatever this machine's says.
            self.clock = self._launcher.clock = RealClock(store.database_time)
        node = SharedNode(store, self.session)
        announce_tasks(store, self.tasks.values())  # another task file on another node: said
        self._evaluator.shared = self._life.shared = self._judge.shared = node
        self._book.retry_hint.update(self.tasks)  # retries left pending while no node took them
        node.start(loop, self._heard_record, self._fenced)

    def _heard_record(self, task: str | None) -> None:
        """Another node recorded for ``task`` (None: anything may have changed)."""
        self._book.heard(task)
        self._wake.set()

    def _fenced(self, why: str) -> None:
        """This node lost its lease: its runs are another node's now; end the local copies."""
        for run in self.running_runs:
            if run.task.terminable:
                self._launcher.terminate(run, "fenced", f"this node lost its lease: {why}")
        self._wake.set()

    # ---------------------------------------------------------------- runs

    def _began(self, run: Run, now: datetime) -> None:
        """A run's record came late (its process came): its end condition may read how
        long it has run, so when it next changes is from now."""
        self._evaluator.reschedule(run.task, now)
        self._wake.set()  # a new deadline

    def _ended(self, freed: list[str]) -> None:
        """A run ended; the tasks in ``freed`` waited for its process slot."""
        self._book.due.mark_all(freed)
        self._wake.set()

    async def _drain(self) -> None:
        """Wait for every run to end after a forced stop (each ends within its grace)."""
        while self._runs.active:
            self._wake.clear()
            await self._wake.wait()
