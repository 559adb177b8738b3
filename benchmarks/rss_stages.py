"""Where the total-memory case's RSS goes, stage by stage, in this fresh process::

    python benchmarks/rss_stages.py [TASKS] [SECONDS]

The interpreter, asyncio (with ssl and libcrypto, which it imports), the benchmark
harness's own imports, conddsl's, one task (the parser's tables), the other tasks, then
a run of SECONDS (5 by default: enough for every task's first check under load; the
case itself runs 2 s). Run it from a checkout to compare two versions; compile the
bytecode first as run.py does (``python -m compileall -q conddsl``).
"""

from __future__ import annotations

import os
import sys


def _rss_mib(field: str = "VmRSS") -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    marks = [("interpreter", _rss_mib())]
    import asyncio  # noqa: F401

    marks.append(("+ asyncio (with ssl, libcrypto)", _rss_mib()))
    here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:0] = [here, os.path.dirname(here)]
    import conddsl_side

    marks.append(("+ the benchmark harness", _rss_mib()))
    import threading
    from datetime import datetime, timezone

    from common import closed_window

    from conddsl.runtime import Scheduler

    marks.append(("+ conddsl.runtime.Scheduler imported", _rss_mib()))
    app = Scheduler({"timezone": "UTC", "timeout": "never"})
    now = datetime.now(timezone.utc)
    app.task(closed_window(now, 0), name="t0")(conddsl_side._forever)
    marks.append(("+ a scheduler and 1 task (parser tables)", _rss_mib()))
    for i in range(1, tasks):
        app.task(closed_window(now, i), name=f"t{i}")(conddsl_side._forever)
    marks.append((f"+ {tasks - 1:,} more tasks", _rss_mib()))
    threading.Timer(seconds, app.shut_down).start()
    app.run()
    marks.append((f"+ a run of {seconds:g} s", _rss_mib()))
    before = 0.0
    for label, mib in marks:
        print(f"{label:44s} {mib:6.1f} MiB  (+{mib - before:4.1f})")
        before = mib
    print(f"{'peak (VmHWM)':44s} {_rss_mib('VmHWM'):6.1f} MiB")


if __name__ == "__main__":
    main()
