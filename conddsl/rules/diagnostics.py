"""Findings about a file: a code, a message and a span in the file.

The errors carrying them (:class:`FileCheckError` and its kinds) and the line index
live in :mod:`conddsl.errors`; they are re-exported here, where callers found them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from conddsl.errors import FileCheckError, LineIndex, RuleFileError, Span, TaskFileError

__all__ = [
    "Diagnostic",
    "FileCheckError",
    "LineIndex",
    "RuleFileError",
    "Severity",
    "TaskFileError",
    "has_errors",
]

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


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    """Whether any of the findings is an error (not only warnings)."""
    return any(d.severity == "error" for d in diagnostics)
