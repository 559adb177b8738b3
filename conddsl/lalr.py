"""A lean LALR driver over the tables Lark built: text straight to AST, no parse tree.

Lark's own loop builds a token object per word, a tree node per rule and then walks
the tree again to transform it; for conditions of a dozen words that costs more than
the rest of compiling. This driver runs the same parse table and the same per-state
scanners of the contextual lexer (so it accepts exactly what Lark accepts and splits
the text into the same tokens), and calls the :class:`~conddsl.parse.AstBuilder`
methods as each rule is reduced, with the positions Lark would have given them.

An LALR parse depends on the types of the words alone, so every text of one *shape*
(``time of day between 08:00 and 18:00`` and ``time of day between 7pm and 9pm``) is
reduced alike. The first text of a shape runs the table and writes the shape's program
(which method each reduction calls, with which words' positions and which children);
the trie of shapes then keeps, for each sequence of word types, the scanner of the
parser's state after it. A later text of that shape is read along the trie and built
by the program: no table is consulted. Trie and programs are made from Lark's tables
(read as data by :mod:`conddsl.lalr_tables`, without importing Lark), so the grammar
stays the one source of syntax.

It only ever answers for a text that parses and builds without a problem: anything
else (a syntax error, a bad value, a nesting deep enough to need the depth check)
raises :class:`_Fallback`, and :func:`conddsl.parse.parse` then runs Lark's full path,
which words the error exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["FastParser", "Token", "Meta"]


class _Fallback(Exception):
    """The fast path does not answer for this text: run Lark's full parser."""


class _Lines:
    """Offsets to 1-based (line, column) for one text, as Lark's line counter gives them."""

    __slots__ = ("starts",)

    def __init__(self, text: str) -> None:
        starts = [0]
        at = text.find("\n")
        while at >= 0:
            starts.append(at + 1)
            at = text.find("\n", at + 1)
        self.starts = starts

    def position(self, offset: int) -> tuple[int, int]:
        starts = self.starts
        line = len(starts)
        while starts[line - 1] > offset:  # few lines in a condition: a scan is enough
            line -= 1
        return line, offset - starts[line - 1] + 1


class Token(str):
    """A word of the text with its type and offsets (the part of ``lark.Token`` we use)."""

    type: str
    start_pos: int
    end_pos: int
    lines: _Lines | None = None  # set on a token only when its text has several lines

    @property
    def line(self) -> int:
        return 1 if self.lines is None else self.lines.position(self.start_pos)[0]

    @property
    def column(self) -> int:
        return self.start_pos + 1 if self.lines is None else self.lines.position(self.start_pos)[1]

    @property
    def end_line(self) -> int:
        return 1 if self.lines is None else self.lines.position(self.end_pos)[0]

    @property
    def end_column(self) -> int:
        return self.end_pos + 1 if self.lines is None else self.lines.position(self.end_pos)[1]


class Meta:
    """A rule's positions, as Lark's ``propagate_positions`` sets them."""

    __slots__ = ("start_pos", "end_pos", "line", "column", "end_line", "end_column", "span")

    def __init__(self, start: int, end: int, lines: _Lines | None) -> None:
        self.start_pos = start
        self.end_pos = end
        # The builder's Span of these positions, kept here by the builder on first use:
        # a Meta of one line is shared by every text, and so is its Span.
        self.span = None
        if lines is None:  # one line: columns are offsets
            self.line = self.end_line = 1
            self.column = start + 1
            self.end_column = end + 1
        else:
            self.line, self.column = lines.position(start)
            self.end_line, self.end_column = lines.position(end)


_new_str = str.__new__
_new_tuple = tuple.__new__


def _word_as(form: type, token: Token) -> Any:
    """``token`` as a handler of ``form`` takes it: its text, or a (text, start, end)."""
    if form is str:
        return str(token)
    return _new_tuple(form, (str(token), token.start_pos, token.end_pos))


# The positions of a rule on one line depend on its offsets only, and no builder changes
# a Meta: one object per (start, end), shared by every text, saves building six fields
# per rule reduced. Bounded like the span cache of conddsl.parse.
_ONE_LINE_METAS: dict[tuple[int, int], Meta] = {}
_ONE_LINE_METAS_MAX = 8192


