"""The run history: what tasks did and when, answered fast enough for conditions."""

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
