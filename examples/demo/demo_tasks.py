"""The Python functions the demo task file runs."""

import asyncio
import time

from conddsl import TaskTerminationException, TerminationFlag


def extract() -> None:
    """A quick job that succeeds."""
    time.sleep(0.5)


def load() -> None:
    """Runs after extract has succeeded."""
    time.sleep(0.5)


def slow_report(flag=TerminationFlag()) -> None:  # noqa: B008 - the scheduler injects the flag
    """Would take a minute; its 3-second timeout stops it (cooperatively, via the flag)."""
    for _ in range(600):
        if flag.is_set():
            raise TaskTerminationException()
        time.sleep(0.1)


def backup() -> None:
    """A process that runs until its end condition terminates it."""
    time.sleep(60)


async def serve() -> None:
    """A server that runs until the scheduler shuts down."""
    while True:
        await asyncio.sleep(0.5)
