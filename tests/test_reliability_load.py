"""Reliability, part 3: termination under load (docs/reliability.md).

Many tasks run at once, of every execution type (async, thread, process, command), with
random timeouts and end conditions; some end by themselves, some ignore SIGTERM, spawn
grandchildren (one of them in a session of its own), swallow their cancellation or ignore
their thread flag (``reliability/load.py`` draws the mix). After the run:

- every run has exactly one finishing record, with the action, reason and message its
  behaviour calls for;
- no descendant survives: the pids the process tasks reported and the processes that
  carry the command tasks' environment marker are all gone (checked in ``/proc``, while
  the run is on too, so the check is known to see them);
- the scheduler's event loop never stalled more than 50 ms: a heartbeat coroutine on the
  same loop measures the longest gap while ``await app.serve()`` runs (less the time the
  loop's thread waited for a CPU other processes held, read from /proc/thread-self/schedstat:
  the machine is shared);
- file descriptors and threads return to their baseline, and memory does too: a second
  run under ``tracemalloc`` leaves less than a small tolerance allocated.

Smoke size: 100 tasks (20 process, 20 command), behind the ``smoke`` marker (CI runs it).
The long run (``pytest -m long``): ``CONDDSL_LOAD_TASKS`` tasks (default 1,000) for
``CONDDSL_LOAD_ROUNDS`` rounds (default 3).

A separate test runs frequent start conditions (``secondly``, ``minutely``, ``cron * * * *
*``) for three minutes of a virtual clock and checks that no evaluation of them blocks the
loop: each takes a bounded number of counted Python steps (``next_change`` once scanned
every fire time of its horizon: three million steps, 117-174 ms).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import tracemalloc
import uuid
import weakref
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from reliability import count_steps, env_int, long_run, report
from reliability import load as L

from conddsl import compile_condition
from conddsl.history import FINISH_ACTIONS
from conddsl.runtime import Scheduler, VirtualClock

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc and fork")

SMOKE_TASKS = 100
LONG_TASKS = env_int("CONDDSL_LOAD_TASKS", 1_000)
LONG_ROUNDS = env_int("CONDDSL_LOAD_ROUNDS", 3)
TICK = 0.005  # the heartbeat's period
MAX_STALL = 0.050
LIMIT = 120.0  # seconds a load run may take before the test gives up
NOT_STARTED = "not started: end condition already true"
NEVER_FORKED = "never started"


def _runqueue_wait() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (another process had it)."""
    try:
        with open("/proc/thread-self/schedstat") as file:
            return int(file.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):  # no schedstat: count every gap in full
        return 0.0


@dataclass
class Result:
    started_at: object  # the session's start
    records: list
    gaps: list[float]  # the heartbeat's lateness: the loop's own stalls
    wall_gaps: list[float]  # the same with the time the machine gave the CPU to others
    seconds: float
    seen_marked: int  # command processes seen alive by the marker, mid-run
    seen_pids: int  # process-task pids reported (and alive) mid-run
    survivors: list[int]
    loop: weakref.ref[asyncio.AbstractEventLoop]  # the loop the scheduler ran on


def _scheduler(
    tasks: list[L.Planned], token: str, start_cond: object = "~has started"
) -> Scheduler:
    app = Scheduler(
        {"timeout": "never", "kill_grace": L.KILL_GRACE, "history": L.CountingHistory()}
    )
    once = start_cond  # true until the task has started once; reads its own history only
    env = {"PATH": "/usr/bin:/bin", L.MARK: token}
    for p in tasks:
        options = {"name": p.name, "timeout": p.timeout, "end_cond": p.end_cond}
        if p.execution == "command":
            app.command_task(once, argv=p.argv, env=env, **options)
        else:
            app.task(once, execution=p.execution, **options)(L.body(p))
    return app


def _survivors(tasks: list[L.Planned], token: str) -> tuple[list[int], int]:
    """Live descendants (pids) and how many reported pids there were."""
    reported = [pair for p in tasks if p.pid_file for pair in L.read_pids(p.pid_file)]
    alive = [pid for pid, start in reported if L.alive(pid, start)]
    return sorted(set(alive) | set(L.marked(token))), len(reported)


