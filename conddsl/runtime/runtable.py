"""The run table: which runs are alive, by task, and the limits on starting more.

It counts the live runs (all, those holding a process, the permanent ones), keeps the
tasks waiting for a process slot (``max_process_count``) and when each task's last
run ended, and says when a multilaunch task has too many runs dying to start another.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, KeysView
from datetime import datetime

from conddsl.runtime.runs import Run
from conddsl.runtime.tasks import Task

log = logging.getLogger("conddsl.runtime")

# How many runs of a multilaunch task may be asked to stop and still be alive before it is
# not started any more: threads that ignore their flag do not pile up without bound.
MAX_DYING = 8
_PROCESS_EXECUTIONS = ("process", "command")  # (see Task.uses_process)


class RunTable:
    """The live runs of a scheduler, by task name and run id."""

    def __init__(self, max_process_count: int | None) -> None:
        self._runs: dict[str, dict[str, Run]] = {}
        self._max_processes = max_process_count
        self.active = 0  # live runs
        self.processes = 0  # live runs of process and command tasks
        self.permanent = 0  # live runs of permanent tasks
        self._waiting_slot: dict[str, None] = {}  # tasks waiting for a process slot
        self.ended_at: dict[str, datetime] = {}  # when each task's last run ended

    def add(self, run: Run) -> None:
        """``run`` is alive."""
        task = run.task
        runs = self._runs.get(task.name)
        if runs is None:  # (not setdefault: it would make a dict per call)
            runs = self._runs[task.name] = {}
        runs[run.run_id] = run
        self.active += 1
        # (Task.uses_process and Task.permanent read without their property calls: a
        # burst of a thousand starts adds a thousand runs.)
        if task.execution in _PROCESS_EXECUTIONS:
            self.processes += 1
        if task.role == "permanent":
            self.permanent += 1

    def remove(self, run: Run) -> list[str]:
        """``run`` has ended; the tasks that waited for its process slot (to look at again)."""
        task = run.task
        runs = self._runs[task.name]
        del runs[run.run_id]
        if not runs:
            del self._runs[task.name]
        self.active -= 1
        freed: list[str] = []
        if task.uses_process:
            self.processes -= 1
            freed = list(self._waiting_slot)
            self._waiting_slot.clear()
        if task.permanent:
            self.permanent -= 1
        return freed

    def of(self, name: str) -> list[Run]:
        """The live runs of task ``name``."""
        return list(self._runs.get(name, {}).values())

    def alive(self) -> KeysView[str]:
        """The names of the tasks with a live run: a live view, valid as long as the table
        (``in`` without a call)."""
        return self._runs.keys()

    def __contains__(self, name: object) -> bool:
        """Whether task ``name`` has a live run."""
        return name in self._runs

    def __iter__(self) -> Iterator[Run]:
        for runs in self._runs.values():
            yield from runs.values()

    def slot_for(self, task: Task) -> bool:
        """Whether ``task`` may start now; if not, it waits for a process slot."""
        if not task.uses_process:
            return True
        limit = self._max_processes
        if limit is None or self.processes < limit:
            return True
        self._waiting_slot[task.name] = None
        return False

    def forget(self, name: str) -> None:
        """Task ``name`` was removed: it waits for no slot."""
        self._waiting_slot.pop(name, None)

    def dying_too_many(self, task: Task) -> bool:
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
