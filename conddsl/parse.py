"""Text -> AST: loads the grammar lazily, builds nodes with spans, turns failures into
:class:`ConditionSyntaxError` with a position, the expectation in words and a hint."""

from __future__ import annotations

import contextlib
import re
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from conddsl import ast
from conddsl.errors import ConditionSyntaxError, LiteralError, Span, suggest
from conddsl.literals import (
    EXPECTED,
    Word,
    ascii_digit_hint,
    better_unit,
    parse_duration,
    parse_point,
    unquote,
)

if TYPE_CHECKING:
    from lark import Lark, Token, Tree

__all__ = ["parse", "grammar_text", "build_parser", "MAX_DEPTH"]

# Deeper nesting than this is refused with a positioned error: no real condition
# needs it, and it keeps every later step (printing, compiling) safely recursive.
MAX_DEPTH = 200
MAX_LENGTH = 1_000_000

_parser: Lark | None = None
_parser_lock = threading.Lock()


def grammar_text() -> str:
    """The grammar source: from the installed package, else from the repository."""
    packaged = resources.files("conddsl").joinpath("grammar/conddsl.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source = Path(__file__).resolve().parent.parent / "grammar" / "conddsl.lark"
    return source.read_text(encoding="utf-8")


def build_parser(*, strict: bool = False, cache: bool = True) -> Lark:
    """A new LALR parser for the grammar (``strict=True`` turns conflicts into errors).

    With ``cache``, the parse tables are kept in the user's own cache folder (see
    :func:`parser_cache_path`): building them costs ten times as much as loading them.
    """
    from lark import Lark

    grammar = grammar_text()
    cache_file = parser_cache_path(grammar) if cache and not strict else None
    return Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=False,
        strict=strict,
        cache=cache_file or False,
    )


def parser_cache_path(grammar: str) -> str | None:
    """Where the parse tables of ``grammar`` are cached, or None for no cache.

    Lark unpickles the file, so loading it runs whatever its writer wanted: it lives in
    ``$XDG_CACHE_HOME/conddsl`` (``~/.cache/conddsl``), a folder only the user may
    write, and is used only if the trust rule (:mod:`conddsl.trust`) holds for it.
    """
    import hashlib
    import os
    import sys

    import lark

    from conddsl.trust import believed

    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    folder = os.path.join(base, "conddsl")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return None  # a read-only home: parse without a cache
    digest = hashlib.sha256(f"{lark.__version__}\0{grammar}".encode()).hexdigest()[:32]
    path = os.path.join(folder, f"parser-{digest}-py{sys.version_info[0]}{sys.version_info[1]}")
    if not believed(path, "the parser cache", "it is not used"):
        return None
    return path


def _get_parser() -> Lark:
    global _parser
    if _parser is None:
        with _parser_lock:
            if _parser is None:
                _parser = build_parser()
    return _parser


@lru_cache(maxsize=4096)
def parse(text: str) -> ast.Node:
    """Parse condition text into an AST, or raise :class:`ConditionSyntaxError`."""
    if not isinstance(text, str):
        raise TypeError(f"a condition is text, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ConditionSyntaxError(
            f"the condition is {len(text):,} characters long; the limit is {MAX_LENGTH:,}",
            text=text,
            span=Span.from_offsets(text, MAX_LENGTH, len(text)),
            code="E105",
            hint="split it into named conditions in a .cond file",
        )
    if not text.strip() or _only_comments(text):
        raise ConditionSyntaxError(
            "the condition is empty",
            text=text,
            span=Span.from_offsets(text, 0, len(text)),
            code="E103",
            hint="write a condition such as 'daily' or 'time of day between 08:00 and 18:00'",
        )
    from lark.exceptions import UnexpectedInput, VisitError

    try:
        tree = _get_parser().parse(text)
    except UnexpectedInput as exc:
        raise _translate(text, exc) from None
    _check_depth(text, tree)
    try:
        return _Builder(text).transform(tree)
    except VisitError as exc:
        error = exc.orig_exc
        if isinstance(error, LiteralError):
            raise _literal_error(text, error) from None
        if isinstance(error, ConditionSyntaxError):
            raise error from None
        raise


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("#") for line in text.splitlines())


_PERIOD_OF_UNIT = {unit: period for period, unit in ast.PERIOD_UNIT.items()}
_POINT_NAME = {"week": "weekday", "month": "day of the month"}


