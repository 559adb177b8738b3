"""TOML task files: read with tomllib, validated by the models, conditions parsed in place.

:func:`read_task_file` collects every finding with its position in the file;
:func:`load_task_file` returns the models, or raises :class:`TaskFileError` with all of them.
"""

from __future__ import annotations

import ast as python_ast
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from conddsl import ast
from conddsl.errors import ConditionSyntaxError, LineIndex, TaskFileError, suggest
from conddsl.parse import parse
from conddsl.resolve import Resolver
from conddsl.rules.condfile import RuleFile, read_rule_file, reference_diagnostic
from conddsl.rules.conditions import ConditionText, references, syntax_diagnostic, task_names
from conddsl.rules.diagnostics import Diagnostic, has_errors
from conddsl.rules.models import SchedulerTable, TaskFile, TaskTable
from conddsl.rules.schema_errors import schema_diagnostics
from conddsl.rules.textfile import read_text
from conddsl.rules.tomlpos import MAX_NESTING, TomlLocations, locate, nesting, too_deep

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "FileCondition",
    "TaskFileReport",
    "check_references",
    "load_task_file",
    "read_task_file",
]

CONDITION_KEYS = ("start_cond", "end_cond")
_AT = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)\s*$")
_TWICE = re.compile(r"Cannot declare (\(.*\)) twice")


@dataclass(frozen=True, slots=True)
class FileCondition:
    """A condition written in a task file: which key, its text and place, and its tree."""

    task: str | None  # None for the [scheduler] shut_cond
    key: str
    source: ConditionText
    node: ast.Node


@dataclass
class TaskFileReport:
    """A task file read and checked: what could be used of it, and every finding."""

    path: Path
    display: str
    text: str = ""
    index: LineIndex = field(default_factory=lambda: LineIndex(""))
    data: dict[str, Any] | None = None
    model: TaskFile | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    rule_files: list[RuleFile] = field(default_factory=list)
    conditions: list[FileCondition] = field(default_factory=list)
    _task_tables: tuple | None = field(default=None, repr=False, compare=False)
    _locations: TomlLocations | None = field(default=None, repr=False, compare=False)

    @property
    def locations(self) -> TomlLocations | None:
        """Where keys and values stand in the text (None unless the TOML was read)."""
        # Scanned when a position is first needed: a file without findings needs none,
        # and the scan costs as much as reading the TOML.
        if self._locations is None and self.data is not None:
            self._locations = locate(self.text)
        return self._locations

    @locations.setter
    def locations(self, value: TomlLocations | None) -> None:
        self._locations = value

    @property
    def rules(self) -> dict[str, ast.Node]:
        """All named conditions of the rules files that could be read."""
        return self.rule_files[-1].rules if self.rule_files else {}

    @property
    def task_tables(self) -> dict[str, dict[str, Any]]:
        """The ``[tasks.NAME]`` tables as read from TOML (valid or not)."""
        # Built once per read: checks look tasks up for every condition that names one.
        cached = self._task_tables
        if cached is None or cached[0] is not self.data:
            tasks = (self.data or {}).get("tasks")
            tables = {}
            if isinstance(tasks, dict):
                tables = {name: table for name, table in tasks.items() if isinstance(table, dict)}
            cached = self._task_tables = (self.data, tables)
        return cached[1]

    def span(self, path: tuple, *, key: bool = False):
        """The span of a key path's value (or key) in the file; the file start if unknown."""
        located, _ = self.locations.nearest(path) if self.locations else (None, 0)
        if located is None:
            return self.index.span(0, 0)
        return self.index.span(*(located.key if key else located.value))

    def all_diagnostics(self) -> list[Diagnostic]:
        """The task file's findings and those of its rules files."""
        found = list(self.diagnostics)
        for rule_file in self.rule_files:
            found.extend(rule_file.diagnostics)
        return found


def load_task_file(path: str | Path) -> TaskFile:
    """Read a task file into :class:`TaskFile` (with its rules), or raise :class:`TaskFileError`.

    Raises :class:`OSError` if the file cannot be read at all.
    """
    report = read_task_file(Path(path))
    found = report.all_diagnostics()
    if has_errors(found) or report.model is None:
        raise TaskFileError(found)
    return report.model


