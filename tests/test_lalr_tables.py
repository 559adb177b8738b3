"""Lark's tables as cached data (conddsl/lalr_tables.py): the fast parser runs from them
without importing Lark; the file is remade when the grammar or Lark changes, and a
corrupt or planted file is never used."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys

import pytest

from conddsl import lalr_tables
from conddsl.grammar import get_parser, grammar_text
from conddsl.lalr import fast_parser
from conddsl.lalr_tables import check_tables, load_tables, tables_key, tables_of, tables_path
from conddsl.parse import MAX_DEPTH, AstBuilder, _parse_with_tree

TEXTS = [
    "time of day between 08:00 and 18:00",
    "daily after 10:00 and not has succeeded today",
    "every 5 minutes | task 'a' has failed in past 2 hours",
    "time of day between 7pm and 9pm and cron */5 * * * *",
    "(weekly on Monday or monthly starting 3rd) & env 'X'",
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder of this user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "conddsl"


def _only_file(cache) -> str:
    (path,) = cache.glob("tables-*.json")
    return str(path)


def test_the_cached_tables_are_lark_s_and_parse_alike(cache):
    made = load_tables()  # no file yet: read from Lark's parser, then written
    path = _only_file(cache)
    assert path == tables_path(tables_key(grammar_text()))
    assert os.stat(path).st_mode & 0o077 == 0
    read = load_tables()
    assert made == read == json.loads(json.dumps(tables_of(get_parser())))
    fast = fast_parser(read, AstBuilder, MAX_DEPTH - 20)
    for text in TEXTS:
        assert repr(fast(text, AstBuilder(text))) == repr(_parse_with_tree(text))


def test_every_terminal_pattern_is_lark_s(cache):
    terminals = load_tables()["terminals"]
    for terminal in get_parser().terminals:
        assert terminals[terminal.name] == terminal.pattern.to_regexp()


def test_a_warm_cache_parses_without_importing_lark(tmp_path):
    script = (
        "import sys\n"
        "from conddsl.parse import parse\n"
        "from conddsl.lalr_tables import terminal_regex\n"
        "print(repr(parse('time of day between 08:00 and 18:00')))\n"
        "print(bool(terminal_regex('DURATION').fullmatch('5 minutes')))\n"
        "print('lark' in sys.modules)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}

    def run() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.splitlines()

    cold, warm = run(), run()
    assert cold[:2] == warm[:2] and warm[1] == "True"
    assert cold[2] == "True"  # no file yet: Lark builds the tables
    assert warm[2] == "False"


@pytest.mark.parametrize(
    "damage",
    [
        "truncated",
        "not json",
        "another key",
        "a target out of range",
        "a bad rule name",
        "a missing scanner",
    ],
)
def test_a_corrupt_file_is_made_anew(cache, damage):
    good = load_tables()
    path = _only_file(cache)
    with open(path, encoding="utf-8") as file:
        text = file.read()
    data = json.loads(text)
    if damage == "truncated":
        text = text[: len(text) // 2]
    elif damage == "not json":
        text = "\0garbage"
    else:
        if damage == "another key":
            data["key"] = "0" * 32
        elif damage == "a target out of range":
            data["tables"]["states"][0][0][2] = 10**6
        elif damage == "a missing scanner":
            data["tables"]["scanner_of"][0] = -1
        else:
            data["tables"]["rules"][0][1] = "__init__()"
        text = json.dumps(data)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
    assert load_tables() == good  # refused, made again from Lark
    with open(path, encoding="utf-8") as file:
        assert check_tables(json.load(file), tables_key(grammar_text())) == good  # rewritten


def test_the_key_follows_the_grammar_lark_and_the_format(monkeypatch):
    grammar = grammar_text()
    key = tables_key(grammar)
    assert tables_key(grammar + "\n// changed\n") != key
    monkeypatch.setattr(lalr_tables, "FORMAT", lalr_tables.FORMAT + 1)
    assert tables_key(grammar) != key
    monkeypatch.undo()
    monkeypatch.setattr(lalr_tables, "LARK_OPTIONS", {**lalr_tables.LARK_OPTIONS, "x": 1})
    assert tables_key(grammar) != key
    monkeypatch.undo()
    init = lalr_tables._lark_init()
    monkeypatch.setattr(lalr_tables, "_lark_init", lambda: init.replace('"1.', '"0.'))
    assert tables_key(grammar) != key  # another Lark version


def test_the_key_is_lark_s_version_not_its_source(monkeypatch):
    """The key names Lark by its version: not its ``__init__.py`` text (which the file
    would otherwise hold whole), and not changed by a comment in it."""
    import lark

    key = tables_key(grammar_text())
    assert f"\0lark {lark.__version__}\0" in key
    init = lalr_tables._lark_init()
    assert init not in key
    monkeypatch.setattr(lalr_tables, "_lark_init", lambda: "# a comment\n" + init)
    assert tables_key(grammar_text()) == key
    monkeypatch.setattr(lalr_tables, "_lark_init", lambda: "no version here")
    assert tables_key(grammar_text()) != key  # an unknown Lark: a key of its own


def test_a_changed_grammar_reads_another_file(cache, monkeypatch):
    load_tables()
    first = _only_file(cache)
    monkeypatch.setattr(lalr_tables, "grammar_text", lambda: grammar_text() + "\n// v2\n")
    load_tables()
    assert {str(p) for p in cache.glob("tables-*.json")} - {first}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant another user's file")
def test_a_file_of_another_user_is_not_used(cache, caplog):
    good = load_tables()
    path = _only_file(cache)
    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    data["tables"]["terminals"]["DURATION"] = "planted"
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file)
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(path, nobody, nobody)
    with caplog.at_level("WARNING", logger="conddsl"):
        assert load_tables() == good
    assert "belongs to another user" in caplog.text
