"""Lark's parse failures in words: a :class:`ConditionSyntaxError` with the position,
what was expected and a hint ("did you mean 'daily'?").

The keywords come from the grammar through the parser (its terminals, and what it
accepts where a condition starts), so a keyword added to grammar/conddsl.lark is
named and suggested here without restating it.
"""

from __future__ import annotations

import re
from functools import cache

from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from conddsl import ast
from conddsl.errors import ConditionSyntaxError, Span, suggest
from conddsl.literals import EXPECTED, ascii_digit_hint

__all__ = ["translate", "keyword_words", "start_keywords"]

# Terminals that can start a condition besides its keywords: a named condition, "(".
_ATOM_START = {"NAME", "LPAR"}
# Terminals that are not keywords, in words. (Keywords are quoted from the grammar.)
_DESCRIBE = {
    "STRING": "a quoted name like 'extract'",
    "DURATION": "a duration like '10 minutes'",
    "CRON_TEXT": "five cron fields like '*/5 * * * *'",
    "INT": "a whole number",
    "ZONE": "a timezone name like Europe/Helsinki",
    "$END": "the end of the condition",
    # five spellings: the message names them in short
    "CYCLE_SPAN": "'today' or 'this hour/week/month'",
}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\S")
_VALUE = re.compile(r"[0-9A-Za-z:.]+")
_FIRST_WORD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")
_LOOKAROUND = re.compile(r"\(\?<?[!=][^()]*\)")


def translate(text: str, exc: UnexpectedInput, parser: Lark) -> ConditionSyntaxError:
    """The error to raise for ``exc``, a failure of ``parser`` on ``text``."""
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream
        expected = set(exc.allowed or ())
        char = text[pos]
        if char in "'\"" and "STRING" in expected | {"STRING"}:
            closing = _find_closing(text, pos)
            if closing is None:
                return ConditionSyntaxError(
                    "this quoted name is never closed",
                    text=text,
                    span=Span.from_offsets(text, pos, len(text)),
                    code="E102",
                    hint=f"end it with {char}; write \\{char} for a quote inside the name",
                )
        start, end = _word_at(text, pos)
        found = text[start:end]
    elif isinstance(exc, UnexpectedToken):
        token = exc.token
        expected = set(exc.expected or ())
        if token.type == "$END":
            return _unexpected_end(text, expected, parser)
        start, end = token.start_pos, token.end_pos
        if token.type != "STRING":
            # The fallback lexer may glue several words into one token (cron text);
            # point at the first word only.
            start, end = _word_at(text, start)
        found = text[start:end]
    elif isinstance(exc, UnexpectedEOF):  # pragma: no cover - LALR reports $END tokens
        return _unexpected_end(text, set(exc.expected or ()), parser)
    else:  # pragma: no cover
        raise exc
    # After a complete condition Lark's lexer-level list never holds the end of
    # input; it is allowed when no parenthesis is open.
    complete = "_OR" in expected or "RPAR" in expected
    if complete and "$END" not in expected and _open_parentheses(text, start) == 0:
        expected = (expected - {"RPAR"}) | {"$END"}
    unit = _unit_before(text, start)
    misspelt = _misspelt_start(text, start, parser)
    if misspelt:
        return _unknown_word(text, *misspelt)
    hint = None
    code = "E100"
    foreign = next((c for c in found if c.isdigit() and not "0" <= c <= "9"), None)
    if foreign is not None:
        # Another script's digits (Arabic-Indic, fullwidth): every literal is ASCII.
        at = start + found.index(foreign)
        word = re.match(r"[^\s()&|~]*", text[start:])
        return ConditionSyntaxError(
            f"{foreign!r} is not an ASCII digit",
            text=text,
            span=Span.from_offsets(text, at, at + 1),
            code="E110",
            hint=ascii_digit_hint(word.group(0) if word else found),
        )
    close = suggest(found.lower(), _keyword_candidates(expected, parser))
    if close and found.lower() != close:
        hint = f"did you mean '{close}'?"
        code = "E101"
    elif "DURATION" in expected and re.fullmatch(r"\d+(\.\d+)?", found):
        hint = f"a number needs a unit: '{found} seconds', '{found} minutes', '{found} hours'"
    elif found in ("&", "|", "and", "or") and expected & _ATOM_START:
        hint = "a condition is missing before this operator"
    elif found.lower() in ("&", "|", "and", "or") and re.search(
        r"\bin\s+\S+\s*$", text[:start], re.I
    ):
        hint = "'in <zone>' applies to everything before it: put it last, or zone a part in (…)"
    elif found.lower() == "past" and re.search(r"\bin\s+the\s+$", text[:start], re.I):
        hint = "write 'in past 2 hours' (without 'the')"
    elif found == ")" and expected & _ATOM_START:
        hint = "the parentheses are empty or a condition is missing before ')'"
    words = _expected_words(expected, unit, parser)
    shown = found if len(found) <= 40 else found[:37] + "..."
    message = f"unexpected {shown!r}"
    if words:
        message += f"; expected {_join_words(words)}"
    return ConditionSyntaxError(
        message, text=text, span=Span.from_offsets(text, start, end), code=code, hint=hint
    )


