"""Each way a run can be ended, in about three seconds of real time.

    python examples/termination/demo.py

- ``report`` (thread) outlives its 1 s timeout: its flag is set and it stops;
- ``sync`` (async) is cancelled when its end condition turns true: once ``report`` ended;
- ``stubborn`` (command) ignores SIGTERM at its 2 s timeout and is SIGKILLed after kill_grace;
- ``archive`` (process) and ``tail`` (command) are still running when the shut
  condition turns true, once ``stubborn`` ended: instant_shutdown terminates them (reason
  ``shutdown``);
- ``hello`` and ``missing`` show a success and a failed command.

The end and shut conditions wait for the runs before them to end, not for a time of day:
each task ends the way it is meant to however slowly a loaded machine starts them.
"""

from __future__ import annotations

import asyncio
import time

from conddsl.runtime import Scheduler, TaskTerminationException, TerminationFlag

ONCE = "~ has started"  # true until the task has started once


def build() -> Scheduler:
    app = Scheduler(
        {
            "timezone": "UTC",
            "timeout": "never",
            "kill_grace": 0.5,
            "instant_shutdown": True,
            "shut_cond": "task 'stubborn' has terminated",
        }
    )

    @app.task(ONCE, timeout=1, execution="thread")
    def report(flag=TerminationFlag()):  # noqa: B008 - the scheduler gives each run its own
        while not flag.wait(0.05):
            pass  # work in small steps, looking at the flag between them
        raise TaskTerminationException()

    @app.task(ONCE, end_cond="task 'report' has terminated")
    async def sync():
        while True:
            await asyncio.sleep(0.1)

    @app.task(ONCE, execution="process")
    def archive():
        time.sleep(60)

    # A shell ignores SIGTERM from its first instruction (a Python child would not yet
    # have run its signal call if its timeout came while it was still starting up).
    deaf = "trap '' TERM; sleep 60"
    app.command_task(ONCE, argv=["sh", "-c", deaf], name="stubborn", timeout=2)
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
