"""What the command line writes for a person: control characters escaped everywhere.

A task name, a message or a file path may hold ESC, NUL or C1 characters that would
rewrite the screen or hide what follows (:func:`conddsl.errors.printable`). Text that
goes through :class:`Escaped` keeps its line breaks and loses nothing else but those
characters' power; a line break inside a file's name is escaped too (a name could
otherwise print a line of its own: ``a\\nfake.toml:1:1: E999 ...``), and a logged
warning is always one line.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO

from conddsl.errors import printable

__all__ = ["printable_lines", "Escaped", "escape_warnings", "names_from_outside"]

# Names of files and folders with a line break in them that messages may quote (see
# names_from_outside): their line breaks are data, never the end of an output line.
_BROKEN_NAMES: set[str] = set()


def names_from_outside(*paths: str | os.PathLike[str]) -> None:
    """Have :func:`printable_lines` escape the line breaks in the names these paths are
    made of, wherever a message quotes them (whole, relative or as a side file's prefix):
    messages built far from the command line (a history's error) keep their own lines."""
    for path in paths:
        _BROKEN_NAMES.update(name for name in os.fspath(path).split("/") if "\n" in name)


def printable_lines(text: str) -> str:
    """``text`` with each line :func:`printable` (its line breaks kept, but for those in
    the names given to :func:`names_from_outside`)."""
    for name in sorted(_BROKEN_NAMES, key=len, reverse=True):
        text = text.replace(name, printable(name))
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
            # A warning is one line: a line break in it is in a name it quotes (a path).
            text = printable(record.getMessage())
            if record.exc_info:
                text += "\n" + printable_lines(logging.Formatter().formatException(record.exc_info))
            sys.stderr.write(text + "\n")
        except Exception:  # as logging's own handlers: never raise from a warning
            self.handleError(record)


def escape_warnings() -> None:
    """Make the warnings the command line prints with no logging set up escaped."""
    if not isinstance(logging.lastResort, _EscapedStderr):
        logging.lastResort = _EscapedStderr(logging.WARNING)
