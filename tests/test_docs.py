"""Every example in docs/ and README.md is executed here: the docs are the contract.

Fenced blocks are recognised by their info string:

- ``conddsl``: one condition per line. ``expr`` alone must parse; ``expr  @ ISO -> true``
  must evaluate to that value at that instant (naive = wall clock, UTC zone);
  ``expr  -> error CODE`` must fail with that error code. Lines starting with ``#``
  are comments.
- ``console``: ``$ conddsl …`` commands; the lines after a command, up to the next
  ``$``, are its expected output (compared exactly, trailing spaces ignored). They run
  in the repository's root folder.
- ``python``: executed as is; its asserts are the checks.
- ``toml`` and ``cond`` (outside docs/files.md and docs/check.md, which
  tests/test_check_docs.py covers the same way): files that must pass ``conddsl check``.

A block may be preceded by an HTML comment of ``;``-separated settings:

- ``file: NAME``: the block is a file of the page's *workspace*, a folder into which the
  page's ``toml``, ``cond`` and named ``python`` blocks are written in order (a ``toml``
  or ``cond`` block without a name gets ``block-N.toml``/``.cond``);
- ``expect: C101 E120``: the codes ``conddsl check`` must report for a ``toml``/``cond``
  block, in order (default: none, the check must pass);
- ``cwd: workspace``: a ``console`` block that runs in the page's workspace, holding
  the file blocks shown before it;
- ``match: ellipsis``: in a ``console`` block, ``...`` in an expected line matches any
  text, and a line of only ``...`` any number of lines.

``conddsl run`` runs in a child process (it installs signal handlers and runs in real
time). A block whose lines are snippet includes (``--8<-- "examples/…"``, shown on the
site by pymdownx.snippets) is a file of examples/, tested by tests/test_examples.py.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from conddsl import ConditionSyntaxError, compile_condition
from conddsl.cli import main as cli_main
from conddsl.rules.codes import severity_of

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("**/*.md")) + [ROOT / "README.md"]
FENCE = re.compile(
    r"(?:^<!--(?P<meta>[^>]*)-->[ \t]*\n)?^```(?P<kind>\w[\w-]*)[^\n]*\n(?P<body>.*?)^```",
    re.S | re.M,
)
SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$')
EVAL_LINE = re.compile(r"^(?P<expr>.+?)\s+@\s+(?P<at>\S+)\s+->\s+(?P<value>true|false)\s*$")
ERROR_LINE = re.compile(r"^(?P<expr>.+?)\s+->\s+error\s+(?P<code>E\d+)\s*$")
# tests/test_check_docs.py checks the toml and cond blocks of these pages.
CHECKED_ELSEWHERE = {"docs/files.md", "docs/check.md"}
FILE_KINDS = ("toml", "cond", "python")


@dataclass
class Block:
    page: str
    line: int  # of the opening fence
    kind: str
    body: str
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def included(self) -> list[str]:
        """The files a snippet-only block includes (empty for an ordinary block)."""
        lines = [line for line in self.body.splitlines() if line.strip()]
        found = [SNIPPET.match(line) for line in lines]
        return [match["path"] for match in found if match] if lines and all(found) else []


def _page_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        meta = {}
        for item in (match["meta"] or "").split(";"):
            if ":" in item:
                key, value = item.split(":", 1)
                meta[key.strip()] = value.strip()
        found.append(
            Block(
                path.relative_to(ROOT).as_posix(),
                text.count("\n", 0, match.start("kind")) + 1,
                match["kind"],
                match["body"],
                meta,
            )
        )
    return found


ALL = {path.relative_to(ROOT).as_posix(): _page_blocks(path) for path in DOCS}


def _blocks(kind: str) -> list[Block]:
    return [b for blocks in ALL.values() for b in blocks if b.kind == kind and not b.included]


def _id(block: Block) -> str:
    return block.where


# ---------------------------------------------------------------- conddsl


def _condition_lines() -> list[tuple[str, str]]:
    cases = []
    for block in _blocks("conddsl"):
        for offset, raw in enumerate(block.body.splitlines(), start=1):
            if raw.strip() and not raw.lstrip().startswith("#"):
                cases.append((f"{block.page}:{block.line + offset}", raw.strip()))
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


# ---------------------------------------------------------------- workspaces


def _file_name(block: Block, number: int) -> str | None:
    if "file" in block.meta:
        return block.meta["file"]
    if block.kind in ("toml", "cond"):
        return f"block-{number}.{block.kind}"
    return None  # a python block without a name is only executed


def _write_workspace(block: Block, folder: Path) -> None:
    """Write the file blocks of ``block``'s page that come before it into ``folder``."""
    for number, other in enumerate(ALL[block.page], start=1):
        if other is block:
            return
        name = _file_name(other, number)
        if other.kind in FILE_KINDS and name and not other.included:
            (folder / name).write_text(other.body, encoding="utf-8")


