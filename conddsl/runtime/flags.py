"""What a task sees of termination: the flag it may check and the exceptions it may raise."""

from __future__ import annotations

import contextlib
import os
import select
import threading
from typing import Protocol

# Defined with every other exception; importable here, where task code has always found them.
from conddsl.errors import Inaction, TaskTerminationException

__all__ = ["Inaction", "PipeFlag", "PipeReadEvent", "TaskTerminationException", "TerminationFlag"]


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


class PipeFlag(TerminationFlag):
    """A flag a child process sees too: ``set()`` also writes a byte to a pipe whose
    read end the child holds (as a :class:`PipeReadEvent`)."""

    __slots__ = ("_write",)

    def __init__(self) -> None:
        super().__init__()
        self._write = -1

    def open(self) -> int:
        """Make the pipe (a new one, if called again); return its read end, which the
        caller hands on and closes."""
        self.close()
        read, self._write = os.pipe2(os.O_CLOEXEC)
        if self.is_set():
            self._signal()
        return read

    def close(self) -> None:
        """Close the write end (the run is over)."""
        if self._write >= 0:
            os.close(self._write)
            self._write = -1

    def set(self) -> None:
        """Ask the run to stop, here and in the child."""
        if not self.is_set():
            super().set()
            self._signal()

    def _signal(self) -> None:
        if self._write >= 0:
            with contextlib.suppress(OSError):  # one byte never fills the pipe
                os.write(self._write, b"!")


class PipeReadEvent:
    """The child's side of a :class:`PipeFlag`: set once a byte can be read from ``fd``."""

    __slots__ = ("_fd", "_set")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._set = False

    def set(self) -> None:
        """Set the flag in this process only."""
        self._set = True

    def is_set(self) -> bool:
        """Whether the scheduler (or this process) set the flag."""
        return self.wait(0)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or ``timeout`` seconds pass; return whether it is set."""
        if not self._set:
            poller = select.poll()  # poll, not select: the fd may be above 1023
            poller.register(self._fd, select.POLLIN)
            self._set = bool(poller.poll(None if timeout is None else max(0, timeout) * 1000))
        return self._set
