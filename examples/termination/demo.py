"""Each way a run can be ended, in about four seconds of real time.

    python examples/termination/demo.py

- ``report`` (thread) outlives its 1 s timeout: its flag is set and it stops;
- ``sync`` (async) is cancelled when its end condition turns true, 1.5 s in;
- ``stubborn`` (command) ignores SIGTERM at its timeout and is SIGKILLed after kill_grace;
- ``archive`` (process) and ``tail`` (command) are still running when the shut
  condition turns true, 3 s in: instant_shutdown terminates them (reason ``shutdown``);
- ``hello`` and ``missing`` show a success and a failed command.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime, timedelta, timezone

from conddsl.runtime import Scheduler, TaskTerminationException, TerminationFlag

ONCE = "~ has started"  # true until the task has started once


def clock_text(seconds: float) -> str:
    """``time of day after HH:MM:SS.ffffff``, ``seconds`` from now (UTC)."""
    moment = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return f"time of day after {moment:%H:%M:%S.%f}"


def build() -> Scheduler:
    app = Scheduler(
        {
            "timezone": "UTC",
            "timeout": "never",
            "kill_grace": 0.5,
            "instant_shutdown": True,
            "shut_cond": clock_text(3.0),
        }
    )

    @app.task(ONCE, timeout=1, execution="thread")
    def report(flag=TerminationFlag()):  # noqa: B008 - the scheduler gives each run its own
        while not flag.wait(0.05):
            pass  # work in small steps, looking at the flag between them
        raise TaskTerminationException()

    @app.task(ONCE, end_cond=clock_text(1.5))
    async def sync():
        while True:
            await asyncio.sleep(0.1)

    @app.task(ONCE, execution="process")
    def archive():
        time.sleep(60)

    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    app.command_task(ONCE, argv=[sys.executable, "-c", deaf], name="stubborn", timeout=2)
    app.command_task(ONCE, argv=["sleep", "60"], name="tail")
    app.command_task(ONCE, argv=["echo", "hello from a command"], name="hello")
    app.command_task(ONCE, argv=["no-such-program"], name="missing")
    return app


def main() -> None:
    app = build()
    began = time.monotonic()
    app.run()
    print(f"\nserved {time.monotonic() - began:.2f} s; the run history:\n")
    records = app.history.records()
    start = records[0].at
    print(f"{'at':>7}  {'task':<9} {'action':<10} {'reason':<9} message")
    for rec in records:
        seconds = (rec.at - start).total_seconds()
        print(
            f"{seconds:6.2f}s  {rec.task:<9} {rec.action:<10} {rec.reason or '':<9}"
            f" {rec.message or ''}"
        )


if __name__ == "__main__":
    main()