def _unexpected_end(text: str, expected: set[str], parser: Lark) -> ConditionSyntaxError:
    end = len(text.rstrip())
    start = max(end - 1, 0)
    unit = _unit_before(text, end)
    words = _expected_words(expected, unit, parser)
    hint = None
    close_word = None
    # A misspelt 'and' inside an open "between" window swallows the rest as values:
    # look for it among the words after the last "between".
    between = list(re.finditer(r"\bbetween\b", text, re.I))
    if "AND" in expected and not expected & _ATOM_START and between:
        conjunctions = keyword_words(parser, "AND")
        for match in re.finditer(r"[A-Za-z]+", text[between[-1].end() :]):
            word = match.group(0).lower()
            close = suggest(word, conjunctions)
            if close and word != close:
                offset = between[-1].end()
                close_word = (offset + match.start(), offset + match.end(), close)
    if close_word:
        return _unknown_word(text, *close_word)
    if expected & _ATOM_START:
        hint = "a condition is missing at the end"
    return ConditionSyntaxError(
        f"the condition ends too early; expected {_join_words(words)}",
        text=text,
        span=Span.from_offsets(text, start, end),
        code="E106",
        hint=hint,
    )


def _unknown_word(text: str, start: int, end: int, keyword: str) -> ConditionSyntaxError:
    """E101 for ``text[start:end]``, a misspelt ``keyword``."""
    return ConditionSyntaxError(
        f"unknown word {text[start:end]!r}",
        text=text,
        span=Span.from_offsets(text, start, end),
        code="E101",
        hint=f"did you mean '{keyword}'?",
    )


# ---------------------------------------------------------------- keywords from the grammar


@cache
def keyword_words(parser: Lark, terminal: str) -> tuple[str, ...]:
    """The words (letters and spaces) a keyword terminal matches, in the grammar's order.

    A string terminal is its text; a pattern terminal (``and``/``&``, ``today``/``this
    week``) is expanded when it is a finite choice of words; anything else is no keyword.
    """
    if terminal == "$END":
        return ()
    try:
        pattern = parser.get_terminal(terminal).pattern
    except KeyError:
        return ()
    words = [pattern.value] if isinstance(pattern, PatternStr) else _expand(pattern.value)
    return tuple(w for w in words if w[:1].isalpha())


@cache
def start_keywords(parser: Lark) -> tuple[str, ...]:
    """The keywords an atom begins with (``daily``, ``time``, ``after`` ...), not ``not``."""
    accepted = parser.parse_interactive("").accepts()
    words = (_keyword_text(name, parser) for name in accepted)
    return tuple(sorted(w for w in words if w and w[:1].isalpha()))


def _keyword_text(name: str, parser: Lark) -> str | None:
    """The text of a string terminal (``'between'``), None for a pattern or the end."""
    if name == "$END":
        return None
    pattern = parser.get_terminal(name).pattern
    return pattern.value if isinstance(pattern, PatternStr) else None


def _expand(regex: str) -> list[str]:
    """The words a regex of plain letters, groups and ``|`` matches; [] for anything else.

    Lookaheads and ``\\b`` are dropped and ``\\s+`` reads as one space: enough for the
    grammar's keyword patterns, and an unexpected form yields no words, never wrong ones.
    """
    regex = _LOOKAROUND.sub("", regex)
    try:
        words, rest = _alternatives(regex)
    except ValueError:
        return []
    return words if not rest else []


def _alternatives(regex: str) -> tuple[list[str], str]:
    """Parse ``a|b|...`` up to an unmatched ``)``; return the words and the rest."""
    words, rest = _sequence(regex)
    while rest.startswith("|"):
        more, rest = _sequence(rest[1:])
        words += more
    return words, rest


def _sequence(regex: str) -> tuple[list[str], str]:
    words = [""]
    while regex and regex[0] not in "|)":
        if regex[0] == "(":
            inner = re.match(r"\((\?[a-z]*:)?", regex)
            options, regex = _alternatives(regex[inner.end() :])
            regex = _close(regex)
            words = [w + o for w in words for o in options]
            continue
        if regex.startswith(("\\s+", "\\s*")):
            piece, regex = " ", regex[3:]
        elif regex.startswith("\\b"):
            piece, regex = "", regex[2:]
        elif regex[0] == "\\" and len(regex) > 1 and not regex[1].isalnum():
            piece, regex = regex[1], regex[2:]
        elif regex[0].isalnum() or regex[0] == " ":
            piece, regex = regex[0], regex[1:]
        else:
            raise ValueError(regex)
        words = [w + piece for w in words]
    return words, regex


