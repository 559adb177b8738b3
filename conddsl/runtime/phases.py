"""The scheduler's lifecycle as enums: its state and the phase of its session.

Both are ``str`` enums whose values are the words the scheduler always showed
(``app.state == "running"``, ``app.phase == "main"`` still hold), so code written
against the strings keeps working.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    """Where the scheduler is, in the only order these can follow."""

    IDLE = "idle"  # made, not serving yet
    RUNNING = "running"
    GRACEFUL = "graceful"  # shutting down: nothing new starts, runs end by themselves
    FORCED = "forced"  # shutting down: every run was asked to stop
    DONE = "done"

    def __str__(self) -> str:  # the word, on every Python version (3.11 changed the default)
        return self.value

    @property
    def stopping(self) -> bool:
        """A shutdown has begun (graceful or forced)."""
        return self is State.GRACEFUL or self is State.FORCED


class Phase(str, Enum):
    """The phase of a serving session (see :mod:`conddsl.runtime.scheduler`)."""

    STARTUP = "startup"  # the on_startup tasks, one after the other
    MAIN = "main"  # tasks start by their conditions; permanent tasks once
    CLOSING = "closing"  # the on_shutdown tasks, one after the other

    def __str__(self) -> str:
        return self.value
