"""Records as ``logging`` events under the ``conddsl`` logger, in words or as JSON lines.

:class:`RecordLogger` is a record listener (``Scheduler.subscribe``): each record becomes
one event of the ``conddsl.records`` logger (INFO for a start, success or inaction,
WARNING for a termination, ERROR for a failure or crash), carrying the record in
``event.conddsl_record``. A host program routes them like any other log;
``conddsl run`` writes them with :class:`TextFormatter` (``--log-format text``) or
:class:`JsonFormatter` (``--log-format json``, one object a line).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, tzinfo
from typing import Any

from conddsl.errors import printable
from conddsl.history import Record

__all__ = [
    "RECORD_LOGGER",
    "RecordLogger",
    "TextFormatter",
    "JsonFormatter",
    "LEVELS",
    "event_data",
    "record_words",
]

RECORD_LOGGER = "conddsl.records"

LEVELS = {
    "run": logging.INFO,
    "success": logging.INFO,
    "inaction": logging.INFO,
    "terminate": logging.WARNING,
    "fail": logging.ERROR,
    "crash": logging.ERROR,
}
_VERB = {"run": "start"}


def _words(record: Record) -> str:
    """What happened, in a line: ``fail  load  (table 'orders' is locked)``."""
    parts = [f"{_VERB.get(record.action, record.action):<9}", printable(record.task)]
    if record.reason:
        parts.append(f"reason={printable(record.reason)}")
    if record.message:
        parts.append(f"({printable(' '.join(record.message.split())[:300])})")
    return "  ".join(parts)


class RecordLogger:
    """Logs each record it is called with (a ``Record``, or the scheduler's ``Recorded``)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(RECORD_LOGGER)

    def __call__(self, event: Any) -> None:
        """Log one record."""
        record: Record = getattr(event, "record", event)
        level = LEVELS.get(record.action, logging.INFO)
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "%s", _words(record), extra={"conddsl_record": record})


def _stamp(at: datetime, zone: tzinfo | None) -> str:
    local = at.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local.tzname()}"


class TextFormatter(logging.Formatter):
    """``2024-01-05 08:00:00.123 EET  fail  load  (…)``: the record's time with its zone."""

    def __init__(self, zone: tzinfo | None = None) -> None:
        super().__init__()
        self.zone = zone

    def format(self, event: logging.LogRecord) -> str:
        """One line (a failure's exception line under it, indented)."""
        record: Record | None = getattr(event, "conddsl_record", None)
        if record is None:
            at = datetime.fromtimestamp(event.created).astimezone()
            return f"{_stamp(at, self.zone)}  {printable(event.getMessage())}"
        line = f"{_stamp(record.at, self.zone)}  {event.getMessage()}"
        if record.traceback:
            lines = [x for x in record.traceback.splitlines() if x.strip()]
            if lines:
                line += f"\n    {printable(lines[-1][:300])}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (ISO 8601 with offset), ``level``, ``logger``,
    ``message``, and a record's fields (``task``, ``action``, ``run_id``, ``reason``,
    ``record_message``, ``traceback``) when the event carries one."""

    def __init__(self, zone: tzinfo | None = None) -> None:
        super().__init__()
        self.zone = zone

    def format(self, event: logging.LogRecord) -> str:
        """The event as one line of JSON."""
        record: Record | None = getattr(event, "conddsl_record", None)
        at = record.at if record is not None else datetime.fromtimestamp(event.created).astimezone()
        data = event_data(at, event.levelname, event.name, event.getMessage(), record, self.zone)
        if record is None and event.exc_info:
            data["traceback"] = self.formatException(event.exc_info)
        return json.dumps(data)


def event_data(
    at: datetime,
    level: str,
    logger: str,
    message: str,
    record: Record | None = None,
    zone: tzinfo | None = None,
) -> dict[str, Any]:
    """One JSON log line's fields (see :class:`JsonFormatter`); ``conddsl run`` writes its own
    lines (the start, the summary) with these fields too."""
    data: dict[str, Any] = {
        "time": at.astimezone(zone).isoformat(timespec="milliseconds"),
        "level": level.lower(),
        "logger": logger,
        "message": message,
    }
    if record is not None:
        data.update(
            task=record.task,
            action=record.action,
            run_id=record.run_id,
            reason=record.reason,
            record_message=record.message,
            traceback=record.traceback,
        )
    return data


def record_words(record: Record) -> str:
    """What happened, in a line (the message of a record's log event)."""
    return _words(record)
