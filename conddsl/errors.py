"""Every error conddsl raises on purpose, where it stands in the text, and how it is drawn.

One module for the exception classes of every layer (all under :class:`ConddslError`,
but the two signals a task raises to end its run), positions (:class:`Span`,
:class:`LineIndex`), close-name hints (:func:`suggest`) and the caret rendering, so
that every layer reports a mistake the same way.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Span:
    """A region of source text: 1-based lines and columns, end column exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def from_offsets(cls, text: str, start: int, end: int) -> Span:
        """The span of ``text[start:end]`` (0-based offsets) in line/column terms."""
        return LineIndex(text).span(start, end)

    def offsets(self, text: str) -> tuple[int, int]:
        """The 0-based (start, end) offsets of this span in ``text``."""
        index = LineIndex(text)
        return index.offset(self.line, self.column), index.offset(self.end_line, self.end_column)


class LineIndex:
    """Maps 0-based character offsets of one text to 1-based line/column spans, in O(log n)."""

    __slots__ = ("text", "_starts")

    def __init__(self, text: str) -> None:
        self.text = text
        starts = [0]
        find = text.find
        at = find("\n")
        while at >= 0:
            starts.append(at + 1)
            at = find("\n", at + 1)
        self._starts = starts

    def position(self, offset: int) -> tuple[int, int]:
        """The 1-based (line, column) of ``offset`` (clamped to the text)."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1

    def span(self, start: int, end: int | None = None) -> Span:
        """The span of ``text[start:end]``; an empty range still covers one column."""
        end = start if end is None else max(start, end)
        line, column = self.position(start)
        end_line, end_column = self.position(end)
        return Span(line, column, end_line, end_column)

    def offset(self, line: int, column: int) -> int:
        """The 0-based offset of a 1-based (line, column), clamped to the text."""
        if line < 1:
            return 0
        if line > len(self._starts):
            return len(self.text)
        return min(self._starts[line - 1] + max(column, 1) - 1, len(self.text))

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its newline."""
        if not 1 <= line <= len(self._starts):
            return ""
        start = self._starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end >= 0 else len(self.text)]


def suggest(name: str, known: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The known name closest to ``name`` for a "did you mean" hint, or None if none is close.

    Closeness is difflib's ratio, at least ``cutoff`` (0.6 by default; stricter where a
    wrong guess would mislead more than no guess).
    """
    import difflib  # only on the way to an error: kept out of "import conddsl"

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=cutoff)
    return close[0] if close else None


class ConddslError(Exception):
    """Base class of every error conddsl raises on purpose."""


class ConditionSyntaxError(ConddslError, ValueError):
    """A condition text that cannot be parsed or names an impossible value."""

    def __init__(
        self,
        message: str,
        *,
        text: str,
        span: Span,
        code: str = "E001",
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.text = text
        self.span = span
        self.code = code
        self.hint = hint
        super().__init__(self._render())

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column

    @property
    def end_line(self) -> int:
        return self.span.end_line

    @property
    def end_column(self) -> int:
        return self.span.end_column

    def _render(self) -> str:
        head = f"{self.code} line {self.line}, column {self.column}: {self.message}"
        parts = [head, render_caret(self.text, self.span)]
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)

    def __reduce__(self):  # keep the error picklable across processes
        return (
            _rebuild_syntax_error,
            (self.message, self.text, self.span, self.code, self.hint),
        )


def _rebuild_syntax_error(message, text, span, code, hint):
    return ConditionSyntaxError(message, text=text, span=span, code=code, hint=hint)


class ConditionError(ConddslError, ValueError):
    """A condition that parsed but cannot be compiled (an unknown name, for example)."""


class LiteralError(ConddslError, ValueError):
    """A value that is not valid where it stands.

    ``better_unit`` names the cycle the value belongs to when it is a point of another
    one (a weekday in a day window: ``week``), so the parser can spell out the form the
    user probably meant.
    """

    def __init__(
        self,
        message: str,
        start: int,
        end: int,
        hint: str | None = None,
        better_unit: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.start = start
        self.end = end
        self.hint = hint
        self.better_unit = better_unit


class CronError(ConddslError, ValueError):
    """Bad cron text."""

    def __init__(
        self,
        message: str,
        start: int,
        end: int,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.start = start
        self.end = end
        self.field = field
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class MissingTaskError(ConddslError, ValueError):
    """A form about "this task" was evaluated with a history but no ``task=``."""


class SessionRequiredError(ConddslError, NotImplementedError):
    """A scheduler or session form was evaluated without ``session=``."""


class CustomConditionError(ConddslError):
    """A custom condition raised: the scheduler applies ``silence_cond_check`` to this."""

    def __init__(self, phrase: str, error: BaseException) -> None:
        super().__init__(f"custom condition {phrase!r} raised {type(error).__name__}: {error}")
        self.phrase = phrase
        self.error = error


class Finding(Protocol):
    """What a file error needs of a finding (:class:`conddsl.rules.diagnostics.Diagnostic`)."""

    @property
    def sort_key(self) -> tuple: ...


class FileCheckError(ConddslError, ValueError):
    """A file that cannot be used: carries every error found in it, with positions."""

    def __init__(self, diagnostics: Iterable[Finding]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: d.sort_key)
        shown = [str(d) for d in self.diagnostics[:20]]
        if len(self.diagnostics) > 20:
            shown.append(f"... and {len(self.diagnostics) - 20} more")
        super().__init__("\n".join(shown))


class RuleFileError(FileCheckError):
    """A ``.cond`` rule file with errors (``.diagnostics`` lists all of them)."""


class TaskFileError(FileCheckError):
    """A TOML task file with errors (``.diagnostics`` lists all of them)."""


class FileRefused(ConddslError, OSError):
    """The file is not a regular file (or is too large): ``strerror`` says which."""


class FileTooLarge(FileRefused):
    """The file holds more bytes than the reader's limit."""


