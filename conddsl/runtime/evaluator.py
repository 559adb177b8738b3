"""The evaluation of the keys due: which tasks start or end now, and when each is next
looked at.

Each turn of the scheduler's loop asks the evaluator, in this order:

1. :meth:`Evaluator.collect`: the runs timed out are terminated, the keys whose check
   came due are marked (a running task ahead of the others: its end condition may now
   hold, and is not kept behind a backlog of starts), and on a new cycle the keys that
   read the cycle counter;
2. :meth:`Evaluator.evaluate_due`: the keys due, in :class:`~conddsl.runtime.wake.Due`'s
   order. For a task: its end condition (runs end), then its manual, permanent,
   retried or conditional start, then when it is next looked at. For ``SHUT``: the shut
   condition (a shutdown begins);
3. :meth:`Evaluator.next_deadline`: when the loop is to wake if nothing happens first.

Evaluating many keys (thousands waking at once) stops every ``SLICE`` seconds, and as
soon as a run's timeout or a check comes due, to let the event loop through; the rest
is evaluated at once after, at a fresh "now" (the loop does not count it a new cycle).
The records stamped before a key is evaluated are written first, in the same slices:
hundreds of runs ended together may take several passes before the next key.

Its state is explicit: the task book (``taskbook.py``: tasks, pending starts, checks,
keys due), the run table, the timeouts, and the collaborators that act (launcher,
judge, lifecycle, record writer); ``shared`` is set once the scheduler joins a shared
history. It knows nothing of the scheduler.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from conddsl.history import ClaimBusy, Record
from conddsl.runtime.conditions import ConditionFailed
from conddsl.runtime.deadlines import Timeouts
from conddsl.runtime.frozen_heap import pause_collections, resume_collections
from conddsl.runtime.judge import Judge
from conddsl.runtime.launcher import Launcher, never_started
from conddsl.runtime.lifecycle import Lifecycle
from conddsl.runtime.phases import Phase, State
from conddsl.runtime.records import RecordWriter
from conddsl.runtime.runs import Run, new_run_id
from conddsl.runtime.runtable import RunTable
from conddsl.runtime.session import Session
from conddsl.runtime.shared import SharedNode
from conddsl.runtime.taskbook import TaskBook
from conddsl.runtime.tasks import Task
from conddsl.runtime.wake import SHUT, Key

log = logging.getLogger("conddsl.runtime")
# A start another node was claiming at the same instant is looked at again this soon (its
# run record usually wakes this node first).
BUSY_RECHECK = timedelta(milliseconds=100)
SLICE = 0.002  # seconds of condition evaluation before the loop lets other work through
# A pass that launches prepared starts is cut later: a launch is a few microseconds, and
# the bodies of the starts left over wait for a turn of the loop in which the tasks of
# those launched take their next step (1,000 starts cut at 2 ms: the last 40-110 bodies
# of the burst took their first step 1-2 ms later than the rest).
BURST_SLICE = 0.006
# A pass that ends runs stops sooner: what it sets off comes back at the loop's next turn
# (the coroutines it cancelled take their last step, the threads it flagged return, the
# trees it signalled die), and with 2 ms slices those turns were 3-4 ms while 1,000 runs
# were ended together. (1 ms slices for every pass made a hundred thread runs' timeouts
# later: their restarts are what those passes do.)
ENDING_SLICE = 0.001
# Starts due at one instant are prepared this long before it (see Evaluator.prepare).
PREPARE_AHEAD = timedelta(milliseconds=50)
# Preparing costs the loop 15-35 µs of CPU a start (a Xeon; an EPYC running a CPython
# built without PGO), and on a loaded machine the loop gets a CPU a third of the time: a
# bigger burst is prepared that much sooner, so that it is ready at its instant. (At
# 30 µs a start, 7 of 12 bursts of 1,000 on the EPYC under load were still being
# prepared at their instant, every start of them late by the overrun: up to 103 ms.)
PREPARE_EACH = timedelta(microseconds=150)
# (Read once a start in a burst: an enum member read through its class costs more.)
_MAIN, _RUNNING = Phase.MAIN, State.RUNNING


class Evaluator:
    """Evaluates the keys due over the task book and the runs (see the module)."""

    def __init__(
        self,
        book: TaskBook,
        runs: RunTable,
        timeouts: Timeouts,
        *,
        launcher: Launcher,
        judge: Judge,
        life: Lifecycle,
        records: RecordWriter,
        session: Session,
    ) -> None:
        self.book = book
        self.runs = runs
        self.timeouts = timeouts
        self.launcher = launcher
        self.judge = judge
        self.life = life
        self.records = records
        self.session = session
        #: This node's part of a shared history, once it joined one: starts are claimed.
        self.shared: SharedNode | None = None
        #: Runs prepared to start at an instant (see :meth:`prepare`), by task, with the
        #: instant their start condition stops holding (None: never).
        self.prepared: dict[str, tuple[Run, datetime | None]] = {}
        # The tasks with a live run, a live view (``in`` without RunTable.__contains__'s
        # call: a burst asks it once a key when due and once a prepared start).
        self._alive = runs.alive()
        self._prepared_for: datetime | None = None
        # Automatic garbage collections are paused from the pass at the instant starts
        # were prepared for until its last body took its first step (see frozen_heap).
        self._paused = False

    def context(self, name: str | None) -> dict[str, Any]:
        """What a condition of task ``name`` (None: the shut condition) is evaluated with."""
        return {"task": name, "history": self.records.history, "session": self.session}

    # ---------------------------------------------------------------- what is due

    def collect(self, now: datetime, *, new_cycle: bool) -> None:
        """End the runs timed out at ``now`` and mark the keys whose check came due."""
        if self.prepared and not self._paused and self._burst_due(now):
            # From here, not from the first launch: marking a burst's keys due makes a
            # thousand young objects, which set off collections, now and then one that
            # walks every object the preparing made (~2 ms, in the burst's time).
            self._paused = True
            pause_collections()
        texts: dict[Task, str] = {}  # runs timed out together share their message
        for run in self.timeouts.pop_due(now):
            if run.pending:  # its process never came (armed START_ALLOWANCE late)
                self.launcher.terminate(run, "timeout", never_started(run.task))
                continue
            text = texts.get(run.task)
            if text is None:
                text = texts[run.task] = f"ran longer than its timeout {run.task.timeout}"
            self.launcher.terminate(run, "timeout", text)
        book, due = self.book, self.book.due
        since, alive, marked = book.due_since, self._alive, []
        for key, at in book.checks.pop_due(now):
            if isinstance(key, str):
                since.setdefault(key, at)
                if key in alive:  # its end condition may hold: ahead of any backlog
                    due.mark_urgent(key)
                    continue
            marked.append(key)
        due.mark_all(marked)  # (in one call: a burst's thousand keys come due at once)
        if new_cycle:
            due.mark_all(book.wake_index.cycles)

    def next_deadline(self) -> datetime | None:
        """The earlier of the next check and the next timeout (None: neither)."""
        times = [at for at in (self.book.checks.next(), self.timeouts.next()) if at is not None]
        return min(times) if times else None

    def reschedule(self, task: Task, now: datetime) -> None:
        """When ``task`` is next looked at, from ``now`` (its run's record came late: its
        end condition may read how long it has run)."""
        if task.name in self.book.tasks:
            checks = self.book.checks
            at = self.next_check(task, now, self.context(task.name))
            # A check due earlier, not looked at yet (the loop was behind), is kept: an end
            # condition that became true then and never changes again has no later check,
            # and its run would be left to its timeout.
            due = checks.at(task.name)
            if due is not None and (at is None or due < at):
                at = due
            checks.set(task.name, at)

    # ---------------------------------------------------------------- evaluation

    async def evaluate_due(self, now: datetime) -> bool:
        """Evaluate the keys due (in :class:`~conddsl.runtime.wake.Due`'s order); True if it
        stopped at its time slice with some left (keys, or records to write first)."""
        seen: set[Key] = set()
        deferred: dict[Key, None] = {}
        due, tasks, records, launcher = self.book.due, self.book.tasks, self.records, self.launcher
        begun = time.perf_counter()
        ends, burst_ends = begun + SLICE, begun + BURST_SLICE
        ended = launcher.terminations  # (runs asked to stop so far: see ENDING_SLICE)
        soonest = self.timeouts.peek()
        check = self.book.checks.peek()
        if check is not None and (soonest is None or check < soonest):
            soonest = check
        if soonest is not None:  # what comes due meanwhile is not kept waiting for the slice
            soon = time.perf_counter() + (soonest - now).total_seconds()
            ends, burst_ends = min(ends, soon), min(burst_ends, soon)
        sliced = False
        prepared, launched = self.prepared, []
        self._burst_over()
        try:
            while (key := due.take()) is not None:
                if key in seen:
                    deferred[key] = None
                    continue
                seen.add(key)
                if key in prepared and key in tasks:
                    run = self._launch_prepared(tasks[key], now)
                    if run is not None:  # its run record is stamped; it reads no record
                        if not self._paused:
                            self._paused = True
                            pause_collections()
                        launched.append(run)
                        if time.perf_counter() > burst_ends and due:
                            sliced = True
                            break
                        continue
                # Conditions see every record stamped before evaluation: hundreds of them
                # (runs ended together) are written a slice at a time, the key put back.
                if records.unwritten and records.flush(ends):
                    due.put_back(key)
                    sliced = True
                    break
                if key is SHUT:
                    self.evaluate_shut(now)
                elif key in tasks:
                    await self.evaluate(tasks[key], now)
                if launcher.terminations != ended:
                    ends = min(ends, begun + ENDING_SLICE)
                if records.unwritten:
                    records.flush(ends)  # (what is left: before the next key, or next pass)
                if time.perf_counter() > ends and due:
                    sliced = True
                    break
        finally:
            if launched:
                # Their run records first (a scheduler killed before the bodies ran leaves
                # records to mark crashed, not bodies that ran unrecorded); the bodies take
                # their first step at the loop's next turn.
                records.flush()
                self.launcher.go(launched)
        due.mark_all(deferred)
        if prepared and not sliced:
            self.drop_prepared(now)
        if launched:
            return True  # the keys their records woke, in a pass that follows at once
        self._burst_over()
        if records.unwritten and not sliced:  # (sliced: the next pass writes them first)
            # The tasks that read them at once, and the records left (over the slice) first.
            return records.flush(ends) or bool(due)
        return sliced

    # ---------------------------------------------------------------- prepared starts

    def prepare_at(self, deadline: datetime | None) -> datetime | None:
        """When to wake to prepare the starts due at ``deadline`` (None: nothing to do).

        A burst of starts at one instant (a thousand tasks opening together) costs the
        loop a few milliseconds of work each; done at the instant, the last body ran tens
        of milliseconds late. What does not depend on what can still change (the run, its
        id and flag, the coroutine and its asyncio task) is made ``PREPARE_AHEAD`` before
        (``PREPARE_EACH`` more for each start due then): at the instant only the checks,
        the launch and the record stamp are left.
        """
        if (
            deadline is None
            or deadline == self._prepared_for
            or self.shared is not None
            or self.life.state is not State.RUNNING
            or self.life.phase is not Phase.MAIN
            or self.book.checks.next() != deadline
        ):
            return None
        keys = self.book.checks.due_first()
        if not any(self._preparable(key) for key in keys):
            self._prepared_for = deadline  # (asked once an instant)
            return None
        return deadline - PREPARE_AHEAD - PREPARE_EACH * len(keys)

    def _preparable(self, key: Key) -> Task | None:
        """The task of ``key`` if a start of it can be prepared: async, not running, nothing
        pending, no end condition, a start condition the same for every task."""
        book = self.book
        task = book.tasks.get(key) if isinstance(key, str) else None
        if (
            task is None
            or task.execution != "async"
            or task.name in self.prepared
            or task.name in self.runs
            or task.name in book.manual
            or task.multilaunch
            or task.permanent
            or task.disabled
            or task.role is not None
            or task.end is not None
            or not self.judge.alike(task.start)
        ):
            return None
        return task

    def prepare(self, at: datetime) -> None:
        """Prepare the starts of the tasks due at ``at`` that will start then if nothing
        changes (see :meth:`_preparable`): those whose start condition holds at ``at``."""
        self._prepared_for = at
        judge = self.judge
        for key in self.book.checks.due_first():
            task = self._preparable(key)
            if task is None:
                continue
            where = f"start condition of task {task.name!r}"
            context = self.context(task.name)
            if not judge.holds(task.start, where, at, context, on_error=False):
                continue
            until = judge.next(task.start, where, at, context)
            run = self.launcher.prepare(task, at)
            if run is not None:
                self.prepared[task.name] = (run, until)

    def drop_prepared(self, before: datetime | None = None) -> None:
        """Drop the prepared runs (those for ``before`` or earlier) that were not started;
        with no ``before`` (the scheduler stops), collections paused for them go on."""
        for name, (run, _) in list(self.prepared.items()):
            if before is None or run.started <= before:
                del self.prepared[name]
                self.launcher.drop(run)
        if before is None and self._paused:
            self._resume()

    def _burst_due(self, now: datetime) -> bool:
        """Whether the instant starts were prepared for has come."""
        return self._prepared_for is not None and self._prepared_for <= now

    def _burst_over(self) -> None:
        """Collections paused for a burst go on once no prepared start is left (every body
        of the burst took its first step at the loop's turn before this pass)."""
        if self._paused and not self.prepared:
            self._resume()

    def _resume(self) -> None:
        """The burst of prepared starts is over: garbage collections go on."""
        self._paused = False
        resume_collections()

    def _launch_prepared(self, task: Task, now: datetime) -> Run | None:
        """Launch ``task``'s prepared run if nothing changed since it was prepared (else it
        is dropped, and the task evaluated as any other); its body is let go by the caller."""
        name, prepared = task.name, self.prepared
        run, until = prepared[name]
        if run.started > now:
            return None  # looked at before its instant (an event): kept for it
        del prepared[name]
        life = self.life
        if life.phase is not _MAIN:
            self.launcher.drop(run)
            return None
        book = self.book
        if (
            run.task is task  # (not removed and added again)
            and life.state is _RUNNING
            and (until is None or now < until)
            and not task.disabled
            and name not in self._alive
            and name not in book.manual
            and name not in book.retry_hint
            and self.shared is None
        ):
            self.launcher.launch(run, now, due=book.due_since.pop(name, now))
            # Running, not multilaunch, no end condition: only its finish looks at it again.
            soon = book.recheck_soon.pop(name, None) if book.recheck_soon else None
            if soon is None:
                book.checks.discard(name)  # (set(name, None) is this, one call more)
            else:
                book.checks.set(name, soon)
            return run
        self.launcher.drop(run)
        return None

    def check_shut_now(self, now: datetime) -> None:
        """Between startup tasks: the shut condition, if it is due (nothing starts once true)."""
        if self.book.due.take_shut():
            self.evaluate_shut(now)

    def evaluate_shut(self, now: datetime) -> None:
        """The shut condition: a shutdown begins when it holds, else when it is next due."""
        cond = self.book.shut_cond
        if cond is None or self.life.state is not State.RUNNING:
            return
        context = self.context(None)
        if self.judge.holds(cond, "shut_cond", now, context, on_error=False):
            self.life.begin_shutdown(f"the shut condition {str(cond)!r} became true")
            return
        self.book.checks.set(SHUT, self.judge.next(cond, "shut_cond", now, context))

    async def evaluate(self, task: Task, now: datetime) -> None:
        """Task ``task`` at ``now``: its end condition, then its start, then its next check."""
        life, book, runs = self.life, self.book, self.runs
        if life.phase is Phase.STARTUP:
            return  # every task is looked at when the main phase begins
        name = task.name
        due = book.due_since.pop(name, now)
        context = self.context(name)
        ending = False
        why = ""
        if task.end is not None and self.watches_end(task):
            where = f"end condition of task {name!r}"
            ending = self.judge.holds(task.end, where, now, context, on_error=True)
            if ending:
                why = f"its end condition {str(task.end)!r} became true"
                for run in runs.of(name):
                    self.launcher.terminate(run, "end_cond", why)
        if name in book.manual and life.state.stopping:  # accepted before the shutdown
            await self._start_manual(task, now, why if ending else None)
        if life.state is State.RUNNING:
            if name in book.manual:
                await self._start_manual(task, now, why if ending else None)
            elif task.permanent:
                await self._start_permanent(task, now)
            # A task is not started while its end condition holds: it would be ended at once.
            elif (
                not task.disabled
                and not ending
                and (task.multilaunch or name not in runs)
                and not runs.dying_too_many(task)
            ):
                if name in book.retry_hint:
                    await self._start_retries(task, now)
                where = f"start condition of task {name!r}"
                if (task.multilaunch or name not in runs) and self.judge.holds(
                    task.start, where, now, context, on_error=False
                ):
                    await self.launch(task, now, due=due, claim=self.shared is not None)
        book.checks.set(name, self.next_check(task, now, context))

    def watches_end(self, task: Task) -> bool:
        """Whether the end condition matters: a run is alive, or one may start."""
        if task.name in self.runs:
            return True
        return task.name in self.book.manual or (
            self.life.state is State.RUNNING and not task.disabled
        )

    def next_check(self, task: Task, now: datetime, context: dict[str, Any]) -> datetime | None:
        """When ``task`` is next to be looked at (None: only when an event wakes it)."""
        times = []
        # A running task that cannot start again needs no start check: its finish
        # record looks at it again (so a long run costs nothing per cycle). Tasks that
        # have a role, or are disabled, are not started by their condition.
        name = task.name
        startable = task.role is None and not task.disabled
        if (
            self.life.state is State.RUNNING
            and startable
            and (task.multilaunch or name not in self.runs)
        ):
            times.append(self.judge.next(task.start, f"start condition of {name!r}", now, context))
        if task.end is not None and self.watches_end(task):
            times.append(self.judge.next(task.end, f"end condition of {name!r}", now, context))
        soon = self.book.recheck_soon.pop(name, None)
        found = [at for at in (*times, soon) if at is not None]
        return min(found) if found else None

    # ---------------------------------------------------------------- starts

    async def launch(
        self,
        task: Task,
        now: datetime,
        reason: str | None = None,
        due: datetime | None = None,
        *,
        claim: bool = False,
        claimed: Record | None = None,
    ) -> Run | None:
        """Start a run, or None when it must wait for a process slot (max_process_count)
        or, with ``claim``, when another node won its start (a shared history)."""
        if not self.runs.slot_for(task):
            return None
        if claim and self.shared is not None:
            self.records.flush()  # our finishes first: the claim's check reads them
            try:
                claimed = self.shared.claim(task, new_run_id())
            except ClaimBusy:
                self.book.recheck_soon[task.name] = now + BUSY_RECHECK
                return None
            except Exception as exc:  # the start condition raised inside the claim
                self.life.fail(
                    ConditionFailed(f"start condition of task {task.name!r}", task.start, exc)
                )
                return None
            if claimed is None:
                return None
        run, awaitable = self.launcher.start(task, now, reason=reason, due=due, claimed=claimed)
        if awaitable is not None:
            await awaitable
        return run

    async def _start_permanent(self, task: Task, now: datetime) -> None:
        """Start a permanent task once per session (once enabled, if it is disabled)."""
        name = task.name
        pending = self.book.permanent_pending
        if name not in pending or task.disabled or name in self.runs:
            return
        if await self.launch(task, now) is not None:
            del pending[name]

    async def _start_manual(self, task: Task, now: datetime, ending: str | None) -> None:
        """Make the manual starts asked for (``run_task``); ``ending``: why the end condition
        ends them at once."""
        name, book = task.name, self.book
        if task.permanent:
            book.permanent_pending.pop(name, None)  # started now: not started again
        # The count stays in book.manual until each run is launched: in between (a flush,
        # a claim, the launch) run_task must still see the start as asked for, or it would
        # accept a second one that is then dropped as "running".
        while book.manual.get(name):
            if not task.multilaunch and name in self.runs:
                book.manual.pop(name, None)
                log.warning("task %r is running: a manual run of it was not started", name)
                return
            claimed = None
            if self.shared is not None and self.runs.slot_for(task):
                # Claimed like every start on a shared history (runtime/shared.py).
                self.records.flush()
                try:
                    claimed = self.shared.claim_manual(task, new_run_id())
                except ClaimBusy:
                    book.recheck_soon[name] = now + BUSY_RECHECK
                    return
                if claimed is None:
                    book.manual.pop(name, None)
                    log.warning(
                        "task %r runs on another node (or the shared history cannot be"
                        " reached): a manual run of it was not started",
                        name,
                    )
                    return
            run = await self.launch(task, now, reason="manual", claimed=claimed)
            if run is None:  # waits for a process slot
                return
            book.manual_made(name)  # (terminate() may have dropped the asked starts meanwhile)
            if ending is not None:
                self.launcher.terminate(run, "end_cond", ending)
            elif self.life.forced is not None and run.task.terminable:
                self.launcher.terminate(run, *self.life.forced)  # asked for before it

    async def _start_retries(self, task: Task, now: datetime) -> None:
        """Start the retries of ``task``'s runs lost with their node that this node wins."""
        self.book.retry_hint.discard(task.name)
        assert self.shared is not None
        for record in self.shared.retries([task]):
            await self.launch(task, now, reason="retry", claimed=record)
