"""Findings as text: concise lines, full with the source and ``^^^``, JSON, GitHub annotations."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from conddsl.errors import LineIndex, printable, render_caret
from conddsl.rules.diagnostics import Diagnostic
from conddsl.terminal import printable_lines

__all__ = ["FORMATS", "render", "summary"]


def concise(diagnostics: Sequence[Diagnostic], texts: Mapping[str, LineIndex]) -> str:
    """``path:line:col: CODE message``, one per line (as ruff and flake8 print them)."""
    return "\n".join(printable(str(d)) for d in diagnostics)


def full(diagnostics: Sequence[Diagnostic], texts: Mapping[str, LineIndex]) -> str:
    """The concise line, then the source line with ``^^^`` under the span, then the hint."""
    blocks = []
    for diagnostic in diagnostics:
        lines = [printable(str(diagnostic))]
        index = texts.get(diagnostic.path)
        if index is not None and index.text:
            lines.append(render_caret(index.text, diagnostic.span))
        if diagnostic.hint:
            lines.append(f"hint: {printable(diagnostic.hint)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def as_json(diagnostics: Sequence[Diagnostic], texts: Mapping[str, LineIndex]) -> str:
    """A JSON list of findings with ruff's field names."""
    items = [
        {
            "code": d.code,
            "message": d.message,
            "severity": d.severity,
            "filename": d.path,
            "location": {"row": d.span.line, "column": d.span.column},
            "end_location": {"row": d.span.end_line, "column": d.span.end_column},
            "hint": d.hint,
        }
        for d in diagnostics
    ]
    return _escape_unprintable(json.dumps(items, indent=2, ensure_ascii=False))


def _escape_unprintable(text: str) -> str:
    """JSON text with every character a terminal could act on (C1 such as U+009B, DEL,
    bidirectional overrides, line separators) written as ``\\uXXXX``: JSON itself only
    escapes U+0000-U+001F, and this output is read on terminals too. The line breaks
    and spaces outside strings stay (JSON escapes those inside them)."""
    return "".join(ch if ch.isprintable() or ch in "\n " else _json_escape(ch) for ch in text)


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON writes characters past the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def github(diagnostics: Sequence[Diagnostic], texts: Mapping[str, LineIndex]) -> str:
    """GitHub Actions workflow commands: ``::error file=…,line=…,col=…::CODE message``."""
    lines = []
    for d in diagnostics:
        properties = ",".join(
            f"{key}={_escape(str(value), property=True)}"
            for key, value in (
                ("file", d.path),
                ("line", d.span.line),
                ("col", d.span.column),
                ("endLine", d.span.end_line),
                ("endColumn", d.span.end_column),
                ("title", d.code),
            )
        )
        lines.append(f"::{d.severity} {properties}::{_escape(f'{d.code} {d.message}')}")
    return "\n".join(lines)


def _escape(text: str, *, property: bool = False) -> str:
    text = printable_lines(text)  # ESC, C1 ... as \x1b; line breaks become %0A below
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


FORMATS: dict[str, Callable[[Sequence[Diagnostic], Mapping[str, LineIndex]], str]] = {
    "concise": concise,
    "full": full,
    "json": as_json,
    "github": github,
}


def render(
    diagnostics: Sequence[Diagnostic], texts: Mapping[str, LineIndex], output_format: str
) -> str:
    """The findings in one of :data:`FORMATS` (an empty JSON list when there are none)."""
    return FORMATS[output_format](diagnostics, texts)


def summary(diagnostics: Sequence[Diagnostic], unchecked: int = 0) -> str:
    """``Found 3 errors, 1 warning in 2 files.`` or ``All checks passed.``

    ``unchecked`` paths (missing, unreadable) are mentioned, and then nothing "passed".
    """
    if unchecked:
        could_not = f"{_count(unchecked, 'path')} could not be checked."
        if not diagnostics:
            return f"No findings, but {could_not}"
        return f"{summary(diagnostics)[:-1]}; {could_not}"
    if not diagnostics:
        return "All checks passed."
    errors = sum(1 for d in diagnostics if d.severity == "error")
    warnings = len(diagnostics) - errors
    files = len({d.path for d in diagnostics})
    parts = []
    if errors:
        parts.append(_count(errors, "error"))
    if warnings:
        parts.append(_count(warnings, "warning"))
    return f"Found {', '.join(parts)} in {_count(files, 'file')}."


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
