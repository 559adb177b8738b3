"""What a task sees of termination: the flag it may check and the exceptions it may raise."""

from __future__ import annotations

import threading
from typing import Protocol


class _Event(Protocol):
    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class TerminationFlag:
    """Set by the scheduler when the run must stop; give it as a parameter default to receive it.

    ``def work(flag=TerminationFlag()): ...`` gets a fresh flag for each run. Thread
    tasks must check it and raise :class:`TaskTerminationException` once it is set.
    """

    __slots__ = ("_event",)

    def __init__(self, event: _Event | None = None) -> None:
        self._event = event if event is not None else threading.Event()

    def set(self) -> None:
        """Ask the run to stop."""
        self._event.set()

    def is_set(self) -> bool:
        """Whether the run was asked to stop."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or ``timeout`` seconds pass; return whether it is set."""
        return self._event.wait(timeout)

    def __repr__(self) -> str:
        return f"TerminationFlag(set={self.is_set()})"


class TaskTerminationException(Exception):
    """Raised by a task that stops because its termination flag was set."""


class Inaction(Exception):
    """Raised by a task that found nothing to do: its run is recorded as ``inaction``."""