def read_task_file(
    path: Path,
    *,
    display: str | None = None,
    rule_file_reader: Callable[..., RuleFile] = read_rule_file,
    check_names: bool = True,
) -> TaskFileReport:
    """Read and check a task file; findings are collected, not raised.

    ``rule_file_reader(path, known=, known_where=, display=)`` reads each rules file (the
    checker passes one that reuses files it has already read). With ``check_names=False``
    the names in conditions are left for :func:`check_references` (the checker first
    imports the funcs, which may register custom conditions).
    """
    report = TaskFileReport(path, display if display is not None else str(path))
    text, problem = read_text(path, report.display)
    if text is None:
        report.diagnostics.append(problem)
        return report
    report.text, report.index = text, LineIndex(text)
    try:
        report.data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        report.diagnostics.append(_toml_error(report, str(error)))
        return report
    except RecursionError:  # tomllib recurses once per level of nesting
        report.diagnostics.append(_too_deep(report, too_deep(text)))
        return report
    # Refused even when tomllib could read it: what reads the data next (the scanner,
    # the models, the checks) need not be deep-proof, and the limit does not depend on
    # how much stack is left.
    deep = too_deep(text)
    if deep is not None:
        report.data = None
        report.diagnostics.append(_too_deep(report, deep))
        return report
    _validate(report)
    _read_rules(report, rule_file_reader)
    _read_conditions(report)
    if check_names:
        check_references(report)
    if report.model is not None:
        report.model._path = path
        report.model._rules = report.rules
    return report


# ---------------------------------------------------------------- TOML syntax


def _toml_error(report: TaskFileReport, message: str) -> Diagnostic:
    where = _AT.search(message)
    text = message[: where.start()] if where else message
    if where and where.group(1):
        start = report.index.offset(int(where.group(1)), int(where.group(2)))
    else:
        start = len(report.text.rstrip())
    twice = _TWICE.match(text)
    if twice:
        found = _declared_twice(report, twice.group(1), start)
        if found is not None:
            return found
    hint = None
    if text.startswith("Invalid value"):
        hint = 'text needs quotes: start_cond = "daily"'
    elif "Cannot overwrite a value" in text:
        hint = "a key is set twice: remove one of them"
    text = text[:1].lower() + text[1:]
    return Diagnostic(
        "C101", f"invalid TOML: {text}", report.display, report.index.span(start), hint=hint
    )


def _too_deep(report: TaskFileReport, at: int | None) -> Diagnostic:
    """C101 for arrays and inline tables nested past MAX_NESTING, at the bracket too many."""
    hint = (
        f"a task file nests arrays and inline tables at most {MAX_NESTING} deep"
        " (each [ or { is one level): flatten this value"
    )
    if at is not None:
        message = f"invalid TOML: arrays and inline tables nested more than {MAX_NESTING} deep"
        return Diagnostic("C101", message, report.display, report.index.span(at), hint=hint)
    # The reader ran out of stack below the limit (the caller's stack was already deep):
    # point at the deepest bracket.
    depth, at = nesting(report.text)
    message = f"invalid TOML: nested too deeply to read ({depth} levels of arrays and tables)"
    return Diagnostic("C101", message, report.display, report.index.span(at), hint=hint)


def _declared_twice(report: TaskFileReport, key_text: str, at: int) -> Diagnostic | None:
    try:
        key = tuple(python_ast.literal_eval(key_text))
    except (ValueError, SyntaxError, TypeError):
        return None
    headers = locate(report.text).headers.get(key, [])
    line, _ = report.index.position(at)
    second = next((h for h in headers[1:] if report.index.position(h[0])[0] == line), None)
    if len(headers) < 2 or second is None:
        return None
    first_line, _ = report.index.position(headers[0][0])
    name = ".".join(str(k) for k in key)
    if len(key) == 2 and key[0] == "tasks":
        code, message = "C106", f"task {key[1]!r} is defined twice (first at line {first_line})"
    else:
        code, message = "C101", f"table [{name}] is defined twice (first at line {first_line})"
    return Diagnostic(
        code,
        message,
        report.display,
        report.index.span(*second),
        hint="task names are unique: rename or merge the two tables",
    )


# ---------------------------------------------------------------- schema


def _validate(report: TaskFileReport) -> None:
    data = report.data or {}
    try:
        report.model = TaskFile.model_validate(data)
        return
    except ValidationError as error:
        report.diagnostics.extend(
            schema_diagnostics(error, report.locations, report.index, report.display)
        )
    # Keep what is valid, so that the conditions of the good tasks are still checked
    # and a runtime could report the rest.
    scheduler = data.get("scheduler", {})
    try:
        config = SchedulerTable.model_validate(scheduler)
    except ValidationError:
        config = SchedulerTable()
    tasks = {}
    for name, table in report.task_tables.items():
        try:
            tasks[name] = TaskTable.model_validate(table)
        except ValidationError:
            continue
    report.model = TaskFile(scheduler=config, tasks={n: t for n, t in tasks.items() if n})


# ---------------------------------------------------------------- rules files


