"""``.cond`` rule files: named conditions, ``name = condition``, one or more lines each.

The format, in full:

- A definition starts at the very beginning of a line with ``name =``; the name is an
  identifier (``[A-Za-z_][A-Za-z0-9_]*``) that is not a keyword.
- The condition runs on over the following lines that are **indented** (as in INI files),
  blank, or comments, until the next line that starts in the first column.
- ``#`` starts a comment, except inside a quoted task name; a quoted name ends on
  its line (write ``\\n`` for a line break inside a name).
- Definitions may refer to each other in any order (not in a cycle), and to the names of
  the rules files listed before this one in a task file.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conddsl import ast, resolve
from conddsl.custom import default_registry
from conddsl.errors import ConditionSyntaxError, LineIndex, RuleFileError
from conddsl.parse import parse
from conddsl.rules.conditions import (
    RESERVED_NAMES,
    ConditionText,
    references,
    syntax_diagnostic,
)
from conddsl.rules.diagnostics import Diagnostic, has_errors
from conddsl.rules.graph import find_cycles
from conddsl.rules.textfile import read_text

__all__ = ["Definition", "RuleFile", "load_rules", "read_rule_file"]

_DEFINITION = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)[ \t]*=")
_LOOKS_LIKE_DEFINITION = re.compile(r"([^\s=#'\"][^=#'\"]*?)[ \t]*=")
_FIRST_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class Definition:
    """One ``name = condition`` of a rule file (``node`` is None if it does not parse)."""

    name: str
    name_range: tuple[int, int]
    source: ConditionText
    node: ast.Node | None


@dataclass
class RuleFile:
    """A rule file read and checked: its definitions and every finding in it."""

    path: Path
    display: str
    text: str
    index: LineIndex
    definitions: list[Definition] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    known: Mapping[str, ast.Node] = field(default_factory=dict)

    @property
    def rules(self) -> dict[str, ast.Node]:
        """Names known before this file, then this file's definitions that parsed."""
        found = dict(self.known)
        for definition in self.definitions:
            if definition.node is not None and definition.name not in found:
                found[definition.name] = definition.node
        return found

    def where(self, name: str) -> str | None:
        """``file:line`` of the definition of ``name`` in this file, if it is here."""
        for definition in self.definitions:
            if definition.name == name:
                line, _ = self.index.position(definition.name_range[0])
                return f"{self.display}:{line}"
        return None


def load_rules(
    path: str | Path, *, known: Mapping[str, ast.Node] | None = None
) -> dict[str, ast.Node]:
    """Read a ``.cond`` file into ``{name: condition}``, usable as ``compile_condition(rules=…)``.

    ``known`` holds names defined earlier (another rules file) that this file may use;
    they are part of the result. Raises :class:`RuleFileError` with every problem found,
    each at its line and column in the file, and :class:`OSError` if it cannot be read.
    """
    rule_file = read_rule_file(Path(path), known=known)
    if has_errors(rule_file.diagnostics):
        raise RuleFileError(rule_file.diagnostics)
    return rule_file.rules


def read_rule_file(
    path: Path,
    *,
    known: Mapping[str, ast.Node] | None = None,
    known_where: Mapping[str, str] | None = None,
    display: str | None = None,
) -> RuleFile:
    """Read and check a rule file; findings are collected, not raised.

    ``known_where`` says where known names were defined (``file:line``), for messages.
    """
    display = display if display is not None else str(path)
    text, problem = read_text(path, display)
    if text is None:
        result = RuleFile(path, display, "", LineIndex(""), known=dict(known or {}))
        result.diagnostics.append(problem)
        return result
    return parse_rule_text(text, path, display, known=known, known_where=known_where)


def parse_rule_text(
    text: str,
    path: Path,
    display: str,
    *,
    known: Mapping[str, ast.Node] | None = None,
    known_where: Mapping[str, str] | None = None,
) -> RuleFile:
    """Check the text of a rule file (see :func:`read_rule_file`)."""
    result = RuleFile(path, display, text, LineIndex(text), known=dict(known or {}))
    seen: dict[str, Definition] = {}
    for name, name_range, body_range in _split(text, result):
        definition = _definition(result, name, name_range, body_range)
        if not _check_name(result, definition, seen, known or {}, known_where or {}):
            continue
        seen[name] = definition
        result.definitions.append(definition)
    _check_references(result)
    return result


def _split(text: str, result: RuleFile):
    """``(name, name range, body range)`` per definition; bad lines become findings.

    Only the first column decides where a definition starts, so one mistake (a quote
    left open, say) cannot swallow the definitions after it.
    """
    current: list | None = None  # [name, name_range, body_start, body_end]
    offset = 0
    for line in text.split("\n"):
        line_end = offset + len(line)
        content = bool(line.strip()) and not line.lstrip().startswith("#")
        if content and line[0] not in " \t":
            if current is not None:
                yield current[0], current[1], (current[2], current[3])
                current = None
            match = _DEFINITION.match(line)
            if match:
                name_range = (offset + match.start(1), offset + match.end(1))
                current = [match[1], name_range, offset + match.end(), line_end]
            else:
                _bad_line(result, line, offset)
        elif content:
            if current is not None:
                current[3] = line_end
            else:
                _bad_line(result, line, offset, indented=True)
        offset = line_end + 1
    if current is not None:
        yield current[0], current[1], (current[2], current[3])


