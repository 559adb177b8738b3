"""The run history: what tasks did and when, answered fast enough for conditions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conddsl.history.base import (
    ACTIONS,
    FINISH_ACTIONS,
    ClaimBusy,
    History,
    HistoryError,
    HistoryJournaled,
    HistoryUnavailable,
    Record,
    RunLost,
)
from conddsl.history.memory import MemoryHistory
from conddsl.lazy import lazy_names

if TYPE_CHECKING:
    from conddsl.history.postgres import PostgresHistory
    from conddsl.history.sqlite import SQLiteHistory

__all__ = [
    "ACTIONS",
    "FINISH_ACTIONS",
    "ClaimBusy",
    "History",
    "HistoryError",
    "HistoryJournaled",
    "HistoryUnavailable",
    "MemoryHistory",
    "PostgresHistory",
    "Record",
    "RunLost",
    "SQLiteHistory",
]

# The stores on disk and on a server load on first use: sqlite3, json and the PostgreSQL
# modules cost a scheduler that keeps its history in memory about 3 MiB of RSS.
_LAZY = {
    "PostgresHistory": "conddsl.history.postgres",
    "SQLiteHistory": "conddsl.history.sqlite",
}


__getattr__ = lazy_names(globals(), _LAZY)
