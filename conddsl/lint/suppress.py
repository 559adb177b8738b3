"""Per-line suppression: ``# conddsl: ignore[C401]``, ``# conddsl: ignore[C401, E120]`` or
``# conddsl: ignore`` (everything) on the line a finding is reported at."""

from __future__ import annotations

import re
from collections.abc import Iterable

from conddsl.errors import LineIndex
from conddsl.rules.diagnostics import Diagnostic

_IGNORE = re.compile(r"#\s*conddsl:\s*ignore(?:\[([A-Za-z0-9,\s]*)\])?", re.I)


def ignored_codes(line: str) -> set[str] | None:
    """The codes a line suppresses; ``{"*"}`` for all; None if it has no such comment."""
    found: set[str] | None = None
    for match in _IGNORE.finditer(line):
        found = found or set()
        if match.group(1) is None:
            found.add("*")
        else:
            found.update(code.strip().upper() for code in match.group(1).split(",") if code.strip())
    return found


def unsuppressed(
    diagnostics: Iterable[Diagnostic], texts: dict[str, LineIndex]
) -> tuple[list[Diagnostic], int]:
    """The findings not silenced by a comment on their line, and how many were silenced."""
    kept, silenced = [], 0
    cache: dict[tuple[str, int], set[str] | None] = {}
    for diagnostic in diagnostics:
        index = texts.get(diagnostic.path)
        key = (diagnostic.path, diagnostic.span.line)
        if key not in cache:
            cache[key] = ignored_codes(index.line_text(diagnostic.span.line)) if index else None
        codes = cache[key]
        if codes is not None and ("*" in codes or diagnostic.code in codes):
            silenced += 1
        else:
            kept.append(diagnostic)
    return kept, silenced
