"""Scheduler clocks: the real one, and a virtual one that jumps ahead when the scheduler idles."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol

_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+

# Linux lets a poll/epoll timeout of T seconds fire up to min(T / 1000, 0.1) s late
# (timer slack: the kernel groups wake-ups). A long wait is therefore cut in legs: sleep
# to a little before the deadline, then the rest, whose own slack is a thousandth of it.
_SLACK_SHARE = 0.001  # of the wait: the kernel's slack for an ordinary process
_SLACK_MAX = 0.1  # seconds: the slack's ceiling
_EARLY_MARGIN = 0.001  # seconds more, for the event loop's millisecond rounding
_ONE_LEG = 0.05  # seconds: a wait this short goes in one leg (its slack is <= 50 µs)
# The loop's timer rounds a wait up to the millisecond (epoll): a wake-up that has to be
# on time would be up to 1 ms late. So the loop's last leg ends this much before the
# deadline, and the rest is slept on a nanosecond timer (time.sleep), holding the loop
# for at most this long: a thousand starts at one instant begin ~0.5 ms sooner.
_BLOCKING_REST = 0.001


def first_leg(remaining: float) -> float:
    """Seconds to wait now, of ``remaining`` to a deadline, so that the timer's slack
    cannot carry the wake-up past it (the rest is waited for in later, shorter legs)."""
    if remaining <= _ONE_LEG:
        return remaining - _BLOCKING_REST
    return remaining - min(remaining * _SLACK_SHARE, _SLACK_MAX) - _EARLY_MARGIN


class Clock(Protocol):
    """What the scheduler needs of a clock."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    async def sleep_until(self, deadline: datetime | None, wake: asyncio.Event) -> None:
        """Return at ``deadline`` (None: no deadline) or as soon as ``wake`` is set."""
        ...

    def hold(self) -> None:
        """Keep time from jumping ahead until a matching :meth:`release` (a run is dying,
        or its process is being started, in real time); a no-op for a clock that never jumps."""
        ...

    def release(self) -> None:
        """Undo one :meth:`hold`."""
        ...


class RealClock:
    """Wall-clock time in UTC; sleeps on the event loop's timer, waking a little early
    and then waiting the rest (see :func:`first_leg`), so deadlines are met to the
    millisecond however far off they are.

    ``time_func`` (seconds since the epoch) and ``block`` (a blocking sleep of so many
    seconds, for the last millisecond) are for tests that drive a fake event loop.
    """

    def __init__(
        self,
        time_func: Callable[[], float] = time.time,
        block: Callable[[float], None] = time.sleep,
    ) -> None:
        self._time = time_func
        self._block = block

    def now(self) -> datetime:
        """The current time in UTC."""
        return datetime.fromtimestamp(self._time(), timezone.utc)

    async def sleep_until(self, deadline: datetime | None, wake: asyncio.Event) -> None:
        """Return at ``deadline`` or as soon as ``wake`` is set."""
        if deadline is None:
            await wake.wait()
            return
        # The wall clock may be stepped meanwhile: each leg measures again from now.
        while not wake.is_set():
            remaining = (deadline - self.now()).total_seconds()
            if remaining <= 0:
                return
            if remaining <= _BLOCKING_REST:
                self._block(remaining)
                continue
            await _wait(wake, first_leg(remaining))

    async def sleep(self, seconds: float) -> None:
        """Sleep (for tasks that should also run on a :class:`VirtualClock` in tests)."""
        await asyncio.sleep(seconds)

    def hold(self) -> None:
        """Nothing to hold: real time does not jump."""

    def release(self) -> None:
        """Nothing to release."""


async def _wait(wake: asyncio.Event, delay: float) -> None:
    """Wait ``delay`` seconds on the loop's timer, or until ``wake`` is set."""
    if _timeout is None:  # Python 3.10
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)
        return
    # asyncio.timeout needs no task of its own, unlike wait_for.
    with contextlib.suppress(TimeoutError):
        async with _timeout(delay):
            await wake.wait()


class VirtualClock:
    """Test time that stands still while work runs and jumps to the next deadline when idle.

    Like trio's ``MockClock`` with autojump: when the scheduler waits and, after
    ``settle`` turns of the event loop (and ``autojump_threshold`` real seconds),
    nothing has woken it, time jumps to the scheduler's deadline or to the first
    task sleeping in :meth:`sleep`, whichever is earlier. Threads and processes run
    in real time: give quick ones a small ``autojump_threshold`` so they finish
    before time jumps. While the scheduler holds the clock (a process is dying,
    a cancelled coroutine is unwinding) time does not jump.
    """

    def __init__(
        self,
        start: datetime | None = None,
        *,
        autojump_threshold: float = 0.0,
        settle: int = 8,
    ) -> None:
        start = start or datetime(2024, 1, 1, tzinfo=timezone.utc)
        if start.tzinfo is None:
            raise ValueError("a VirtualClock starts at a timezone-aware datetime")
        self._now = start
        self._threshold = autojump_threshold
        self._settle = settle
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._holds = 0
        self._released: asyncio.Event | None = None

    def now(self) -> datetime:
        """The virtual time."""
        return self._now

    def advance(self, delta: timedelta | float) -> None:
        """Move time forward by ``delta`` (seconds or a timedelta), waking due sleepers."""
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        if delta < timedelta(0):
            raise ValueError("time does not go backwards")
        self._set(self._now + delta)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of virtual time."""
        deadline = self._now + timedelta(seconds=seconds)
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), future))
        await future

    def hold(self) -> None:
        """Stop time from jumping until a matching :meth:`release`."""
        self._holds += 1

    def release(self) -> None:
        """Undo one :meth:`hold`."""
        self._holds -= 1
        if self._holds == 0 and self._released is not None:
            self._released.set()

    async def sleep_until(self, deadline: datetime | None, wake: asyncio.Event) -> None:
        """Let runnable work go first, then jump to the earliest deadline if still idle."""
        while not wake.is_set():
            if deadline is not None and self._now >= deadline:
                return
            for _ in range(self._settle):
                await asyncio.sleep(0)
                if wake.is_set():
                    return
            if self._holds:
                await self._wait_released(wake)
                continue
            if self._threshold > 0:
                try:
                    await asyncio.wait_for(wake.wait(), self._threshold)
                    return
                except asyncio.TimeoutError:
                    pass
            target = deadline
            if self._sleepers and (target is None or self._sleepers[0][0] < target):
                target = self._sleepers[0][0]
            if target is None:
                await wake.wait()  # nothing will ever move time: wait for a real event
                return
            self._set(target)

    async def _wait_released(self, wake: asyncio.Event) -> None:
        released = self._released = asyncio.Event()
        waits = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(released.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    def _set(self, at: datetime) -> None:
        self._now = max(self._now, at)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