class UsageError(ConddslError):
    """A command line that asks for something impossible (exit code 2, no traceback)."""


class TaskFileProblem(ConddslError):
    """An operating command's task file has errors: its findings, as ``conddsl check
    --output-format full`` shows them (exit code 1)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class ConfigError(ConddslError, ValueError):
    """A scheduler or task setting that is unknown or has an unusable value."""


class SettingValueError(ConfigError):
    """A setting's value that cannot be read (see :mod:`conddsl.settings`).

    ``kind`` is ``type`` (not a value of this kind at all), ``text`` (text that does not
    read) or ``value`` (read, but out of range); ``reason`` says why without naming the
    setting, so a task file's finding can name it by its position instead.
    """

    def __init__(self, what: str, kind: str, reason: str, hint: str | None = None) -> None:
        self.what = what
        self.kind = kind
        self.reason = reason
        self.hint = hint
        super().__init__(f"{what} {reason}: {hint}" if hint else f"{what} {reason}")


class ConditionFailed(ConddslError):
    """A start, end or shut condition raised while being evaluated."""

    def __init__(self, where: str, condition: object, error: BaseException) -> None:
        self.where = where
        self.condition = condition
        self.error = error
        super().__init__(f"the {where} {str(condition)!r} raised {type(error).__name__}: {error}")


class SchedulerError(ConddslError):
    """The scheduler stopped on a fatal error (a condition or the history failed)."""


class UnknownTaskError(ConddslError, KeyError):
    """No task has this name: a ``KeyError`` whose message suggests the closest name."""

    def __init__(self, name: object, known: Iterable[str]) -> None:
        known = list(known)
        close = suggest(name, known) if isinstance(name, str) else None
        if close:
            hint = f"; did you mean {close!r}?"
        elif not known:
            hint = "; the scheduler has no tasks"
        else:
            hint = ""
        super().__init__(f"no task named {name!r}{hint}")
        self.name = name

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


class ControlError(ConddslError, RuntimeError):
    """A control request that cannot be applied now (see ``Scheduler.run_task``)."""


class HistoryInUse(ConddslError):
    """Another scheduler serves on this history now; the message names it."""


class LockFileError(ConddslError):
    """The lock file is not one this run may use (planted: a link, a folder)."""


class HistoryError(ConddslError):
    """A history store could not be read or written (locked, disk full, closed).

    ``path`` is the store's file (None for a store without one) and ``reason`` the
    cause in plain words (``"the database is locked by another connection (waited 5 s)"``),
    when the store knows them.
    """

    def __init__(self, message: str, *, path: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.path = path
        self.reason = reason


class HistoryJournaled(HistoryError):
    """Closing found records the store could not write, and kept them in its journal file.

    Nothing is lost: ``count`` records wait in ``journal`` and are written to the store,
    in order and once, the next time it is opened (see ``SQLiteHistory``).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        reason: str | None = None,
        journal: str | None = None,
        count: int = 0,
    ) -> None:
        super().__init__(message, path=path, reason=reason)
        self.journal = journal
        self.count = count


class HistoryUnavailable(HistoryError):
    """The store could not be reached (a database server down or cut off).

    A record that failed this way is kept pending and written, in order, once the store
    answers again: a scheduler may go on running what it has.
    """


class ClaimBusy(HistoryError):
    """Another node is claiming the same task at this instant (a claim made without waiting).

    Its claim decides: if it starts the run its record wakes this node; if not, this node
    looks again a moment later.
    """


class RunLost(HistoryError):
    """A finishing record of a run this node no longer owns (it was taken over): not written.

    The run's local copy must end: another node recorded it as crashed (and may run it again).
    """


class JournalError(HistoryError):
    """A history journal file cannot be read or holds something that is not a record."""


# ---------------------------------------------------------------- signals from task code
# Task code raises these to tell the scheduler how its run ended. They are deliberately
# NOT ConddslError: a task that guards its own work with ``except ConddslError`` (a
# condition it compiles, a history it reads) must not swallow its own termination.


class TaskTerminationException(Exception):
    """Raised by a task that stops because its termination flag was set."""


class Inaction(Exception):
    """Raised by a task that found nothing to do: its run is recorded as ``inaction``."""


def printable(text: str) -> str:
    """``text`` with control characters (ESC, NUL, ...) escaped as ``\\x1b``: safe to
    print on a terminal, where they could rewrite the screen or hide what follows."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def render_caret(text: str, span: Span, *, max_width: int = 120) -> str:
    """Draw the span's first line with ``^^^`` under the span, clipped to ``max_width``."""
    lines = text.split("\n")
    index = min(max(span.line - 1, 0), len(lines) - 1) if lines else 0
    source = lines[index] if lines else ""
    start = max(span.column - 1, 0)
    if span.end_line == span.line:
        end = max(span.end_column - 1, start + 1)
    else:
        end = max(len(source), start + 1)
    # Long lines (a 1 MB condition) are cut around the span so the message stays readable.
    offset = 0
    if len(source) > max_width:
        offset = max(0, min(start - max_width // 3, len(source) - max_width))
        source = source[offset : offset + max_width]
    source = "".join(ch if ch.isprintable() or ch == "\t" else "?" for ch in source)
    shown_start = start - offset
    shown_end = min(end - offset, len(source) + 1)
    gutter = f"{span.line} | "
    caret = " " * (len(gutter) + shown_start) + "^" * max(1, shown_end - shown_start)
    return f"{gutter}{source}\n{caret}"
