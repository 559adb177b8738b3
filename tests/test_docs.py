"""Every example in docs/ and README.md is executed here: the docs are the contract.

Fenced blocks are recognised by their info string:

- ``conddsl``: one condition per line. ``expr`` alone must parse; ``expr  @ ISO -> true``
  must evaluate to that value at that instant (naive = wall clock, UTC zone);
  ``expr  -> error CODE`` must fail with that error code. Lines starting with ``#``
  are comments.
- ``console``: ``$ conddsl …`` commands; the lines after a command, up to the next
  ``$``, are its expected output (compared exactly, trailing spaces ignored).
- ``python``: executed as is; its asserts are the checks.
"""

from __future__ import annotations

import re
import shlex
from datetime import datetime
from pathlib import Path

import pytest

from conddsl import ConditionSyntaxError, compile_condition
from conddsl.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("**/*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```(\w[\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
EVAL_LINE = re.compile(r"^(?P<expr>.+?)\s+@\s+(?P<at>\S+)\s+->\s+(?P<value>true|false)\s*$")
ERROR_LINE = re.compile(r"^(?P<expr>.+?)\s+->\s+error\s+(?P<code>E\d+)\s*$")


def _blocks(kind: str) -> list[tuple[str, int, str]]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group(1) == kind:
                line = text.count("\n", 0, match.start()) + 1
                found.append((path.relative_to(ROOT).as_posix(), line, match.group(2)))
    return found


def _condition_lines() -> list[tuple[str, str]]:
    cases = []
    for path, line, body in _blocks("conddsl"):
        for offset, raw in enumerate(body.splitlines(), start=1):
            if raw.strip() and not raw.lstrip().startswith("#"):
                cases.append((f"{path}:{line + offset}", raw.strip()))
    return cases


@pytest.mark.parametrize(("where", "line"), _condition_lines())
def test_condition_examples(where: str, line: str) -> None:
    error = ERROR_LINE.match(line)
    if error:
        with pytest.raises(ConditionSyntaxError) as info:
            compile_condition(error["expr"], timezone="UTC")
        assert info.value.code == error["code"], where
        return
    evaluation = EVAL_LINE.match(line)
    if evaluation:
        condition = compile_condition(evaluation["expr"], timezone="UTC")
        at = datetime.fromisoformat(evaluation["at"])
        assert condition.is_true(at) is (evaluation["value"] == "true"), where
        return
    compile_condition(line, timezone="UTC")


def _console_commands() -> list[tuple[str, str, str]]:
    cases = []
    for path, line, body in _blocks("console"):
        command, output = None, []
        for raw in [*body.splitlines(), "$"]:
            if raw.startswith("$"):
                if command is not None:
                    cases.append((f"{path}:{line}", command, "\n".join(output)))
                command, output = raw[1:].strip(), []
            else:
                output.append(raw.rstrip())
    return [case for case in cases if case[1]]


@pytest.mark.parametrize(("where", "command", "expected"), _console_commands())
def test_console_examples(where, command, expected, capsys) -> None:
    argv = shlex.split(command)
    assert argv[0] == "conddsl", f"{where}: only conddsl commands run in docs"
    cli_main(argv[1:])
    captured = capsys.readouterr()
    actual = "\n".join(line.rstrip() for line in (captured.out + captured.err).splitlines())
    assert actual.strip() == expected.strip(), where


@pytest.mark.parametrize(("where", "line", "body"), _blocks("python"))
def test_python_examples(where: str, line: int, body: str) -> None:
    exec(compile(body, f"{where}:{line}", "exec"), {"__name__": "__docs__"})


def test_docs_have_examples() -> None:
    assert _condition_lines(), "docs/ should show conditions"
    assert _console_commands(), "docs/ should show commands"
