"""Plain TOML read a line at a time: the shape most task files have, or None for tomllib.

A task file is mostly ``[tasks.NAME]`` headers and ``key = "text"`` lines, which tomllib
reads a character at a time in Python (70 ms for 5,000 tasks). :func:`read_plain_toml`
reads each line of such a text with one regular expression and builds the same data.
It answers None, and tomllib reads the text with its own errors, as soon as a line is
anything else: another kind of value (floats, dates, escapes, multi-line strings, inline
tables, nested arrays), a dotted or quoted key, an array of tables, spaces inside a
header, a carriage return, a key or table met twice, or a header under a plain value.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["read_plain_toml"]

# A basic string's characters without escapes: TOML refuses control characters but tab.
_CHARS = r'[^"\\\x00-\x08\x0a-\x1f\x7f]*'
_KEY = r"[A-Za-z0-9_\-]+"
_LINE = re.compile(
    rf"[ \t]*(?:\[(?P<header>{_KEY}(?:\.{_KEY})*)\]"
    rf'|(?P<key>{_KEY})[ \t]*=[ \t]*(?:"(?P<string>{_CHARS})"'
    r"|(?P<integer>0|[1-9][0-9]*)|(?P<boolean>true|false)"
    rf'|\[(?P<array>[ \t]*(?:"{_CHARS}"[ \t]*,[ \t]*)*(?:"{_CHARS}"[ \t]*)?)\]))?'
    r"[ \t]*(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?"
)
_ITEM = re.compile(rf'"({_CHARS})"')


def read_plain_toml(text: str) -> dict[str, Any] | None:
    """The data of ``text`` as ``tomllib.loads`` gives it, or None when it is not plain."""
    if "\r" in text:
        return None
    data: dict[str, Any] = {}
    table = data
    for line in text.split("\n"):
        match = _LINE.fullmatch(line)
        if match is None:
            return None
        header, key = match.group("header", "key")
        if header is not None:
            table = _new_table(data, header.split("."))
            if table is None:
                return None
        elif key is not None:
            if key in table:
                return None
            string, integer, boolean, array = match.group("string", "integer", "boolean", "array")
            if string is not None:
                table[key] = string
            elif integer is not None:
                table[key] = int(integer)
            elif boolean is not None:
                table[key] = boolean == "true"
            else:
                table[key] = _ITEM.findall(array)
    return data


def _new_table(data: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    """The table a header opens; None when its name was seen before (or is a value)."""
    table = data
    for part in path[:-1]:
        found = table.setdefault(part, {})
        if not isinstance(found, dict):
            return None
        table = found
    if path[-1] in table:
        return None
    new: dict[str, Any] = {}
    table[path[-1]] = new
    return new
