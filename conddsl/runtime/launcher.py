"""Starting runs on their executors and recording how each ends: exactly once, in
causal order, with its timeout armed and the clock held while it dies; the fork server
warmed before anything starts.

The scheduler decides *when* a task starts or a run is asked to stop; this module does
it: it builds the executors (one per execution), gives each run its flag, its timeout
and its ``run`` record, and turns whatever an executor reports into one finishing
record, stamped when the run ends and written right after that turn of the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from conddsl.history import Record
from conddsl.runtime.clock import Clock
from conddsl.runtime.deadlines import Timeouts
from conddsl.runtime.executors import AsyncExecutor, MainExecutor, ThreadExecutor
from conddsl.runtime.records import RecordWriter
from conddsl.runtime.runs import Executor, Host, Run, exception_text, new_run_id
from conddsl.runtime.runtable import RunTable
from conddsl.runtime.tasks import Task

if TYPE_CHECKING:
    from conddsl.runtime.leftovers import ProcessRegistry
    from conddsl.runtime.process_exec import ProcessExecutor

log = logging.getLogger("conddsl.runtime")

# How much later than its timeout a process run whose process never came is ended (a
# burst of starts may take the fork server a while: that time is not the body's).
START_ALLOWANCE = timedelta(seconds=5)

# A run that ends this many seconds past its timeout, never asked to stop, overran it
# (less is the loop's ordinary lateness in noticing the deadline).
OVERRUN_NOTED = 0.1

_TICK = timedelta(microseconds=1)  # the resolution of a history's timestamps


class Launcher:
    """Runs' starts and ends for one scheduler.

    ``began(run, now)``: a run's ``run`` record was written late (its process came), so
    its task's next check may move; ``ended(freed)``: a run ended, and the tasks in
    ``freed`` waited for its process slot; ``serving()``: the scheduler is running (not
    shutting down); ``done()``: nothing will come back to write a stamped record.
    """

    def __init__(
        self,
        clock: Clock,
        runs: RunTable,
        timeouts: Timeouts,
        records: RecordWriter,
        *,
        began: Callable[[Run, datetime], None],
        ended: Callable[[list[str]], None],
        serving: Callable[[], bool],
        done: Callable[[], bool],
    ) -> None:
        self.clock = clock
        self._runs = runs
        self._timeouts = timeouts
        self._records = records
        self._on_began = began
        self._on_ended = ended
        self._serving = serving
        self._done = done
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executors: dict[str, Executor] = {}
        self._host: Host | None = None
        self.processes: ProcessExecutor | None = None  # process and command runs, once any
        self._held: set[Run] = set()  # runs dying while the clock is held for them
        #: How many times a run was asked to stop (by its executor): the evaluator's passes
        #: that end runs are shorter (see evaluator.ENDING_SLICE).
        self.terminations = 0
        self._background: set[asyncio.Task[None]] = set()

    def open(
        self,
        loop: asyncio.AbstractEventLoop,
        grace: float,
        procs: ProcessRegistry | None,
        output: Callable[[str, str, str], None] | None = None,
    ) -> None:
        """Build the executors on ``loop`` (the process executor on first need: see
        :meth:`_processes`); ``output``: see ``Host.output``."""
        self._loop = loop
        host = self._host = Host(
            loop,
            self.finish,
            grace,
            self._spawn,
            procs,
            stopping=lambda: not self._serving(),
            overdue=self._unhold,
            began=self._began,
            returned=self._returned,
            stepped=self._stepped,
            output=output,
        )
        self._executors = {
            "main": MainExecutor(host),
            "async": AsyncExecutor(host),
            "thread": ThreadExecutor(host),
        }

    def _executor(self, execution: str) -> Executor:
        """The executor of ``execution``."""
        found = self._executors.get(execution)
        if found is None and execution in ("process", "command"):
            found = self._processes()
        if found is None:
            raise KeyError(execution)
        return found

    def _processes(self) -> ProcessExecutor:
        """The executor of process and command runs (programs too: the fork server), made
        when a scheduler first has such a task: a scheduler of async and thread tasks
        never loads the process machinery (pickle, the fork server's protocol: ~1 MiB of
        a process's RSS, issue 21)."""
        if self.processes is None:
            assert self._host is not None, "open() first"
            from conddsl.runtime.process_exec import ProcessExecutor

            processes = self.processes = ProcessExecutor(self._host)
            self._executors["process"] = self._executors["command"] = processes
        return self.processes

    async def close(self) -> None:
        """Stop the fork server, if there is one (every run has ended)."""
        if self.processes is not None:
            await self.processes.close()

    async def warm(
        self, tasks: list[Task], cancelled: Callable[[], bool], woken: asyncio.Event
    ) -> None:
        """Have the fork server (for ``tasks``, process and command tasks) up before
        anything starts, unless ``cancelled()`` turns true meanwhile (checked whenever
        ``woken`` is set): a task module slow to import must not hold up a Ctrl-C
        (nothing has started yet, so nothing needs the server)."""
        if not tasks:
            return  # (no server is wanted: the first process run starts it)
        warming = asyncio.ensure_future(self._processes().warm(tasks))
        while not warming.done():
            if cancelled():
                warming.cancel()
                return
            waking = asyncio.ensure_future(woken.wait())
            await asyncio.wait({warming, waking}, return_when=asyncio.FIRST_COMPLETED)
            waking.cancel()
            woken.clear()  # (the scheduler's loop applies every request when it begins)
        warming.result()

    def start(
        self,
        task: Task,
        now: datetime,
        *,
        reason: str | None = None,
        due: datetime | None = None,
        claimed: Record | None = None,
    ) -> tuple[Run, Awaitable[None] | None]:
        """Start a run (``reason``: on its ``run`` record); the awaitable is a main coroutine's.

        ``claimed``: the run record a shared history wrote when this node won the start
        (its run_id is the run's; nothing more is written for the start)."""
        executor = self._executor(task.execution)
        # Records in causal order: every finishing record stamped so far is written
        # first, and a run starts after the instant its task's last run ended (a
        # microsecond later at least: a history orders ties by action, not arrival).
        self._records.flush()
        ended = self._runs.ended_at.get(task.name)
        if ended is not None and ended >= now:
            now = ended + _TICK
        run_id = new_run_id() if claimed is None else claimed.run_id
        run = Run(task, run_id, now, flag=executor.new_flag(), manual=reason == "manual")
        run.due = due
        run.claimed = claimed is not None
        # Its timeout counts from now, or, for a process, from when the process exists
        # (which its run record says: _began); a process that never comes is still
        # timed out, START_ALLOWANCE later. Virtual time does not jump until it comes.
        if executor.records_when_started:
            run.pending = True
            self._timeouts.arm(run, now + START_ALLOWANCE)
            self.clock.hold()
        else:
            self._timeouts.arm(run, now)
        self._runs.add(run)
        if claimed is not None or not run.pending:
            try:
                if claimed is not None:
                    self._records.written(run, claimed, own_change=False)
                else:
                    self._records.write(run, "run", now, reason=reason, own_change=False)
            except BaseException:  # a Ctrl-C in a listener: the run must not stay counted
                self.terminate(run, "shutdown", "interrupted while starting")
                self.finish(run, "terminate", "not started")
                raise
        if run.reason is not None:  # recording it failed fatally: it never starts
            self.finish(run, "terminate", "not started")
            return run, None
        try:
            awaitable = executor.start(run)
        except BaseException as exc:  # the function could not even be called
            # Any BaseException (SystemExit, a task's own): the run's failure, as from its
            # body; left unfinished, serve() waited for it forever. A Ctrl-C is recorded
            # (if nothing was started: a process or thread may be) and let go.
            if not isinstance(exc, KeyboardInterrupt):
                self.finish(run, "fail", f"could not start: {exception_text(exc)}")
                return run, None
            if run.handle is None and not run.pending:
                self.finish(run, "fail", f"could not start: {exception_text(exc)}")
            raise
        run.launched = True
        return run, awaitable

    def prepare(self, task: Task, at: datetime) -> Run | None:
        """A run of ``task`` made ready to start at ``at`` (its coroutine and asyncio task
        made, its body held back), or None if its execution cannot be prepared (only async
        runs are). If calling the function raised, the run says why (``uncalled``): it is
        launched as a failed run, the function not called again. :meth:`launch` starts
        it, :meth:`drop` discards it."""
        executor = self._executors.get(task.execution)
        if not isinstance(executor, AsyncExecutor):
            return None
        run = Run(task, new_run_id(), at, flag=executor.new_flag())
        try:
            executor.prepare(run)
        except KeyboardInterrupt:  # nothing recorded yet: the scheduler stops on it
            raise
        except BaseException as exc:  # the function cannot be called: launch() records why
            # (not called again at the instant; a SystemExit here once ended the program)
            run.uncalled = f"could not start: {exception_text(exc)}"
        return run

    def launch(self, run: Run, now: datetime, *, due: datetime | None = None) -> None:
        """Start a prepared run at ``now``: its ``run`` record is stamped (written in order
        with the finishing records, before any condition is evaluated) and its timeout
        armed; :meth:`go` lets its body go once that record is written."""
        task = run.task
        ended = self._runs.ended_at.get(task.name)
        if ended is not None and ended >= now:
            now = ended + _TICK  # after its task's last run ended (see start)
        run.started = now
        run.due = due
        if task.timeout is not None:  # (a call saved per start of a burst without one)
            self._timeouts.arm(run, now)
        self._runs.add(run)
        self._records.unwritten.append((run, "run", now, None, None))  # (stamp(), inline)
        if run.uncalled is not None:  # its function raised when called ahead: a failed run
            self.finish(run, "fail", run.uncalled)
            return
        run.launched = True

    def go(self, runs: list[Run]) -> None:
        """Let launched runs' bodies go (at the loop's next turn), their ``run`` records
        written: a scheduler killed in between leaves records the next one marks crashed,
        never a body that ran unrecorded."""
        executor = self._executors["async"]  # (only async runs are prepared)
        assert isinstance(executor, AsyncExecutor)
        executor.go([run for run in runs if run.uncalled is None])  # (the rest: no body)

    def drop(self, run: Run) -> None:
        """A prepared run not started after all: its body never runs, nothing is recorded."""
        self._executors[run.task.execution].drop(run)  # type: ignore[attr-defined]

    def _began(self, run: Run, go: Callable[[], None] | None = None) -> None:
        """A pending run's process exists: its run record, stamped now; its timeout; then
        ``go`` (lets its body run), before anything else is done for it."""
        if not run.pending:
            return  # recorded already (ended): its body must not go now
        run.pending = False
        self.clock.release()
        # Never before the instant start() chose: after its task's last run ended.
        now = run.started = max(self.clock.now(), run.started)
        if run.reason is None:
            self._timeouts.arm(run, now)
        if not run.claimed:  # a claimed run's record was written by its claim
            reason = "manual" if run.manual else None
            self._records.write(run, "run", now, reason=reason, own_change=False)
        if go is not None:
            go()  # (first: the body's wait is the run's, the scheduler's work below is not)
        self._on_began(run, now)

    def _returned(self, run: Run) -> None:
        """A thread run's function returned (called in its thread): when, for its record."""
        # A clock that fails here must not keep the thread from reporting its end: the
        # record is then stamped when the loop sees it, as before.
        with contextlib.suppress(Exception):
            run.returned_at = self.clock.now()

    def _stepped(self, run: Run) -> None:
        """An async run's coroutine runs its first line: when (see :func:`_overran`)."""
        if run.deadline is not None:  # (only a run that can overrun a timeout needs it)
            run.stepped_at = self.clock.now()

    def terminate(self, run: Run, reason: str, message: str) -> None:
        """Ask ``run`` to stop (once; a later reason does not replace the first)."""
        if run.finished or run.reason is not None:
            return
        if run.returned_at is not None:
            # Its work ended already, its end not seen yet (the loop was held by another
            # run): not a timeout or a termination, and it ended when it did.
            return
        run.reason, run.message = reason, message
        if not run.launched:
            return  # start() sees the reason and does not launch it
        # Time stands still until it has died (a process's tree, a cancelled coroutine
        # unwinding, a flagged thread): or a virtual clock would jump past its grace.
        self._held.add(run)
        self.clock.hold()
        self.terminations += 1
        self._executors[run.task.execution].terminate(run)

    def finish(self, run: Run, action: str, message: str | None) -> None:
        """Record how a run ended: exactly once, whatever reports it."""
        if run.finished:
            return
        self._began(run)  # never got a process: its run record still comes first
        run.finished = True
        self._unhold(run)
        task = run.task
        freed = self._runs.remove(run)
        if task.permanent and run.reason is None and self._serving():
            log.warning("permanent task %r ended (%s); it is not restarted", task.name, action)
        reason = None
        if run.reason is not None:  # we asked it to stop: whatever it did, it was terminated
            action, reason = "terminate", run.reason
            message = "; ".join(text for text in (run.message, message) if text) or None
        elif action == "terminate":
            reason = "task"  # it raised TaskTerminationException unasked
        # Stamped now, written after this turn of the loop (see conddsl.runtime.records).
        # (A start may be a tick ahead of now.) A thread's end is when it returned.
        stamp = max(run.returned_at or self.clock.now(), run.started)
        self._runs.ended_at[task.name] = stamp
        if run.reason is None and run.deadline is not None and stamp > run.deadline:
            message = _overran(run, stamp, message)
        first = self._records.stamp(run, action, stamp, reason, message)
        if action != "fail":
            run.traceback = None  # (a terminated run's failure is not its outcome)
        if self._done() or self._loop is None:
            self._records.flush()  # nothing would come back for it
        elif first:
            self._loop.call_soon(self._flush_stamped)
        self._on_ended(freed)

    def _flush_stamped(self) -> None:
        """Write the records stamped so far, a slice of them a turn of the loop (the
        evaluator writes what is left before it evaluates anything)."""
        if self._records.flush_slice() and self._loop is not None:
            self._loop.call_soon(self._flush_stamped)

    def shutting_down(self) -> None:
        """Tell the executors the scheduler stops (thread runs past their grace are abandoned)."""
        for executor in self._executors.values():
            executor.shutting_down()

    def _unhold(self, run: Run) -> None:
        """Let time go on (a virtual clock jump again) while ``run`` is still dying."""
        if run in self._held:
            self._held.discard(run)
            self.clock.release()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def never_started(task: Task) -> str:
    """Why a run whose process never came is timed out (START_ALLOWANCE after its timeout)."""
    extra = START_ALLOWANCE.total_seconds()
    return f"its process did not start within its timeout {task.timeout} and {extra:g} s more"


def _overran(run: Run, stamp: datetime, message: str | None) -> str | None:
    """``message``, saying so if the run went on past its timeout without being stoppable
    (it held the scheduler's loop: a blocking call in a main or async task)."""
    over = (stamp - run.deadline).total_seconds() if run.deadline is not None else 0.0
    if over < OVERRUN_NOTED:
        return message
    # Only code on the loop can hold it; an async run that first ran past its timeout
    # was held up by another run (a thread's end is stamped when it returned).
    first, deadline = run.stepped_at, run.deadline
    held_up = first is not None and deadline is not None and first > deadline
    if run.task.execution in ("main", "async") and not held_up:
        why = "it blocked the scheduler's loop"
    else:
        why = "the scheduler's loop was held by another run"
    note = (
        f"overran its timeout {run.task.timeout} by {over:.3g} s: it could not be stopped ({why})"
    )
    log.warning("task %r %s", run.task.name, note)
    return "; ".join(text for text in (message, note) if text)
