"""SIGINT and SIGTERM for a command-line scheduler: the first shuts down gracefully, the second
forces."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import IO, Any

from conddsl.runtime.scheduler import Scheduler

# A signal repeated within this many seconds is the same interrupt: GNU `timeout -s INT`
# sends it to the process and to its group, so it arrives twice in the same instant.
SAME_INTERRUPT = 0.05

# After a forced shutdown the process exits within kill_grace + this many seconds, even
# if a task holds the scheduler's thread (a blocking call in a main or async task).
EXIT_MARGIN = 0.8

EXIT_STUCK = 3  # the exit code when the scheduler had to be left behind


def install_signal_handlers(
    scheduler: Scheduler,
    signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
    *,
    out: IO[str] | None = None,
    exit_when_stuck: bool = False,
) -> Callable[[], None]:
    """Route the signals to ``scheduler.shut_down()``; return a function restoring the old handlers.

    Call it from the main thread, before or while the scheduler runs. The first
    signal asks for a graceful shutdown, a later one forces it (running tasks are
    terminated with reason ``forced``); a signal repeated within ``SAME_INTERRUPT``
    seconds counts once. With ``out``, each says at once what happens there. With
    ``exit_when_stuck`` (a command line, not a program embedding the scheduler), the
    process exits (code ``EXIT_STUCK``) if the scheduler has not stopped
    ``kill_grace`` + ``EXIT_MARGIN`` seconds after a forced shutdown.
    """
    last = [-1.0]  # when the last interrupt that counted came (time.monotonic)

    def say(text: str) -> None:
        if out is not None:
            try:
                out.write(f"conddsl: {text}\n")
                out.flush()
            except (OSError, ValueError):
                pass  # the reader went away: the shutdown goes on

    def handle(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if now - last[0] < SAME_INTERRUPT:
            return
        first = last[0] < 0
        last[0] = now
        name = signal.Signals(signum).name
        alive = len(scheduler.running_runs)
        runs = f"{alive} run" if alive == 1 else f"{alive} runs"
        if first and scheduler.state in ("idle", "running"):
            say(
                f"{name}: shutting down gracefully, waiting for {runs} to end;"
                " interrupt again to force"
            )
            scheduler.shut_down(why=f"interrupted ({name})", cause="interrupt")
            return
        grace = scheduler.config.kill_grace.total_seconds()
        if first:  # a graceful shutdown (its shut_cond, shut_down()) was going on already
            say(
                f"{name} during the graceful shutdown: forcing it, terminating {runs}"
                f" (kill_grace {grace:g} s)"
            )
            why = f"an interrupt ({name}) during the graceful shutdown forced it"
        else:
            say(f"{name} again: forcing the shutdown, terminating {runs} (kill_grace {grace:g} s)")
            why = f"a second interrupt ({name}) forced the shutdown"
        scheduler.shut_down(force=True, why=why)
        if exit_when_stuck:
            _exit_if_stuck(scheduler, grace + EXIT_MARGIN, say)

    previous: dict[signal.Signals, Any] = {}
    for sig in signals:
        previous[sig] = signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _exit_if_stuck(scheduler: Scheduler, after: float, say: Callable[[str], None]) -> None:
    """Exit the process unless the scheduler has stopped within ``after`` seconds."""

    def watch() -> None:
        deadline = time.monotonic() + after
        while time.monotonic() < deadline:
            if scheduler.state == "done":
                return
            time.sleep(0.02)
        if scheduler.state != "done":
            say(
                f"the scheduler did not stop within {after:g} s of the forced shutdown (a task"
                " holds its thread); exiting now: the runs left open are marked crash at the"
                " next start"
            )
            os._exit(EXIT_STUCK)

    threading.Thread(target=watch, name="conddsl:exit-watch", daemon=True).start()