def run_load(tasks: list[L.Planned], token: str, start_cond: object = "~has started") -> Result:
    """Serve the planned tasks with a heartbeat beside the scheduler; end with a forced stop."""
    app = _scheduler(tasks, token, start_cond)
    gaps: list[float] = []
    wall_gaps: list[float] = []
    seen = {"marked": 0, "pids": 0}
    pool = ThreadPoolExecutor(1)  # /proc scans off the loop: they are not the scheduler's work
    must = {p.name for p in tasks if not p.ends_at_shutdown and not p.may_not_start}
    maybe = {p.name for p in tasks if p.may_not_start and not p.ends_at_shutdown}
    began = time.monotonic()
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def heartbeat(stop: asyncio.Event) -> None:
        # On a shared 2-core machine other processes take the CPU now and then: the time
        # the loop's thread waited on the run queue is not a stall of the scheduler.
        last, waited = time.perf_counter(), _runqueue_wait()
        while not stop.is_set():
            await asyncio.sleep(TICK)
            now, wait = time.perf_counter(), _runqueue_wait()
            wall_gaps.append(now - last - TICK)
            gaps.append(now - last - TICK - (wait - waited))
            last, waited = now, wait

    async def drive() -> None:
        nonlocal began
        loop = asyncio.get_running_loop()
        while not app.history.started:  # the scheduler starts once its fork server is up
            await asyncio.sleep(0.01)
        began = time.monotonic()
        await asyncio.sleep(0.35)  # every wait-type run is on (the shortest limit is 0.5 s)
        seen["marked"] = len(await loop.run_in_executor(pool, L.marked, token))
        pids = [pair for p in tasks if p.pid_file for pair in L.read_pids(p.pid_file)]
        seen["pids"] = sum(L.alive(pid, start) for pid, start in pids)
        # Force the stop once every run that ends by itself has ended, and no task with
        # "scheduler has run over X" can start any more (X has passed for all of them).
        history = app.history
        while True:
            started, finished = history.started, history.finished
            passed = time.monotonic() - began > L.MAX_LIMIT + 0.5
            if passed and must <= finished and maybe & started <= finished:
                break
            await asyncio.sleep(0.05)
        app.shut_down(force=True)  # the runs without a limit end now, reason "forced"

    async def main() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        stop = asyncio.Event()
        beat = asyncio.ensure_future(heartbeat(stop))
        driver = asyncio.ensure_future(drive())
        try:
            await asyncio.wait_for(app.serve(), LIMIT)
        finally:
            stop.set()
            await beat
            if not driver.done():
                driver.cancel()
        driver.result()

    started = time.monotonic()
    try:
        asyncio.run(main())
    finally:
        seconds = time.monotonic() - started
        survivors, _ = _survivors(tasks, token)  # before anything else can reap them
        L.RELEASE.set()
        pool.shutdown()
    records = app.history.records()
    return Result(
        app.session.started_at,
        records,
        gaps,
        wall_gaps,
        seconds,
        seen["marked"],
        seen["pids"],
        survivors,
        loops[0],
    )


def _cleanup(tasks: list[L.Planned], token: str) -> None:
    """Kill what a failed run left behind, so one failure does not spoil the next test."""
    import contextlib
    import signal

    survivors, _ = _survivors(tasks, token)
    for pid in survivors:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _wait_threads(baseline: int, limit: float = 10.0) -> int:
    deadline = time.monotonic() + limit
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.01)
    return threading.active_count()


def lateness(tasks: list[L.Planned], result: Result) -> float:
    """How late (seconds) the latest timeout or end condition was applied, over the runs that
    stop at once when asked (async and thread runs that wait for it)."""
    late = 0.0
    by_task = {r.task: r for r in result.records if r.action in FINISH_ACTIONS}
    starts = {r.task: r.at for r in result.records if r.action == "run"}
    for p in tasks:
        end = by_task.get(p.name)
        if end is None or p.behaviour != "wait" or p.execution not in ("async", "thread"):
            continue
        if end.reason == "timeout":
            due = starts[p.name] + timedelta(seconds=p.timeout)
        elif end.reason == "end_cond" and p.end_cond.startswith("running"):
            due = starts[p.name] + timedelta(seconds=float(p.end_cond.split()[4]))
        elif end.reason == "end_cond":
            due = result.started_at + timedelta(seconds=float(p.end_cond.split()[4]))
        else:
            continue
        late = max(late, (end.at - due).total_seconds())
    return late