def _literal_error(text: str, error: LiteralError, code: str = "E110") -> ConditionSyntaxError:
    return ConditionSyntaxError(
        error.message,
        text=text,
        span=Span.from_offsets(text, error.start, error.end),
        code=code,
        hint=error.hint,
    )


def _check_depth(text: str, tree: Tree) -> None:
    from lark import Tree

    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            meta = node.meta
            raise ConditionSyntaxError(
                f"the condition nests deeper than {MAX_DEPTH} levels",
                text=text,
                span=Span(meta.line, meta.column, meta.line, meta.column + 1),
                code="E104",
                hint="name parts of it in a .cond file instead of nesting",
            )
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


# ---------------------------------------------------------------- tree -> AST


def _meta_span(meta) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _token_span(token: Token) -> Span:
    return Span(token.line, token.column, token.end_line, token.end_column)


def _make_builder_class():
    """The Transformer subclass; built on first use so importing conddsl skips lark."""
    from lark import Transformer, v_args

    @v_args(meta=True)
    class Builder(Transformer):
        def __init__(self, text: str) -> None:
            super().__init__(visit_tokens=False)
            self.text = text

        # -------- structure
        def start(self, meta, children):
            return children[0]

        def all_of(self, meta, children):
            items: list[ast.Node] = []
            for child in children:
                if not isinstance(child, ast.Node):
                    continue  # the AND tokens
                items.append(child)
            return ast.All(tuple(items), span=_meta_span(meta))

        def any_of(self, meta, children):
            return ast.Any(tuple(children), span=_meta_span(meta))

        def negation(self, meta, children):
            return ast.Not(children[0], span=_meta_span(meta))

        def zoned(self, meta, children):
            item, zone = children
            return ast.Zoned(item, zone, span=_meta_span(meta))

        def zone(self, meta, children):
            token = children[0]
            name = unquote(token) if token.type == "STRING" else str(token)
            from conddsl.timeline.zones import resolve_zone, zone_names_like

            if resolve_zone(name) is None:
                close = zone_names_like(name)
                hint = (
                    f"did you mean {close[0]}?"
                    if close
                    else "use an IANA name like Europe/Helsinki"
                )
                raise ConditionSyntaxError(
                    f"unknown timezone {name!r}",
                    text=self.text,
                    span=_token_span(token),
                    code="E113",
                    hint=hint,
                )
            return name

        # -------- constants and clock
        def constant(self, meta, children):
            value = str(children[-1]).lower() == "true"
            return ast.Constant(value, span=_meta_span(meta))

        def clock_unit(self, meta, children):
            return str(children[0]).lower()

        def period(self, meta, children):
            return str(children[0]).lower()

        def point(self, meta, children):
            return [Word(str(t), t.start_pos, t.end_pos) for t in children]

        def between(self, meta, children):
            start, joiner, end = children
            if str(joiner) == "&":
                raise ConditionSyntaxError(
                    "'between' needs the word 'and' between its two ends",
                    text=self.text,
                    span=_token_span(joiner),
                    code="E100",
                    hint="write 'between 08:00 and 18:00'",
                )
            return ("between", meta, start, end)

        def after(self, meta, children):
            return ("after", meta, children[0])

        def before(self, meta, children):
            return ("before", meta, children[0])

        def on(self, meta, children):
            return ("on", meta, children[0])

        def starting(self, meta, children):
            return ("starting", meta, children[0])

        def _window(self, unit: str, raw) -> ast.Node:
            kind, meta, *points = raw
            span = _meta_span(meta)
            if kind == "between":
                start = parse_point(unit, points[0], is_end=False)
                end = parse_point(unit, points[1], is_end=True)
                return ast.Between(
                    _with_span(start, self.text, points[0]),
                    _with_span(end, self.text, points[1]),
                    span=span,
                )
            is_end = kind == "before"
            value = _with_span(parse_point(unit, points[0], is_end=is_end), self.text, points[0])
            node_type = {
                "after": ast.After,
                "before": ast.Before,
                "on": ast.On,
                "starting": ast.Starting,
            }[kind]
            return node_type(value, span=span)

        def time_of(self, meta, children):
            unit, raw = children
            if raw[0] == "starting":  # pragma: no cover - the grammar does not allow it
                raise AssertionError("time of … starting")
            with self._suggesting(meta, raw, r"(time\s+of\s+)[a-z]+", lambda u: rf"\g<1>{u}"):
                window = self._window(unit, raw)
            return ast.TimeOf(unit, window, span=_meta_span(meta))

        def periodic(self, meta, children):
            period = children[0]
            window = None
            if len(children) > 1:
                raw = children[1]
                with self._suggesting(meta, raw, r"[a-z]+", lambda u: _PERIOD_OF_UNIT[u]):
                    window = self._window(ast.PERIOD_UNIT[period], raw)
            return ast.Periodic(period, window, span=_meta_span(meta))

        @contextlib.contextmanager
        def _suggesting(self, meta, raw, unit_word: str, replacement):
            """Name the form meant when a window holds points of another cycle.

            Rocketry reads ``time of day between Mon and Wed`` as always true (a weekday
            is no time of day): conddsl refuses it and says ``time of week …``.
            """
            try:
                yield
            except LiteralError as error:
                unit = error.better_unit
                points = raw[2:]
                if unit is None or any(better_unit(p[0].text) != unit for p in points):
                    raise
                written = self.text[meta.start_pos : meta.end_pos]
                meant = re.sub(unit_word, replacement(unit), written, count=1, flags=re.I)
                word = points[0][0].text
                error.hint = f"did you mean '{meant}'? {word} is a {_POINT_NAME[unit]}"
                raise
                written = self.text[meta.start_pos : meta.end_pos]
                meant = re.sub(unit_word, replacement(unit), written, count=1, flags=re.I)
                error.hint = (
                    f"did you mean '{meant}'? (Rocketry reads a {_POINT_NAME[unit]} here as"
                    " always true)"
                )
                raise

        def duration(self, meta, children):
            token = children[0]
            value = parse_duration(str(token), token.start_pos)
            return ast.Duration(value, span=_token_span(token))

        def every(self, meta, children):
            duration = children[0]
            if not duration.value:
                raise ConditionSyntaxError(
                    "'every' needs a duration longer than zero",
                    text=self.text,
                    span=duration.span,
                    code="E111",
                    hint="for example 'every 10 minutes'",
                )
            return ast.Every(duration, span=_meta_span(meta))

        def cron(self, meta, children):
            token = children[0]
            from conddsl.timeline.cron import CronError, parse_cron

            try:
                spec = parse_cron(str(token))
            except CronError as exc:
                offset = token.start_pos
                error = LiteralError(exc.message, offset + exc.start, offset + exc.end, exc.hint)
                raise _literal_error(self.text, error, code="E112") from None
            return ast.Cron(str(spec), span=_meta_span(meta))

        # -------- tasks
        def task_name(self, meta, children):
            return unquote(children[0])

        def task_names(self, meta, children):
            return tuple(unquote(token) for token in children)

        def task_prefix(self, meta, children):
            return children[0]

        def action(self, meta, children):
            return str(children[0]).lower()

        def dependency(self, meta, children):
            return str(children[0]).lower()

        def comparison(self, meta, children):
            return str(children[0]).lower()

        def task_has(self, meta, children):
            # children: [task name]? action [scope]?; names and actions are both str.
            strings = [child for child in children if isinstance(child, str)]
            task = strings[0] if len(strings) == 2 else None
            scope = next((child for child in children if isinstance(child, ast.Node)), None)
            return ast.TaskHas(strings[-1], task, scope, span=_meta_span(meta))

        def cycle_scope(self, meta, children):
            cycle = " ".join(str(children[0]).lower().split())
            window = None
            if len(children) > 1:
                window = self._window(ast.CYCLE_UNIT[cycle], children[1])
            return ast.CycleScope(cycle, window, span=_meta_span(meta))

        def past_scope(self, meta, children):
            return ast.PastScope(children[-1], span=_meta_span(meta))

        def after_one(self, meta, children):
            return ast.AfterTask((children[0],), "one", _opt(children, 1), span=_meta_span(meta))

        def after_all(self, meta, children):
            mode = "all" if len(children[0]) > 1 else "one"
            return ast.AfterTask(children[0], mode, _opt(children, 1), span=_meta_span(meta))

        def after_any(self, meta, children):
            mode = "any" if len(children[0]) > 1 else "one"
            return ast.AfterTask(children[0], mode, _opt(children, 1), span=_meta_span(meta))

        def task_running(self, meta, children):
            return ast.TaskRunning(children[-1], span=_meta_span(meta))

        def running_for(self, meta, children):
            comparison, duration = children
            return ast.RunningFor(comparison, duration, span=_meta_span(meta))

        # -------- scheduler and session
        def _count(self, token) -> int:
            if len(token) > 18:
                raise LiteralError(
                    f"the number {str(token)[:20]}... is too large",
                    token.start_pos,
                    token.end_pos,
                    "use a count below 10**18",
                )
            return int(token)

        def scheduler_cycles_compared(self, meta, children):
            comparison, count = children
            return ast.SchedulerCycles(comparison, self._count(count), span=_meta_span(meta))

        def scheduler_cycles_equal(self, meta, children):
            count = self._count(children[0])
            return ast.SchedulerCycles("equal", count, span=_meta_span(meta))

        def scheduler_started_ago(self, meta, children):
            return ast.SchedulerUptime("less", children[0], span=_meta_span(meta))

        def scheduler_run_over(self, meta, children):
            return ast.SchedulerUptime("more", children[0], span=_meta_span(meta))

        def env(self, meta, children):
            return ast.Env(unquote(children[0]), span=_meta_span(meta))

        def param_exists(self, meta, children):
            return ast.ParamExists(children[0], span=_meta_span(meta))

        def param_is(self, meta, children):
            name, value = children
            return ast.ParamIs(unquote(name), unquote(value), span=_meta_span(meta))

        def reference(self, meta, children):
            words = tuple(str(t) for t in children if t.type == "NAME")
            args = tuple(unquote(t) for t in children if t.type == "STRING")
            return ast.Reference(words, args, span=_meta_span(meta))

    return Builder


