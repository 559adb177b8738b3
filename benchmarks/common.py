"""What both sides of the benchmarks share: the timing method and the generated inputs.

Standard library only: ``run.py`` imports it in the project's interpreter and
``peer.py`` imports it in the side virtualenv that has Rocketry and croniter, so
both sides time the same way and build byte-for-byte the same inputs.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

# ---------------------------------------------------------------- timing


def measure(
    one_pass: Callable[[], object], ops_per_pass: int, *, repeats: int, min_time: float
) -> dict:
    """Seconds per operation of ``one_pass`` (which does ``ops_per_pass`` operations).

    One untimed warm-up pass, then a second pass calibrates how many passes make one
    sample last at least ``min_time`` seconds (not the first: a first use may build
    caches and would make the samples a single pass each); then ``repeats`` samples
    are taken, each with the garbage collector off (collected before), as ``timeit``
    does. Returns min, median and max over the samples, in seconds per operation.
    """
    one_pass()
    gc.collect()
    started = time.perf_counter()
    one_pass()
    once = time.perf_counter() - started
    loops = max(1, math.ceil(min_time / once)) if once > 0 else 1000
    samples = []
    for _ in range(repeats):
        gc.collect()
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            started = time.perf_counter()
            for _ in range(loops):
                one_pass()
            elapsed = time.perf_counter() - started
        finally:
            if was_enabled:
                gc.enable()
        samples.append(elapsed / (loops * ops_per_pass))
    return summary(samples, ops=loops * ops_per_pass)


def summary(samples: list[float], **extra) -> dict:
    """min / median / max of the samples (plus any extra fields)."""
    import statistics  # here: a memory case's process loads only what it measures

    return {
        "min": min(samples),
        "median": statistics.median(samples),
        "max": max(samples),
        "samples": len(samples),
        **extra,
    }


# ---------------------------------------------------------------- task histories

# The task every task-state condition is evaluated for, the task it depends on,
# and others whose records fill the same log (Rocketry keeps one log for all tasks).
HISTORY_TASKS = ("t", "a") + tuple(f"x{i}" for i in range(8))
# The history ends here (naive UTC, a Monday); conditions are evaluated after it.
HISTORY_END = datetime(2024, 3, 4, 7, 30)
RUN_SECONDS = 20


def history_events(records: int) -> Iterator[tuple[str, str, datetime]]:
    """``records`` records, oldest first: one run a minute, tasks in turn, each run
    a ``run`` and, 20 s later, a finish (every 7th run fails). Times are naive UTC."""
    runs = records // 2
    first = HISTORY_END - timedelta(minutes=runs)
    tasks = HISTORY_TASKS
    n_tasks = len(tasks)
    for i in range(runs):
        start = first + timedelta(minutes=i)
        task = tasks[i % n_tasks]
        yield task, "run", start
        yield task, ("fail" if i % 7 == 6 else "success"), start + timedelta(seconds=RUN_SECONDS)


def task_state_instants(count: int) -> list[datetime]:
    """Naive UTC instants from the end of the history on, every 30 minutes."""
    return [HISTORY_END + timedelta(minutes=30 * k) for k in range(count)]


# ---------------------------------------------------------------- memory


def memory_runs(runs: int) -> Iterator[tuple[str, datetime, datetime, bool]]:
    """``runs`` runs for the memory case: (task, start, finish, succeeded), naive UTC."""
    first = HISTORY_END - timedelta(minutes=runs)
    tasks = HISTORY_TASKS
    for i in range(runs):
        start = first + timedelta(minutes=i)
        yield tasks[i % len(tasks)], start, start + timedelta(seconds=RUN_SECONDS), i % 7 != 6


# ---------------------------------------------------------------- runtime cases
#
# Both schedulers run the same workloads in a fresh process of their own: tasks
# waiting for closed windows (idle CPU, memory), tasks whose window opens at one
# instant (start lateness) and tasks that run past a timeout (termination
# lateness). Windows are wall-clock times of day in UTC (``TZ=UTC`` on the peer).


def stall_row(tasks: int, repeats: int, lead: float, stall_once, collect) -> dict:
    """The ``stall`` row of one size: every repeat's loop gaps, or an error when some run
    was not ended by the end condition. ``stall_once(tasks, lead)`` gives (gaps, ended)."""
    samples: list[float] = []
    ended = 0
    for _ in range(repeats):
        gaps, count = stall_once(tasks, lead + tasks * 0.002)
        samples += gaps
        ended += count
        collect()
    if ended < tasks * repeats or not samples:
        return {"error": f"{ended} of {tasks * repeats} runs ended by the end condition"}
    return percentiles(samples, repeats=repeats)


def percentiles(samples: list[float], **extra) -> dict:
    """p50 / p99 / max (nearest rank) and min of latency samples, in seconds."""
    ordered = sorted(samples)
    count = len(ordered)

    def rank(q: float) -> float:
        return ordered[min(count - 1, max(0, math.ceil(q * count) - 1))]

    return {
        "p50": rank(0.50),
        "p99": rank(0.99),
        "max": ordered[-1],
        "min": ordered[0],
        "n": count,
        **extra,
    }


def closed_window(now: datetime, i: int) -> str:
    """A window of one hour that opens 2 hours (plus ``i`` seconds) after ``now``: closed
    for the whole measurement, and a distinct string for each task."""
    start = now + timedelta(hours=2, seconds=i)
    end = start + timedelta(hours=1)
    return f"time of day between {start:%H:%M:%S} and {end:%H:%M:%S}"


def opening_at(at: datetime, now: datetime | None = None) -> str:
    """A window that opens at ``at`` (to the millisecond) and lasts until midnight, or,
    when ``at`` is past the midnight that comes first (``now``: the clock), until noon:
    "after 00:00:01" holds at 23:59:59 too, and every task would start at once."""
    opens = f"{at:%H:%M:%S}.{at.microsecond // 1000:03d}"
    if now is None:
        now = datetime.now(at.tzinfo)
    if at.date() != now.date():
        return f"time of day between {opens} and 12:00"
    return f"time of day after {opens}"


def round_ms(at: datetime) -> datetime:
    """``at`` cut to the millisecond (as ``opening_at`` writes it)."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def start_lead(tasks: int) -> float:
    """Seconds between building a scheduler of ``tasks`` tasks and their window opening:
    time to register them and to settle into waiting."""
    return 0.6 + tasks * 0.001


