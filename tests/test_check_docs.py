"""The ``toml`` and ``cond`` examples of docs/files.md and docs/check.md pass ``conddsl check``,
or fail with exactly the codes their comment names.

A block may be preceded by an HTML comment with ``;``-separated settings:

- ``file: NAME`` the file name the block is written to (default ``block-N.toml``/``.cond``);
- ``expect: C101 C202`` the codes ``conddsl check NAME`` must report, in order of
  appearance (default: none, the check must pass);
- ``args: --import-funcs`` extra arguments.

Blocks of one page are written, in order, into one folder, so a task file can list a rule
file shown before it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conddsl.cli import main

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "docs" / "files.md", ROOT / "docs" / "check.md"]
FENCE = re.compile(
    r"(?:<!--(?P<meta>[^>]*)-->\s*\n)?^```(?P<kind>toml|cond)[^\n]*\n(?P<body>.*?)^```", re.S | re.M
)


def _blocks(page: Path) -> list[dict]:
    text = page.read_text(encoding="utf-8")
    found = []
    for number, match in enumerate(FENCE.finditer(text), start=1):
        settings = {}
        for item in (match["meta"] or "").split(";"):
            if ":" in item:
                key, value = item.split(":", 1)
                settings[key.strip()] = value.strip()
        found.append(
            {
                "where": f"{page.name}:{text.count(chr(10), 0, match.start('body'))}",
                "name": settings.get("file", f"block-{number}.{match['kind']}"),
                "expect": settings.get("expect", "").split(),
                "args": shlex.split(settings.get("args", "")),
                "body": match["body"],
            }
        )
    return found


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_page_examples(page: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    blocks = _blocks(page)
    assert blocks, f"{page.name} shows no file examples"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        (tmp_path / block["name"]).write_text(block["body"], encoding="utf-8")
        code = main(["check", *block["args"], block["name"]])
        out = capsys.readouterr().out
        codes = [line.split(" ")[1] for line in out.splitlines()]
        assert codes == block["expect"], f"{block['where']}:\n{out}"
        assert code == (
            1 if any(c[0] in "CE" and c not in ("C404", "C405", "C406") for c in codes) else 0
        )


def test_every_code_has_an_example_in_check_md() -> None:
    from conddsl.rules.codes import CODES

    shown = {code for block in _blocks(ROOT / "docs" / "check.md") for code in block["expect"]}
    text = (ROOT / "docs" / "check.md").read_text(encoding="utf-8")
    for code in CODES:
        assert f"| {code} |" in text, f"{code} is missing from the table in docs/check.md"
        if code != "C102":  # binary content cannot be shown in a page
            assert code in shown, f"docs/check.md has no example of {code}"
