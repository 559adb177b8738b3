"""The LALR tables Lark builds from the grammar, as plain data cached in a JSON file.

The fast parser (:mod:`conddsl.lalr`) needs only Lark's parse table, the patterns of
its per-state scanners and which words each rule keeps. Importing Lark and loading its
cached parser to get them costs about 25 ms of CPU and 1-2 MiB of memory; reading them
back from JSON costs about 1 ms. So the tables Lark built are written once to the
user's cache folder (beside Lark's own cache), keyed by what they are built from: the
grammar, Lark's version, the options Lark builds with and this format. A change to any
of them reads (and writes) another file, and the grammar stays the one source of
syntax. Lark itself is still what builds the tables and what parses (and words) every
text the fast parser does not answer for.

The file is data, never code: JSON, read only if the trust rule
(:mod:`conddsl.trust`) holds for it, checked against its own key and shape, and any
problem (a missing, corrupt or planted file) means the tables are built again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import zlib
from functools import cache
from typing import Any

from conddsl.grammar import LARK_OPTIONS, cache_folder, get_parser, grammar_text
from conddsl.trust import believed

__all__ = [
    "FORMAT",
    "tables_of",
    "tables_key",
    "lark_version",
    "tables_path",
    "load_tables",
    "check_tables",
    "terminal_pattern",
    "terminal_regex",
]

# Raised when what the file holds (or what tables_of exports) changes meaning.
FORMAT = 1

log = logging.getLogger("conddsl")

# The terminals' patterns of the tables last loaded: small, and asked for by settings.
_terminals: dict[str, str] | None = None


def tables_of(lark: Any) -> dict:
    """The tables of a Lark LALR parser with the contextual lexer, as JSON-able data.

    ``rules``: per rule, [origin, name (its alias, else its origin), length, the
    children it keeps as [index, inlined], whether it is a ``?rule``]; ``states``: per
    state, its actions as [symbol, 0, next state] (shift or goto) or [symbol, 1, rule];
    ``scanners``: the distinct scanners, each [pattern, flags, {type: [keyword pattern,
    flags]}, ignored types], and ``scanner_of`` which one each state uses; ``kept``: the
    terminals a rule keeps; ``terminals``: every terminal's regular expression.
    """
    from lark.lexer import UnlessCallback
    from lark.parsers.lalr_analysis import Shift

    frontend = lark.parser
    table = frontend.parser.parser.parse_table
    rule_index = {}
    rules = []
    kept: set[str] = set()
    for rule in lark.rules:
        keep = []
        for index, symbol in enumerate(rule.expansion):
            if rule.options.keep_all_tokens or not (symbol.is_term and symbol.filter_out):
                keep.append([index, not symbol.is_term and symbol.name.startswith("_")])
                if symbol.is_term:
                    kept.add(symbol.name)
        rule_index[rule] = len(rules)
        rules.append(
            [
                rule.origin.name,
                rule.alias or rule.origin.name,
                len(rule.expansion),
                keep,
                bool(rule.options.expand1) and not rule.alias,
                # Whether its one child is a rule (a ?rule around one rule is a unit step).
                len(rule.expansion) == 1 and not rule.expansion[0].is_term,
            ]
        )
    states = [[] for _ in range(max(table.states) + 1)]
    for state, actions in table.states.items():
        states[state] = [
            [symbol, 0, arg] if action is Shift else [symbol, 1, rule_index[arg]]
            for symbol, (action, arg) in actions.items()
        ]
    scanners: list[list] = []
    seen: dict[str, int] = {}
    scanner_of = [-1] * len(states)
    for state, lexer in frontend.lexer.lexers.items():
        mres = lexer.scanner._mres
        if len(mres) != 1:  # pragma: no cover - Lark splits past 100 terminals
            raise TypeError("the grammar's scanner is split in parts")
        keywords = {}
        for type_, callback in lexer.callback.items():
            if not isinstance(callback, UnlessCallback):  # pragma: no cover
                raise TypeError(f"unexpected lexer callback for {type_}")
            if len(callback.scanner._mres) != 1:  # pragma: no cover
                raise TypeError("a keyword scanner is split in parts")
            pattern = callback.scanner._mres[0]
            keywords[type_] = [pattern.pattern, pattern.flags]
        if set(lexer.ignore_types) & set(keywords):  # pragma: no cover
            raise TypeError("a keyword callback on an ignored terminal")
        scanner = [mres[0].pattern, mres[0].flags, keywords, sorted(lexer.ignore_types)]
        key = json.dumps(scanner, sort_keys=True)
        if key not in seen:
            seen[key] = len(scanners)
            scanners.append(scanner)
        scanner_of[state] = seen[key]
    if -1 in scanner_of:  # pragma: no cover - Lark's contextual lexer covers every state
        raise TypeError("a parser state without a scanner")
    return {
        "start": table.start_states["start"],
        "end": table.end_states["start"],
        "rules": rules,
        "states": states,
        "scanners": scanners,
        "scanner_of": scanner_of,
        "kept": sorted(kept),
        "terminals": {t.name: t.pattern.to_regexp() for t in lark.terminals},
    }


def _lark_init() -> str:
    """The installed Lark's ``__init__.py`` (it says the version), read unimported."""
    spec = importlib.util.find_spec("lark")
    origin = spec.origin if spec is not None else None
    if not origin:  # pragma: no cover - lark is a dependency
        return ""
    with open(origin, encoding="utf-8", errors="replace") as file:
        return file.read()


