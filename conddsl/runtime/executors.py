"""Running Python tasks in the scheduler's thread (main), as coroutines (async) and in threads."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import inspect
import logging
import sys
import threading
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from conddsl.runtime.flags import TerminationFlag
from conddsl.runtime.runs import Host, Run, ended

log = logging.getLogger("conddsl.runtime")

# A prepared async run's first step is taken by AsyncExecutor.go itself, in its asyncio
# task's context and as that task (asyncio.current_task()): it needs a task made with a
# context of ours (create_task(context=...), Python 3.11) and the loop's record of the
# task running (asyncio's own _enter_task / _leave_task, what a task's step does; a
# Python without them starts every body at the loop's next turn, as on 3.10).
_enter_task = getattr(asyncio.tasks, "_enter_task", None)
_leave_task = getattr(asyncio.tasks, "_leave_task", None)
EAGER = sys.version_info >= (3, 11) and _enter_task is not None and _leave_task is not None

# Thread runs asked to stop together have their flags set this many at a time, a batch
# every FLAG_PACE seconds (see ThreadExecutor.terminate).
FLAG_BATCH = 32
FLAG_PACE = 0.001


class _InProcess:
    """What the executors of Python functions in the scheduler's process share."""

    records_when_started = False  # the run record is written as the run starts

    def __init__(self, host: Host) -> None:
        self.host = host

    def new_flag(self) -> TerminationFlag:
        """A flag in this process's memory."""
        return TerminationFlag()

    def shutting_down(self) -> None:
        """Nothing to do (see ThreadExecutor)."""


class MainExecutor(_InProcess):
    """Runs the task in the scheduler's own thread; the scheduler waits for it. Not terminable."""

    def start(self, run: Run) -> Awaitable[None] | None:
        """Call the function; a coroutine function gives an awaitable for the scheduler."""
        assert run.task.func is not None
        if inspect.iscoroutinefunction(run.task.func):
            return self._await(run)
        error = None
        try:
            run.task.func(**run.task.kwargs(run.flag))
        except (Exception, SystemExit) as exc:  # sys.exit() ends the run, not the scheduler
            error = exc
        self.host.finish(run, *ended(run, error))
        return None

    async def _await(self, run: Run) -> None:
        assert run.task.func is not None
        error = None
        try:
            await run.task.func(**run.task.kwargs(run.flag))
        except (Exception, SystemExit) as exc:
            error = exc
        self.host.finish(run, *ended(run, error))

    def terminate(self, run: Run) -> None:  # pragma: no cover - the scheduler never asks
        raise RuntimeError("a main task cannot be terminated")


class Graces:
    """Runs asked to stop, in the order their grace (one length for all) ends: one loop
    timer for the earliest, not one per run. ``over(run)`` is called for each whose
    grace ended while it was still alive."""

    def __init__(self, host: Host, over: Callable[[Run], None]) -> None:
        self.host = host
        self._over = over
        self._queue: collections.deque[tuple[float, Run]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, run: Run) -> None:
        """Give ``run`` its grace from now."""
        loop = self.host.loop
        ends = loop.time() + self.host.kill_grace
        self._queue.append((ends, run))
        if self._timer is None:
            self._timer = loop.call_at(ends, self._fire)

    def _fire(self) -> None:
        self._timer = None
        queue, loop = self._queue, self.host.loop
        now = loop.time()
        while queue and queue[0][0] <= now:
            _, run = queue.popleft()
            if not run.finished:
                self._over(run)
        if queue:
            self._timer = loop.call_at(queue[0][0], self._fire)


