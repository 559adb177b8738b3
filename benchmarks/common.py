"""What both sides of the benchmarks share: the timing method and the generated inputs.

Standard library only: ``run.py`` imports it in the project's interpreter and
``peer.py`` imports it in the side virtualenv that has Rocketry and croniter, so
both sides time the same way and build byte-for-byte the same inputs.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

# ---------------------------------------------------------------- timing


def measure(
    one_pass: Callable[[], object], ops_per_pass: int, *, repeats: int, min_time: float
) -> dict:
    """Seconds per operation of ``one_pass`` (which does ``ops_per_pass`` operations).

    One untimed warm-up pass also calibrates how many passes make one sample
    last at least ``min_time`` seconds; then ``repeats`` samples are taken, each
    with the garbage collector off (collected before), as ``timeit`` does.
    Returns min, median and max over the samples, in seconds per operation.
    """
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