TRAP_RACED = "SIGTERM before the shell's trap"
TRAP_RACE_WINDOW = 1.0  # seconds from the run record within which a shell may not yet trap


def _trap_raced(p: L.Planned, start, end) -> bool:
    """A run that ignores SIGTERM (a command's ``trap '' TERM``, a stubborn process task's
    first line) that SIGTERM ended because it came before it was ignored."""
    ignores = (p.execution == "command" and "trap" in " ".join(p.argv or ())) or (
        p.execution == "process" and p.behaviour == "stubborn"
    )
    return (
        ignores
        and "killed by signal SIGTERM" in (end.message or "")
        and (end.at - start.at).total_seconds() < TRAP_RACE_WINDOW
    )


def check_records(tasks: list[L.Planned], records: list) -> Counter:
    """Exactly one run and one finishing record per task, each as planned; counts by kind."""
    by_task: dict[str, list] = {}
    first = min((record.at for record in records), default=None)
    for record in records:
        by_task.setdefault(record.task, []).append(record)
    problems = []
    counts: Counter = Counter()
    for p in tasks:
        found = by_task.get(p.name, [])
        if not found and p.may_not_start:
            counts[NOT_STARTED] += 1
            continue
        starts = [r for r in found if r.action == "run"]
        ends = [r for r in found if r.action in FINISH_ACTIONS]
        if len(starts) != 1 or len(ends) != 1 or starts[0].run_id != ends[0].run_id:
            problems.append(f"{p.name}: {[(r.action, r.run_id) for r in found]}")
            continue
        end = ends[0]
        if (end.action, end.reason) != (p.action, p.reason):
            times = [round((r.at - first).total_seconds(), 3) for r in (starts[0], end)]
            problems.append(
                f"{p.name}: got {end.action}/{end.reason} ({end.message}), planned "
                f"{p.action}/{p.reason} by {p.end_cond or p.timeout}; started, ended at {times}"
            )
        elif NEVER_FORKED in (end.message or ""):
            # Asked to stop before its process existed (a burst of starts keeps the fork
            # server busy): it never ran, so no signal killed it; its record says so.
            pass
        elif _trap_raced(p, starts[0], end):
            # SIGTERM reached the shell before it ran ``trap '' TERM`` (or the process task
            # before its first line; asked to stop within moments of the start, under load,
            # e.g. an end condition that became true while its process was being forked):
            # the signal ended it, rightly recorded so.
            counts[TRAP_RACED] += 1
        elif p.message is not None and p.message not in (end.message or ""):
            problems.append(f"{p.name}: message {end.message!r} lacks {p.message!r}")
        counts[f"{end.action}/{end.reason}" if end.reason else end.action] += 1
    assert problems == [], "\n".join(problems[:30])
    # A raced trap is also counted by its outcome; a task that never started has no records.
    runs = sum(counts.values()) - counts[NOT_STARTED] - counts[TRAP_RACED]
    assert len(records) == 2 * runs
    return counts


MAX_LATENESS = 0.25  # seconds: how late a timeout or end condition may be applied


