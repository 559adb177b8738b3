"""The Python side of the order-polling example.

Orders arrive as JSON files in ``$ORDERS_DATA/inbox`` (default: ``data/`` beside this
file). Each poll moves the new ones to ``processed/`` and appends them to
``ledger.csv``; a poll that finds nothing is recorded as an ``inaction``, not a success.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from conddsl.runtime import Inaction, TaskTerminationException, TerminationFlag


def data_folder() -> Path:
    """Where the inbox, the ledger and the digests live."""
    return Path(os.environ.get("ORDERS_DATA", Path(__file__).parent / "data"))


def poll_orders(flag: TerminationFlag = TerminationFlag()) -> int:  # noqa: B008
    """Book every order waiting in the inbox; raise Inaction when there is none. Asked to
    stop (its timeout), it stops between two orders: the rest wait for the next poll."""
    base = data_folder()
    inbox = base / "inbox"
    waiting = sorted(inbox.glob("*.json")) if inbox.is_dir() else []
    if not waiting:
        raise Inaction("no new orders")
    processed = base / "processed"
    processed.mkdir(parents=True, exist_ok=True)
    with (base / "ledger.csv").open("a", encoding="utf-8") as ledger:
        for path in waiting:
            if flag.is_set():
                raise TaskTerminationException("stopped between two orders")
            order = json.loads(path.read_text(encoding="utf-8"))  # a bad file fails the poll
            ledger.write(f"{order['id']},{order['customer']},{float(order['total']):.2f}\n")
            path.rename(processed / path.name)
    return len(waiting)


def daily_digest() -> None:
    """Write how many orders the ledger holds and their total into digest.txt."""
    base = data_folder()
    ledger = base / "ledger.csv"
    rows = ledger.read_text(encoding="utf-8").splitlines() if ledger.exists() else []
    total = sum(float(row.rsplit(",", 1)[1]) for row in rows)
    base.mkdir(parents=True, exist_ok=True)
    (base / "digest.txt").write_text(f"{len(rows)} orders, {total:.2f} EUR\n", encoding="utf-8")


def alert() -> None:
    """Tell someone a poll failed (here: a line in alerts.log; in real life, a message)."""
    base = data_folder()
    base.mkdir(parents=True, exist_ok=True)
    with (base / "alerts.log").open("a", encoding="utf-8") as log:
        log.write("poll_orders failed: see the run history for its message\n")
