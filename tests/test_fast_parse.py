"""The lean LALR driver (conddsl/lalr.py) answers exactly as Lark's parse tree + AstBuilder.

`parse` tries the driver first and falls back to Lark's full path on anything the
driver does not answer for. These tests compare the two paths node by node, spans
included (AST equality ignores spans), over every condition text of the fixtures and
of random edits of them, and check that every failing text still fails the same way.
"""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import datetime
from pathlib import Path

import pytest

from conddsl.errors import ConditionSyntaxError
from conddsl.parse import AstBuilder, _fast_parser, _parse_with_tree, parse

FIXTURES = Path(__file__).parent / "fixtures"
CASES = Path(__file__).parent / "cases"


def _texts() -> list[str]:
    found: set[str] = set()

    def strings(value) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, dict):
            for item in value.values():
                strings(item)
        elif isinstance(value, list):
            for item in value:
                strings(item)

    for path in (
        FIXTURES / "rocketry_clock_verdicts.json",
        FIXTURES / "rocketry_task_verdicts.json",
        FIXTURES / "rocketry_rejects.json",
        FIXTURES / "rocketry_suite_table.json",
        CASES / "language.json",
    ):
        strings(json.loads(path.read_text(encoding="utf-8")))
    return sorted(found)


def _deep(node):
    """A node as nested tuples with every field, the spans too."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        fields = dataclasses.fields(node)
        return (type(node).__name__, tuple((f.name, _deep(getattr(node, f.name))) for f in fields))
    if isinstance(node, (tuple, list)):
        return tuple(_deep(item) for item in node)
    return node


def _slow(text: str):
    try:
        return ("ok", _deep(_parse_with_tree(text)))
    except ConditionSyntaxError as error:
        return ("error", error.code, str(error))


def _fast(text: str):
    try:
        return ("ok", _deep(_fast_parser()(text, AstBuilder(text))))
    except Exception:  # noqa: BLE001 - the driver declines: parse() falls back
        return ("declined",)


def _edits(texts: list[str], count: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    good = [text for text in texts if text.strip()]
    made = []
    for _ in range(count):
        text = rnd.choice(good)
        kind = rnd.randrange(5)
        if kind == 0:
            spaces = rnd.choice(["\n", " \n  ", "  ", "\t", " # note\n"])
            text = text.replace(" ", spaces, rnd.randrange(1, 4))
        elif kind == 1:
            text = "".join(c.upper() if rnd.random() < 0.3 else c for c in text)
        elif kind == 2:
            text = "(" * 3 + text + ")" * 3
        elif kind == 3:
            text = f"{text} {rnd.choice(['&', '|', 'and', 'or'])} ~{rnd.choice(good)}"
        else:
            at = rnd.randrange(len(text) + 1)
            extra = rnd.choice(["\n", " ", "(", ")", "'", "~", "&", "#x\n", "in UTC"])
            text = text[:at] + extra + text[at:]
        made.append(text)
    return made


def test_the_driver_is_in_use():
    assert _fast_parser() is not None
    assert _fast("time of day between 08:00 and 18:00 & daily")[0] == "ok"


def test_fixture_texts_parse_alike_spans_included():
    answered = 0
    for text in _texts():
        slow, fast = _slow(text), _fast(text)
        if fast[0] == "ok":
            answered += 1
            assert fast == slow, text
        else:  # the driver declines only what the full path refuses
            assert slow[0] == "error", text
    assert answered > 1_500  # most of the fixtures are valid conditions


def test_random_edits_parse_alike_spans_included():
    answered = 0
    for text in _edits(_texts(), 2_000, seed=21):
        slow, fast = _slow(text), _fast(text)
        if fast[0] == "ok":
            answered += 1
            assert fast == slow, repr(text)
        else:
            assert slow[0] == "error", repr(text)
    assert answered > 100


@pytest.mark.parametrize(
    "shape",
    [
        lambda n: "~" * n + "daily",
        lambda n: "(" * n + "daily" + ")" * n,
        lambda n: "~(" * n + "daily" + ")" * n,
        lambda n: "(" * n + "daily in UTC" + ") in UTC" * n,
        lambda n: " & ".join(["daily"] * n),
        lambda n: "(~" * n + "x" + ")" * n,
    ],
)
def test_deep_nesting_is_measured_as_before(shape):
    """Around MAX_DEPTH the driver hands over to the full path, which says E104 where."""
    for n in (1, 50, 150, 170, 180, 190, 199, 200, 201, 202, 210, 260):
        text = shape(n)
        try:
            expected = ("ok", _deep(_parse_with_tree(text)))
        except ConditionSyntaxError as error:
            expected = ("error", error.code, error.span)
        try:
            got = ("ok", _deep(parse.__wrapped__(text)))
        except ConditionSyntaxError as error:
            got = ("error", error.code, error.span)
        assert got == expected, (n, text[:40])


def test_no_terminal_but_the_ignored_ones_starts_with_a_blank():
    """The driver skips a single blank without its scanner (lalr.FastParser._skip_blank)."""
    import re

    from conddsl.grammar import get_parser

    conf = get_parser().parser.lexer_conf
    for terminal in conf.terminals:
        if terminal.name in conf.ignore:
            continue
        for blank in " \t\n\r\f":
            for rest in ("x", "1", "and", "'a'", "#", "*", "in past"):
                pattern = terminal.pattern.to_regexp()
                assert re.match(pattern, blank + rest, conf.g_regex_flags) is None, terminal


def test_a_compiled_text_is_not_parsed_again(monkeypatch):
    """compile_condition asks its text cache before parsing: a hit costs no parse."""
    import conddsl.compile as compile_module

    compile_module._compile_cached.cache_clear()
    calls = []
    real = compile_module._parse_fresh
    monkeypatch.setattr(
        compile_module, "_parse_fresh", lambda text: calls.append(text) or real(text)
    )
    text = "time of day between 08:13 and 09:47 | weekly"
    first = compile_module.compile_condition(text, timezone="UTC")
    assert compile_module.compile_condition(text, timezone="UTC") is first
    assert calls == [text]


def test_a_text_with_names_is_compiled_anew_each_time(monkeypatch):
    """Custom conditions may be registered later: such texts are not kept."""
    from conddsl.compile import compile_condition
    from conddsl.custom import default_registry

    monkeypatch.setattr(default_registry, "_by_phrase", {})
    with pytest.raises(ConditionSyntaxError, match="E120"):
        compile_condition("disk is full", timezone="UTC")
    default_registry.register("disk is full", lambda: True)
    first = compile_condition("disk is full", timezone="UTC")
    second = compile_condition("disk is full", timezone="UTC")
    assert first is not second and first == second
    assert first.is_true(datetime(2024, 1, 1))


def test_a_shape_is_studied_once(monkeypatch):
    """Texts of one shape (the same words' types) share one program: the parse table runs
    for the first of them only, and each still gets its own values and positions."""
    fast = _fast_parser().__self__
    studied = []
    real = fast._study
    monkeypatch.setattr(fast, "_study", lambda text, b: studied.append(text) or real(text, b))
    texts = [
        "time of week between Mon 07:13 and Fri 19:41 | time of minute after 41",
        "time of week between sat 00:00 and Sun 23:59 | time of minute after 7",
        "time of  week between\\nTue 1:00 and wed 2:00 # the night\\n| time of minute after 0",
    ]
    texts[2] = texts[2].replace("\\n", "\n")
    for text in texts:
        assert _fast(text) == _slow(text), text
    assert studied.count(texts[0]) <= 1
    assert texts[1] not in studied and texts[2] not in studied


def test_the_trie_of_shapes_is_bounded(monkeypatch):
    import conddsl.lalr as lalr

    fast = _fast_parser().__self__
    monkeypatch.setattr(lalr, "_SHAPES_MAX", 5)
    fast.forget()
    texts = [" | ".join(["daily"] * n) for n in range(1, 13)]
    for text in texts * 2:
        assert _fast(text) == _slow(text)
        assert 1 <= fast.shapes <= 5


def test_a_long_shape_is_parsed_in_linear_steps_and_not_learnt():
    """A name of many words is a left-recursive list, and a shape that long is not kept
    (it held a trie node a word). Studying it once copied the list at every word: a
    megabyte of words took 97 s; that copy happens inside ``list.extend``, which counts
    as one step, so ``test_megabyte_inputs`` (now well under a second) is its guard."""
    from tests.reliability import count_steps

    fast = _fast_parser().__self__
    fast.forget()
    costs = {}
    for words in (2_000, 4_000):
        text = " ".join(["holiday"] * words)
        costs[words] = count_steps(lambda text=text: _fast(text))
        assert _fast(text) == _slow(text)
    # Linear: twice the words, about twice the steps (a quadratic copy counts ~4x).
    assert costs[4_000] / costs[2_000] < 2.2
    assert fast.shapes == 0
