"""Where keys and values stand in raw TOML text: TOML readers give no positions.

:func:`locate` scans the text once and maps every key path (``("tasks", "a",
"start_cond")``, array items by index) to the offsets of its key and its value. For a
string value it also keeps, for each character of the decoded string, the offset of
the raw text it came from, so that an error inside a condition string can be shown at
the right line and column of the file, through escapes and multi-line strings alike.

The scanner is lenient: it is also run on text that failed to parse (to find the first
of two duplicate tables), and it skips whatever it does not understand. It reads arrays
and inline tables nested at most :data:`MAX_NESTING` deep and skips the rest of a deeper
value, so no text can exhaust the stack. :func:`too_deep` finds where a text first nests
deeper than that, before any reader recurses into it.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field

__all__ = [
    "MAX_NESTING",
    "Located",
    "StringMap",
    "TomlLocations",
    "locate",
    "nesting",
    "too_deep",
]

# How deep arrays and inline tables may nest in a task file: each ``[`` or ``{`` of a
# value is one level. Task files need two or three; tomllib (and this scanner) recurse
# once per level, so a limit keeps every reader far from Python's recursion limit.
MAX_NESTING = 100

Path = tuple[str | int, ...]

_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
_SCALAR_END = frozenset(",]}#\n")
# Runs that need no character-by-character look: plain characters of a basic string
# (no quote, escape or line break) and bare-key characters.
_PLAIN_RUN = re.compile(r'[^"\\\r\n]+')
_BARE_RUN = re.compile(r"[A-Za-z0-9_\-]+")
# A table header of bare keys (group 1), or a bare key (2) set to a one-line basic string
# of plain characters (3, not empty: '""' may open a multi-line string).
_SIMPLE_LINE = re.compile(
    r"\[([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*)\]"
    r'|([A-Za-z0-9_\-]+)[ \t]*=[ \t]*"([^"\\\r\n]+)"'
)


@dataclass(frozen=True, slots=True)
class StringMap:
    """A decoded string value and, per decoded character, its raw offset (plus the end)."""

    value: str
    raw: tuple[int, ...]

    def to_raw(self, start: int, end: int) -> tuple[int, int]:
        """Raw offsets of the decoded range ``value[start:end]``."""
        last = len(self.value)
        start = max(0, min(start, last))
        end = max(start, min(end, last))
        return self.raw[start], self.raw[end]


@dataclass(frozen=True, slots=True)
class Located:
    """The raw offsets of a key and of its value (a table's value is its header)."""

    key: tuple[int, int]
    value: tuple[int, int]
    string: StringMap | None = None


class _Stop(Exception):
    """The scanner met something it cannot read; the rest of the line is skipped."""


@dataclass
class TomlLocations:
    """Positions found in one TOML text."""

    text: str
    found: dict[Path, Located] = field(default_factory=dict)
    headers: dict[Path, list[tuple[int, int]]] = field(default_factory=dict)

    def get(self, path: Path) -> Located | None:
        """The first place ``path`` is written, if it is written at all."""
        return self.found.get(tuple(path))

    def nearest(self, path: Path) -> tuple[Located | None, int]:
        """The located entry for the longest prefix of ``path``, and that prefix's length."""
        path = tuple(path)
        for size in range(len(path), 0, -1):
            found = self.found.get(path[:size])
            if found is not None:
                return found, size
        return None, 0


def locate(text: str) -> TomlLocations:
    """Scan ``text`` and return the positions of its keys, tables and values."""
    scanner = _Scanner(text)
    # A RecursionError only if the caller's own stack was nearly full: values nest at
    # most MAX_NESTING deep here. What was found so far is still right.
    with contextlib.suppress(RecursionError):
        scanner.run()
    return scanner.result


# One match each: an opening bracket (group 1), a closing one (2), or a stretch without
# brackets that count: other characters, comments, and strings as a reader ends them
# (one-line strings at their quote, or left open at the line's end; a multi-line one at
# its closing three quotes and up to two more, which belong to it; escapes inside).
_DEPTH_TOKENS = re.compile(
    r"([\[{])|([\]}])|(?:"
    r"[^\[\]{}#\"']+"
    r"|'''[\s\S]*?(?:'''(?:''?)?|\Z)"
    r'|"""(?:[^"\\]|\\[\s\S]?|"(?!""))*(?:"""(?:""?)?|\Z)'
    r"|#[^\n]*"
    r'|"(?:[^"\\\n]|\\[\s\S]?)*(?:"|(?=\n)|\Z)'
    r"|'[^'\n]*'?"
    r")+"
)


def too_deep(text: str, limit: int = MAX_NESTING) -> int | None:
    """The offset of the ``[`` or ``{`` where ``text`` first nests more than ``limit`` deep."""
    if text.count("[") + text.count("{") <= limit:
        return None  # the common case, without a scan
    depth, at = nesting(text, stop_over=limit)
    return at if depth > limit else None


def nesting(text: str, *, stop_over: int | None = None) -> tuple[int, int]:
    """How deep ``text`` nests brackets, and the offset of the bracket that first gets there.

    Brackets in strings and comments do not count; the text need not be valid TOML (an
    unclosed bracket simply stays open). Table headers count too (``[[a]]`` is two
    levels), which keeps the scan free of any grammar. With ``stop_over`` the scan stops
    at the first bracket deeper than that. ``(0, 0)`` for a text without brackets.
    """
    depth = deepest = where = 0
    for match in _DEPTH_TOKENS.finditer(text):
        kind = match.lastindex
        if kind == 1:
            depth += 1
            if depth > deepest:
                deepest, where = depth, match.start()
                if stop_over is not None and depth > stop_over:
                    break
        elif kind == 2 and depth:
            depth -= 1
    return deepest, where


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.i = 0
        self.result = TomlLocations(text)
        self.array_counts: dict[Path, int] = {}
        self.depth = 0  # arrays and inline tables open around the current value

    # ------------------------------------------------------------ structure

    def run(self, *, fast: bool = True) -> None:
        prefix: Path = ()
        text = self.text
        while True:
            self._skip_blank(newlines=True)
            if self.i >= self.n:
                return
            # Most lines of a task file are "[tasks.NAME]" or 'key = "plain text"': those
            # are read by one match each, with the same result as the steps below.
            simple = _SIMPLE_LINE.match(text, self.i) if fast else None
            if simple is not None:
                if simple.lastindex == 1:
                    prefix = self._simple_header(simple)
                else:
                    self._simple_pair(prefix, simple)
                self._skip_line()
                continue
            try:
                if text[self.i] == "[":
                    prefix = self._header()
                else:
                    self._pair(prefix)
            except _Stop:
                pass
            self._skip_line()

    def _simple_header(self, match: re.Match[str]) -> Path:
        """``[a.b]`` of bare keys: as :meth:`_header` records it."""
        span = match.span()
        found = self.result.found
        path: Path = ()
        at = span[0] + 1
        for name in match.group(1).split("."):
            end = at + len(name)
            path = (*path, name)
            found.setdefault(path, Located((at, end), span))
            at = end + 1
        self.result.headers.setdefault(path, []).append(span)
        return path

    def _simple_pair(self, prefix: Path, match: re.Match[str]) -> None:
        """``key = "text"`` of a bare key and a string without escapes: as :meth:`_pair`."""
        start, end = match.span(3)
        self.i = end + 1
        string = StringMap(match.group(3), tuple(range(start, end + 1)))
        self.result.found.setdefault(
            (*prefix, match.group(2)), Located(match.span(2), (start - 1, end + 1), string)
        )

    def _header(self) -> Path:
        start = self.i
        array = self.text.startswith("[[", self.i)
        self.i += 2 if array else 1
        keys = self._key()
        self._skip_blank()
        closing = "]]" if array else "]"
        if not self.text.startswith(closing, self.i):
            raise _Stop
        self.i += len(closing)
        path = tuple(name for name, _, _ in keys)
        span = (start, self.i)
        self._record_keys((), keys, span)
        self.result.headers.setdefault(path, []).append(span)
        if array:
            index = self.array_counts.get(path, 0)
            self.array_counts[path] = index + 1
            path = (*path, index)
            self.result.found.setdefault(path, Located(span, span))
        return path

    def _pair(self, prefix: Path) -> None:
        keys = self._key()
        self._skip_blank()
        if self.i >= self.n or self.text[self.i] != "=":
            raise _Stop
        self.i += 1
        self._skip_blank()
        path = (*prefix, *(name for name, _, _ in keys))
        value_start = self.i
        string = self._value(path)
        _, key_start, key_end = keys[-1]
        self._record_keys(prefix, keys[:-1], (keys[0][1], key_end))
        self.result.found.setdefault(
            path, Located((key_start, key_end), (value_start, self.i), string)
        )

    def _record_keys(self, prefix: Path, keys: list, value: tuple[int, int]) -> None:
        path = prefix
        for name, start, end in keys:
            path = (*path, name)
            self.result.found.setdefault(path, Located((start, end), value))

    def _key(self) -> list[tuple[str, int, int]]:
        keys = []
        while True:
            self._skip_blank()
            start = self.i
            if self.i >= self.n:
                raise _Stop
            char = self.text[self.i]
            if char == '"':
                name = self._basic_string(multiline=False).value
            elif char == "'":
                name = self._literal_string(multiline=False).value
            else:
                run = _BARE_RUN.match(self.text, self.i)
                if run is None:
                    raise _Stop
                self.i = run.end()
                name = self.text[start : self.i]
            keys.append((name, start, self.i))
            self._skip_blank()
            if self.i < self.n and self.text[self.i] == ".":
                self.i += 1
                continue
            return keys

    # ------------------------------------------------------------ values

    def _value(self, path: Path) -> StringMap | None:
        text = self.text
        if self.i >= self.n:
            raise _Stop
        char = text[self.i]
        if text.startswith('"""', self.i):
            return self._basic_string(multiline=True)
        if text.startswith("'''", self.i):
            return self._literal_string(multiline=True)
        if char == '"':
            return self._basic_string(multiline=False)
        if char == "'":
            return self._literal_string(multiline=False)
        if char == "[":
            self._nested(self._array, path)
            return None
        if char == "{":
            self._nested(self._inline_table, path)
            return None
        start = self.i
        while self.i < self.n and text[self.i] not in _SCALAR_END:
            self.i += 1
        while self.i > start and text[self.i - 1] in " \t\r":
            self.i -= 1
        if self.i == start:
            raise _Stop
        return None

    def _nested(self, read, path: Path) -> None:
        """Read an array or inline table, unless it nests deeper than MAX_NESTING."""
        if self.depth >= MAX_NESTING:
            raise _Stop
        self.depth += 1
        try:
            read(path)
        finally:
            self.depth -= 1

    def _array(self, path: Path) -> None:
        self.i += 1
        index = 0
        while True:
            self._skip_blank(newlines=True)
            if self.i >= self.n:
                raise _Stop
            if self.text[self.i] == "]":
                self.i += 1
                return
            start = self.i
            string = self._value((*path, index))
            item = (*path, index)
            self.result.found.setdefault(item, Located((start, self.i), (start, self.i), string))
            index += 1
            self._skip_blank(newlines=True)
            if self.i < self.n and self.text[self.i] == ",":
                self.i += 1
            elif self.i < self.n and self.text[self.i] == "]":
                continue
            else:
                raise _Stop

    def _inline_table(self, path: Path) -> None:
        self.i += 1
        while True:
            self._skip_blank()
            if self.i >= self.n:
                raise _Stop
            if self.text[self.i] == "}":
                self.i += 1
                return
            self._pair(path)
            self._skip_blank()
            if self.i < self.n and self.text[self.i] == ",":
                self.i += 1
            elif self.i >= self.n or self.text[self.i] != "}":
                raise _Stop

    def _basic_string(self, *, multiline: bool) -> StringMap:
        text, n = self.text, self.n
        quote = 3 if multiline else 1
        j = self.i + quote
        if multiline:
            j = _skip_first_newline(text, j)
        chars: list[str] = []
        raw: list[int] = []
        while True:
            if j >= n:
                raise _Stop
            run = _PLAIN_RUN.match(text, j)
            if run is not None:  # a stretch of plain characters at once
                end = run.end()
                chars.append(text[j:end])
                raw.extend(range(j, end))
                j = end
                continue
            char = text[j]
            if char == '"' and (not multiline or text.startswith('"""', j)):
                if multiline:
                    extra = _extra_quotes(text, j)
                    chars.extend('"' * extra)
                    raw.extend(range(j, j + extra))
                    j += extra
                raw.append(j)
                self.i = j + quote
                return StringMap("".join(chars), tuple(raw))
            if char == "\n" and not multiline:
                raise _Stop
            if char == "\\":
                j = self._escape(j, multiline, chars, raw)
                continue
            if char == "\r" and multiline and text.startswith("\r\n", j):
                chars.append("\n")
                raw.append(j)
                j += 2
                continue
            chars.append(char)
            raw.append(j)
            j += 1

    def _escape(self, j: int, multiline: bool, chars: list[str], raw: list[int]) -> int:
        text = self.text
        code = text[j + 1 : j + 2]
        if code in _ESCAPES:
            chars.append(_ESCAPES[code])
            raw.append(j)
            return j + 2
        if code in ("u", "U"):
            width = 4 if code == "u" else 8
            digits = text[j + 2 : j + 2 + width]
            try:
                chars.append(chr(int(digits, 16)))
            except (ValueError, OverflowError):
                raise _Stop from None
            raw.append(j)
            return j + 2 + width
        if multiline and code in (" ", "\t", "\r", "\n"):
            # A line-ending backslash swallows the newline and the whitespace after it.
            k = j + 1
            while k < self.n and text[k] in " \t\r\n":
                k += 1
            return k
        raise _Stop

    def _literal_string(self, *, multiline: bool) -> StringMap:
        text = self.text
        quote = 3 if multiline else 1
        start = self.i + quote
        if multiline:
            start = _skip_first_newline(text, start)
            end = text.find("'''", start)
            if end < 0:
                raise _Stop
            end += _extra_quotes(text, end, "'")
        else:
            end = start
            while end < self.n and text[end] not in "'\n":
                end += 1
            if end >= self.n or text[end] != "'":
                raise _Stop
        self.i = end + quote
        chars: list[str] = []
        raw: list[int] = []
        j = start
        while j < end:  # only CRLF is rewritten (to LF) inside a literal string
            if text.startswith("\r\n", j) and multiline:
                chars.append("\n")
                raw.append(j)
                j += 2
            else:
                chars.append(text[j])
                raw.append(j)
                j += 1
        raw.append(end)
        return StringMap("".join(chars), tuple(raw))

    # ------------------------------------------------------------ blanks

    def _skip_blank(self, *, newlines: bool = False) -> None:
        text, n = self.text, self.n
        while self.i < n:
            char = text[self.i]
            if char in " \t" or (newlines and char in "\r\n"):
                self.i += 1
            elif char == "#":
                end = text.find("\n", self.i)
                self.i = n if end < 0 else (end + 1 if newlines else end)
            else:
                return

    def _skip_line(self) -> None:
        end = self.text.find("\n", self.i)
        self.i = self.n if end < 0 else end + 1


def _skip_first_newline(text: str, at: int) -> int:
    if text.startswith("\n", at):
        return at + 1
    if text.startswith("\r\n", at):
        return at + 2
    return at


def _extra_quotes(text: str, at: int, quote: str = '"') -> int:
    """Up to two quotes just before a closing triple quote belong to the string."""
    count = 0
    while at + count < len(text) and text[at + count] == quote:
        count += 1
    return max(0, min(count - 3, 2))