def load_round(count: int, folder, seed: int, *, check_timing: bool = True) -> dict:
    """One load run and every check but memory; returns its figures."""
    os.makedirs(folder, exist_ok=True)
    tasks = L.plan(count, str(folder), seed)
    token = uuid.uuid4().hex
    gc.collect()  # files earlier tests left unreachable must not close mid-round
    threads, fds = threading.active_count(), L.open_fds()
    L.RELEASE.clear()
    try:
        result = run_load(tasks, token)
    finally:
        _cleanup(tasks, token)
    counts = check_records(tasks, result.records)
    assert result.survivors == [], f"descendants still alive: {result.survivors}"
    # The same checks saw live descendants mid-run: their 0 afterwards means something.
    if any(p.execution == "command" and p.reason for p in tasks):
        assert result.seen_marked > 0
    if any(p.pid_file for p in tasks):
        assert result.seen_pids > 0
    stall = max(result.gaps)
    assert _wait_threads(threads) == threads
    gc.collect()
    assert L.open_fds() == fds
    figures = {
        "tasks": count,
        "processes": sum(p.execution == "process" for p in tasks),
        "commands": sum(p.execution == "command" for p in tasks),
        "terminated": sum(n for key, n in counts.items() if key.startswith("terminate")),
        "by_outcome": dict(sorted(counts.items())),
        "descendants_seen_mid_run": result.seen_marked + result.seen_pids,
        "survivors": len(result.survivors),
        "max_loop_stall_ms": round(stall * 1000, 1),
        "max_termination_lateness_ms": round(lateness(tasks, result) * 1000, 1),
        "max_wall_gap_ms": round(max(result.wall_gaps) * 1000, 1),
        "p99_loop_gap_ms": round(sorted(result.gaps)[int(len(result.gaps) * 0.99)] * 1000, 1),
        "seconds": round(result.seconds, 1),
    }
    late = figures["max_termination_lateness_ms"] / 1000
    if check_timing and stall > MAX_STALL:
        raise TimingError(f"the loop stalled {stall * 1000:.0f} ms: {figures}")
    if check_timing and late > MAX_LATENESS:
        raise TimingError(f"a run was ended {late:.2f} s late: {figures}")
    return figures


class TimingError(AssertionError):
    """A timing bound failed (every check of correctness passed)."""


