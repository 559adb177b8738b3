"""What the command line writes for a person: control characters escaped everywhere.

A task name, a message or a file path may hold ESC, NUL or C1 characters that would
rewrite the screen or hide what follows (:func:`conddsl.errors.printable`). Text that
goes through :class:`Escaped` or the command line's warnings keeps its line breaks
and loses nothing else but those characters' power.
"""

from __future__ import annotations

import logging
import sys
from typing import IO

from conddsl.errors import printable

__all__ = ["printable_lines", "Escaped", "escape_warnings"]


def printable_lines(text: str) -> str:
    """``text`` with each line :func:`printable` (its line breaks kept)."""
    return "\n".join(printable(line) for line in text.split("\n"))


class Escaped:
    """A text stream that writes :func:`printable_lines` of whatever it is given."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        """Write ``text`` escaped."""
        return self.stream.write(printable_lines(text))

    def writelines(self, lines: list[str]) -> None:
        """Write each of ``lines`` escaped."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the stream beneath."""
        self.stream.flush()


class _EscapedStderr(logging.Handler):
    """Logging's last resort (bare messages to whatever ``sys.stderr`` is now), escaped."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(printable_lines(self.format(record)) + "\n")
        except Exception:  # as logging's own handlers: never raise from a warning
            self.handleError(record)


def escape_warnings() -> None:
    """Make the warnings the command line prints with no logging set up escaped."""
    if not isinstance(logging.lastResort, _EscapedStderr):
        logging.lastResort = _EscapedStderr(logging.WARNING)