def start_phases(repeats: int) -> list[float]:
    """Extra lead for each repeat, spread over 0.1 s (Rocketry's default cycle_sleep), so
    windows open at every phase of a polling scheduler's cycle; the same on both sides."""
    return [(k + 0.5) / repeats * 0.1 for k in range(repeats)]


def idle_cpu(
    run: Callable[[], object],
    shut_down: Callable[[], object],
    *,
    warmup: float,
    samples: int,
    seconds: float,
) -> dict:
    """% of one core the process uses while ``run()`` (blocking) serves: ``samples``
    readings of process CPU time over ``seconds`` of wall time each, after ``warmup``
    seconds; then ``shut_down()`` is called from the sampling thread."""
    import threading

    readings: list[float] = []

    def sample() -> None:
        try:
            time.sleep(warmup)
            for _ in range(samples):
                cpu, wall = time.process_time(), time.perf_counter()
                time.sleep(seconds)
                used = time.process_time() - cpu
                readings.append(100 * used / (time.perf_counter() - wall))
        finally:
            shut_down()

    sampler = threading.Thread(target=sample, name="cpu-sampler", daemon=True)
    started = time.perf_counter()
    sampler.start()
    run()
    sampler.join()
    return summary(readings, wall=time.perf_counter() - started)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_baseline() -> int:
    """Reset this process's peak RSS to its current RSS and return that, in bytes.

    Linux keeps the peak in /proc/self/status (VmHWM) and resets it on "5" written to
    /proc/self/clear_refs. ``ru_maxrss`` is no good here: it carries over the peak of
    the process that started this one (across exec), here the benchmark runner's.
    """
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass
    return peak_rss()


def peak_rss() -> int:
    """Peak resident set size of this process since :func:`rss_baseline`, in bytes."""
    kib = _status_kib("VmHWM")
    if kib is None:  # no /proc: the best there is
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024


def wait_plan(
    now: datetime, waits: list[float], tasks: int, lead: float
) -> list[tuple[str, str, float, datetime]]:
    """The tasks of the long-wait case, the same on both sides: ``(name, kind, wait,
    opens)``. A ``start`` task's window opens ``wait`` seconds from now (its start
    lateness is measured); a ``timeout`` task starts at once and runs past a timeout of
    ``wait`` seconds (its termination lateness is measured). Both open ``lead`` seconds
    later still, spread over a second so that they fall at every phase of a polling
    scheduler's cycle."""
    plan = []
    for wait in waits:
        for i in range(tasks):
            spread = lead + i * 1.0 / tasks
            plan.append(
                (f"s{wait:g}_{i}", "start", wait, round_ms(now + timedelta(seconds=spread + wait)))
            )
            plan.append(
                (f"t{wait:g}_{i}", "timeout", wait, round_ms(now + timedelta(seconds=spread)))
            )
    return plan


def wait_lateness(
    plan: list[tuple[str, str, float, datetime]],
    first_lines: dict[str, float],
    ends: dict[str, tuple[float, float]],
) -> dict:
    """Rows ``start <wait>`` and ``timeout <wait>`` from the first line of each start
    task's body (epoch seconds) and each timeout task's first run (run record, terminate
    record: epoch seconds)."""
    samples: dict[str, list[float]] = {}
    for name, kind, wait, opens in plan:
        key = f"{kind} {wait:g}"
        if kind == "start" and name in first_lines:
            samples.setdefault(key, []).append(first_lines[name] - opens.timestamp())
        elif kind == "timeout" and name in ends:
            began, ended = ends[name]
            samples.setdefault(key, []).append(ended - began - wait)
    return {key: percentiles(values) for key, values in samples.items()}