def memory_round(count: int, folder, seed: int) -> dict:
    """Run the load again under tracemalloc: what is still allocated after it is the leak."""
    tasks = L.plan(count, str(folder), seed)
    token = uuid.uuid4().hex
    threads = threading.active_count()
    L.RELEASE.clear()
    gc.collect()
    tracemalloc.start()
    try:
        try:
            result = run_load(tasks, token)
        finally:
            _cleanup(tasks, token)
        check_records(tasks, result.records)
        loop = result.loop
        del result
        _wait_threads(threads)
        gc.collect()
        # Nothing keeps the scheduler's loop (and all it refers to) once the load is over.
        assert loop() is None, "the scheduler's event loop outlived it"
        retained, peak = tracemalloc.get_traced_memory()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    top = [str(stat) for stat in snapshot.statistics("lineno")[:5]]
    # Bounded by design, not by the load: a process-table reading kept for reuse, a few
    # compiled conditions in the parser's cache. 2 KB a task is far below a run's footprint.
    tolerance = 512 * 1024 + 2 * 1024 * count
    figures = {"retained_kb": retained // 1024, "peak_kb": peak // 1024, "tasks": count}
    assert retained <= tolerance, f"{retained} bytes retained after the load: {top}"
    return figures


# ---------------------------------------------------------------- smoke and long


@pytest.mark.long
@pytest.mark.smoke
def test_termination_under_load_smoke(tmp_path):
    # The machine is shared (2 cores): a timing bound must fail twice in a row to count.
    try:
        figures = load_round(SMOKE_TASKS, tmp_path / "first", seed=1)
    except TimingError as first:
        figures = load_round(SMOKE_TASKS, tmp_path / "again", seed=1)
        figures["first_attempt"] = str(first)
    report("load_smoke", **figures)


@pytest.mark.long
@pytest.mark.smoke
def test_memory_returns_to_baseline_smoke(tmp_path):
    # Warm: caches and lazy imports. Its timing is not this test's to judge (the smoke test
    # above asserts it, twice in a row on this shared machine): a stall must not fail it.
    load_round(SMOKE_TASKS // 2, tmp_path, seed=2, check_timing=False)
    report("memory_smoke", **memory_round(SMOKE_TASKS, tmp_path, seed=3))


@pytest.mark.long
def test_termination_under_load_long(tmp_path, request):
    long_run(request)
    rounds = []
    for i in range(LONG_ROUNDS):
        folder = tmp_path / f"round{i}"
        folder.mkdir()
        # The timing bounds are asserted on a round of their own below (long_load).
        rounds.append(load_round(LONG_TASKS, folder, seed=100 + i, check_timing=False))
    memory = memory_round(LONG_TASKS, tmp_path, seed=200)
    report(
        "load_long",
        rounds=rounds,
        memory=memory,
        tasks_total=sum(r["tasks"] for r in rounds),
        terminated_total=sum(r["terminated"] for r in rounds),
        survivors_total=sum(r["survivors"] for r in rounds),
        max_loop_stall_ms=max(r["max_loop_stall_ms"] for r in rounds),
    )


# ---------------------------------------------------------------- bugs found


@pytest.fixture(scope="module")
def long_load(request, tmp_path_factory) -> dict:
    """One more round of the long load, for the two timing bounds below."""
    long_run(request)
    figures = load_round(LONG_TASKS, tmp_path_factory.mktemp("timing"), 300, check_timing=False)
    stall, late = figures["max_loop_stall_ms"], figures["max_termination_lateness_ms"]
    if stall > MAX_STALL * 1000 or late > MAX_LATENESS * 1000:
        # The machine is shared (2 cores): a timing bound must fail twice in a row to count.
        first = {"max_loop_stall_ms": stall, "max_termination_lateness_ms": late}
        figures = load_round(LONG_TASKS, tmp_path_factory.mktemp("again"), 300, check_timing=False)
        figures["first_attempt"] = first
    report("load_long_timing", **figures)
    return figures


@pytest.mark.long
def test_the_loop_does_not_stall_under_the_long_load(long_load):
    assert long_load["max_loop_stall_ms"] <= MAX_STALL * 1000, long_load


@pytest.mark.long
def test_end_conditions_are_applied_on_time_under_the_long_load(long_load):
    assert long_load["max_termination_lateness_ms"] <= MAX_LATENESS * 1000, long_load


class CountedCondition:
    """A compiled condition that counts the Python steps of each evaluation it is asked for."""

    def __init__(self, text: str) -> None:
        self.inner = compile_condition(text, timezone="UTC")
        self.reads = self.inner.reads
        self.costs: list[int] = []

    def _counted(self, method: Any, *args: Any, **context: Any) -> Any:
        answer = None

        def call() -> None:
            nonlocal answer
            answer = method(*args, **context)

        self.costs.append(count_steps(call))
        return answer

    def is_true(self, at: datetime, **context: Any) -> bool:
        return self._counted(self.inner.is_true, at, **context)

    def next_change(self, after: datetime, **context: Any) -> datetime | None:
        return self._counted(self.inner.next_change, after, **context)


# Steps one evaluation of a start condition may take on the loop. Measured: at most
# 2,120 (cron * * * * *, with its runs in the history); the old cron form scanned every
# minute of its horizon, 3,054,819 steps (117-174 ms of a blocked loop).
MAX_EVALUATION_STEPS = 20_000


@pytest.mark.parametrize("condition", ["secondly", "minutely", "cron * * * * *"])
def test_a_start_condition_does_not_stall_the_loop(condition):
    # Counted steps, not a heartbeat's wall-clock gaps: these never depend on the load
    # of the machine, and the virtual clock runs three minutes of firings at once.
    start_cond = CountedCondition(condition)
    app = Scheduler(
        {"timeout": "never", "timezone": "UTC", "shut_cond": "scheduler has run over 3 minutes"},
        clock=VirtualClock(datetime(2024, 3, 1, 12, 0, 30, tzinfo=timezone.utc)),
    )
    runs = []

    @app.task(start_cond, name="probe", execution="async")
    async def probe():
        runs.append(app.clock.now())

    asyncio.run(app.serve())
    assert len(runs) == (181 if condition == "secondly" else 4), runs  # 12:00:30, then each minute
    assert len(start_cond.costs) >= len(runs)
    assert max(start_cond.costs) <= MAX_EVALUATION_STEPS, sorted(start_cond.costs)[-5:]