def _opt(children: list, index: int):
    return children[index] if len(children) > index else None


def _with_span(point: ast.Node, text: str, words: list[Word]):
    from dataclasses import replace

    return replace(point, span=Span.from_offsets(text, words[0].start, words[-1].end))


_builder_class = None


def _Builder(text: str):
    global _builder_class
    if _builder_class is None:
        _builder_class = _make_builder_class()
    return _builder_class(text)


# ---------------------------------------------------------------- errors in words

_ATOM_START = {"NAME", "LPAR"}
_KEYWORD_WORDS = {
    "CYCLE_SPAN": ["today", "this minute", "this hour", "this week", "this month"],
    "IN_PAST": ["in past"],
    "AND": ["and"],
    "_OR": ["or"],
    "_NOT": ["not"],
}
_DESCRIBE = {
    "STRING": "a quoted name like 'extract'",
    "DURATION": "a duration like '10 minutes'",
    "CRON_TEXT": "five cron fields like '*/5 * * * *'",
    "INT": "a whole number",
    "ZONE": "a timezone name like Europe/Helsinki",
    "LPAR": "'('",
    "RPAR": "')'",
    "$END": "the end of the condition",
    "AND": "'and'",
    "_OR": "'or'",
    "_NOT": "'not'",
    "IN_PAST": "'in past'",
    "CYCLE_SPAN": "'today' or 'this hour/week/month'",
    "COMMA": "','",
}
_START_KEYWORDS = [
    "time",
    "secondly",
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "every",
    "cron",
    "task",
    "has",
    "after",
    "while",
    "running",
    "scheduler",
    "env",
    "param",
    "true",
    "false",
    "always",
]
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\S")
_SEGMENT_BREAK = re.compile(r"[&|~()]|\b(?:and|or|not)\b", re.I)