# ---------------------------------------------------------------- console


def _commands(block: Block) -> list[tuple[str, str]]:
    """The ``(command, expected output)`` pairs of a console block."""
    found, command, output = [], None, []
    for raw in [*block.body.splitlines(), "$"]:
        if raw.startswith("$"):
            if command:
                found.append((command, "\n".join(output)))
            command, output = raw[1:].strip(), []
        else:
            output.append(raw.rstrip())
    return found


def _console_commands() -> list[str]:
    return [command for block in _blocks("console") for command, _ in _commands(block)]


def _matches(actual: str, expected: str, ellipsis: bool) -> bool:
    if not ellipsis:
        return actual.strip() == expected.strip()
    pattern = []
    for line in expected.strip().splitlines():
        if line.strip() == "...":
            pattern.append(r"(?:[^\n]*\n)*?")
        else:
            pattern.append(".*".join(map(re.escape, line.split("..."))) + r"\n")
    return re.fullmatch("".join(pattern), actual.strip() + "\n") is not None


def _run_in_child(argv: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "conddsl.cli", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize("block", _blocks("console"), ids=_id)
def test_console_examples(block: Block, capsys, tmp_path, monkeypatch) -> None:
    """The commands of a block run in order, in one folder; each prints what is shown."""
    cwd = ROOT
    if block.meta.get("cwd") == "workspace":
        _write_workspace(block, tmp_path)
        cwd = tmp_path
    monkeypatch.chdir(cwd)
    for command, expected in _commands(block):
        argv = shlex.split(command)
        assert argv[0] == "conddsl", f"{block.where}: only conddsl commands run in docs"
        if argv[1] == "run":
            output = _run_in_child(argv[1:], cwd)
        else:
            cli_main(argv[1:])
            captured = capsys.readouterr()
            output = captured.out + captured.err
        actual = "\n".join(line.rstrip() for line in output.splitlines())
        ellipsis = block.meta.get("match") == "ellipsis"
        assert _matches(actual, expected, ellipsis), f"{block.where}: $ {command}\n{actual}"


# ---------------------------------------------------------------- python


# A reader who copies an example gets no warning either (a deprecation is a break to come).
@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("block", _blocks("python"), ids=_id)
def test_python_examples(block: Block) -> None:
    code = compile(block.body, block.where, "exec")
    exec(code, {"__name__": "__docs__"})


def test_the_test_client_of_the_asgi_example_imports_without_a_warning() -> None:
    """docs/embedding.md drives its web app with Starlette's TestClient: the test extra
    installs the HTTP client it wants (with httpx alone, Starlette warns that it is deprecated)."""
    # A fresh interpreter: the warning is raised once, when the module is first imported.
    code = "import starlette.testclient"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- toml and cond


def _file_pages() -> list[str]:
    return [
        page
        for page, blocks in ALL.items()
        if page not in CHECKED_ELSEWHERE
        and any(b.kind in ("toml", "cond") and not b.included for b in blocks)
    ]


@pytest.mark.parametrize("page", _file_pages())
def test_file_examples(page: str, tmp_path: Path, capsys, monkeypatch) -> None:
    """The page's task and rule files, written in order, pass ``conddsl check`` or fail as said."""
    monkeypatch.chdir(tmp_path)
    for number, block in enumerate(ALL[page], start=1):
        if block.kind not in FILE_KINDS or block.included:
            continue
        name = _file_name(block, number)
        if name is None:
            continue
        (tmp_path / name).write_text(block.body, encoding="utf-8")
        if block.kind == "python":
            continue
        code = cli_main(["check", *shlex.split(block.meta.get("args", "")), name])
        out = capsys.readouterr().out
        codes = [line.split(" ")[1] for line in out.splitlines()]
        assert codes == block.meta.get("expect", "").split(), f"{block.where}:\n{out}"
        assert code == (1 if any(severity_of(c) == "error" for c in codes) else 0)


# ---------------------------------------------------------------- the pages themselves


def test_docs_have_examples() -> None:
    assert _condition_lines(), "docs/ should show conditions"
    assert _console_commands(), "docs/ should show commands"


def test_every_fence_is_seen() -> None:
    """Blocks are found at the start of a line only: an indented one would go untested."""
    for path in DOCS:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.lstrip().startswith("```"):
                assert line.startswith("```"), f"{path.name}:{number}: indented code block"


def test_included_files_exist() -> None:
    for blocks in ALL.values():
        for block in blocks:
            for name in block.included:
                assert (ROOT / name).is_file(), f"{block.where}: no file {name}"
                assert name.startswith("examples/"), f"{block.where}: includes are examples"


def test_every_command_is_shown() -> None:
    shown = {shlex.split(command)[1] for command in _console_commands()}
    assert {"run", "check", "schema", "next", "explain"} <= shown
    assert {"status", "history", "timeline"} <= shown
