"""The task book: which tasks the scheduler has, and its bookkeeping of each between
evaluations.

- the tasks applied (``tasks``, the loop's view) and every task by name, those
  registered from another thread and not applied yet included (``known``, what control
  requests are checked against, under the control lock);
- the shut condition and the wake index (whose conditions read which task's records);
- when each key (a task's name, or ``SHUT``) is next looked at (``checks``), since when
  a task's check is due (``due_since``) and the keys due now (``due``);
- the starts pending: manual ones asked for (``manual``), permanent tasks not started
  yet (``permanent_pending``), on a shared history the tasks whose lost runs may wait
  to be retried here (``retry_hint``) and the starts another node was claiming
  (``recheck_soon``).

It holds no run, executor or clock: the evaluator (``evaluator.py``) reads and changes
this bookkeeping as it evaluates; the scheduler changes it for registration and control.
"""

from __future__ import annotations

from datetime import datetime

from conddsl import ast
from conddsl.errors import UnknownTaskError
from conddsl.history.base import Entry
from conddsl.runtime.conditions import OWN_TASK_HINT, ConditionLike, own_task_problem, reads
from conddsl.runtime.config import ConfigError
from conddsl.runtime.deadlines import Deadlines
from conddsl.runtime.tasks import Task
from conddsl.runtime.wake import SHUT, Due, Key, WakeIndex


class TaskBook:
    """The tasks, the shut condition, and what is pending for each (see the module)."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.known: dict[str, Task] = {}
        self.shut_cond: ConditionLike | None = None
        self.wake_index = WakeIndex()
        self.checks: Deadlines[Key] = Deadlines()
        self.due_since: dict[str, datetime] = {}
        self.due = Due()
        self.manual: dict[str, int] = {}  # manual starts asked for and not made yet
        self.permanent_pending: dict[str, None] = {}  # an ordered set
        self.retry_hint: set[str] = set()
        self.recheck_soon: dict[str, datetime] = {}

    # ---------------------------------------------------------------- definitions

    def lookup(self, name: str) -> Task:
        """The task named ``name``, applied or not yet; UnknownTaskError if none."""
        task = self.known.get(name)
        if task is None:
            raise UnknownTaskError(name, self.known)
        return task

    def declare(self, task: Task, *, serving: bool) -> None:
        """Reserve ``task``'s name (under the control lock; applied by :meth:`register`);
        ``serving``: the scheduler has begun, so ``on_startup`` tasks are refused."""
        if task.name in self.known:
            raise ConfigError(f"a task named {task.name!r} already exists")
        if task.on_startup and serving:
            raise ConfigError(
                f"task {task.name!r}: on_startup tasks are registered before the scheduler starts"
            )
        self.known[task.name] = task

    def withdraw(self, name: str) -> Task:
        """Free ``name`` (under the control lock; forgotten by :meth:`unregister`)."""
        task = self.lookup(name)
        del self.known[name]
        return task

    def register(self, task: Task, *, main: bool) -> None:
        """Apply ``task``; ``main``: added while the main phase runs, so it is looked at
        now (and a permanent task is to start)."""
        self.tasks[task.name] = task
        self.wake_index.add(task.name, task.reads)
        if main:
            if task.permanent:
                self.permanent_pending[task.name] = None
            self.due.mark(task.name)

    def unregister(self, task: Task) -> bool:
        """Forget ``task`` and all that is pending for it; False if it is not the task
        applied under its name (removed already)."""
        name = task.name
        if self.tasks.get(name) is not task:
            return False
        del self.tasks[name]
        self.wake_index.remove(name, task.reads)
        self.checks.discard(name)
        self.due_since.pop(name, None)
        self.manual.pop(name, None)
        self.permanent_pending.pop(name, None)
        self.due.discard(name)
        return True

    def watch_shut_cond(self, cond: ConditionLike) -> None:
        """Wake the shut condition ``cond`` by the records it reads; a ConfigError if it
        reads its own task's state (it has no task)."""
        node = getattr(cond, "ast", None)
        if isinstance(node, ast.Node):
            why = own_task_problem(node, getattr(cond, "rules", None) or {})
            if why is not None:
                raise ConfigError(f"shut_cond {why}: {OWN_TASK_HINT}")
        self.wake_index.add(SHUT, reads(cond))

    def users_of(self, phrase: str) -> list[Key]:
        """The keys (task names, SHUT) whose conditions have custom part ``phrase``."""
        found: list[Key] = []
        if phrase in getattr(self.shut_cond, "customs", ()):
            found.append(SHUT)
        for name, task in self.tasks.items():
            if any(phrase in getattr(cond, "customs", ()) for cond in (task.start, task.end)):
                found.append(name)
        return found

    # ---------------------------------------------------------------- what is pending

    def enter_main(self) -> None:
        """The main phase begins: the permanent tasks are to start, and every task and
        the shut condition are looked at."""
        for name, task in self.tasks.items():
            if task.permanent:
                self.permanent_pending[name] = None
        if self.shut_cond is not None:
            self.due.mark(SHUT)
        self.due.mark_all(self.tasks)

    def woken(self, name: str, own_change: bool) -> None:
        """A record of task ``name`` was written: whose conditions may read it. The task
        itself after its own start is looked at again at its next change instead."""
        readers, read_all = self.wake_index.reader_sets(name)
        if readers or read_all:
            mark = self.due.mark
            for keys in (readers, read_all):
                for key in keys:
                    if own_change or key != name:
                        mark(key)
        if own_change:
            self.due.mark(name)  # "not running" may have changed

    def woken_all(self, entries: list[Entry]) -> None:
        """:meth:`woken` for each record of a batch written, in order: its task's own state
        may have changed unless it is a start (a ``run`` record)."""
        if self.wake_index.reads_records():
            for entry in entries:
                self.woken(entry[0], entry[1] != "run")
            return
        # No condition reads records (a burst of clock-window starts): only each task's
        # own change wakes it, and a start wakes nothing (two calls less a record).
        mark = self.due.mark
        for entry in entries:
            if entry[1] != "run":
                mark(entry[0])

    def heard(self, task: str | None) -> None:
        """Another node recorded for ``task`` (None: anything may have changed): its
        readers are looked at, and its lost runs may wait to be retried here."""
        for name in list(self.tasks) if task is None else [task]:
            self.woken(name, True)
            if name in self.tasks and self.tasks[name].on_node_lost == "retry":
                self.retry_hint.add(name)

    def ask_manual(self, name: str) -> None:
        """One more manual start of ``name`` is asked for."""
        self.manual[name] = self.manual.get(name, 0) + 1

    def manual_made(self, name: str) -> None:
        """One manual start of ``name`` was made."""
        left = self.manual.pop(name, 0) - 1
        if left > 0:
            self.manual[name] = left
