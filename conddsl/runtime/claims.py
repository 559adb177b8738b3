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

Claims agree only if every node judges a task alike: each node publishes a fingerprint of
its tasks' definitions that claims read (:func:`task_digests`, :func:`fingerprint`), and a
node starting beside others that publish another one says which tasks differ
(:func:`differences`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from conddsl.history.base import History, HistoryError, to_us

log = logging.getLogger("conddsl.runtime")

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


def _condition_text(condition: Any) -> str:
    """What identifies a condition across processes: its text and zone, or its class."""
    tree = getattr(condition, "ast", None)
    if tree is not None:
        return f"{tree} @ {getattr(condition, 'zone', None)}"
    kind = type(condition)
    return f"{kind.__module__}.{kind.__qualname__}"  # a repr may hold a memory address


def task_digests(tasks: Iterable[Any]) -> dict[str, str]:
    """For each task, a short hash of what a claim of it depends on: its start condition,
    whether it may run several times at once, what a run lost with its node becomes, and
    its role (startup, shutdown and permanent tasks are not claimed by their condition)."""
    import hashlib  # here: a scheduler on one machine never loads it (0.6 MiB of RSS)

    digests = {}
    for task in tasks:
        what = [
            _condition_text(task.start),
            bool(task.multilaunch),
            getattr(task, "on_node_lost", "fail"),
            getattr(task, "role", None),
        ]
        text = json.dumps(what, ensure_ascii=False)
        digests[task.name] = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return digests


def fingerprint(digests: Mapping[str, str]) -> str:
    """One hash of every task's digest (the same task definitions: the same fingerprint)."""
    import hashlib

    text = json.dumps(sorted(digests.items()), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def differences(mine: Mapping[str, str], theirs: Mapping[str, str], *, most: int = 5) -> str:
    """Which tasks two nodes define differently, for people: ``changed: a, b; only here:
    c; only there: d`` (at most ``most`` names each)."""

    def names(found: list[str]) -> str:
        shown = ", ".join(repr(name) for name in found[:most])
        return shown + (f" and {len(found) - most} more" if len(found) > most else "")

    changed = sorted(name for name in mine.keys() & theirs.keys() if mine[name] != theirs[name])
    parts = []
    for label, found in (
        ("defined differently", changed),
        ("only here", sorted(mine.keys() - theirs.keys())),
        ("only there", sorted(theirs.keys() - mine.keys())),
    ):
        if found:
            parts.append(f"{label}: {names(found)}")
    return "; ".join(parts) or "the same tasks"


def announce_tasks(store: Any, tasks: Iterable[Any]) -> list[str]:
    """Publish this node's task digests on the shared ``store`` and warn (in the log; the
    warnings are returned too) of each live node that serves other definitions."""
    publish = getattr(store, "publish_tasks", None)
    if publish is None:
        return []
    digests = task_digests(tasks)
    mine = fingerprint(digests)
    try:
        others = publish(mine, digests)
    except HistoryError as exc:
        log.warning("node %s: its tasks were not compared with other nodes': %s", store.node, exc)
        return []
    warnings = []
    for node, theirs, their_digests in others:
        text = (
            f"node {store.node} serves tasks {mine}, but live node {node} serves tasks"
            f" {theirs} ({differences(digests, their_digests)}): each node claims a task"
            " by its own definition of it, so one defined differently may start on both"
            " or on neither; serve the same task file on every node"
        )
        log.warning("%s", text)
        warnings.append(text)
    return warnings