def _one_line_meta(start: int, end: int) -> Meta:
    if len(_ONE_LINE_METAS) >= _ONE_LINE_METAS_MAX:
        _ONE_LINE_METAS.clear()
    meta = _ONE_LINE_METAS[(start, end)] = Meta(start, end, None)
    return meta


def _meta_of(key: tuple[int, int], lines: _Lines | None) -> Meta:
    """The Meta of (start, end): shared for one line, made anew for several."""
    if lines is None:
        return _one_line_meta(*key)
    return Meta(key[0], key[1], lines)


# Shapes learnt before the trie starts again: each costs about 3 KB (its trie nodes and
# program), most applications have a few dozen.
_SHAPES_MAX = 1024
# A shape longer than this is not learnt: conditions that long do not repeat, and its
# path in the trie would hold a node a word (a name of a megabyte of words: 125,000).
_SHAPE_WORDS_MAX = 512


# What a reduction does (see FastParser.__init__).
_UNIT = 0
_SPLICE = 1
_EXPAND1 = 2
_BUILD = 3


def _no_handler(builder: Any, meta: Meta, children: list) -> Any:
    raise _Fallback  # a ?rule left with several children: Lark would keep a bare tree


class FastParser:
    """The parse table, scanners and tree shaping of one Lark parser, made into one loop."""

    def __init__(self, tables: dict, builder_type: type, max_stack: int) -> None:
        # ``tables`` as conddsl.lalr_tables exports them from Lark's parser.
        self._start = tables["start"]
        self._end = tables["end"]
        self._max_stack = max_stack
        plans = []
        # Rules whose handlers never read their positions (the builder says which): their
        # steps pass None, and no Meta is looked up for them.
        unplaced = frozenset(getattr(builder_type, "without_positions", ()))
        # How a rule's handler takes its words (the builder says, by rule): ``str``, the
        # text alone, or a (text, start, end) tuple type; a Token (with its type and
        # positions as Lark's) for the rest. A Token is a str with an attribute dict:
        # three times the cost of a tuple, for handlers that read the text alone.
        word_forms = getattr(builder_type, "word_forms", {})
        for origin, name, size, keep, expand1, one_rule in tables["rules"]:
            keep = tuple((index, bool(inline)) for index, inline in keep)
            inline_rule = name.startswith("_")
            handler = _no_handler
            if not inline_rule:
                wrapped = builder_type.__dict__.get(name)
                if wrapped is not None:
                    handler = getattr(wrapped, "base_func", wrapped)
                elif not expand1:
                    raise TypeError(f"{builder_type.__name__} has no method for rule {name!r}")
            if expand1 and one_rule and keep == ((0, False),):
                kind = _UNIT  # a ?rule around one rule: only the parser's state changes
            elif inline_rule:
                kind = _SPLICE
            elif expand1:
                kind = _EXPAND1
            else:
                kind = _BUILD
            # Whether the handler reads its Meta, then the form of its words (or None).
            placed = name not in unplaced
            plans.append((kind, size, keep, handler, origin, placed, word_forms.get(name)))
        # Each parser state: its actions (an int is a shift to that state, a tuple a
        # reduction), its gotos and its scanner (match, keyword lookups, ignored terminals).
        count = len(tables["states"])
        actions_of: list[dict] = [{}] * count
        gotos: list[dict] = [{}] * count
        for state, actions in enumerate(tables["states"]):
            actions_of[state] = {
                symbol: arg if kind == 0 else plans[arg]
                for symbol, kind, arg in actions
                if symbol.isupper() or symbol == "$END"
            }
            gotos[state] = {
                symbol: arg
                for symbol, kind, arg in actions
                if not (symbol.isupper() or symbol == "$END")
            }
        self._actions = actions_of
        self._gotos = gotos
        self._scans: list = [None] * count
        self._scanner_specs = tables["scanners"]
        self._scanner_of = tables["scanner_of"]
        self._compiled: dict[int, tuple] = {}  # one compiled scanner per distinct spec
        self._kept = frozenset(tables["kept"])
        self._unit_chains: dict[tuple[int, int, str], int] = {}
        # Reading a single blank between words without the scanner is exact only if no
        # terminal but the ignored ones can match from a blank (Lark would then weigh
        # priorities): true of grammar/conddsl.lark, which tests/test_fast_parse.py checks.
        self.forget()

    def forget(self) -> None:
        """Start the trie of shapes again (it is bounded; benchmarks time a first sight)."""
        self._root = _Node(self._scan(self._start))
        self._shapes = 0
        self._shared: dict[tuple, tuple] = {}  # the parts of programs, one of each

    @property
    def shapes(self) -> int:
        """How many shapes the trie holds."""
        return self._shapes

    def _scan(self, state: int) -> tuple:
        """A state's scanner, made on first use: (match, keyword lookups, ignored)."""
        index = self._scanner_of[state]
        scan = self._compiled.get(index)
        if scan is None:
            pattern, flags, keyword_specs, ignored = self._scanner_specs[index]
            # The compiled pattern's own fullmatch: its match names the keyword's type.
            keywords = {
                type_: re.compile(spec[0], spec[1]).fullmatch
                for type_, spec in keyword_specs.items()
            }
            scan = (re.compile(pattern, flags).match, keywords, frozenset(ignored))
            self._compiled[index] = scan
        self._scans[state] = scan
        return scan

    def _unit_chain(self, below: int, state: int, type_: str) -> int:
        """The state after every reduction of a ?rule around one rule, for this lookahead."""
        key = (below, state, type_)
        found = self._unit_chains.get(key)
        if found is None:
            found = state
            while True:
                arg = self._actions[found].get(type_)
                if arg is None or arg.__class__ is int or arg[0] != _UNIT:
                    break
                found = self._gotos[below][arg[4]]
            self._unit_chains[key] = found
        return found

    def parse(self, text: str, builder: Any) -> Any:
        """The AST of ``text``, built by ``builder``; :class:`_Fallback` if anything is off.

        The words are read along the trie of shapes seen before: each node holds the
        scanner of the parser's state after the words that lead to it, so no parse
        table is consulted; the shape's program then builds the AST. A text of a shape
        not seen before is parsed on the table by :meth:`_study`, which learns it.
        """
        size_text = len(text)
        node = self._root
        pos = 0
        matches: list = []
        append = matches.append
        while True:
            if pos < size_text and text[pos] == " ":
                pos += 1  # the usual single blank between words, without the scanner
            if pos >= size_text:
                program = node.program
                break
            found = node.match(text, pos)
            if found is None:
                raise _Fallback
            type_ = found.lastgroup
            keywords = node.keywords
            if keywords is not None and type_ in keywords:
                # A word that may be a keyword here (Lark's "unless").
                keyword = keywords[type_](found.group())
                if keyword is not None:
                    type_ = keyword.lastgroup
            child = node.children.get(type_)
            if child is None:
                program = None
                break
            if child is not node:  # else an ignored word
                append(found)
                node = child
            pos = found.end()
        if program is None:
            return self._study(text, builder)
        return _run(program, matches, builder, _Lines(text) if "\n" in text else None)

    def _study(self, text: str, builder: Any) -> Any:
        """The AST of a text of a shape not seen yet; the trie learns the shape.

        The parse table runs as Lark runs it, with the same per-state scanners, and the
        builder's methods are called as each rule is reduced. Beside each value goes its
        symbol, which says where it came from: each reduction also becomes a step of the
        shape's program (which children the method gets, from which words its positions
        come), so a later text of the same shape is built without the table.
        :class:`_Fallback` for anything the fast path does not answer for; a text that
        raises is not learnt.
        """
        actions_of = self._actions
        gotos = self._gotos
        scans = self._scans
        kept = self._kept
        end_state = self._end
        max_stack = self._max_stack
        lines = _Lines(text) if "\n" in text else None
        metas = _ONE_LINE_METAS if lines is None else _NO_METAS
        program = _Program(self._shared)
        # One entry per symbol: (parser state, slot, value, first word, last word). The
        # slot says where the value will be in the program's values (see _Program): a
        # word's index, ~i for the i-th step's result, None for a word the tree drops,
        # or a list of slots (what a _rule splices into its parent), the value alike.
        stack: list[tuple[int, Any, Any, int, int]] = [(self._start, None, None, -1, -1)]
        matches: list = []
        path: list[tuple[str, int]] = []  # (word type, parser state after it)
        size_text = len(text)
        pos = 0
        found = None
        state = self._start
        while True:
            if pos < size_text and text[pos] == " ":
                pos += 1
            if pos >= size_text:
                type_ = "$END"
            else:
                match, keywords, ignored = scans[state] or self._scan(state)
                while True:
                    found = match(text, pos)
                    if found is None:
                        raise _Fallback
                    type_ = found.lastgroup
                    if type_ in ignored:
                        pos = found.end()
                        if pos >= size_text:
                            type_ = "$END"
                            break
                        continue
                    if type_ in keywords:
                        keyword = keywords[type_](found.group())
                        if keyword is not None:
                            type_ = keyword.lastgroup
                    break
            while True:
                arg = actions_of[state].get(type_)
                if arg is None:
                    raise _Fallback
                if arg.__class__ is int:  # shift
                    if type_ == "$END" or len(stack) > max_stack:
                        raise _Fallback
                    index = len(matches)
                    matches.append(found)
                    path.append((type_, arg))
                    end = found.end()
                    if type_ in kept:
                        token = _new_str(Token, found.group())
                        token.type = type_
                        token.start_pos = pos
                        token.end_pos = end
                        if lines is not None:
                            token.lines = lines
                        program.words.append((index, type_))
                        stack.append((arg, index, token, index, index))
                    else:
                        stack.append((arg, None, None, index, index))
                    state = arg
                    pos = end
                    break
                kind, size, keep, handler, origin, placed, form = arg
                if kind == _UNIT:
                    below = stack[-2][0]
                    state = self._unit_chain(below, state, type_)
                    top = stack[-1]
                    stack[-1] = (state, top[1], top[2], top[3], top[4])
                    if state == end_state and type_ == "$END":
                        break
                    continue
                raw = stack[-size:]
                del stack[-size:]
                first = raw[0][3]
                last = raw[-1][4]
                symbols: list | None = None
                children: list = []
                for index, inline in keep:
                    entry = raw[index]
                    if inline and symbols is None:
                        # A spliced child's lists are its alone (popped above): grown in
                        # place, a left-recursive list (a name of many words) is not
                        # copied at every word, which made a long text quadratic.
                        symbols, children = entry[1], entry[2]
                    elif inline:
                        symbols.extend(entry[1])
                        children.extend(entry[2])
                    else:
                        if symbols is None:
                            symbols = []
                        symbols.append(entry[1])
                        children.append(entry[2])
                if symbols is None:
                    symbols = []
                if kind == _SPLICE:
                    symbol, value = symbols, children
                elif kind == _EXPAND1 and len(children) == 1:
                    symbol, value = symbols[0], children[0]  # the child stands for the rule
                    if symbol >= 0:  # a word: Lark keeps its own positions
                        first = last = symbol
                else:
                    if handler is _no_handler:
                        raise _Fallback
                    if form is not None:  # its words as the handler takes them (see __init__)
                        children = [
                            _word_as(form, child)
                            if symbol.__class__ is int and symbol >= 0
                            else child
                            for symbol, child in zip(symbols, children, strict=True)
                        ]
                        program.word_forms(symbols, form)
                    if placed:
                        key = (matches[first].start(), matches[last].end())
                        meta = metas.get(key) or _meta_of(key, lines)
                        symbol = program.call(handler, first, last, symbols)
                    else:
                        meta = None
                        symbol = program.call(handler, -1, -1, symbols)
                    value = handler(builder, meta, children)
                state = gotos[stack[-1][0]][origin]
                stack.append((state, symbol, value, first, last))
                if state == end_state and type_ == "$END":
                    break
            if type_ == "$END":
                break  # only an accepted text leaves the loop above on its end
        if stack[-1][1] != ~(len(program.steps) - 1):  # pragma: no cover - see _run
            raise _Fallback  # the start rule is the last step, whose result _run returns
        self._learn(path, program.finish())
        return stack[-1][2]

    def _learn(self, path: list[tuple[str, int]], program: tuple) -> None:
        """Put the shape ``path`` with its ``program`` into the trie (bounded)."""
        if len(path) > _SHAPE_WORDS_MAX:
            return
        if self._shapes >= _SHAPES_MAX:
            self.forget()
        node = self._root
        for type_, state in path:
            child = node.children.get(type_)
            if child is None:
                # Made whole before it is put in: another thread may be walking the trie.
                child = node.children.setdefault(
                    type_, _Node(self._scans[state] or self._scan(state))
                )
            node = child
        if node.program is None:
            self._shapes += 1
        node.program = program


