"""Conditions found in files: where their text sits in the file, and what they refer to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from conddsl import ast
from conddsl.ast import walk
from conddsl.errors import ConditionSyntaxError, LineIndex, Span
from conddsl.rules.codes import severity_of
from conddsl.rules.diagnostics import Diagnostic
from conddsl.rules.tomlpos import StringMap

# Words that join conditions: a rule with such a name could never be referred to.
RESERVED_NAMES = frozenset({"and", "or", "not", "in"})


@dataclass(frozen=True, slots=True)
class ConditionText:
    """A condition's text and how its offsets map to offsets in the file.

    Text copied verbatim from the file (a ``.cond`` body) starts at ``base``; text
    decoded from a TOML string maps through ``string``. When neither is exact, every
    position falls back to ``whole``, the raw value in the file. With ``placed`` the map
    is found when a position is first asked for (most conditions never need one).
    """

    text: str
    base: int = 0
    string: StringMap | None = None
    whole: tuple[int, int] | None = None
    placed: Callable[[], ConditionText] | None = field(default=None, compare=False, repr=False)

    def file_range(self, span: Span | None) -> tuple[int, int]:
        """File offsets of a span of the condition text (all of it when ``span`` is None)."""
        if self.placed is not None:
            return self.placed().file_range(span)
        if span is None:
            start, end = 0, len(self.text)
        else:
            start, end = span.offsets(self.text)
        if self.string is not None:
            return self.string.to_raw(start, end)
        if self.whole is not None:
            return self.whole
        return self.base + start, self.base + end


def syntax_diagnostic(
    error: ConditionSyntaxError, source: ConditionText, path: str, index: LineIndex
) -> Diagnostic:
    """A :class:`ConditionSyntaxError` as a finding at its position in the file."""
    start, end = source.file_range(error.span)
    return Diagnostic(
        error.code,
        error.message,
        path,
        index.span(start, end),
        severity_of(error.code),
        error.hint,
    )


def references(node: ast.Node) -> Iterator[ast.Reference]:
    """The named conditions a tree refers to, in order."""
    for item in walk(node):
        if isinstance(item, ast.Reference):
            yield item


def task_names(node: ast.Node) -> Iterator[tuple[str, ast.Node]]:
    """``(task name, node)`` for every task a tree names (``task 'x' …``, ``after task …``)."""
    for item in walk(node):
        if isinstance(item, ast.TaskRunning) or (
            isinstance(item, ast.TaskHas) and item.task is not None
        ):
            yield item.task, item
        elif isinstance(item, ast.AfterTask):
            for name in item.tasks:
                yield name, item
