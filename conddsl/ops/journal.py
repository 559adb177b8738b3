"""``conddsl history FILE``: the records of a task file's history, like ``journalctl``.

Each record is one line with its date and zone, the action, the task, its reason and
message; a failure's traceback follows it, indented. ``--json`` writes one JSON object
a line (JSON Lines), so ``--follow --json`` can be piped into another program.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, tzinfo
from typing import IO

from conddsl.errors import printable
from conddsl.history import History, Record
from conddsl.ops.common import show_time

__all__ = ["FAILED_ACTIONS", "select", "record_lines", "record_json", "follow"]

# ``--failed``: the runs that did not end well (an inaction is a run that chose not to act).
FAILED_ACTIONS: tuple[str, ...] = ("fail", "terminate", "crash")

_VERB = {"run": "start"}
FOLLOW_OVERLAP = timedelta(seconds=30)


def select(
    history: History,
    *,
    task: str | None = None,
    since: datetime | None = None,
    failed: bool = False,
) -> list[Record]:
    """The records asked for, oldest first."""
    actions = FAILED_ACTIONS if failed else None
    return history.records(task, since=since, actions=actions)


def record_lines(record: Record, zone: tzinfo) -> list[str]:
    """A record for people: one line, then a failure's traceback indented."""
    local = record.at.astimezone(zone)
    stamp = f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local.tzname()}"
    parts = [stamp, f"{_VERB.get(record.action, record.action):<9}", printable(record.task)]
    if record.reason:
        parts.append(f"reason={printable(record.reason)}")
    if record.message:
        parts.append(f"({printable(' '.join(record.message.split()))})")
    if record.run_id:
        parts.append(f"run_id={printable(record.run_id)}")
    node = getattr(record, "node", None)
    if node:
        parts.append(f"node={printable(node)}")
    lines = ["  ".join(parts)]
    if record.traceback:
        lines.extend("    " + printable(line) for line in record.traceback.rstrip().splitlines())
    return lines


def record_json(record: Record) -> str:
    """A record as one JSON line (``at`` in ISO 8601, UTC)."""
    data = {
        "task": record.task,
        "action": record.action,
        "at": record.at.isoformat(),
        "run_id": record.run_id,
        "reason": record.reason,
        "message": record.message,
        "traceback": record.traceback,
    }
    node = getattr(record, "node", None)
    if node is not None:
        data["node"] = node
    return json.dumps(data)


def write_records(records: Iterable[Record], out: IO[str], zone: tzinfo, as_json: bool) -> int:
    """Print records; returns how many."""
    count = 0
    for record in records:
        if as_json:
            out.write(record_json(record) + "\n")
        else:
            out.write("\n".join(record_lines(record, zone)) + "\n")
        count += 1
    out.flush()
    return count


def follow(
    history: History,
    seen: list[Record],
    *,
    task: str | None = None,
    failed: bool = False,
    since: datetime | None = None,
    interval: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Record]:
    """The records written after ``seen`` (and at ``since`` or later), as they come, until
    ``stop()`` (or Ctrl-C).

    The store is polled every ``interval`` seconds. A finish is stamped when its run
    ended and may be written a moment after a later record of another task, so each
    poll looks back ``FOLLOW_OVERLAP`` before the latest record seen and skips what
    it has shown.
    """
    shown: dict[tuple, datetime] = {_key(r): r.at for r in seen}
    latest = max((r.at for r in seen), default=since)
    while not stop():
        look_from = None if latest is None else latest - FOLLOW_OVERLAP
        for record in select(history, task=task, since=look_from, failed=failed):
            key = _key(record)
            if key in shown or (since is not None and record.at < since):
                continue
            shown[key] = record.at
            latest = record.at if latest is None else max(latest, record.at)
            yield record
        if latest is not None:  # forget what can no longer come back
            horizon = latest - FOLLOW_OVERLAP
            shown = {key: at for key, at in shown.items() if at >= horizon}
        sleep(interval)


def _key(record: Record) -> tuple:
    return (record.task, record.action, record.at, record.run_id)


def since_label(since: datetime | None, zone: tzinfo) -> str:
    """How the header names the start of the listing."""
    return "the beginning" if since is None else show_time(since, zone)
