"""How late the scheduler ends other runs while thread tasks burn the CPU (issue 20, point 8).

Ten thread tasks spin in pure Python (holding the GIL as much as the interpreter lets
them), and async tasks with a 0.2 s timeout start every second: the lateness of each
timeout (the ``terminate`` record's time minus start + timeout) measures how long the
scheduler's loop waits for the GIL. Run: ``python benchmarks/busy_threads.py [seconds]``;
prints p50/p99/max in milliseconds, with no busy thread and with ten.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from datetime import timedelta

from conddsl.runfile import THREAD_SWITCH_INTERVAL
from conddsl.runtime import Scheduler, TerminationFlag

TIMEOUT = timedelta(seconds=0.2)


def spin(flag: TerminationFlag = TerminationFlag()) -> None:  # noqa: B008
    """Busy work that checks its flag now and then."""
    count = 0
    while not flag.is_set():
        for _ in range(10_000):
            count += 1


async def wait_long() -> None:
    await asyncio.sleep(60)


def lateness(busy: int, seconds: float) -> list[float]:
    """Milliseconds each async run's termination came after its deadline."""
    app = Scheduler(
        {"shut_cond": f"scheduler has run over {seconds} seconds", "instant_shutdown": True}
    )
    for index in range(busy):
        app.task("true", name=f"busy{index}", execution="thread", timeout="never")(spin)
    for index in range(5):
        app.task("every 1 second", name=f"timed{index}", execution="async", timeout=TIMEOUT)(
            wait_long
        )
    app.run()
    found = []
    for index in range(5):
        records = app.history.records(f"timed{index}")
        starts = {r.run_id: r.at for r in records if r.action == "run"}
        for record in records:
            if record.action == "terminate" and record.reason == "timeout":
                late = record.at - starts[record.run_id] - TIMEOUT
                found.append(late.total_seconds() * 1000)
    return found


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    default = sys.getswitchinterval()
    # The API's default, then the interval `conddsl run` sets when a task file has thread
    # tasks (the target, p99 <= 50 ms, is for the latter).
    for busy, interval in ((0, default), (10, default), (10, THREAD_SWITCH_INTERVAL)):
        sys.setswitchinterval(interval)
        found = sorted(lateness(busy, seconds))
        p99 = found[min(len(found) - 1, int(len(found) * 0.99))]
        print(
            f"{busy:2d} busy threads: {len(found)} timeouts, lateness p50"
            f" {statistics.median(found):.1f} ms, p99 {p99:.1f} ms, max {found[-1]:.1f} ms"
            f" (switch interval {sys.getswitchinterval() * 1000:g} ms)"
        )


if __name__ == "__main__":
    main()
