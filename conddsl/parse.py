"""Text -> AST: the parser of grammar/conddsl.lark and a transformer that builds our nodes.

The shape of lark's calc example: :func:`parse` runs the shared LALR parser
(:mod:`conddsl.grammar`) and :class:`AstBuilder` turns the tree into frozen AST nodes
with spans. Lark's failures are put in words by :mod:`conddsl.syntax_errors`; values
inside windows are read by :mod:`conddsl.literals`.
"""

from __future__ import annotations

import re
import sys
import threading
from functools import cache, lru_cache

from conddsl import ast
from conddsl.errors import ConditionSyntaxError, CronError, LiteralError, Span
from conddsl.grammar import build_parser, get_parser, grammar_text, parser_cache_path
from conddsl.lalr import Token, fast_parser
from conddsl.lalr_tables import load_tables
from conddsl.literals import Word, better_unit, parse_duration, parse_point, unquote
from conddsl.timeline.cron import parse_cron
from conddsl.timeline.zones import resolve_zone, zone_names_like

__all__ = [
    "parse",
    "AstBuilder",
    "grammar_text",
    "build_parser",
    "parser_cache_path",
    "MAX_DEPTH",
    "MAX_LENGTH",
]

# Deeper nesting than this is refused with a positioned error: no real condition
# needs it, and it keeps every later step (printing, compiling) safely recursive.
MAX_DEPTH = 200
MAX_LENGTH = 1_000_000


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
    if not text or text.isspace() or ("#" in text and _only_comments(text)):
        raise ConditionSyntaxError(
            "the condition is empty",
            text=text,
            span=Span.from_offsets(text, 0, len(text)),
            code="E103",
            hint="write a condition such as 'daily' or 'time of day between 08:00 and 18:00'",
        )
    fast = _fast or _fast_parser()  # (the global first: a call less per text)
    if fast is not None:
        try:
            return fast(text, AstBuilder(text))
        except Exception:  # noqa: BLE001 - Lark's full path below words every failure
            pass
    return _parse_with_tree(text)


def _parse_with_tree(text: str) -> ast.Node:
    """Lark's full path: parse tree, depth check, transform; the one that words errors."""
    from lark.exceptions import UnexpectedInput  # Lark loads only when this path runs

    from conddsl.syntax_errors import translate

    parser = get_parser()
    try:
        tree = parser.parse(text)
    except UnexpectedInput as exc:
        raise translate(text, exc, parser) from None
    _check_depth(text, tree)
    try:
        return _tree_builder_type()(AstBuilder(text)).transform(tree)
    except LiteralError as error:
        raise _literal_error(text, error) from None


@cache
def _tree_builder_type() -> type:
    """A Lark ``Transformer`` that calls an :class:`AstBuilder`'s method for each rule."""
    from lark import Transformer, Tree

    class TreeBuilder(Transformer):
        # No method is named after a rule, so every rule comes to __default__.
        __visit_tokens__ = False

        def __init__(self, builder: AstBuilder) -> None:
            self.builder = builder

        def __default__(self, data, children, meta):
            method = _BUILDER_METHODS.get(data)
            if method is None:  # a ?rule Lark keeps with several children
                return Tree(data, children, meta)
            return method(self.builder, meta, children)

    return TreeBuilder


_fast = None
_fast_lock = threading.Lock()


def _fast_parser():
    """The driver of :mod:`conddsl.lalr` over the shared parser, made once; None if unusable."""
    global _fast
    if _fast is None:
        with _fast_lock:
            if _fast is None:
                try:
                    # A stack this deep may hold a tree deeper than MAX_DEPTH: such a text
                    # takes the full path, which measures the tree and says where.
                    _fast = fast_parser(load_tables(), AstBuilder, MAX_DEPTH - 20)
                except TypeError:  # pragma: no cover - a grammar the driver cannot run
                    _fast = False
    return _fast or None


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("#") for line in text.splitlines())


def _literal_error(text: str, error: LiteralError, code: str = "E110") -> ConditionSyntaxError:
    return ConditionSyntaxError(
        error.message,
        text=text,
        span=Span.from_offsets(text, error.start, error.end),
        code=code,
        hint=error.hint,
    )


def _check_depth(text: str, tree) -> None:
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

_PERIOD_OF_UNIT = {unit: period for period, unit in ast.PERIOD_UNIT.items()}
_POINT_NAME = {"week": "weekday", "month": "day of the month"}


# Spans are immutable and most are alike (line 1, a few dozen columns): one object per
# distinct span, made once, costs a dict look-up instead of a frozen dataclass's four
# attribute stores each time.
_SPANS: dict[tuple[int, int, int, int], Span] = {}
_SPANS_MAX = 8192


def _span(line: int, column: int, end_line: int, end_column: int) -> Span:
    key = (line, column, end_line, end_column)
    found = _SPANS.get(key)
    if found is None:
        if len(_SPANS) >= _SPANS_MAX:
            _SPANS.clear()
        found = _SPANS[key] = Span(line, column, end_line, end_column)
    return found


def _meta_span(meta) -> Span:
    try:
        span = meta.span  # conddsl.lalr's Meta keeps its Span
    except AttributeError:  # Lark's own Meta, on the full path
        return _span(meta.line, meta.column, meta.end_line, meta.end_column)
    if span is None:
        span = meta.span = _span(meta.line, meta.column, meta.end_line, meta.end_column)
    return span


