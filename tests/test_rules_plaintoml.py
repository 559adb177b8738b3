"""Plain task files read a line at a time: the same data as tomllib, key order included,
or None (tomllib then reads the file and words its errors)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conddsl.rules.plaintoml import read_plain_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent

# Lines of the plain shape, and near misses: a text of plain lines with at most one near
# miss in it must be read as tomllib reads it, or left to tomllib.
# Headers and keys take the line's number, so that most texts are valid TOML; tables and
# keys met twice are the cases below.
_PLAIN_HEADERS = ["[tasks.t{i}]", "[s{i}]  # the {i}th", "[a{i}.b]", "[a{i}.b.c]", "[t{i}]"]
_PLAIN_VALUES = [
    '"v"',
    '""',
    '"daily after 10:00"',
    '"é ü 你"',
    '"a\tb"',
    "0",
    "10",
    "true",
    "false",
    '["a.cond", "b.cond"]',
    "[]",
    '["a",]',
    '[ "a" , "b" ]',
    '"v"  # comment',
]
_PLAIN_KEYS = ["a{i}", "k{i}", "start_cond{i}", "{i}", "x-y_z{i}"]
_NEAR_MISSES = [
    "[ a ]",
    "[[runs]]",
    '["tasks"]',
    "[tasks.]",
    "[a]x",
    "[tasks.a] = 1",
    'k = "a\\tb"',
    'k = "x\x01"',
    'k = """x"""',
    'k = "open',
    "k = 'literal'",
    "k = 01",
    "k = 00",
    "k = -1",
    "k = +1",
    "k = 1_000",
    "k = 1.5",
    "k = 1e5",
    "k = truex",
    "k = True",
    "k = [,]",
    "k = [1]",
    'k = ["a" "b"]',
    "k = { a = 1 }",
    "k = 1979-05-27",
    "k = ",
    'k = "v" "w"',
    'k = "v"\x0c',
    'a.b = "v"',
    '"q" = "v"',
    "\x0c",
    "k",
    "= 1",
    # A table or a key that may be there already, or a header under a value.
    "[tasks.t0]",
    "[a1.b]",
    "[s1]",
    'k0 = "v"',
    "a1 = 1",
    "[a0.x]",
]


@st.composite
def texts(draw) -> str:
    lines = []
    for i in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["header", "pair", "pair", "pair", "blank"]))
        if kind == "header":
            lines.append(draw(st.sampled_from(_PLAIN_HEADERS)).format(i=i))
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", "  ", "\t# note", "# [a] = 1"])))
        else:
            space = draw(st.sampled_from([" = ", "=", "\t=  ", " =\t"]))
            key = draw(st.sampled_from(_PLAIN_KEYS)).format(i=i)
            value = draw(st.sampled_from(_PLAIN_VALUES))
            lines.append(f"{draw(st.sampled_from(['', '  ']))}{key}{space}{value}")
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(_NEAR_MISSES)))
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines)


@settings(max_examples=200, deadline=None)
@given(texts())
def test_plain_text_reads_as_tomllib_reads_it(text: str) -> None:
    found = read_plain_toml(text)
    if found is not None:  # then tomllib reads it too, to the same data in the same order
        assert repr(found) == repr(tomllib.loads(text))


@pytest.mark.parametrize("line", _NEAR_MISSES)
@pytest.mark.parametrize("table", ["", "[tasks.t0]\n", "[a0.b]\nk0 = 1\n"])
def test_each_near_miss_in_a_plain_file(line: str, table: str) -> None:
    text = f'{table}a1 = "v"\n{line}\nstart_cond = "daily"  # last\n'
    found = read_plain_toml(text)
    if found is not None:
        assert repr(found) == repr(tomllib.loads(text))


def test_the_benchmark_file_is_plain() -> None:
    where = ROOT / "benchmarks" / "check_bench.py"
    spec = importlib.util.spec_from_file_location("check_bench", where)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    text = bench.task_file_text(300, problems=5)
    found = read_plain_toml(text)
    assert found is not None and repr(found) == repr(tomllib.loads(text))
    assert len(found["tasks"]) == 300


@pytest.mark.parametrize(
    "text",
    [
        '[tasks.a]\nfunc = "m:f"\n[tasks.a]\nfunc = "m:g"\n',  # a table twice
        '[tasks.a]\nfunc = "m:f"\nfunc = "m:g"\n',  # a key twice
        'tasks = "x"\n[tasks.a]\n',  # a header under a value
        "[tasks.a.b]\n[tasks.a]\nb = 1\n",  # a table defined after its sub-table
        '[tasks.a]\r\nfunc = "m:f"\r\n',  # line ends tomllib reads, left to it
    ],
)
def test_what_is_not_plain_is_left_to_tomllib(text: str) -> None:
    assert read_plain_toml(text) is None


def test_every_example_and_case_reads_the_same() -> None:
    paths = [*ROOT.glob("examples/**/*.toml"), *ROOT.glob("tests/check_cases/**/*.toml")]
    plain = 0
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        found = read_plain_toml(text)
        if found is not None:
            plain += 1
            assert repr(found) == repr(tomllib.loads(text)), path
    assert plain >= 10