def _keyword_text(name: str) -> str | None:
    from lark.lexer import PatternStr

    terminal = _get_parser().get_terminal(name) if name not in ("$END",) else None
    if terminal is not None and isinstance(terminal.pattern, PatternStr):
        return terminal.pattern.value
    return None


def _expected_words(expected: set[str], unit: str | None) -> list[str]:
    if expected & _ATOM_START or {"NAME"} <= expected:
        described = ["a condition such as 'daily' or 'time of day between 08:00 and 18:00'"]
        expected = {e for e in expected if e in ("RPAR", "$END")}
    else:
        described = []
    for name in sorted(expected):
        if name == "VALUE":
            described.append(EXPECTED.get(unit or "day", "a value"))
            continue
        keyword = _keyword_text(name)
        if keyword is not None:
            described.append(f"'{keyword}'")
        else:
            described.append(_DESCRIBE.get(name, name.lower()))
    seen: list[str] = []
    for item in described:
        if item not in seen:
            seen.append(item)
    return seen


def _keyword_candidates(expected: set[str]) -> list[str]:
    words: list[str] = []
    for name in expected:
        keyword = _keyword_text(name)
        if keyword is not None and keyword[:1].isalpha():
            words.append(keyword)
        words.extend(_KEYWORD_WORDS.get(name, []))
    if expected & _ATOM_START:
        words.extend(_START_KEYWORDS)
    return words


