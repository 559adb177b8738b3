"""The errors conddsl raises, and how a positioned error is drawn for a person."""

from __future__ import annotations

from dataclasses import dataclass


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
        start = max(0, min(start, len(text)))
        end = max(start, min(end, len(text)))
        line, column = _line_col(text, start)
        end_line, end_column = _line_col(text, end)
        return cls(line, column, end_line, end_column)

    def offsets(self, text: str) -> tuple[int, int]:
        """The 0-based (start, end) offsets of this span in ``text``."""
        return _offset(text, self.line, self.column), _offset(text, self.end_line, self.end_column)


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    line_start = text.rfind("\n", 0, offset) + 1
    return line, offset - line_start + 1


def _offset(text: str, line: int, column: int) -> int:
    pos = 0
    for _ in range(line - 1):
        nxt = text.find("\n", pos)
        if nxt < 0:
            return len(text)
        pos = nxt + 1
    return min(pos + column - 1, len(text))


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