def _token_span(token: Token) -> Span:
    return _span(token.line, token.column, token.end_line, token.end_column)


_ONE_POINT_WINDOWS = {
    "after": ast.After,
    "before": ast.Before,
    "on": ast.On,
    "starting": ast.Starting,
}
_new_tuple = tuple.__new__


def _opt(children: list, index: int):
    return children[index] if len(children) > index else None


class AstBuilder:
    """Each rule's values -> AST nodes with spans; literal values are read by conddsl.literals.

    A method per rule, called with the rule's positions (``meta``) and its children's
    values: by the fast parser (:mod:`conddsl.lalr`) as it reduces, and on Lark's parse
    tree by a ``Transformer`` made on first use (so the fast path never imports Lark).
    """

    # The rules whose methods below never read ``meta``: conddsl.lalr gives them None.
    without_positions = frozenset(
        {
            "start",
            "zone",
            "clock_unit",
            "period",
            "point",
            "duration",
            "task_name",
            "task_names",
            "task_prefix",
            "action",
            "dependency",
            "comparison",
        }
    )

    # How conddsl.lalr hands these rules their words: the text alone (``str``) for the
    # rules that read nothing else, a ``Word`` for points; a Token for the other rules
    # (on Lark's full path every rule gets Lark's tokens).
    word_forms = {
        "constant": str,
        "all_of": str,  # the AND words, dropped
        "clock_unit": str,
        "period": str,
        "point": Word,
        "action": str,
        "dependency": str,
        "comparison": str,
    }

    def __init__(self, text: str) -> None:
        self.text = text
        self.one_line = "\n" not in text

    def _words_span(self, words: list[Word]) -> Span:
        """The span of a point's words."""
        start, end = words[0].start, words[-1].end
        if self.one_line:  # columns are offsets
            return _span(1, start + 1, 1, end + 1)
        return Span.from_offsets(self.text, start, end)

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
        if resolve_zone(name) is None:
            close = zone_names_like(name)
            hint = f"did you mean {close[0]}?" if close else "use an IANA name like Europe/Helsinki"
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
        # Interned: every condition of the same unit shares the one string (issue 21).
        # (A token's lower() is already a plain str.)
        return sys.intern(children[0].lower())

    def period(self, meta, children):
        return children[0].lower()

    def point(self, meta, children):
        if children[0].__class__ is Word:  # conddsl.lalr made them so (word_forms)
            return children
        # Lark's tokens. tuple.__new__ straight: the named tuple's __new__ is one more call.
        return [_new_tuple(Word, (str(t), t.start_pos, t.end_pos)) for t in children]

    def between(self, meta, children):
        start, joiner, end = children
        if joiner == "&":  # a token is a str
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
        kind = raw[0]
        span = _meta_span(raw[1])
        if kind == "between":
            first, second = raw[2], raw[3]
            start = parse_point(unit, first, is_end=False, span=self._words_span(first))
            end = parse_point(unit, second, is_end=True, span=self._words_span(second))
            return ast.Between(start, end, span)
        words = raw[2]
        value = parse_point(unit, words, is_end=kind == "before", span=self._words_span(words))
        return _ONE_POINT_WINDOWS[kind](value, span)

    def time_of(self, meta, children):
        unit, raw = children
        if raw[0] == "starting":  # pragma: no cover - the grammar does not allow it
            raise AssertionError("time of … starting")
        try:
            window = self._window(unit, raw)
        except LiteralError as error:
            self._suggest(error, meta, raw, r"(time\s+of\s+)[a-z]+", lambda u: rf"\g<1>{u}")
            raise
        return ast.TimeOf(unit, window, span=_meta_span(meta))

    def periodic(self, meta, children):
        period = children[0]
        window = None
        if len(children) > 1:
            raw = children[1]
            try:
                window = self._window(ast.PERIOD_UNIT[period], raw)
            except LiteralError as error:
                self._suggest(error, meta, raw, r"[a-z]+", lambda u: _PERIOD_OF_UNIT[u])
                raise
        return ast.Periodic(period, window, span=_meta_span(meta))

    def _suggest(self, error: LiteralError, meta, raw, unit_word: str, replacement) -> None:
        """Name the form meant when a window holds points of another cycle.

        Rocketry reads ``time of day between Mon and Wed`` as always true (a weekday
        is no time of day): conddsl refuses it and says ``time of week …``. The caller
        raises the error again, its hint changed or not.
        """
        unit = error.better_unit
        points = raw[2:]
        if unit is None or any(better_unit(p[0].text) != unit for p in points):
            return
        written = self.text[meta.start_pos : meta.end_pos]
        meant = re.sub(unit_word, replacement(unit), written, count=1, flags=re.I)
        word = points[0][0].text
        error.hint = f"did you mean '{meant}'? {word} is a {_POINT_NAME[unit]}"

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


# The rules' methods by rule name, for the Transformer of Lark's full path.
_BUILDER_METHODS = {
    name: method
    for name, method in vars(AstBuilder).items()
    if not name.startswith("_") and callable(method)
}