def _close(regex: str) -> str:
    if not regex.startswith(")"):
        raise ValueError(regex)
    return regex[1:]


def _expected_words(expected: set[str], unit: str | None, parser: Lark) -> list[str]:
    if expected & _ATOM_START or {"NAME"} <= expected:
        described = ["a condition such as 'daily' or 'time of day between 08:00 and 18:00'"]
        expected = {e for e in expected if e in ("RPAR", "$END")}
    else:
        described = []
    for name in sorted(expected):
        if name == "VALUE":
            described.append(EXPECTED.get(unit or "day", "a value"))
            continue
        keyword = _keyword_text(name, parser)
        words = keyword_words(parser, name)
        if keyword is not None:
            described.append(f"'{keyword}'")
        elif name in _DESCRIBE:
            described.append(_DESCRIBE[name])
        elif words:
            described.append(f"'{words[0]}'")
        else:
            described.append(name.lower())
    seen: list[str] = []
    for item in described:
        if item not in seen:
            seen.append(item)
    return seen


def _keyword_candidates(expected: set[str], parser: Lark) -> list[str]:
    words: list[str] = []
    for name in expected:
        words.extend(keyword_words(parser, name))
    if expected & _ATOM_START:
        words.extend(start_keywords(parser))
    return words


def _join_words(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def _words_pattern(words) -> str:
    return "|".join(r"\s+".join(map(re.escape, word.split())) for word in words)


# Where the window being written says its cycle: "time of day", "daily", "this week".
_UNIT_PATTERNS = {
    rf"time\s+of\s+({_words_pattern(ast.CLOCK_UNITS)})\b": None,
    rf"\b({_words_pattern(ast.PERIOD_UNIT)})\b": ast.PERIOD_UNIT,
    rf"\b({_words_pattern(ast.CYCLE_UNIT)})\b": ast.CYCLE_UNIT,
}


def _unit_before(text: str, pos: int) -> str | None:
    """The cycle unit of the window being written at ``pos``, for 'expected …' messages."""
    before = text[:pos].lower()
    found = None
    best = -1
    for pattern, mapping in _UNIT_PATTERNS.items():
        for match in re.finditer(pattern, before):
            if match.start() > best:
                best = match.start()
                word = " ".join(match.group(1).split())
                found = mapping[word] if mapping else word
    return found


def _word_at(text: str, pos: int) -> tuple[int, int]:
    match = _WORD.match(text, pos)
    if not match:
        return pos, min(pos + 1, len(text)) if pos < len(text) else pos
    end = match.end()
    # Values like 10:00 or 1.5 are one word for the reader.
    value = _VALUE.match(text, pos)
    if value and value.end() > end:
        end = value.end()
    return pos, end


@cache
def _segment_break(parser: Lark) -> re.Pattern[str]:
    """Where a new condition may begin: an operator sign, a parenthesis or an operator word."""
    words = [w for name in ("AND", "_OR", "_NOT") for w in keyword_words(parser, name)]
    return re.compile(rf"[&|~()]|\b(?:{_words_pattern(words)})\b", re.I)


def _misspelt_start(text: str, pos: int, parser: Lark) -> tuple[int, int, str] | None:
    """A first word of the current segment that looks like a misspelt keyword."""
    segment_start = 0
    for match in _segment_break(parser).finditer(text, 0, pos):
        segment_start = match.end()
    match = _FIRST_WORD.match(text, segment_start)
    if not match or match.end(1) > pos:
        return None
    word = match.group(1).lower()
    keywords = start_keywords(parser)
    if word in keywords:
        return None
    close = suggest(word, keywords, cutoff=0.75)
    if close:
        return match.start(1), match.end(1), close
    return None


def _open_parentheses(text: str, pos: int) -> int:
    """How many parentheses are open at ``pos`` (quoted names and comments skipped)."""
    depth = 0
    for match in re.finditer(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|#[^\n]*|[()]", text[:pos]):
        token = match.group(0)
        if token == "(":
            depth += 1
        elif token == ")":
            depth = max(depth - 1, 0)
    return depth


def _find_closing(text: str, pos: int) -> int | None:
    """Where the quoted name opened at ``pos`` ends (a backslash escapes the character
    after it), or None if it never does."""
    # str.find jumps between quotes and backslashes: a character-by-character loop took
    # 0.3 s on a megabyte-long unclosed name.
    quote_char = text[pos]
    i = pos + 1
    quote = text.find(quote_char, i)
    while quote != -1:
        backslash = text.find("\\", i, quote)
        if backslash == -1:
            return quote
        i = backslash + 2  # the escaped character is skipped, even if it is the quote
        if i > quote:
            quote = text.find(quote_char, i)
    return None
