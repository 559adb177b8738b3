"""The Python functions the demo task file runs."""

import asyncio
import time

from conddsl import TaskTerminationException, TerminationFlag


def extract(flag=TerminationFlag()) -> None:  # noqa: B008 - the scheduler injects the flag
    """A quick job that succeeds (it would stop at once if its timeout came first)."""
    if flag.wait(0.5):
        raise TaskTerminationException()


def load(flag=TerminationFlag()) -> None:  # noqa: B008
    """Runs after extract has succeeded."""
    if flag.wait(0.5):
        raise TaskTerminationException()


def slow_report(flag=TerminationFlag()) -> None:  # noqa: B008 - the scheduler injects the flag
    """Would take a minute; its 3-second timeout stops it (cooperatively, via the flag)."""
    for _ in range(600):
        if flag.is_set():
            raise TaskTerminationException()
        time.sleep(0.1)


def warm_up(caches: list[str]) -> None:
    """Run once at startup, before anything else: its params are the task file's."""
    print(f"warming up {', '.join(caches)}")


def backup() -> None:
    """A process that runs until its end condition terminates it."""
    time.sleep(60)


async def serve() -> None:
    """A server that runs until the scheduler shuts down."""
    while True:
        await asyncio.sleep(0.5)
