"""The grammar (grammar/conddsl.lark) and the one LALR parser built from it, on first use.

Everything that needs the syntax asks here: the parser (:mod:`conddsl.parse`), the
error translation (:mod:`conddsl.syntax_errors`, for keywords) and the tables of
:mod:`conddsl.lalr_tables` (for the fast parser and the terminals the readers of
settings use). Lark is imported only when a parser is built, so importing conddsl
stays light; the tables are read back without importing it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

from conddsl.trust import believed, unshared_folder_problem

if TYPE_CHECKING:
    from lark import Lark

__all__ = [
    "grammar_text",
    "build_parser",
    "cache_folder",
    "parser_cache_path",
    "get_parser",
]

_parser: Lark | None = None
_parser_lock = threading.Lock()

# How Lark builds the parser: with the grammar and Lark's version, what its tables depend
# on (the cached tables of conddsl.lalr_tables are keyed by them).
LARK_OPTIONS = {
    "parser": "lalr",
    "lexer": "contextual",
    "propagate_positions": True,
    "maybe_placeholders": False,
}


def grammar_text() -> str:
    """The grammar source: from the installed package, else from the repository."""
    # os.path, not pathlib: a scheduler that needs no other path object spares its
    # imports (pathlib, urllib.parse, ipaddress: ~0.6 MiB of RSS).
    here = os.path.dirname(os.path.realpath(__file__))
    beside = os.path.join(here, "grammar", "conddsl.lark")
    if os.path.isfile(beside):
        # A package in a folder: the file itself. importlib.resources would load its
        # readers (zipfile and 20-odd modules, ~2 MiB of RSS) to say the same.
        return _read_text(beside)
    if not os.path.isfile(__file__):  # a package in an archive: its loader has the file
        from importlib import resources

        packaged = resources.files("conddsl").joinpath("grammar/conddsl.lark")
        if packaged.is_file():
            return packaged.read_text(encoding="utf-8")
    return _read_text(os.path.join(os.path.dirname(here), "grammar", "conddsl.lark"))


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.read()


def build_parser(*, strict: bool = False, cache: bool = True) -> Lark:
    """A new LALR parser for the grammar (``strict=True`` turns conflicts into errors).

    With ``cache``, the parse tables are kept in the user's own cache folder (see
    :func:`parser_cache_path`): building them costs ten times as much as loading them.
    """
    from lark import Lark

    grammar = grammar_text()
    cache_file = parser_cache_path(grammar) if cache and not strict else None
    return Lark(grammar, **LARK_OPTIONS, strict=strict, cache=cache_file or False)


def cache_folder() -> str | None:
    """The user's own cache folder for conddsl, made if need be; None if unusable.

    ``$XDG_CACHE_HOME/conddsl`` (``~/.cache/conddsl``): files are opened there by name,
    so it is used only if nobody else may add one (the trust rule, :mod:`conddsl.trust`).
    """
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    folder = os.path.join(base, "conddsl")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return None  # a read-only home: parse without a cache
    # Files are opened by name after this check: nobody else may add one meanwhile.
    why = unshared_folder_problem(folder, "a cache file")
    if why is not None:
        logging.getLogger("conddsl").warning(
            "the parser cache in %s is not trusted: %s; it is not used", folder, why
        )
        return None
    return folder


def parser_cache_path(grammar: str) -> str | None:
    """Where the parse tables of ``grammar`` are cached, or None for no cache.

    Lark unpickles the file, so loading it runs whatever its writer wanted: it lives in
    :func:`cache_folder`, and is used only if the trust rule holds for it.
    """
    import hashlib

    import lark

    folder = cache_folder()
    if folder is None:
        return None
    digest = hashlib.sha256(f"{lark.__version__}\0{grammar}".encode()).hexdigest()[:32]
    path = os.path.join(folder, f"parser-{digest}-py{sys.version_info[0]}{sys.version_info[1]}")
    if not believed(path, "the parser cache", "it is not used"):
        return None
    return path


def get_parser() -> Lark:
    """The shared parser, built (or loaded from the cache) on first use; thread-safe."""
    global _parser
    if _parser is None:
        with _parser_lock:
            if _parser is None:
                _parser = build_parser()
    return _parser
