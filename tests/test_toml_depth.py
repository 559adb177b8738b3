"""Deeply nested TOML: task files may nest arrays and inline tables MAX_NESTING (100) deep.

Deeper is a positioned C101 at the bracket one level too deep, for ``conddsl check`` and
``conddsl run`` alike, never a RecursionError: tomllib and the position scanner recurse
once per level (docs/files.md, "Task files").
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conddsl.cli import main
from conddsl.rules import taskfile
from conddsl.rules.taskfile import read_task_file
from conddsl.rules.tomlpos import MAX_NESTING, locate, nesting, too_deep

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HEAD = '[tasks.a]\nfunc = "jobs:f"\nstart_cond = "daily"\n'


def arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def tables(depth: int) -> str:
    return "{a = " * depth + "1" + "}" * depth


# ---------------------------------------------------------------- the scan


@pytest.mark.parametrize("make", [arrays, tables])
def test_the_limit_is_exact(make) -> None:
    assert too_deep(f"x = {make(MAX_NESTING)}") is None
    text = f"x = {make(MAX_NESTING + 1)}"
    at = too_deep(text)
    assert at is not None and text[at] in "[{"
    assert nesting(text[:at])[0] == MAX_NESTING  # the bracket one level too deep
    assert nesting(text) == (MAX_NESTING + 1, at)


@pytest.mark.parametrize(
    "text",
    [
        'x = "' + "[" * 500 + '"',
        "x = '" + "{" * 500 + "'",
        'x = """\n' + "[" * 500 + '\\"""' + "[" * 500 + '"""',
        "x = '''" + "[" * 500 + "'''",
        "# " + "[" * 500 + "\nx = 1",
        'x = "a\\"[[["  # [[[[\n' * 200,
        "[[tasks]]\n" * 500,  # each header closes itself
    ],
    ids=["basic", "literal", "ml-basic", "ml-literal", "comment", "escaped-quote", "headers"],
)
def test_brackets_in_strings_comments_and_headers_do_not_nest(text: str) -> None:
    assert too_deep(text) is None
    assert nesting(text)[0] <= 2


def test_quotes_closing_a_multiline_string_are_not_a_new_string() -> None:
    # Up to two quotes before the closing three belong to the string.
    text = "x = \"\"\"a\"\"\"\"\"\ny = [[1]]\nz = '''b'''''\nw = [[[2]]]"
    assert tomllib.loads(text)["x"] == 'a""'
    assert nesting(text) == (3, text.index("[2"))


def test_an_unclosed_bracket_stays_open() -> None:
    text = "x = [\n" * (MAX_NESTING + 1)
    assert too_deep(text) == text.rindex("[")


_PLAIN = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs", "Cc")), max_size=8)
_NO_QUOTE = _PLAIN.filter(lambda s: "'" not in s)


def _string(draw) -> str:
    """A TOML string holding brackets, quotes and hashes, in one of the four forms."""
    value = draw(st.lists(st.sampled_from(list("[]{}#\"'\\")) | _PLAIN, max_size=6))
    value = "".join(value)
    form = draw(st.sampled_from(["basic", "literal", "ml_basic", "ml_literal"]))
    if form == "basic":
        return json.dumps(value, ensure_ascii=True)
    if form == "ml_basic":
        return '"""' + json.dumps(value, ensure_ascii=True)[1:-1] + '"""'
    plain = draw(_NO_QUOTE)
    return f"'{plain}'" if form == "literal" else f"'''{plain}'''"


@st.composite
def values(draw, depth: int = 0) -> tuple[str, int]:
    """(TOML text of a value, how deep its arrays and inline tables nest)."""
    kind = draw(st.sampled_from(["string", "int", "array", "table"] if depth < 8 else ["int"]))
    if kind == "string":
        return _string(draw), 0
    if kind == "int":
        return str(draw(st.integers(0, 99))), 0
    items = draw(st.lists(values(depth + 1), max_size=3))
    inner = max((d for _, d in items), default=0) + 1
    if kind == "array":
        return "[" + ", ".join(text for text, _ in items) + "]", inner
    pairs = ", ".join(f"k{i} = {text}" for i, (text, _) in enumerate(items))
    return "{" + pairs + "}", inner


@settings(max_examples=300, deadline=None)
@given(values(), st.booleans())
def test_the_scan_agrees_with_the_structure(value: tuple[str, int], comment: bool) -> None:
    text, depth = value
    text = f"x = {text}" + ("  # ]]]{{{" if comment else "") + "\n"
    tomllib.loads(text)  # valid TOML
    assert nesting(text)[0] == depth
    assert (too_deep(text, depth) is None) and (too_deep(text, depth - 1) is not None or not depth)


