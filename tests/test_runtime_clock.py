"""The clocks: the virtual one jumps only when the loop is idle and nothing holds it."""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from conddsl.runtime import RealClock, VirtualClock

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_virtual_sleep_until_jumps_to_the_deadline_at_once():
    clock = VirtualClock(T0)

    async def main() -> float:
        began = time.monotonic()
        await clock.sleep_until(T0 + timedelta(days=3), asyncio.Event())
        return time.monotonic() - began

    assert asyncio.run(main()) < 0.5
    assert clock.now() == T0 + timedelta(days=3)


def test_virtual_sleepers_wake_in_order_before_a_later_deadline():
    clock = VirtualClock(T0)
    woke: list[datetime] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock.now())

    async def main() -> None:
        tasks = [asyncio.ensure_future(sleeper(s)) for s in (60, 10)]
        await clock.sleep_until(T0 + timedelta(hours=1), asyncio.Event())
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert woke == [T0 + timedelta(seconds=10), T0 + timedelta(seconds=60)]
    assert clock.now() == T0 + timedelta(hours=1)


def test_a_wake_event_returns_without_moving_time():
    clock = VirtualClock(T0)

    async def main() -> None:
        wake = asyncio.Event()
        asyncio.get_running_loop().call_soon(wake.set)
        await clock.sleep_until(T0 + timedelta(hours=1), wake)

    asyncio.run(main())
    assert clock.now() == T0


def test_a_held_clock_does_not_jump_until_released():
    clock = VirtualClock(T0)

    async def main() -> None:
        clock.hold()
        asyncio.get_running_loop().call_later(0.05, clock.release)
        began = time.monotonic()
        await clock.sleep_until(T0 + timedelta(hours=1), asyncio.Event())
        assert time.monotonic() - began >= 0.05

    asyncio.run(main())
    assert clock.now() == T0 + timedelta(hours=1)


def test_advance():
    clock = VirtualClock(T0)
    clock.advance(90)
    clock.advance(timedelta(minutes=1))
    assert clock.now() == T0 + timedelta(seconds=150)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        VirtualClock(datetime(2024, 1, 1))


def test_real_clock_is_aware_and_sleeps_until_the_deadline():
    clock = RealClock()

    async def main() -> float:
        deadline = clock.now() + timedelta(milliseconds=30)
        await clock.sleep_until(deadline, asyncio.Event())
        return (clock.now() - deadline).total_seconds()

    assert -0.002 < asyncio.run(main()) < 0.05
    assert clock.now().tzinfo is timezone.utc


class _SlackTime:
    """A monotonic and wall clock in one, moved only by :class:`_SlackSelector`."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0


class _SlackSelector(selectors.SelectSelector):
    """A selector whose timeouts fire as late as Linux allows: rounded up to the
    millisecond (as epoll does) plus the timer slack, min(T / 1000, 100 ms)."""

    def __init__(self, time: _SlackTime) -> None:
        super().__init__()
        self.time = time
        self.timeouts: list[float] = []

    def select(self, timeout: float | None = None):  # type: ignore[override]
        ready = super().select(0)
        if ready or not timeout:
            return ready
        self.timeouts.append(timeout)
        rounded = math.ceil(timeout * 1e3) / 1e3
        self.time.now += rounded + min(rounded / 1000, 0.1)
        return []


def _slack_loop() -> tuple[asyncio.AbstractEventLoop, _SlackSelector]:
    time = _SlackTime()
    selector = _SlackSelector(time)
    loop = asyncio.SelectorEventLoop(selector)
    loop.time = lambda: time.now  # type: ignore[method-assign]
    return loop, selector


def _slack_sleep(seconds: float) -> tuple[float, _SlackSelector, list[float]]:
    """A real clock's sleep of ``seconds`` on the slack loop: how late it woke, the
    selector (its timeouts) and the blocking sleeps of its last millisecond."""
    loop, selector = _slack_loop()
    blocks: list[float] = []
    block = _slack_block(selector.time, blocks)
    clock = RealClock(time_func=lambda: selector.time.now, block=block)
    deadline = clock.now() + timedelta(seconds=seconds)
    try:
        loop.run_until_complete(clock.sleep_until(deadline, asyncio.Event()))
    finally:
        loop.close()
    return selector.time.now - deadline.timestamp(), selector, blocks


@pytest.mark.parametrize("seconds", [1, 65, 1800])
def test_real_clock_wakes_early_so_timer_slack_cannot_make_it_late(seconds):
    late, selector, _ = _slack_sleep(seconds)
    assert -1e-6 <= late <= 0.005  # (datetimes hold microseconds)
    assert 1 <= len(selector.timeouts) <= 4  # a few legs, not a busy wait


def _slack_block(time: _SlackTime, blocks: list[float] | None = None) -> Callable[[float], None]:
    """A blocking sleep of the fake time: on time (a nanosecond timer's slack is 50 µs)."""

    def block(seconds: float) -> None:
        if blocks is not None:
            blocks.append(seconds)
        time.now += seconds

    return block


@pytest.mark.parametrize("seconds", [0.0304, 1.0004, 65.0004])
def test_real_clock_sleeps_its_last_millisecond_off_the_loops_rounded_timer(seconds):
    # The loop's timer rounds up to the millisecond: a deadline between two milliseconds
    # was met up to 1 ms late. The last leg now ends before it, the rest slept exactly.
    late, _, blocks = _slack_sleep(seconds)
    assert -1e-6 <= late < 1e-5  # (datetimes hold microseconds)
    assert len(blocks) == 1 and 0 < blocks[0] <= 0.001


def test_one_long_wait_on_the_slack_selector_is_a_tenth_of_a_second_late():
    # The model the test above runs against: one leg of 30 minutes fires 100 ms late.
    loop, selector = _slack_loop()
    try:
        loop.run_until_complete(asyncio.sleep(1800))
    finally:
        loop.close()
    assert selector.timeouts == [1800]
    assert selector.time.now - 1_700_000_000.0 == pytest.approx(1800.1)