class _Node:
    """A node of the trie of shapes: the words so far lead here."""

    __slots__ = ("match", "keywords", "children", "program")

    def __init__(self, scan: tuple) -> None:
        self.match, keywords, ignored = scan
        # None where no word can be a keyword (most states): one test a word, no look-up.
        self.keywords: dict | None = keywords or None
        # An ignored word (a blank, a comment) leads back here: one look-up a word tells
        # it from the words of the shape (no ignored type has a keyword, see _scan).
        self.children: dict[str, _Node] = dict.fromkeys(ignored, self)
        self.program: tuple | None = None  # set where a whole condition may end


class _Program:
    """One shape's program, written as its reductions are studied.

    ``(words, steps)``: the words the tree keeps, as (index, type, form: None for a
    Token, else ``str`` or a tuple type, see FastParser.__init__), and for each rule
    the builder makes, (handler, first word, last word (-1: it reads no positions), the
    slots of its children among the values (an int for a single child), its own slot).
    The values are the words from the front, then the steps' results from the back: the
    i-th step's slot is ``~i``, whatever the number of words, so equal steps of different
    shapes are one tuple.
    """

    def __init__(self, shared: dict) -> None:
        self.words: list[tuple[int, str]] = []
        self.forms: dict[int, type] = {}  # a word's form, when its handler names one
        self.steps: list[tuple] = []
        self.shared = shared  # the steps of every program, one of each

    def call(self, handler: Any, first: int, last: int, slots: list) -> int:
        """Add a step; its slot, which stands for its result while the shape is studied."""
        slot = ~len(self.steps)
        if len(slots) == 1:
            step = (handler, first, last, slots[0], slot)
        else:
            refs = tuple(slots)
            step = (handler, first, last, self.shared.setdefault(refs, refs), slot)
        self.steps.append(self.shared.setdefault(step, step))
        return slot

    def word_forms(self, slots: list, form: type) -> None:
        """The words among ``slots`` are made as ``form`` (see FastParser.__init__)."""
        self.forms.update((slot, form) for slot in slots if slot.__class__ is int and slot >= 0)

    def finish(self) -> tuple:
        """The program."""
        words = tuple((index, type_, self.forms.get(index)) for index, type_ in self.words)
        return words, tuple(self.steps)