def _bad_line(result: RuleFile, line: str, offset: int, *, indented: bool = False) -> None:
    word = _FIRST_WORD.search(line)
    start, end = (word.start(), word.end()) if word else (0, 1)
    span = result.index.span(offset + start, offset + end)
    looks = _LOOKS_LIKE_DEFINITION.match(line)
    if looks and not indented:
        name = looks[1]
        span = result.index.span(offset + looks.start(1), offset + looks.end(1))
        result.diagnostics.append(
            Diagnostic(
                "C104",
                f"{name!r} is not a valid name",
                result.display,
                span,
                hint="a name is letters, digits and '_', and does not start with a digit",
            )
        )
        return
    if indented:
        message = "an indented line with no definition above it"
        hint = "start a definition with 'name = condition' in the first column"
    else:
        message = "expected 'name = condition'"
        hint = "indent the line to continue the condition above it"
    result.diagnostics.append(Diagnostic("C103", message, result.display, span, hint=hint))


def _definition(
    result: RuleFile, name: str, name_range: tuple[int, int], body: tuple[int, int]
) -> Definition:
    source = ConditionText(result.text[body[0] : body[1]], base=body[0])
    try:
        node = parse(source.text)
    except ConditionSyntaxError as error:
        result.diagnostics.append(syntax_diagnostic(error, source, result.display, result.index))
        node = None
    return Definition(name, name_range, source, node)


def _check_name(
    result: RuleFile,
    definition: Definition,
    seen: Mapping[str, Definition],
    known: Mapping[str, ast.Node],
    known_where: Mapping[str, str],
) -> bool:
    name = definition.name
    span = result.index.span(*definition.name_range)
    if not is_usable_name(name):
        result.diagnostics.append(
            Diagnostic(
                "C104",
                f"{name!r} is a word of the condition language, so a condition cannot name it",
                result.display,
                span,
                hint=f"choose another name, such as {name}_rule",
            )
        )
        return False
    if name in seen or name in known:
        if name in seen:
            line, _ = result.index.position(seen[name].name_range[0])
            where = f"line {line}"
        else:
            where = known_where.get(name, "an earlier rules file")
        result.diagnostics.append(
            Diagnostic(
                "C105",
                f"{name!r} is already defined ({where})",
                result.display,
                span,
                hint="rename one of them",
            )
        )
        return False
    return True


def is_usable_name(name: str) -> bool:
    """Whether a condition can refer to ``name``: it parses as a reference to itself."""
    if name.lower() in RESERVED_NAMES:
        return False
    try:
        node = parse(name)
    except ConditionSyntaxError:
        return False
    return isinstance(node, ast.Reference) and node.words == (name,) and not node.args


def _check_references(result: RuleFile) -> None:
    """E120 for names defined nowhere, E121 for names that refer to each other in a cycle."""
    own = {d.name: d for d in result.definitions}
    names = {**result.known, **own}
    edges: dict[str, list[str]] = {}
    for definition in result.definitions:
        if definition.node is None:
            continue
        targets = edges.setdefault(definition.name, [])
        for reference in references(definition.node):
            if reference.name in own and not reference.args:
                targets.append(reference.name)
                continue
            found = reference_diagnostic(
                reference, names, definition.source, result.display, result.index
            )
            if found is not None:
                result.diagnostics.append(found)
    for cycle in find_cycles(edges, list(own)):
        definition = own[cycle[0]]
        reference = next(ref for ref in references(definition.node) if ref.name == cycle[1])
        start, end = definition.source.file_range(reference.span)
        result.diagnostics.append(
            Diagnostic(
                "E121",
                resolve.cycle_message(cycle),
                result.display,
                result.index.span(start, end),
                hint="a condition cannot depend on itself",
            )
        )


def reference_problem(
    reference: ast.Reference, names: Collection[str]
) -> tuple[str, str, str | None] | None:
    """``(code, message, hint)`` when a reference resolves to nothing usable, else None.

    A reference is a named condition of ``names`` (without arguments), or a custom condition
    registered in :data:`conddsl.custom.default_registry` in this process (with as many
    quoted arguments as it takes), as ``compile_condition`` resolves it.
    """
    return resolve.reference_problem(reference, names, default_registry, hint=_DEFINE_HINT)


_DEFINE_HINT = "define it in a .cond file listed in [scheduler] rules, or check the spelling"


def reference_diagnostic(
    reference: ast.Reference,
    names: Collection[str],
    source: ConditionText,
    path: str,
    index: LineIndex,
) -> Diagnostic | None:
    """The finding for a reference that resolves to nothing usable (E120, E122), if any."""
    problem = reference_problem(reference, names)
    if problem is None:
        return None
    code, message, hint = problem
    start, end = source.file_range(reference.span)
    return Diagnostic(code, message, path, index.span(start, end), hint=hint)
