"""The scheduler's lifecycle: its state, the session's phase, and the steps that move them.

- *startup*: the ``on_startup`` tasks, one after the other, then the main phase;
- *shutdown*: graceful (nothing new starts, runs end by themselves; the permanent runs
  are ended once they are all that is left) or forced (every run is asked to stop);
- *closing*: once every run has ended, the ``on_shutdown`` tasks, one after the other;
- *fatal errors*: a forced shutdown whose error ``serve()`` raises.

The scheduler's loop says when each step is taken; this module says what it does. It
reaches the runs only through the run table, the launcher and the record writer, and is
told the tasks by its caller: it holds no reference back to the scheduler.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Iterable

from conddsl.history import HistoryError, RunLost
from conddsl.runtime.launcher import Launcher
from conddsl.runtime.phases import Phase, State
from conddsl.runtime.records import RecordWriter
from conddsl.runtime.runs import Run
from conddsl.runtime.runtable import RunTable
from conddsl.runtime.shared import SharedNode, is_outage
from conddsl.runtime.tasks import Task

log = logging.getLogger("conddsl.runtime")


class Lifecycle:
    """The scheduler's state and phase, with the startup, shutdown and closing steps."""

    def __init__(
        self,
        launcher: Launcher,
        runs: RunTable,
        records: RecordWriter,
        *,
        instant_shutdown: bool,
        wake: Callable[[], None],
    ) -> None:
        """``instant_shutdown``: every shutdown is forced; ``wake``: wakes the loop."""
        self._launcher = launcher
        self._runs = runs
        self._records = records
        self._instant = instant_shutdown
        self._wake = wake
        self.state = State.IDLE
        self.phase: Phase | None = None
        self.fatal_error: BaseException | None = None
        #: (cause, what happened) once a shutdown begins (see ``Scheduler.stopped_by``).
        self.stopped_by: tuple[str, str] | None = None
        #: This node's part of a shared history, once it joined one: outages are ridden out.
        self.shared: SharedNode | None = None
        #: (reason, message) of a forced shutdown's terminations, once one began.
        self.forced: tuple[str, str] | None = None
        self._queue: collections.deque[Task] = collections.deque()  # role tasks to run
        self._role_run: Run | None = None  # the on_startup or on_shutdown run going on

    # ---------------------------------------------------------------- phases

    def begin(self, tasks: Iterable[Task]) -> None:
        """Serving begins: the startup phase, with the ``on_startup`` tasks among ``tasks``."""
        self.state = State.RUNNING
        self.phase = Phase.STARTUP
        self._queue.extend(task for task in tasks if task.on_startup)

    def forget(self, task: Task) -> None:
        """``task`` was removed: it is not run as a startup or shutdown task."""
        if self._queue and task in self._queue:
            self._queue.remove(task)

    async def step_startup(self, check_shut: Callable[[], None]) -> bool:
        """Start the next on_startup task once the one before has ended; True when the
        main phase begins (and the scheduler runs). ``check_shut`` looks at the shut
        condition if it is due (it may begin a shutdown)."""
        while self.phase is Phase.STARTUP:
            run = self._role_run
            if run is not None and not run.finished:
                return False
            self._role_run = None
            self._records.flush()  # the shut condition may read the records of the last one
            if self._queue and self.state is State.RUNNING:
                # Nothing starts once the shut condition is true: startup tasks neither.
                check_shut()
            if self.state is not State.RUNNING or not self._queue:
                self._queue.clear()  # a shutdown during startup skips the rest
                self.phase = Phase.MAIN
                return self.state is State.RUNNING
            task = self._queue.popleft()
            if not task.disabled:
                self._role_run = await self._start_role(task)
        return False

    async def step_closing(self, tasks: Iterable[Task]) -> bool:
        """Start the next on_shutdown task among ``tasks``; False once none is left (the
        scheduler stops)."""
        if self.phase is not Phase.CLOSING:
            self.phase = Phase.CLOSING
            self._queue = collections.deque(
                task for task in tasks if task.on_shutdown and not task.disabled
            )
        while self._queue:
            run = await self._start_role(self._queue.popleft())
            if not run.finished:
                return True
        return False

    async def _start_role(self, task: Task) -> Run:
        """Start an on_startup or on_shutdown run (outside the process limit: nothing else runs)."""
        run, awaitable = self._launcher.start(task, self._launcher.clock.now())
        if awaitable is not None:
            await awaitable
        return run

    def finish(self) -> None:
        """Serving is over."""
        self.state = State.DONE

    # ---------------------------------------------------------------- shutdown

    def shut(self, force: bool, why: str | None, cause: str) -> None:
        """Apply a ``shut_down()``: graceful first, forced when asked again or with ``force``."""
        if self.phase is Phase.CLOSING:
            self._cut_closing()
        elif force:
            self.force("forced", why or "shut_down(force=True) was called", "forced")
        elif self.state is State.GRACEFUL:
            self.force("forced", why or "shut_down() was called a second time", "forced")
        else:
            self.begin_shutdown(why or "shut_down() was called", cause)

    def _cut_closing(self) -> None:
        """A shut_down() while the on_shutdown tasks run: end the one running, skip the rest."""
        if self._queue:
            skipped = ", ".join(task.name for task in self._queue)
            log.warning("shut down again: on_shutdown tasks not run: %s", skipped)
            self._queue.clear()
        if self.state is State.GRACEFUL:
            self.state = State.FORCED
            self._launcher.shutting_down()
        for run in list(self._runs):
            if run.task.terminable:
                why = "shut_down() was called during the shutdown tasks"
                self._launcher.terminate(run, "forced", why)

    def end_permanent(self) -> None:
        """A graceful shutdown whose only live runs are permanent ones ends them (they would
        never end by themselves)."""
        if self.state is State.GRACEFUL and self._runs.permanent == self._runs.active > 0:
            for run in list(self._runs):
                if run.task.permanent:
                    self._launcher.terminate(run, "shutdown", "the scheduler is shutting down")

    def begin_shutdown(self, why: str, cause: str = "shut_cond") -> None:
        """Shut down gracefully (forced with ``instant_shutdown``), if not stopping already."""
        if self.state is not State.RUNNING:
            return
        if self._instant:
            self.force("shutdown", why, cause)
        else:
            log.info("shutting down gracefully: %s", why)
            self.stopped_by = (cause, why)
            self.state = State.GRACEFUL
            self._launcher.shutting_down()  # thread runs past their grace are abandoned

    def force(self, reason: str, why: str, cause: str) -> None:
        """Shut down now: every run that can be terminated is, with ``reason``."""
        if self.state is State.FORCED or self.state is State.DONE:
            return
        log.info("shutting down now (%s): %s", reason, why)
        if self.stopped_by is None or cause in ("forced", "fatal error"):
            self.stopped_by = (cause, why)
        self.state = State.FORCED
        self.forced = (reason, why)
        self._launcher.shutting_down()
        for run in list(self._runs):
            if run.task.terminable:
                self._launcher.terminate(run, reason, why)

    # ---------------------------------------------------------------- errors

    def fail(self, exc: BaseException) -> None:
        """A fatal error: terminate everything (reason ``shutdown``); serve() raises it."""
        if isinstance(exc, RunLost):
            # Another node took the run over (it recorded the crash): not ours to record.
            log.warning("%s", exc)
            return
        if self.shared is not None and is_outage(exc):
            self.shared.outage(exc)  # ridden out: the records wait, nothing is claimed
            return
        if self.fatal_error is not None:
            log.error("another error while stopping: %s", exc)
            return
        self.fatal_error = exc
        log.error("fatal error, shutting down: %s", exc)
        self.force("shutdown", f"fatal error: {exc}", "fatal error")

    def history_failed(self, exc: HistoryError) -> None:
        """The store gave up on records it had accepted (its file stayed locked): fatal."""
        self.fail(exc)
        self._wake()

    def stopped(self, exc: BaseException) -> None:
        """The loop itself raised ``exc`` (cancelled: a forced stop, else a fatal error)."""
        cancelled = isinstance(exc, asyncio.CancelledError)
        if not cancelled and self.fatal_error is None:
            self.fatal_error = exc
        self.force(
            "forced" if cancelled else "shutdown",
            f"the scheduler stopped: {exc!r}",
            "forced" if cancelled else "fatal error",
        )