# The loop-stall case: tasks of several executions running at once, all ended by one
# end condition; a heartbeat on the scheduler's event loop measures its gaps meanwhile.
STALL_TICK = 0.001  # seconds between the heartbeat's beats


def stall_mix(tasks: int) -> list[str]:
    """The executions of the stall case's tasks, the same on both sides: half async, three
    tenths thread, a fifth process (at least one of each)."""
    thread = max(1, tasks * 3 // 10)
    process = max(1, tasks // 5)
    return ["async"] * (tasks - thread - process) + ["thread"] * thread + ["process"] * process


def runqueue_wait() -> float:
    """Seconds this thread has waited for a CPU while runnable (another process had it):
    time the machine took, not the scheduler (0 where Linux does not say)."""
    try:
        with open("/proc/thread-self/schedstat") as file:
            return int(file.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


class Heartbeat:
    """Beats every ``STALL_TICK`` on the running loop; keeps each beat's lateness (the
    loop's gap beyond the tick, less the time its thread waited for a CPU) with when the
    beat came (``time.time()``), so that a window of interest can be picked afterwards."""

    def __init__(self) -> None:
        self.beats: list[tuple[float, float]] = []  # (epoch seconds, gap seconds)
        self._stopped = False

    async def run(self) -> None:
        """Beat until :meth:`stop`."""
        import asyncio

        last, waited = time.perf_counter(), runqueue_wait()
        while not self._stopped:
            await asyncio.sleep(STALL_TICK)
            now, wait = time.perf_counter(), runqueue_wait()
            self.beats.append((time.time(), max(0.0, now - last - STALL_TICK - (wait - waited))))
            last, waited = now, wait

    def stop(self) -> None:
        """End :meth:`run` at its next beat."""
        self._stopped = True

    def gaps(self, begin: float, end: float) -> list[float]:
        """The gaps of the beats from ``begin`` to the first beat after ``end`` (epoch s)."""
        picked = []
        for at, gap in self.beats:
            if at >= begin:
                picked.append(gap)
                if at > end:
                    break
        return picked


def stall_sleep() -> None:
    """A process task of the stall case: sleeps until ended (SIGTERM)."""
    import time

    time.sleep(3600)


def tree_forever() -> None:
    """A process task with a child in its group; both die on SIGTERM (the child ends by
    itself after a minute where a scheduler leaves it running)."""
    import subprocess
    import time

    subprocess.Popen(["sleep", "60"])
    time.sleep(3600)


def first_line(folder: str, name: str) -> None:
    """A process task: note when the first run's first line ran (epoch seconds, in a
    file of its own), then sleep until ended."""
    import time

    at = time.time()
    try:
        with open(f"{folder}/{name}", "x") as file:  # the first run's only
            file.write(repr(at))
    except FileExistsError:
        pass
    time.sleep(3600)


def first_lines(folder: str) -> dict[str, float]:
    """What :func:`first_line` wrote, by task name."""
    import os

    found = {}
    for name in os.listdir(folder):
        with open(f"{folder}/{name}") as file:
            text = file.read()
        if text:
            found[name] = float(text)
    return found


def latency_rows(sizes: list[list[int]], once, key: str) -> dict:
    """Rows ``<key> <tasks>``: for each (tasks, repeats), the percentiles of every sample
    ``once(tasks)`` gives in ``repeats`` runs."""
    import gc

    rows = {}
    for tasks, repeats in sizes:
        samples: list[float] = []
        for _ in range(repeats):
            samples += once(tasks)
            gc.collect()
        rows[f"{key} {tasks}"] = percentiles(samples, repeats=repeats)
    return rows


class WaitProbe:
    """The long-wait case's bookkeeping, the same on both sides: its tasks, what they
    report, and ``stop()`` once every one is measured."""

    def __init__(self, plan: list[tuple[str, str, float, datetime]], stop) -> None:
        self.plan = plan
        self.stop = stop
        self.first_lines: dict[str, float] = {}
        self.ends: dict[str, tuple[float, float]] = {}
        self.began: dict[str, float] = {}

    def add_tasks(self, app, forever) -> None:
        """Register the plan's tasks (the same decorator API on both sides)."""
        for name, kind, wait, opens in self.plan:
            if kind == "start":
                app.task(opening_at(opens), name=name, timeout=0.5)(self._body(name))
            else:
                app.task(opening_at(opens), name=name, timeout=wait)(forever)

    def on_record(self, task: str, action: str, at: float) -> None:
        """A record of the scheduler's (``at``: epoch seconds)."""
        if task.startswith("t") and task not in self.ends:
            if action == "run":
                self.began.setdefault(task, at)
            elif task in self.began:
                self.ends[task] = (self.began[task], at)
                self._measured()

    def _body(self, name: str):
        import asyncio
        import time

        async def body() -> None:
            self.first_lines.setdefault(name, time.time())
            self._measured()
            await asyncio.Event().wait()

        return body

    def _measured(self) -> None:
        if len(self.first_lines) + len(self.ends) == len(self.plan):
            self.stop()

    def rows(self) -> dict:
        return wait_lateness(self.plan, self.first_lines, self.ends)