def _join_words(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def _unit_before(text: str, pos: int) -> str | None:
    """The cycle unit of the window being written at ``pos``, for 'expected …' messages."""
    before = text[:pos].lower()
    found = None
    best = -1
    patterns = {
        r"time\s+of\s+(minute|hour|day|week|month)\b": None,
        r"\b(minutely|hourly|daily|weekly|monthly)\b": ast.PERIOD_UNIT,
        r"\b(today|this\s+minute|this\s+hour|this\s+week|this\s+month)\b": ast.CYCLE_UNIT,
    }
    for pattern, mapping in patterns.items():
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
    value = re.compile(r"[0-9A-Za-z:.]+").match(text, pos)
    if value and value.end() > end:
        end = value.end()
    return pos, end


def _misspelt_start(text: str, pos: int) -> tuple[int, int, str] | None:
    """A first word of the current segment that looks like a misspelt keyword."""
    segment_start = 0
    for match in _SEGMENT_BREAK.finditer(text, 0, pos):
        segment_start = match.end()
    match = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)").match(text, segment_start)
    if not match or match.end(1) > pos:
        return None
    word = match.group(1).lower()
    if word in _START_KEYWORDS:
        return None
    close = suggest(word, _START_KEYWORDS, cutoff=0.75)
    if close:
        return match.start(1), match.end(1), close
    return None


def _translate(text: str, exc) -> ConditionSyntaxError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

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
            return _unexpected_end(text, expected)
        start, end = token.start_pos, token.end_pos
        if token.type != "STRING":
            # The fallback lexer may glue several words into one token (cron text);
            # point at the first word only.
            start, end = _word_at(text, start)
        found = text[start:end]
    elif isinstance(exc, UnexpectedEOF):  # pragma: no cover - LALR reports $END tokens
        return _unexpected_end(text, set(exc.expected or ()))
    else:  # pragma: no cover
        raise exc
    # After a complete condition Lark's lexer-level list never holds the end of
    # input; it is allowed when no parenthesis is open.
    complete = "_OR" in expected or "RPAR" in expected
    if complete and "$END" not in expected and _open_parentheses(text, start) == 0:
        expected = (expected - {"RPAR"}) | {"$END"}
    unit = _unit_before(text, start)
    misspelt = _misspelt_start(text, start)
    if misspelt:
        m_start, m_end, keyword = misspelt
        return ConditionSyntaxError(
            f"unknown word {text[m_start:m_end]!r}",
            text=text,
            span=Span.from_offsets(text, m_start, m_end),
            code="E101",
            hint=f"did you mean '{keyword}'?",
        )
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
    close = suggest(found.lower(), _keyword_candidates(expected))
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
    words = _expected_words(expected, unit)
    shown = found if len(found) <= 40 else found[:37] + "..."
    message = f"unexpected {shown!r}"
    if words:
        message += f"; expected {_join_words(words)}"
    return ConditionSyntaxError(
        message, text=text, span=Span.from_offsets(text, start, end), code=code, hint=hint
    )


def _unexpected_end(text: str, expected: set[str]) -> ConditionSyntaxError:
    end = len(text.rstrip())
    start = max(end - 1, 0)
    unit = _unit_before(text, end)
    words = _expected_words(expected, unit)
    hint = None
    close_word = None
    # A misspelt 'and' inside an open "between" window swallows the rest as values:
    # look for it among the words after the last "between".
    between = list(re.finditer(r"\bbetween\b", text, re.I))
    if "AND" in expected and not expected & _ATOM_START and between:
        for match in re.finditer(r"[A-Za-z]+", text[between[-1].end() :]):
            word = match.group(0).lower()
            close = suggest(word, ["and"])
            if close and word != "and":
                offset = between[-1].end()
                close_word = (offset + match.start(), offset + match.end(), close)
    if close_word:
        c_start, c_end, keyword = close_word
        return ConditionSyntaxError(
            f"unknown word {text[c_start:c_end]!r}",
            text=text,
            span=Span.from_offsets(text, c_start, c_end),
            code="E101",
            hint=f"did you mean '{keyword}'?",
        )
    if expected & _ATOM_START:
        hint = "a condition is missing at the end"
    return ConditionSyntaxError(
        f"the condition ends too early; expected {_join_words(words)}",
        text=text,
        span=Span.from_offsets(text, start, end),
        code="E106",
        hint=hint,
    )


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
    quote_char = text[pos]
    i = pos + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote_char:
            return i
        i += 1
    return None
