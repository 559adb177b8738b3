"""Positions in raw TOML: every key and value is found, and each character of a decoded
string maps back to the raw text it came from (escapes, literal and multi-line strings)."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from conddsl.rules.tomlpos import TomlLocations, _Scanner, locate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_SHORT = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def _basic_piece(char: str, style: int) -> str:
    """One character of a basic string, written in one of several legal ways."""
    if char in _SHORT and (style % 2 or char in '"\\' or ord(char) < 0x20):
        return _SHORT[char]
    if ord(char) < 0x20 or ord(char) == 0x7F or style % 3 == 0:
        return f"\\u{ord(char):04X}" if ord(char) < 0x10000 else f"\\U{ord(char):08X}"
    return char


texts = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), max_codepoint=0x1F600), max_size=30
)


@st.composite
def encoded_strings(draw) -> tuple[str, str]:
    """(value, TOML text of a string with that value) in one of the four string forms."""
    value = draw(texts)
    form = draw(st.sampled_from(["basic", "literal", "ml_basic", "ml_literal"]))
    styles = draw(st.lists(st.integers(0, 5), min_size=len(value), max_size=len(value)))
    safe_literal = all(
        c not in "'\r\n" and (c == "\t" or ord(c) >= 0x20) and c != "\x7f" for c in value
    )
    if form == "literal" and safe_literal:
        return value, f"'{value}'"
    if form == "ml_literal" and safe_literal and not value.endswith("'"):
        newline = "\n" if draw(st.booleans()) else ""
        return value, f"'''{newline}{value}'''"
    pieces = [_basic_piece(c, s) for c, s in zip(value, styles, strict=True)]
    if form == "ml_basic":
        body = ""
        after_break = False
        for piece in pieces:
            if after_break and piece in (" ", "\t"):
                piece = f"\\u{ord(piece):04X}"  # a line-ending backslash eats blanks after it
            body += piece
            # Line-ending backslashes add nothing to the value; sprinkle some in.
            after_break = draw(st.booleans())
            if after_break:
                body += "\\\n   "
        newline = "\n" if draw(st.booleans()) else ""
        return value, f'"""{newline}{body}"""'
    return value, '"' + "".join(pieces) + '"'


@settings(max_examples=300, deadline=None)
@given(encoded_strings(), st.sampled_from(["", "# c\n", "a = 1\n[t]\n", 'x = """\n"\n"""\n']))
def test_decoded_strings_match_tomllib(case: tuple[str, str], before: str) -> None:
    value, raw = case
    text = f'{before}[tasks."n"]\nstart_cond = {raw}   # trailing comment\n'
    assert tomllib.loads(text)["tasks"]["n"]["start_cond"] == value
    located = locate(text).get(("tasks", "n", "start_cond"))
    assert located is not None and located.string is not None
    assert located.string.value == value
    start, end = located.value
    assert text[start:end] == raw
    offsets = located.string.raw
    assert len(offsets) == len(value) + 1
    assert list(offsets) == sorted(offsets)
    for char, at in zip(value, offsets, strict=False):
        # Each character comes from itself or from an escape at its offset.
        assert text[at] == char or text[at] == "\\" or (char == "\n" and text[at] == "\r")


def test_nested_values_are_located() -> None:
    text = (
        "top = 1\n"
        "[scheduler]\n"
        "rules = [\n  \"a.cond\",  # first\n  'b.cond',\n]\n"
        "[tasks.x]\n"
        'inline = { a = 1, b = ["q", { c = "d" }] }\n'
        'dotted.key."quoted part" = "v"\n'
        "when = 1979-05-27 07:32:00Z  # a date with a space\n"
        "[[runs]]\nid = 1\n[[runs]]\nid = 2\n"
    )
    tomllib.loads(text)
    found = locate(text)

    def value(path: tuple) -> str:
        located = found.get(path)
        assert located is not None, path
        return text[located.value[0] : located.value[1]]

    def key(path: tuple) -> str:
        located = found.get(path)
        assert located is not None, path
        return text[located.key[0] : located.key[1]]

    assert value(("top",)) == "1"
    assert value(("scheduler", "rules", 1)) == "'b.cond'"
    assert value(("tasks", "x", "inline", "b", 1, "c")) == '"d"'
    assert key(("tasks", "x", "dotted", "key", "quoted part")) == '"quoted part"'
    assert value(("tasks", "x", "when")) == "1979-05-27 07:32:00Z"
    assert value(("tasks", "x")) == "[tasks.x]"
    assert key(("tasks", "x")) == "x"
    assert value(("runs", 1, "id")) == "2"
    assert found.nearest(("tasks", "x", "nope", 3))[1] == 2


def test_headers_are_listed_in_order_even_when_duplicated() -> None:
    text = "[tasks.a]\nx = 1\n\n[tasks.a]\ny = 2\n"
    assert locate(text).headers[("tasks", "a")] == [(0, 9), (17, 26)]


@given(st.text(max_size=200))
def test_any_text_is_scanned_without_error(text: str) -> None:
    locate(text)


def test_quotes_before_the_closing_delimiter_belong_to_the_string() -> None:
    text = "a = \"\"\"x\"\"\"\"\"\nb = '''y'''''\n"
    data = tomllib.loads(text)
    found = locate(text)
    assert found.get(("a",)).string.value == data["a"] == 'x""'
    assert found.get(("b",)).string.value == data["b"] == "y''"


def _located_step_by_step(text: str) -> TomlLocations:
    """What :func:`locate` finds without its one-match reading of simple lines."""
    scanner = _Scanner(text)
    scanner.run(fast=False)
    return scanner.result


# Lines a task file is made of, simple and not: the fast reading must not change a thing.
_LINES = st.sampled_from(
    [
        "[tasks.a]",
        "[tasks.b-2]  # comment",
        "[ tasks.c ]",
        '[tasks."d e"]',
        "[[runs]]",
        "[tasks.a.sub]",
        "[tasks.]",
        'start_cond = "daily after 10:00"',
        'start_cond="every 10 minutes"  # why',
        'end_cond = "x" "y"',
        'a = ""',
        'a = """',
        'multi = """\nline "quoted"\n"""',
        'b = "esc\\u0041pe"',
        'c = "open',
        'dotted.key = "v"',
        '"quoted" = "v"',
        "n = 30",
        'arr = ["a.cond", "b.cond"]',
        'inline = { k = "v" }',
        "  \t",
        "# only a comment",
        'k = "v"\r',
        "garbage ] = [",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_LINES, max_size=12), st.sampled_from(["\n", "\r\n"]))
def test_simple_lines_are_located_as_step_by_step(lines: list[str], newline: str) -> None:
    text = newline.join(lines)
    fast, slow = locate(text), _located_step_by_step(text)
    assert fast.found == slow.found
    assert fast.headers == slow.headers


def test_the_benchmark_file_is_located_as_step_by_step() -> None:
    import importlib.util
    from pathlib import Path

    where = Path(__file__).resolve().parent.parent / "benchmarks" / "check_bench.py"
    spec = importlib.util.spec_from_file_location("check_bench", where)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    text = bench.task_file_text(60, problems=5)
    fast, slow = locate(text), _located_step_by_step(text)
    assert fast.found == slow.found and fast.headers == slow.headers
    assert len(fast.found) > 240
