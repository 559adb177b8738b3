"""Findings about a file (a code, a message, a span in the file) and the errors carrying them."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from conddsl.errors import ConddslError, Span

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding: ``path:line:col: CODE message`` with an optional hint."""

    code: str
    message: str
    path: str
    span: Span
    severity: Severity = "error"
    hint: str | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.span.line}:{self.span.column}: {self.code} {self.message}"

    @property
    def sort_key(self) -> tuple:
        """Order of appearance: file, line, column, then code."""
        return (self.path, self.span.line, self.span.column, self.code, self.message)


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


class FileCheckError(ConddslError, ValueError):
    """A file that cannot be used: carries every error found in it, with positions."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: d.sort_key)
        shown = [str(d) for d in self.diagnostics[:20]]
        if len(self.diagnostics) > 20:
            shown.append(f"... and {len(self.diagnostics) - 20} more")
        super().__init__("\n".join(shown))


class RuleFileError(FileCheckError):
    """A ``.cond`` rule file with errors (``.diagnostics`` lists all of them)."""


class TaskFileError(FileCheckError):
    """A TOML task file with errors (``.diagnostics`` lists all of them)."""


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    """Whether any of the findings is an error (not only warnings)."""
    return any(d.severity == "error" for d in diagnostics)
