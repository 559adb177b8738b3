"""Benchmark the run history stores with many records (a script, not a test).

    python benchmarks/history_bench.py [--records 1000000] [--tasks 200]

Fills each store with runs of many tasks, then reports microseconds per query
for ``last``, ``first_in``, ``last_in`` and ``count_in``, the memory store's
bytes per record (tracemalloc) and the SQLite store's insert rate.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conddsl.history import History, MemoryHistory, SQLiteHistory  # noqa: E402

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def fill(history: History, records: int, tasks: int) -> float:
    """Record ``records`` records (run + finish pairs) over ``tasks`` tasks; return seconds."""
    names = [f"task-{n:03d}" for n in range(tasks)]
    outcomes = ("success", "success", "success", "fail", "inaction")
    started = time.perf_counter()
    for i in range(records // 2):
        task = names[i % tasks]
        # One run a minute per task; every 50th finish arrives a little late
        # (timed before the previous record), as with several workers.
        at = T0 + timedelta(minutes=i // tasks, seconds=i % tasks * 0.25)
        run_id = str(i)
        history.record(task, "run", at=at, run_id=run_id)
        finish = at + timedelta(seconds=20) if i % 50 else at - timedelta(microseconds=1)
        history.record(task, outcomes[i % 5], at=finish, run_id=run_id)
    return time.perf_counter() - started


def per_call(calls: list[Callable[[], object]]) -> float:
    """Microseconds per call, over all calls."""
    started = time.perf_counter()
    for call in calls:
        call()
    return (time.perf_counter() - started) / len(calls) * 1e6


def queries(history: History, records: int, tasks: int, n: int) -> dict[str, float]:
    """Time each query kind on ``n`` random (task, window) arguments."""
    rng = random.Random(7)
    span_minutes = records // 2 // tasks
    names = [f"task-{n:03d}" for n in range(tasks)]
    args = []
    for _ in range(n):
        since = T0 + timedelta(minutes=rng.uniform(0, span_minutes))
        args.append((rng.choice(names), since, since + timedelta(hours=1)))
    end = T0 + timedelta(minutes=span_minutes + 1)
    h = history
    return {
        "last(success)": per_call([lambda a=a: h.last(a[0], "success") for a in args]),
        "last(success|fail)": per_call(
            [lambda a=a: h.last(a[0], ("success", "fail")) for a in args]
        ),
        "first_in 1h": per_call(
            [lambda a=a: h.first_in(a[0], "success", a[1], a[2]) for a in args]
        ),
        "last_in 1h": per_call([lambda a=a: h.last_in(a[0], "success", a[1], a[2]) for a in args]),
        "count_in 1h": per_call([lambda a=a: h.count_in(a[0], "run", a[1], a[2]) for a in args]),
        "count_in all": per_call(
            [lambda a=a: h.count_in(a[0], ("run", "success"), T0, end) for a in args[: n // 10]]
        ),
        "running": per_call([lambda a=a: h.running(a[0]) for a in args]),
    }


def report(title: str, numbers: dict[str, float]) -> None:
    print(title)
    for name, value in numbers.items():
        print(f"  {name:<22} {value:10.2f} us/query")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--dir", default=None, help="where to put the SQLite file")
    options = parser.parse_args()
    records, tasks = options.records, options.tasks
    print(f"{records:,} records over {tasks} tasks, Python {sys.version.split()[0]}")

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    memory = MemoryHistory()
    seconds = fill(memory, records, tasks)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"\nMemoryHistory: {used / records:.1f} bytes/record ({used / 2**20:.1f} MiB)")
    print(f"  fill under tracemalloc: {records / seconds:,.0f} records/s")
    report("  queries:", queries(memory, records, tasks, options.queries))
    del memory

    with tempfile.TemporaryDirectory(dir=options.dir) as folder:
        path = os.path.join(folder, "bench.sqlite3")
        sqlite = SQLiteHistory(path)
        seconds = fill(sqlite, records, tasks)
        print(f"\nSQLiteHistory: {records / seconds:,.0f} records/s inserted (one commit each)")
        sqlite.close()
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
        print(f"  file: {size / records:.1f} bytes/record ({size / 2**20:.1f} MiB)")
        started = time.perf_counter()
        sqlite = SQLiteHistory(path)
        print(f"  reopen (load caches): {(time.perf_counter() - started) * 1e3:.1f} ms")
        report("  queries:", queries(sqlite, records, tasks, options.queries))
        sqlite.close()


if __name__ == "__main__":
    main()
