"""The run history: what tasks did and when, answered fast enough for conditions."""

from conddsl.history.base import (
    ACTIONS,
    FINISH_ACTIONS,
    History,
    HistoryError,
    HistoryJournaled,
    Record,
)
from conddsl.history.memory import MemoryHistory
from conddsl.history.sqlite import SQLiteHistory

__all__ = [
    "ACTIONS",
    "FINISH_ACTIONS",
    "History",
    "HistoryError",
    "HistoryJournaled",
    "MemoryHistory",
    "Record",
    "SQLiteHistory",
]