class AsyncExecutor(_InProcess):
    """Runs a coroutine function as an asyncio task; terminating cancels it at its next await."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self._graces = Graces(host, self._abandon)

    def start(self, run: Run) -> None:
        """Schedule the coroutine on the scheduler's loop."""
        self._create(run, None)

    def prepare(self, run: Run) -> None:
        """Make the run's coroutine and asyncio task ahead of its start: the task waits
        on the run's gate, and its body runs once :meth:`go` opens it (:meth:`drop`: never)."""
        gate = run.gate = self.host.loop.create_future()
        self._create(run, gate, eager=EAGER)

    def go(self, runs: list[Run]) -> None:
        """Let prepared runs' bodies run: each one's first step now, one after the other
        (up to its first wait), the rest in its asyncio task (or all of it there, from
        the loop's next turn, where the first step cannot be taken here: see ``EAGER``).

        A gate opened for its task to take the first step cost a turn of the loop a body
        (a future's callback, a handle, the task's step: 1,000 bodies took 3-5 ms here on
        this machine's CPython, after the scheduler's own work for the burst). Taken here,
        each first step is that of the task it belongs to (``asyncio.current_task()``,
        its context); what it yielded is kept on the run, and its gate opened once every
        body of the burst has taken its first step."""
        loop = self.host.loop
        scheduler = asyncio.current_task(loop) if EAGER else None
        stepped: list[asyncio.Future[bool]] = []
        if scheduler is not None:
            _leave_task(loop, scheduler)  # type: ignore[misc]
        try:
            for run in runs:
                gate = run.gate
                assert gate is not None
                if gate.done():  # (cancelled at its gate meanwhile: terminated unrun)
                    continue
                if run.eager is None or not run.at_gate:
                    # Its task has not run yet (prepared in this turn of the loop: a
                    # burst whose preparing ran into its instant): a cancel now would be
                    # thrown into its task before its first line, and a body stepped
                    # here would then be closed from outside its task, what it awaits
                    # left running. Its task takes the first step, as a plain task's.
                    gate.set_result(True)
                    continue
                if run.deadline is not None:  # (only a run with a timeout can overrun it)
                    self.host.stepped(run)
                # The first step, as its task's step would take it (asyncio's own
                # record of the task running, its context).
                context, coroutine = run.eager
                task = run.handle
                _enter_task(loop, task)  # type: ignore[misc]
                try:
                    step = _FirstStep(context.run(coroutine.send, None), None)
                except BaseException as exc:  # raised by its task, in the task's own step
                    step = _FirstStep(None, exc)
                    self.host.returned(run)  # it ended: then, not when its task sees it
                finally:
                    _leave_task(loop, task)  # type: ignore[misc]
                run.first_step = step
                stepped.append(gate)
        finally:
            if scheduler is not None:
                _enter_task(loop, scheduler)  # type: ignore[misc]
            for gate in stepped:
                if not gate.done():  # (a body that cancelled its own task in its first
                    gate.set_result(True)  # step: its gate, which the task waited on)

    def drop(self, run: Run) -> None:
        """A prepared run that is not started: its coroutine is closed unrun, nothing recorded."""
        if run.gate is not None and not run.gate.done():
            run.gate.set_result(False)

    def _create(self, run: Run, gate: asyncio.Future[bool] | None, *, eager: bool = False) -> None:
        assert run.task.func is not None
        coroutine = run.task.func(**run.task.kwargs(run.flag))
        body = self._body(run, coroutine, gate)
        name = f"conddsl:{run.task.name}:{run.run_id}"
        if eager and type(coroutine) is types.CoroutineType:  # (an awaitable of another
            # kind is awaited by its task, from its start)
            context = contextvars.copy_context()
            run.eager = (context, coroutine)
            handle = self.host.loop.create_task(body, name=name, context=context)  # type: ignore[call-arg]
        else:
            handle = self.host.loop.create_task(body, name=name)
        run.handle = handle
        handle.add_done_callback(functools.partial(self._done, run, coroutine))

    async def _body(
        self, run: Run, coroutine: Awaitable[object], gate: asyncio.Future[bool] | None
    ) -> None:
        try:
            step: _FirstStep | None = None
            if gate is not None:
                run.at_gate = True
                try:
                    if not await gate:
                        _close(coroutine)  # prepared, never started: no run, no record
                        return
                    step = run.first_step  # type: ignore[assignment]
                except asyncio.CancelledError as cancelled:
                    if run.first_step is None:
                        raise
                    # Cancelled once go() took its first step (by then, or in it).
                    step = run.first_step.cancelled(cancelled)  # type: ignore[attr-defined]
            if step is not None:  # go() took its first step: on from there
                await _carry_on(coroutine, step)  # type: ignore[arg-type]
            else:
                if run.deadline is not None:  # (only a run with a timeout can overrun it)
                    self.host.stepped(run)
                await coroutine
        except asyncio.CancelledError:
            if run.gate is not None and not run.launched:  # prepared, then cancelled: no run
                _close(coroutine)
                raise
            _close(coroutine)  # (cancelled at its gate: it never ran; or closed already)
            # Our own cancellation is known by run.reason (set before cancel());
            # anyone else's is a failure of the run, not a termination.
            if run.reason is None:
                self.host.finish(run, "fail", "cancelled from outside the scheduler")
            else:
                self.host.finish(run, "terminate", None)
        except BaseException as exc:
            self.host.finish(run, *ended(run, exc))
            if isinstance(exc, KeyboardInterrupt):
                raise  # recorded, then let go; any other (GeneratorExit, a task's own
                # BaseException) is the run's failure only, as in a thread run
        else:
            self.host.finish(run, *ended(run, None))

    def _done(self, run: Run, coroutine: Awaitable[object], _: object) -> None:
        # Only an asyncio task cancelled before its first step gets here unfinished:
        # its _body never ran, so nothing else will record the run (a prepared run never
        # launched is no run at all).
        if not run.finished and (run.gate is None or run.launched):
            _close(coroutine)  # never started: no "never awaited" warning
            if run.reason is None:
                self.host.finish(run, "fail", "cancelled from outside the scheduler")
            else:
                self.host.finish(run, "terminate", None)

    def terminate(self, run: Run) -> None:
        """Cancel the coroutine; one that swallows the cancellation is abandoned after the grace."""
        run.flag.set()
        assert isinstance(run.handle, asyncio.Task)
        run.handle.cancel(f"conddsl: {run.reason}")
        self._graces.add(run)

    def _abandon(self, run: Run) -> None:
        log.warning("task %r ignored its cancellation; abandoned", run.task.name)
        self.host.finish(run, "terminate", "ignored the cancellation; abandoned")


