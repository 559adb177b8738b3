"""Control requests as queued callables: safe from any thread, applied in the loop's.

A request made in the loop's own thread (a coroutine beside the scheduler, an endpoint
of a web app sharing its loop), or while no loop serves, is applied at once. From
another thread it is queued and applied, in the order requests were made, at the
start of the loop's next turn, which it wakes. The loop stops serving only once the
queue is empty (:meth:`Control.seal`, under the lock every request takes): a request
accepted is applied, never left behind. Once sealed, the queue takes nothing: a
shutdown asked for then is a no-op (the scheduler has stopped), any other request queued
is refused with :class:`~conddsl.errors.ControlError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from conddsl.errors import ControlError


@dataclass(frozen=True, slots=True)
class Request:
    """What to do, in the loop's thread; ``kind`` and ``name`` say what is asked (a
    manual run of ``name`` already asked for is not asked twice)."""

    apply: Callable[[], None]
    kind: str  # "run", "shut", ...: what requests.asked() looks for
    name: str | None = None


class Control:
    """The queue of requests from other threads, and the lock every request takes."""

    def __init__(self) -> None:
        # Reentrant: a signal handler calling shut_down() runs in the thread it interrupts.
        self.lock = threading.RLock()
        self._queue: list[Request] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._wake: Callable[[], None] = lambda: None
        self._closed = False

    def attach(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        """The loop serves in this thread from now on; ``wake`` wakes it (called in it)."""
        with self.lock:  # from here on, other threads queue their requests
            self._loop = loop
            self._thread = threading.get_ident()
            self._wake = wake

    def seal(self) -> bool:
        """The loop is about to stop: True, and requests are applied at once from now on,
        if none waits; False if one does (the loop applies it first: a request accepted
        is never left in the queue)."""
        with self.lock:
            if self._queue:
                return False
            self._closed = True
            return True

    def close(self) -> list[Request]:
        """The loop serves no more: requests are applied at once again; returns those it
        left in the queue (it stopped on an error), for the caller to apply."""
        with self.lock:
            self._closed = True
            left, self._queue = self._queue, []
        return left

    @property
    def attached(self) -> bool:
        """A loop serves (or served): registration rules of a running scheduler apply."""
        return self._loop is not None

    def submit(self, request: Request) -> None:
        """Apply ``request`` now, or queue it for the loop if it serves in another thread.

        Called with :attr:`lock` held.
        """
        loop = self._loop
        if loop is None or self._closed or threading.get_ident() == self._thread:
            request.apply()
            return
        self.queue(request)

    def queue(self, request: Request) -> None:
        """Queue ``request`` for the loop's next turn whatever the thread (and wake it).

        After the loop's last turn (:meth:`seal`) there is none: a shutdown is then a
        no-op, and any other request raises :class:`~conddsl.errors.ControlError`."""
        with self.lock:
            if self._closed:
                if request.kind == "shut":
                    return  # the scheduler has stopped already: nothing to shut down
                raise ControlError(
                    f"the scheduler has stopped: {request.kind!r} request not taken"
                    " (its loop serves no more)"
                )
            self._queue.append(request)
        loop = self._loop
        if loop is not None and not self._closed:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake)

    def asked(self, kind: str, name: str | None = None) -> bool:
        """Whether a request of ``kind`` (for ``name``) waits in the queue."""
        with self.lock:
            return any(r.kind == kind and r.name == name for r in self._queue)

    def take(self) -> list[Request]:
        """The queued requests, oldest first; the queue is empty after."""
        with self.lock:
            requests, self._queue = self._queue, []
        return requests