_NO_METAS: dict = {}  # never filled: a text of several lines makes each Meta anew


def _run(program: tuple, matches: list, builder: Any, lines: _Lines | None) -> Any:
    """The AST of a text of a known shape: its words made tokens, then each step."""
    words, steps = program
    values: list = [None] * (len(matches) + len(steps))
    for index, type_, form in words:
        found = matches[index]
        if form is None:
            token = _new_str(Token, found.group())
            token.type = type_
            token.start_pos = found.start()
            token.end_pos = found.end()
            if lines is not None:
                token.lines = lines
            values[index] = token
        elif form is str:
            values[index] = found.group()
        else:
            values[index] = _new_tuple(form, (found.group(), found.start(), found.end()))
    metas = _ONE_LINE_METAS if lines is None else _NO_METAS
    for handler, first, last, refs, slot in steps:
        if first < 0:  # a handler that reads no positions
            meta = None
        else:
            key = (matches[first].start(), matches[last].end())
            meta = metas.get(key) or _meta_of(key, lines)
        if refs.__class__ is int:  # one child, the most common: no comprehension
            values[slot] = handler(builder, meta, [values[refs]])
        else:
            values[slot] = handler(builder, meta, [values[ref] for ref in refs])
    return values[-len(steps)]  # the last step's: the start rule


def fast_parser(tables: dict, builder_type: type, max_stack: int) -> Callable[[str, Any], Any]:
    """The ``parse(text, builder)`` of a :class:`FastParser` over ``tables``."""
    return FastParser(tables, builder_type, max_stack).parse
