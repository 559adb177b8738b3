"""What each control request checks in the caller's thread and does in the loop's:
adding and removing tasks, manual runs, ``terminate``, ``enable``/``disable``, custom
condition rechecks; and a task's state as control sees it.

The checks run under the control lock against the task book's ``known`` tasks (those
added from another thread and not applied yet included), so that a request refused is
refused at once with a clear error; what is accepted is applied in the loop's thread
(see :mod:`~conddsl.runtime.control`). It holds no reference to the scheduler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from conddsl.errors import ControlError
from conddsl.runtime.control import Control, Request
from conddsl.runtime.launcher import Launcher
from conddsl.runtime.lifecycle import Lifecycle
from conddsl.runtime.phases import Phase, State
from conddsl.runtime.runtable import RunTable
from conddsl.runtime.taskbook import TaskBook
from conddsl.runtime.tasks import Task
from conddsl.runtime.wake import Key

log = logging.getLogger("conddsl.runtime")


class Requests:
    """The control requests over the task book, the runs and the lifecycle."""

    def __init__(
        self,
        book: TaskBook,
        control: Control,
        runs: RunTable,
        launcher: Launcher,
        life: Lifecycle,
        *,
        wake: Callable[[], None],
    ) -> None:
        """``wake``: wakes the scheduler's loop (called in its thread)."""
        self._book = book
        self._control = control
        self._runs = runs
        self._launcher = launcher
        self._life = life
        self._wake = wake

    def _serving(self) -> bool:
        return self._control.attached and self._life.state is not State.DONE

    def _touch(self, key: Key) -> None:
        self._book.due.mark(key)
        self._wake()

    # ---------------------------------------------------------------- tasks

    def add(self, task: Task) -> None:
        """Add ``task``: its name is taken at once, the task applied in the loop."""
        with self._control.lock:
            self._book.declare(task, serving=self._control.attached)
            self._control.submit(Request(partial(self._register, task), "add", task.name))

    def _register(self, task: Task) -> None:
        main = self._life.phase is Phase.MAIN  # added while the scheduler runs
        self._book.register(task, main=main)
        if main:
            self._wake()

    def remove(self, name: str) -> Task:
        """Remove task ``name`` (its name is free at once) and return it."""
        with self._control.lock:
            task = self._book.withdraw(name)
            self._control.submit(Request(partial(self._unregister, task), "remove", name))
            return task

    def _unregister(self, task: Task) -> None:
        if not self._book.unregister(task):
            return
        name = task.name
        self._runs.forget(name)
        self._life.forget(task)
        for run in self._runs.of(name):
            if run.task is task and run.task.terminable:
                self._launcher.terminate(run, "forced", "the task was removed (remove_task())")

    # ---------------------------------------------------------------- runs

    def run(self, name: str) -> None:
        """Ask for a manual run of ``name`` (see ``Scheduler.run_task``)."""
        with self._control.lock:
            task = self._book.lookup(name)
            state = self._life.state
            if state is not State.RUNNING and state is not State.IDLE:
                now = "has stopped" if state is State.DONE else "is shutting down"
                raise ControlError(f"cannot run task {name!r}: the scheduler {now}")
            if not task.multilaunch:
                if name in self._runs:
                    raise ControlError(
                        f"task {name!r} is running (and not multilaunch): not started again"
                    )
                if self._book.manual.get(name) or self._control.asked("run", name):
                    raise ControlError(f"a run of task {name!r} is already asked for")
            self._control.submit(Request(partial(self._apply_run, name), "run", name))

    def _apply_run(self, name: str) -> None:
        if name not in self._book.tasks or self._life.state not in (State.IDLE, State.RUNNING):
            log.warning("manual run of %r not started: the task or the scheduler is gone", name)
            return
        self._book.ask_manual(name)
        if self._serving():
            self._touch(name)

    def terminate(self, name: str) -> None:
        """Terminate the runs of ``name`` (see ``Scheduler.terminate``)."""
        with self._control.lock:
            task = self._book.lookup(name)
            if not task.terminable:
                raise ControlError(
                    f"task {name!r} runs in the main execution, which cannot be terminated"
                )
            self._control.submit(Request(partial(self._apply_terminate, name), "terminate", name))

    def _apply_terminate(self, name: str) -> None:
        self._book.manual.pop(name, None)
        for run in self._runs.of(name):
            self._launcher.terminate(run, "forced", "terminate() was called")

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable or enable ``name``; it is looked at again at once."""
        with self._control.lock:
            task = self._book.lookup(name)
            task.disabled = disabled
            self._control.submit(Request(partial(self._apply_touch, name), "touch", name))

    def _apply_touch(self, name: str) -> None:
        if self._serving() and name in self._book.tasks:
            self._touch(name)

    def recheck(self, phrase: str) -> None:
        """Custom condition ``phrase`` may have changed: its users are looked at at once."""
        with self._control.lock:
            self._control.submit(Request(partial(self._apply_recheck, phrase), "recheck"))

    def _apply_recheck(self, phrase: str) -> None:
        if self._serving():
            for key in self._book.users_of(phrase):
                self._touch(key)

    def task_state(self, name: str) -> str:
        """Task ``name``'s state (see ``Scheduler.task_state``)."""
        with self._control.lock:
            task = self._book.lookup(name)
            pending = self._book.manual.get(name) or self._control.asked("run", name)
        runs = self._runs.of(name)
        if runs:
            if all(run.state == "terminating" for run in runs):
                return "terminating"
            return "running"
        if pending:
            return "pending"
        return "disabled" if task.disabled else "idle"