def test_the_position_scanner_stops_at_the_limit_instead_of_recursing() -> None:
    text = f"x = {arrays(50_000)}\ny = 'found'\n"
    found = locate(text)  # no RecursionError; the rest of the file is still read
    assert found.get(("y",)) is not None
    shallow = locate(f"x = {arrays(3)}")
    assert shallow.get(("x", 0, 0)) is not None


# ---------------------------------------------------------------- task files


@pytest.mark.parametrize("make", [arrays, tables])
def test_a_task_file_nested_too_deep_is_a_positioned_c101(make, tmp_path: Path) -> None:
    path = tmp_path / "tasks.toml"
    text = f"{HEAD}x = {make(1_000)}\n"
    path.write_text(text)
    report = read_task_file(path)
    (finding,) = report.diagnostics
    assert finding.code == "C101"
    assert f"nested more than {MAX_NESTING} deep" in finding.message
    assert f"at most {MAX_NESTING} deep" in finding.hint
    column = len("x = ") + (5 if make is tables else 1) * MAX_NESTING + 1
    assert (finding.span.line, finding.span.column) == (4, column)
    assert report.model is None


def test_nested_to_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text(f"{HEAD}extra = {arrays(MAX_NESTING)}\n")
    report = read_task_file(path)
    assert [d.code for d in report.diagnostics] == ["C201"]  # the unknown key, no C101
    assert report.span(("tasks", "a", "extra")).line == 4


def test_a_recursion_error_in_the_reader_is_a_c101(tmp_path: Path, monkeypatch) -> None:
    """The last resort: tomllib out of stack below the limit (the caller's stack was deep)."""
    path = tmp_path / "tasks.toml"
    path.write_text(f"{HEAD}x = [[[1]], 2]\n")

    def out_of_stack(text: str) -> dict:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(taskfile.tomllib, "loads", out_of_stack)
    (finding,) = read_task_file(path).diagnostics
    assert finding.code == "C101" and "nested too deeply to read (3 levels" in finding.message
    assert (finding.span.line, finding.span.column) == (4, 7)


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("make", [arrays, tables])
def test_check_and_run_refuse_it_with_exit_1(make, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tasks.toml").write_text(f"{HEAD}x = {make(5_000)}\n")
    code, out, err = _cli(["check", "tasks.toml"], capsys)
    assert code == 1 and out.startswith("tasks.toml:4:") and " C101 " in out
    code, out, err = _cli(["run", "tasks.toml"], capsys)
    assert code == 1
    assert " C101 " in err and "hint: a task file nests arrays and inline tables at most" in err
    assert "internal error" not in err and "nothing was run" in err
    assert not list(tmp_path.glob("*.sqlite3"))


def test_deep_brackets_in_a_comment_pass_the_check(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tasks.toml").write_text(f"{HEAD}# {arrays(5_000)}\n")
    assert _cli(["check", "tasks.toml"], capsys)[0] == 0


# ---------------------------------------------------------------- the scan, step by step

# The scan as first written, a token at a time: the one-match scan must agree with it.
_TOKENS = re.compile(r"'''|\"\"\"|[\[\]{}#\"']")
_BASIC_END = re.compile(r'[\\"\n]')
_BASIC_ML_END = re.compile(r'\\|"""')
_LITERAL_END = re.compile(r"['\n]")


def _extra(text: str, at: int, quote: str) -> int:
    count = 0
    while at + count < len(text) and text[at + count] == quote:
        count += 1
    return max(0, min(count - 3, 2))


def _after(text: str, i: int, ends: re.Pattern[str], triple: bool = False) -> int:
    while True:
        match = ends.search(text, i)
        if match is None:
            return len(text)
        if match.group() == "\\":
            i = match.end() + 1
        elif triple:
            return match.start() + 3 + _extra(text, match.start(), '"')
        else:
            return match.start() if match.group() == "\n" else match.end()


def _nesting_step_by_step(text: str) -> tuple[int, int]:
    n = len(text)
    depth = deepest = where = i = 0
    while (match := _TOKENS.search(text, i)) is not None:
        token, i = match.group(), match.end()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, match.start()
        elif token in "]}":
            depth = max(0, depth - 1)
        elif token == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif token == '"""':
            i = _after(text, i, _BASIC_ML_END, triple=True)
        elif token == "'''":
            end = text.find("'''", i)
            i = n if end < 0 else end + 3 + _extra(text, end, "'")
        else:
            i = _after(text, i, _BASIC_END if token == '"' else _LITERAL_END)
    return deepest, where


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["[", "]", "{", "}", '"', "'", "#", "\\", "\n", "a", " "]), max_size=60
    )
)
def test_the_scan_agrees_with_the_scan_step_by_step(parts: list[str]) -> None:
    text = "".join(parts)
    assert nesting(text) == _nesting_step_by_step(text)
    for limit in range(4):
        found = too_deep(text, limit)
        assert found is None or (text[found] in "[{" and nesting(text[:found])[0] == limit)