def _read_rules(report: TaskFileReport, reader: Callable[..., RuleFile]) -> None:
    scheduler = (report.data or {}).get("scheduler")
    names = scheduler.get("rules") if isinstance(scheduler, dict) else None
    if not isinstance(names, list):
        return
    known: dict[str, ast.Node] = {}
    known_where: dict[str, str] = {}
    listed: set[Path] = set()
    for i, name in enumerate(names):
        if not isinstance(name, str):
            continue
        path = report.path.parent / name
        where = ("scheduler", "rules", i)
        if path.resolve() in listed:
            message = f"rules file {name!r} is listed twice: its names would be defined twice"
            hint = "list each rules file once"
            entry = report.span(where)
            report.diagnostics.append(Diagnostic("C105", message, report.display, entry, hint=hint))
            continue
        listed.add(path.resolve())
        try:
            rule_file = reader(path, known=known, known_where=known_where, display=str(path))
        except OSError as error:
            message = f"cannot read rules file {name!r}: {error.strerror or type(error).__name__}"
            hint = "rules paths are relative to the task file"
            entry = report.span(where)
            report.diagnostics.append(Diagnostic("C204", message, report.display, entry, hint=hint))
            continue
        report.rule_files.append(rule_file)
        for definition in rule_file.definitions:
            if definition.name not in known_where:
                known_where[definition.name] = rule_file.where(definition.name) or name
        known = rule_file.rules


# ---------------------------------------------------------------- conditions


def _condition_places(report: TaskFileReport) -> Iterator[tuple[str | None, str, tuple]]:
    scheduler = (report.data or {}).get("scheduler")
    if isinstance(scheduler, dict) and isinstance(scheduler.get("shut_cond"), str):
        yield None, "shut_cond", ("scheduler", "shut_cond")
    for name, table in report.task_tables.items():
        for key in CONDITION_KEYS:
            if isinstance(table.get(key), str):
                yield name, key, ("tasks", name, key)


def _read_conditions(report: TaskFileReport) -> None:
    for task, key, path in _condition_places(report):
        source = _source(report, path)
        try:
            node = parse(source.text)
        except ConditionSyntaxError as error:
            report.diagnostics.append(
                syntax_diagnostic(error, source, report.display, report.index)
            )
            continue
        report.conditions.append(FileCondition(task, key, source, node))


def _source(report: TaskFileReport, path: tuple) -> ConditionText:
    value = report.data
    for part in path:
        value = value[part]
    return ConditionText(value, placed=partial(_placed, report, path, value))


def _placed(report: TaskFileReport, path: tuple, value: str) -> ConditionText:
    """Where the condition ``value`` at ``path`` stands in the file (the scan runs once)."""
    located = report.locations.get(path) if report.locations else None
    if located is not None and located.string is not None and located.string.value == value:
        return ConditionText(value, string=located.string)
    # The scanner could not map this value exactly: point at the whole value.
    whole = located.value if located is not None else (0, 0)
    return ConditionText(value, whole=whole)


def check_references(report: TaskFileReport) -> None:
    """E120/E122 for names that resolve to nothing, C301 for unknown tasks (also in rules)."""
    rules = report.rules
    broken = {d.name for f in report.rule_files for d in f.definitions if d.node is None}
    tasks = list(report.task_tables)
    in_rule: dict[str, list[str]] = {}  # the tasks each named condition names, in the end
    # Thousands of tasks share a few hundred texts: each one's tree is walked once.
    walked: dict[str, tuple[tuple[ast.Reference, ...], tuple[tuple[str, ast.Node], ...]]] = {}
    for condition in report.conditions:
        seen: set[tuple[str, int]] = set()
        parts = walked.get(condition.source.text)
        if parts is None:
            node = condition.node
            parts = walked[condition.source.text] = (
                tuple(references(node)),
                tuple(task_names(node)),
            )
        for reference in parts[0]:
            if reference.name in broken:
                continue  # its own error is reported in its rules file
            found = reference_diagnostic(
                reference, rules, condition.source, report.display, report.index
            )
            if found is not None:
                report.diagnostics.append(found)
                continue
            if reference.args or reference.name not in rules:
                continue  # a custom condition
            if reference.name not in in_rule:
                in_rule[reference.name] = [n for n, _ in _tasks_in_rule(reference.name, rules)]
            for name in in_rule[reference.name]:
                if name not in report.task_tables and (name, id(reference)) not in seen:
                    seen.add((name, id(reference)))
                    report.diagnostics.append(
                        _unknown_task(report, condition, reference, name, tasks, reference.name)
                    )
        for name, node in parts[1]:
            if name not in report.task_tables:
                report.diagnostics.append(_unknown_task(report, condition, node, name, tasks))


def _tasks_in_rule(name: str, rules: dict[str, ast.Node]) -> Iterator[tuple[str, ast.Node]]:
    """Task names used by a named condition and the names it uses in turn."""
    for current in Resolver(rules).reached(name):
        yield from task_names(rules[current])


def _unknown_task(
    report: TaskFileReport,
    condition: FileCondition,
    node: ast.Node,
    name: str,
    tasks: list[str],
    via: str | None = None,
) -> Diagnostic:
    close = suggest(name, tasks)
    hint = f"did you mean {close!r}?" if close else None
    if hint is None:
        hint = "tasks are the [tasks.NAME] tables of this file"
    message = f"unknown task {name!r}"
    if via is not None:
        message += f" (named in the condition {via!r})"
    start, end = condition.source.file_range(node.span)
    return Diagnostic("C301", message, report.display, report.index.span(start, end), hint=hint)
