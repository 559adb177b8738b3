"""MkDocs hook: a ``\\|`` inside a code span of a table row shows as ``|``.

GitHub needs the pipe escaped there even inside backticks, and unescapes it; Python-Markdown
does not split a table cell at a pipe inside backticks, and shows the backslash. The pages
keep GitHub's form; this hook removes the backslash for the site.
"""

from __future__ import annotations

import re

_CODE = re.compile(r"`[^`\n]*`")


def _unescape(match: re.Match[str]) -> str:
    return match.group(0).replace("\\|", "|")


def on_page_markdown(markdown: str, **kwargs: object) -> str:
    """Unescape the pipes in the code spans of table rows, outside fenced blocks."""
    lines, fenced = [], False
    for line in markdown.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("|"):
            line = _CODE.sub(_unescape, line)
        lines.append(line)
    return "\n".join(lines)
