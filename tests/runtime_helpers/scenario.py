"""Driving a scheduler in a test: a virtual day, a driver coroutine, and the finishing records."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, time, timedelta, timezone
from typing import Any

from conddsl.history import FINISH_ACTIONS, History
from conddsl.runtime import Scheduler, VirtualClock

DAY = datetime(2024, 1, 1, tzinfo=timezone.utc)  # a Monday


def at(hhmm: str, day: int = 1) -> datetime:
    """An instant of the test week in UTC: ``at("07:30")``, ``at("00:15", day=2)``."""
    clock = time.fromisoformat(hhmm)
    return DAY.replace(day=day, hour=clock.hour, minute=clock.minute, second=clock.second)


def virtual(start: str = "06:00", threshold: float = 0.0, **config: Any) -> Scheduler:
    """A scheduler on a VirtualClock in UTC, with no default timeout and a short kill grace."""
    config.setdefault("timezone", "UTC")
    config.setdefault("timeout", "never")
    config.setdefault("kill_grace", 0.5)
    return Scheduler(config, clock=VirtualClock(at(start), autojump_threshold=threshold))


async def until(app: Scheduler, hhmm: str, day: int = 1) -> None:
    """Sleep on the scheduler's virtual clock until the given time."""
    clock = app.clock
    assert isinstance(clock, VirtualClock)
    await clock.sleep((at(hhmm, day) - clock.now()).total_seconds())


def play(
    app: Scheduler,
    driver: Callable[[Scheduler], Awaitable[None]] | None = None,
    limit: float = 20.0,
) -> None:
    """Serve ``app`` (failing after ``limit`` real seconds) while ``driver(app)`` runs beside it."""

    async def main() -> None:
        serving = asyncio.ensure_future(app.serve())
        driving = asyncio.ensure_future(driver(app)) if driver is not None else None
        try:
            await asyncio.wait_for(serving, limit)
        finally:
            if driving is not None and not driving.done():
                driving.cancel()  # the scheduler stopped before the driver got its turn
        if driving is not None and not driving.cancelled():
            driving.result()

    asyncio.run(main())


def finishes(history: History) -> list[tuple[str, str, str, str | None]]:
    """(task, action, HH:MM, reason) of every finishing record, after checking each run has one.

    Every ``run`` record must have exactly one finishing record with its run_id,
    and no finishing record may lack a run.
    """
    records = history.records()
    starts = Counter(rec.run_id for rec in records if rec.action == "run")
    ends = Counter(rec.run_id for rec in records if rec.action in FINISH_ACTIONS)
    assert all(count == 1 for count in starts.values()), f"a run_id started twice: {starts}"
    assert starts == ends, f"runs and finishing records differ: {records}"
    return [
        (rec.task, rec.action, _hhmm(rec.at), rec.reason)
        for rec in records
        if rec.action in FINISH_ACTIONS
    ]


def _hhmm(moment: datetime) -> str:
    text = moment.strftime("%H:%M")
    if moment.second or moment.microsecond:
        text += moment.strftime(":%S.%f")
    if moment.date() != DAY.date():
        text = f"day{moment.day} {text}"
    return text


def seconds(delta: timedelta) -> float:
    """A timedelta in seconds."""
    return delta.total_seconds()


async def records_appear(app: Scheduler, action: str, count: int = 1, limit: float = 10.0) -> None:
    """Wait (real time, polling) until the history holds ``count`` records of ``action``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while len(app.history.records(actions=action)) < count:
        if loop.time() > deadline:
            raise TimeoutError(f"no {count} {action!r} records: {app.history.records()}")
        await asyncio.sleep(0.002)


class Once:
    """A start condition true until its task has started once (it reads the history)."""

    def is_true(self, at: datetime, *, task: str, history: History, **context: object) -> bool:
        return history.last(task, "run") is None

    def next_change(self, after: datetime, **context: object) -> datetime | None:
        return None

    def __str__(self) -> str:
        return "once"


class AfterFinish:
    """True once ``other`` has a finishing record and this task has not started since."""

    def __init__(self, other: str) -> None:
        self.other = other

    def is_true(self, at: datetime, *, task: str, history: History, **context: object) -> bool:
        finished = history.last(self.other, FINISH_ACTIONS)
        started = history.last(task, "run")
        return finished is not None and (started is None or started < finished)

    def next_change(self, after: datetime, **context: object) -> datetime | None:
        return None

    def __str__(self) -> str:
        return f"after task {self.other!r}"
