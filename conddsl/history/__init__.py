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


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conddsl.history' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