class ThreadExecutor(_InProcess):
    """Runs the function in a daemon thread; terminating sets the run's TerminationFlag.

    A run is alive until its thread returns: terminated, it is *terminating* (the
    task is not started again unless multilaunch) and its record is written when the
    thread ends. A thread still running ``kill_grace`` after it was asked to stop is
    reported (time, held still meanwhile on a virtual clock, goes on); once the
    scheduler shuts down it gets one more grace and is then abandoned: recorded
    ``terminate`` with a message saying it still runs, so the scheduler can exit.
    """

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        # Runs whose flag is to be set, a batch at a time (see terminate); the batch whose
        # threads have not returned yet; the timer of the next batch.
        self._flags: collections.deque[Run] = collections.deque()
        self._batch: set[Run] = set()
        self._next: asyncio.Handle | None = None
        self._graces = Graces(host, self._grace_over)
        # Ends reported by the threads, for the loop to take in one callback (see _report).
        self._reports: collections.deque[tuple[Run, tuple[str, str | None]]] = collections.deque()
        self._drain_due = False  # a call of _drain_reports is on its way to the loop
        self._overdue: dict[Run, None] = {}  # past their grace, thread alive (ordered set)
        #: Threads of abandoned runs that have not returned yet.
        self.abandoned: list[threading.Thread] = []

    def start(self, run: Run) -> None:
        """Start the thread."""
        thread = threading.Thread(
            target=self._body, args=(run,), name=f"conddsl:{run.task.name}", daemon=True
        )
        run.handle = thread
        try:
            thread.start()
        except RuntimeError as exc:  # can't start new thread
            self.host.finish(run, "fail", f"could not start a thread: {exc}")

    def _body(self, run: Run) -> None:
        assert run.task.func is not None
        func = run.task.func
        try:
            result = func(**run.task.kwargs(run.flag))
            if inspect.isawaitable(result):
                asyncio.run(_awaited(result))
        except BaseException as exc:
            outcome = ended(run, exc)
        else:
            outcome = ended(run, None)
        self.host.returned(run)
        self._report(run, outcome)

    def _report(self, run: Run, outcome: tuple[str, str | None]) -> None:
        """Hand a thread's end to the loop (called in the thread).

        Threads flagged together return together: each waking the loop on its own
        (a write to its self-pipe, which lets go of the GIL and must take it back) made
        the GIL change hands once more per thread while the loop waited for it. The
        first end reported wakes the loop; the ends that come before it has taken them
        join it. The flag is cleared before the queue is emptied, so an end appended
        while it was set is taken by that drain, and one appended after by a new one.
        """
        self._reports.append((run, outcome))
        if self._drain_due:
            return
        self._drain_due = True
        # A closed loop (RuntimeError) means nobody is waiting for this run any more.
        with contextlib.suppress(RuntimeError):
            self.host.loop.call_soon_threadsafe(self._drain_reports)

    def _drain_reports(self) -> None:
        self._drain_due = False
        reports = self._reports
        try:
            while reports:
                self._ended(*reports.popleft())
        finally:
            if reports and not self._drain_due:  # one raised: the rest at the next turn
                self._drain_due = True
                self.host.loop.call_soon(self._drain_reports)

    def _ended(self, run: Run, outcome: tuple[str, str | None]) -> None:
        self._overdue.pop(run, None)
        self._returned(run)
        if run.finished:  # abandoned earlier: its record is written already
            log.info("the abandoned thread of task %r returned", run.task.name)
            with contextlib.suppress(ValueError):
                self.abandoned.remove(run.handle)  # type: ignore[arg-type]
            return
        self.host.finish(run, *outcome)

    def terminate(self, run: Run) -> None:
        """Ask the thread to stop: its flag is set after this turn of the loop, with the flags
        of the runs ended with it, ``FLAG_BATCH`` at a time, a batch every ``FLAG_PACE``
        seconds; the run ends when the thread returns.

        Threads woken one by one would take the GIL from the scheduler while it ends the
        rest; hundreds woken at once all want it as the loop does, and the loop waited for
        them 20-30 ms at a time. The next batch comes as soon as every thread of the last
        one has returned (a fraction of a millisecond, usually), ``FLAG_PACE`` at the latest."""
        self._flags.append(run)
        if self._next is None:
            self._next = self.host.loop.call_soon(self._set_flags)
        self._graces.add(run)

    def _set_flags(self) -> None:
        flags = self._flags
        batch = self._batch = {flags.popleft() for _ in range(min(FLAG_BATCH, len(flags)))}
        for run in batch:
            run.flag.set()
        self._next = self.host.loop.call_later(FLAG_PACE, self._set_flags) if flags else None

    def _returned(self, run: Run) -> None:
        """A thread of the batch flagged last returned: the next batch once all have."""
        batch = self._batch
        if run in batch:
            batch.discard(run)
            if not batch and self._next is not None:
                self._next.cancel()
                self._next = self.host.loop.call_soon(self._set_flags)

    def _grace_over(self, run: Run) -> None:
        if self.host.stopping():
            self._abandon(run)
            return
        log.warning(
            "task %r: its thread still runs %s s after it was asked to stop (%s); it is not"
            " started again before the thread returns (a thread that never checks its"
            " TerminationFlag cannot be stopped: use execution = 'process')",
            run.task.name,
            self.host.kill_grace,
            run.reason,
        )
        self._overdue[run] = None
        self.host.overdue(run)  # on a virtual clock, time goes on

    def shutting_down(self) -> None:
        """The scheduler stops: the runs past their grace get one more, then are abandoned."""
        overdue, self._overdue = self._overdue, {}
        for run in overdue:
            if not run.finished:
                self._graces.add(run)

    def _abandon(self, run: Run) -> None:
        log.warning(
            "task %r: its thread still runs; abandoned (it goes on in the background)",
            run.task.name,
        )
        assert isinstance(run.handle, threading.Thread)
        self.abandoned.append(run.handle)
        self.host.finish(
            run,
            "terminate",
            f"abandoned at shutdown: the thread was still running {self.host.kill_grace:g} s"
            " after it was asked to stop",
        )