_VERSION = re.compile(r"""^__version__\s*(?::\s*str\s*)?=\s*["']([^"'\s]+)["']""", re.MULTILINE)


def lark_version() -> str:
    """The installed Lark's version, read without importing it (``lark.__version__``).

    A Lark that does not say it in the usual form is known by its ``__init__.py``'s
    checksum instead: still another key for another Lark."""
    text = _lark_init()
    found = _VERSION.search(text)
    return found.group(1) if found else f"unknown-{zlib.crc32(text.encode()):08x}"


def tables_key(grammar: str) -> str:
    """What the tables are built from: this format, Lark's version, the options Lark
    builds with (:data:`conddsl.grammar.LARK_OPTIONS`) and the grammar.

    The file holds its key whole and is used only if it is equal, so a file name made of
    a short checksum (not hashlib's: its OpenSSL costs 0.6 MiB of RSS) cannot mislead.
    """
    options = json.dumps(LARK_OPTIONS, sort_keys=True)
    return f"{FORMAT}\0lark {lark_version()}\0{options}\0{grammar}"


def tables_path(key: str) -> str | None:
    """Where the tables of ``key`` are cached, or None for no usable cache folder."""
    folder = cache_folder()
    if folder is None:
        return None
    return os.path.join(folder, f"tables-{zlib.crc32(key.encode()):08x}.json")


def check_tables(data: Any, key: str) -> dict:
    """``data`` if it is tables of ``key`` in this format, else :class:`ValueError`.

    The shape is checked so that a corrupt or planted file is refused here, not
    half-used: the fast parser trusts what it gets (and falls back to Lark on any error).
    """

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"the tables file is not valid: {what}")

    need(isinstance(data, dict), "not an object")
    need(data.get("format") == FORMAT and data.get("key") == key, "another key or format")
    tables = data.get("tables")
    need(isinstance(tables, dict), "no tables")
    states, rules, scanners = tables.get("states"), tables.get("rules"), tables.get("scanners")
    need(isinstance(states, list) and isinstance(rules, list), "states or rules")
    need(isinstance(scanners, list) and isinstance(tables.get("scanner_of"), list), "scanners")
    need(len(tables["scanner_of"]) == len(states), "one scanner a state")
    need(
        all(isinstance(i, int) and 0 <= i < len(scanners) for i in tables["scanner_of"]),
        "a state's scanner",
    )
    need(all(isinstance(tables.get(k), int) for k in ("start", "end")), "start or end")
    for rule in rules:
        need(isinstance(rule, list) and len(rule) == 6, "a rule")
        origin, name, size, keep = rule[:4]
        need(isinstance(origin, str) and isinstance(name, str) and isinstance(size, int), "rule")
        need(re.fullmatch(r"_*[a-z][a-z0-9_]*", name) is not None, "a rule's name")
        need(all(isinstance(k, list) and len(k) == 2 for k in keep), "a rule's children")
    for actions in states:
        for action in actions:
            need(isinstance(action, list) and len(action) == 3, "an action")
            need(isinstance(action[0], str) and action[1] in (0, 1), "an action")
            need(isinstance(action[2], int) and action[2] >= 0, "an action's target")
            limit = len(states) if action[1] == 0 else len(rules)
            need(action[2] < limit, "an action's target")
    for scanner in scanners:
        need(isinstance(scanner, list) and len(scanner) == 4, "a scanner")
        need(isinstance(scanner[0], str) and isinstance(scanner[2], dict), "a scanner")
    need(isinstance(tables.get("kept"), list) and isinstance(tables.get("terminals"), dict), "")
    return tables


def _read(path: str, key: str) -> dict | None:
    if not os.path.exists(path) or not believed(path, "the parser tables", "they are made anew"):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            return check_tables(json.load(file), key)
    except (OSError, ValueError) as exc:  # corrupt, planted or half-written: make anew
        log.info("the parser tables in %s are not used: %s", path, exc)
        return None


def _write(path: str, key: str, tables: dict) -> None:
    import tempfile  # only to write: with shutil and random it is ~0.7 MiB of RSS

    folder = os.path.dirname(path)
    try:
        # Whole or not at all: another process may read the file meanwhile.
        handle, temporary = tempfile.mkstemp(prefix=".tables-", dir=folder)
    except OSError as exc:
        log.info("the parser tables could not be cached in %s: %s", path, exc)
        return
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump({"format": FORMAT, "key": key, "tables": tables}, file)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)  # a full disk or read-only cache: go on without the file
        log.info("the parser tables could not be cached in %s: %s", path, exc)


def load_tables() -> dict:
    """The tables of the grammar: from the cache file if it is valid, else from Lark's
    shared parser (:func:`conddsl.grammar.get_parser`), then cached."""
    global _terminals
    key = tables_key(grammar_text())
    path = tables_path(key)
    if path is not None:
        tables = _read(path, key)
        if tables is not None:
            _terminals = tables["terminals"]
            return tables
    tables = tables_of(get_parser())
    if path is not None:
        _write(path, key, tables)
    _terminals = tables["terminals"]
    return tables


def terminal_pattern(name: str) -> str:
    """The regular expression of the grammar's terminal ``name``."""
    terminals = _terminals if _terminals is not None else load_tables()["terminals"]
    return terminals[name]


@cache
def terminal_regex(name: str) -> re.Pattern[str]:
    """The grammar's terminal ``name`` (``DURATION``, ``COMMENT``) as a compiled regex."""
    return re.compile(terminal_pattern(name))
