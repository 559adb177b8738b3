"""Running Python tasks in the scheduler's thread (main), as coroutines (async) and in threads."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable

from conddsl.runtime.flags import TerminationFlag
from conddsl.runtime.runs import Host, Run, outcome_of

log = logging.getLogger("conddsl.runtime")


class MainExecutor:
    """Runs the task in the scheduler's own thread; the scheduler waits for it. Not terminable."""

    holds_clock = False

    def __init__(self, host: Host) -> None:
        self.host = host

    def start(self, run: Run) -> Awaitable[None] | None:
        """Call the function; a coroutine function gives an awaitable for the scheduler."""
        assert run.task.func is not None
        if inspect.iscoroutinefunction(run.task.func):
            return self._await(run)
        error = None
        try:
            run.task.func(**run.task.kwargs(run.flag))
        except Exception as exc:
            error = exc
        self.host.finish(run, *outcome_of(error))
        return None

    async def _await(self, run: Run) -> None:
        assert run.task.func is not None
        error = None
        try:
            await run.task.func(**run.task.kwargs(run.flag))
        except Exception as exc:
            error = exc
        self.host.finish(run, *outcome_of(error))

    def terminate(self, run: Run) -> None:  # pragma: no cover - the scheduler never asks
        raise RuntimeError("a main task cannot be terminated")


class AsyncExecutor:
    """Runs a coroutine function as an asyncio task; terminating cancels it at its next await."""

    holds_clock = True  # time stands still while a cancelled coroutine unwinds

    def __init__(self, host: Host) -> None:
        self.host = host
        # Cancelled runs in the order their grace ends (one grace for all): one timer
        # for the earliest, not one per run.
        self._graces: collections.deque[tuple[float, Run]] = collections.deque()
        self._grace_timer: asyncio.TimerHandle | None = None

    def start(self, run: Run) -> None:
        """Schedule the coroutine on the scheduler's loop."""
        assert run.task.func is not None
        coroutine = run.task.func(**run.task.kwargs(run.flag))
        handle = run.handle = self.host.loop.create_task(
            self._body(run, coroutine), name=f"conddsl:{run.task.name}:{run.run_id}"
        )
        handle.add_done_callback(functools.partial(self._done, run, coroutine))

    async def _body(self, run: Run, coroutine: Awaitable[object]) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            # Our own cancellation is known by run.reason (set before cancel());
            # anyone else's is a failure of the run, not a termination.
            if run.reason is None:
                self.host.finish(run, "fail", "cancelled from outside the scheduler")
            else:
                self.host.finish(run, "terminate", None)
        except BaseException as exc:
            self.host.finish(run, *outcome_of(exc))
            if not isinstance(exc, Exception):
                raise  # SystemExit, KeyboardInterrupt: recorded, then let go
        else:
            self.host.finish(run, *outcome_of(None))

    def _done(self, run: Run, coroutine: Awaitable[object], _: object) -> None:
        # Only an asyncio task cancelled before its first step gets here unfinished:
        # its _body never ran, so nothing else will record the run.
        if not run.finished:
            close = getattr(coroutine, "close", None)
            if close is not None:
                close()  # never started: no "never awaited" warning
            if run.reason is None:
                self.host.finish(run, "fail", "cancelled from outside the scheduler")
            else:
                self.host.finish(run, "terminate", None)

    def terminate(self, run: Run) -> None:
        """Cancel the coroutine; one that swallows the cancellation is abandoned after the grace."""
        run.flag.set()
        run.handle.cancel(f"conddsl: {run.reason}")
        loop = self.host.loop
        ends = loop.time() + self.host.kill_grace
        self._graces.append((ends, run))
        if self._grace_timer is None:
            self._grace_timer = loop.call_at(ends, self._abandon)

    def _abandon(self) -> None:
        """Give up on the runs whose grace is over and that are still not finished."""
        self._grace_timer = None
        graces, loop = self._graces, self.host.loop
        now = loop.time()
        while graces and graces[0][0] <= now:
            _, run = graces.popleft()
            if not run.finished:
                log.warning("task %r ignored its cancellation; abandoned", run.task.name)
                self.host.finish(run, "terminate", "ignored the cancellation; abandoned")
        if graces:
            self._grace_timer = loop.call_at(graces[0][0], self._abandon)


class ThreadExecutor:
    """Runs the function in a daemon thread; terminating sets the run's TerminationFlag.

    The run is over for the scheduler once termination is asked: a thread that
    ignores its flag is abandoned (never recorded as a success). ``exited`` is set
    whenever no thread of this executor is alive.
    """

    holds_clock = False

    def __init__(self, host: Host) -> None:
        self.host = host
        self._alive = 0
        self.exited = asyncio.Event()
        self.exited.set()
        self._flags: list[TerminationFlag] = []  # to set at the end of this turn of the loop

    def start(self, run: Run) -> None:
        """Start the thread."""
        thread = threading.Thread(
            target=self._body, args=(run,), name=f"conddsl:{run.task.name}", daemon=True
        )
        run.handle = thread
        self._alive += 1
        self.exited.clear()
        try:
            thread.start()
        except RuntimeError as exc:  # can't start new thread
            self._alive -= 1
            self._update()
            self.host.finish(run, "fail", f"could not start a thread: {exc}")

    def _body(self, run: Run) -> None:
        assert run.task.func is not None
        func = run.task.func
        try:
            result = func(**run.task.kwargs(run.flag))
            if inspect.isawaitable(result):
                asyncio.run(_awaited(result))
        except BaseException as exc:
            outcome = outcome_of(exc)
        else:
            outcome = outcome_of(None)
        # A closed loop (RuntimeError) means nobody is waiting for this run any more.
        with contextlib.suppress(RuntimeError):
            self.host.loop.call_soon_threadsafe(self._ended, run, outcome)

    def _ended(self, run: Run, outcome: tuple[str, str | None]) -> None:
        self._alive -= 1
        self._update()
        self.host.finish(run, *outcome)

    def _update(self) -> None:
        if self._alive == 0:
            self.exited.set()

    def terminate(self, run: Run) -> None:
        """The run ends now, whether or not the thread obeys; its flag is set at the end of
        this turn of the loop, with the flags of the runs ended with it (threads woken one
        by one would take the GIL from the scheduler while it ends the rest)."""
        self.host.finish(run, "terminate", None)
        self._flags.append(run.flag)
        if len(self._flags) == 1:
            self.host.loop.call_soon(self._set_flags)

    def _set_flags(self) -> None:
        flags, self._flags = self._flags, []
        for flag in flags:
            flag.set()


async def _awaited(awaitable: Awaitable[object]) -> None:
    await awaitable