async def _awaited(awaitable: Awaitable[object]) -> None:
    await awaitable


class _FirstStep:
    """A coroutine's first step, taken by :meth:`AsyncExecutor.go`: it stopped waiting on
    ``awaited`` (what it yielded: a future, or None for a bare yield), or it ended,
    raising ``error`` (StopIteration: it returned); ``thrown`` is to be thrown into it
    where it stopped, before its task waits on anything (a cancellation)."""

    __slots__ = ("awaited", "error", "thrown")

    def __init__(
        self, awaited: object, error: BaseException | None, thrown: BaseException | None = None
    ) -> None:
        self.awaited = awaited
        self.error = error
        self.thrown = thrown

    def cancelled(self, cancelled: asyncio.CancelledError) -> _FirstStep:
        """This step, its task cancelled before it went on from it: what a task cancelled
        while it waits does (asyncio.Task.cancel): the future waited on is cancelled, and
        the coroutine sees that when it goes on; if it cannot be (it is done), the
        coroutine is thrown the CancelledError. (Ended in its first step: nothing to do.)"""
        if self.error is not None:
            return self
        cancel = getattr(self.awaited, "cancel", None)
        message = cancelled.args[0] if cancelled.args else None
        if cancel is not None and cancel(msg=message):
            return self
        return _FirstStep(self.awaited, None, cancelled)


@types.coroutine
def _carry_on(
    coroutine: Coroutine[Any, Any, object], step: _FirstStep
) -> Generator[Any, Any, None]:
    """Go on with ``coroutine`` from its first step (taken outside its task: see
    :meth:`AsyncExecutor.go`) as ``await coroutine`` would have: the task waits on what
    it yielded, then it is resumed and awaited as any other; what the task is thrown
    meanwhile (a cancellation, a bad yield refused) is thrown into it."""
    error = step.error
    if error is not None:  # it ended in its first step
        if isinstance(error, StopIteration):
            return
        raise error
    awaited, thrown = step.awaited, step.thrown
    if awaited is None and thrown is None:
        # A bare yield (asyncio.sleep(0)) gives up one turn of the loop: its task's wake-up
        # at the gate go() opened was that turn. Yielding again would resume the body a
        # turn later than a plain task (after callbacks it scheduled for that turn's next).
        yield from coroutine  # type: ignore[misc]
        return
    while True:
        if thrown is not None:
            try:
                awaited = coroutine.throw(thrown)
            except StopIteration:
                return
            thrown = None
        try:
            yield awaited
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as exc:
            thrown = exc
            continue
        yield from coroutine  # type: ignore[misc]
        return


def _close(coroutine: Awaitable[object]) -> None:
    """Close a coroutine that may never have run (no "never awaited" warning); a coroutine
    that ran to its end is closed already, and closing it again does nothing."""
    close = getattr(coroutine, "close", None)
    if close is not None:
        close()
