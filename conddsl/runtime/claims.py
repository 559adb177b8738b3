"""Which occurrence a start belongs to, and the check a shared history runs to claim it.

The rule, for every condition alike: a start belongs to the true window of its start
condition that holds the claim's instant (database time), and the occurrence is that
window's first instant. ``daily`` is true from the start of the day until the task runs:
one occurrence a day. A cron condition is true from its minute until the task runs: one a
minute. ``after task 'x'`` is true from x's success until the task runs: one an upstream
success. ``every 10 minutes`` is true from ten minutes after the last run: one a period.
A window that began before the look-back (the day before yesterday, midnight UTC: a
condition true for longer, like ``daily`` on an empty history) is clipped to it; the
re-check under the task's lock decides either way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from conddsl.history.base import History, to_us

# How far before the claim's day a true window's start is looked for.
LOOK_BACK = timedelta(days=1)
_TICK = timedelta(microseconds=1)


def occurrence(
    condition: Any,
    at: datetime,
    *,
    task: str,
    history: History,
    session: Any = None,
) -> int:
    """The first instant (microseconds since the epoch) of the condition's true window
    holding ``at``; ``at`` itself for a condition that cannot list its windows."""
    windows = getattr(condition, "windows", None)
    if windows is None:
        return to_us(at)
    # From a fixed grid (midnight UTC), so that claims of one day clip a long window alike.
    start = at.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start -= LOOK_BACK
    found = None
    for begin, end in windows(start, at + _TICK, task=task, history=history, session=session):
        if begin <= at < end:
            found = begin
    return to_us(found if found is not None else at)


def claim_check(
    condition: Any,
    *,
    task: str,
    session: Any = None,
    exclusive: bool = True,
) -> Callable[[History, datetime], int | None]:
    """The check a claim runs in its transaction: the start condition at the database's
    time against the committed history (and, unless the task may run several times at
    once, no open run of it on any node); its occurrence, or None not to start."""

    def check(history: History, now: datetime) -> int | None:
        if exclusive and history.running(task):
            return None
        if not condition.is_true(now, task=task, history=history, session=session):
            return None
        return occurrence(condition, now, task=task, history=history, session=session)

    return check
