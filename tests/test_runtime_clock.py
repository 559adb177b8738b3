"""The clocks: the virtual one jumps only when the loop is idle and nothing holds it."""

from __future__ import annotations

import asyncio
import time
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
