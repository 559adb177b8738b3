"""``conddsl check``: find the files, read each once, run the checks, collect the findings."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conddsl import ast
from conddsl.errors import LineIndex, suggest
from conddsl.rules.condfile import RuleFile, read_rule_file
from conddsl.rules.diagnostics import Diagnostic
from conddsl.rules.taskfile import TaskFileReport, check_references, read_task_file
from conddsl.trust import others_may_change

__all__ = ["CheckResult", "check_paths", "is_task_file"]

_SKIPPED_FOLDERS = frozenset({"__pycache__", "node_modules", "site-packages"})
_TASK_TABLES = ("tasks", "scheduler")
_TASK_HEADER = re.compile(
    r"^[ \t]*(?:\[{1,2}[ \t]*[\"']?(?:tasks|scheduler)\b|(?:tasks|scheduler)[ \t]*[.=])", re.M
)


@dataclass
class CheckResult:
    """Everything one run found: findings, how many files, notes and I/O troubles."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    texts: dict[str, LineIndex] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    io_errors: list[str] = field(default_factory=list)
    suppressed: int = 0


@dataclass(frozen=True, slots=True)
class _Target:
    path: Path
    display: str
    explicit: bool


def check_paths(paths: Sequence[str], *, import_funcs: bool = False) -> CheckResult:
    """Check files and folders (recursively) of ``.cond`` and TOML task files."""
    from conddsl.lint.files import check_files
    from conddsl.lint.flags import check_flags
    from conddsl.lint.suppress import unsuppressed
    from conddsl.lint.tasks import check_tasks

    result = CheckResult()
    targets = _targets(paths, result)
    reader = _RuleFiles(result)
    found: list[Diagnostic] = []
    for target in [t for t in targets if t.path.suffix == ".toml"]:
        report = _read_task(target, reader, result)
        if report is None:
            continue
        if report.data is not None:
            # As `conddsl run` warns (trust.others_may_change): read anyway, but said.
            for source in (report.path, *(rule.path for rule in report.rule_files)):
                warning = others_may_change(source)
                if warning is not None:
                    result.notes.append(warning)
            if import_funcs:
                # First: the imported modules may register custom conditions.
                from conddsl.lint.imports import check_imports

                found.extend(check_imports(report))
            check_references(report)
            found.extend(check_tasks(report))
            found.extend(check_files(report))
            found.extend(check_flags(report, imported=import_funcs))
        found.extend(report.diagnostics)
    for target in targets:
        if target.path.suffix != ".toml":
            reader.standalone(target)
    found.extend(reader.diagnostics())
    unique = {(d.path, d.span, d.code, d.message): d for d in found}
    kept, result.suppressed = unsuppressed(unique.values(), result.texts)
    result.diagnostics = sorted(kept, key=lambda d: d.sort_key)
    if not result.files and not result.io_errors and not result.notes:
        result.notes.append("no .cond or task .toml files found in " + ", ".join(paths))
    return result


def _targets(paths: Sequence[str], result: CheckResult) -> list[_Target]:
    targets: dict[Path, _Target] = {}
    for raw in paths:
        path = Path(raw)
        try:
            if path.is_dir():
                found = [_Target(p, _display(p), False) for p in _walk(path)]
            elif path.is_file() or path.exists():
                if path.suffix not in (".cond", ".toml"):
                    result.io_errors.append(f"{raw}: not a .cond or .toml file")
                    continue
                found = [_Target(path, _display(path), True)]
            else:
                result.io_errors.append(f"{raw}: no such file or folder")
                continue
        except OSError as error:
            result.io_errors.append(f"{raw}: {error.strerror or error}")
            continue
        for target in found:
            key = _key(target.path)
            if key not in targets or target.explicit:
                targets[key] = target
    return list(targets.values())


def _walk(folder: Path) -> list[Path]:
    found = []
    for root, folders, files in os.walk(folder, onerror=None):
        folders[:] = sorted(
            f for f in folders if not f.startswith(".") and f not in _SKIPPED_FOLDERS
        )
        for name in sorted(files):
            if name.endswith((".cond", ".toml")):
                found.append(Path(root) / name)
    return found


def _display(path: Path) -> str:
    return os.path.normpath(str(path))


def _key(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:  # pragma: no cover - resolve is lenient on POSIX
        return path.absolute()


def is_task_file(data: Mapping | None, text: str) -> bool:
    """Whether TOML is meant as a task file: it has a ``[tasks]`` or ``[scheduler]`` table,
    or a top-level table whose name is close to one (so a typo is still checked).

    ``data`` is the parsed TOML, or None when it does not parse (the text is searched).
    """
    if data is None:
        return bool(_TASK_HEADER.search(text))
    for key in data:
        if key in _TASK_TABLES or suggest(key, _TASK_TABLES, cutoff=0.75):
            return True
    return False


def _read_task(target: _Target, reader: _RuleFiles, result: CheckResult) -> TaskFileReport | None:
    try:
        report = read_task_file(
            target.path, display=target.display, rule_file_reader=reader, check_names=False
        )
    except OSError as error:
        result.io_errors.append(f"{target.display}: {error.strerror or error}")
        return None
    if report.data is not None and not is_task_file(report.data, report.text):
        if target.explicit:
            result.notes.append(
                f"skipped {target.display}: not a task file (no [tasks] or [scheduler] table)"
            )
        return None
    if report.data is None and not target.explicit and not is_task_file(None, report.text):
        return None  # some other broken TOML file in a folder: not ours
    result.files.append(target.display)
    result.texts[target.display] = report.index
    return report


class _RuleFiles:
    """Reads each rules file once: in the context of the first task file that lists it,
    else on its own when it is checked directly."""

    def __init__(self, result: CheckResult) -> None:
        self.result = result
        self.read: dict[tuple[Path, tuple[str, ...]], RuleFile] = {}
        self.seen: set[Path] = set()

    def __call__(
        self,
        path: Path,
        *,
        known: Mapping[str, ast.Node],
        known_where: Mapping[str, str],
        display: str,
    ) -> RuleFile:
        context = (_key(path), tuple(known))
        found = self.read.get(context)
        if found is None:
            found = read_rule_file(
                path, known=known, known_where=known_where, display=_display(Path(display))
            )
            self.read[context] = found
            self._note(found)
        return found

    def standalone(self, target: _Target) -> None:
        if _key(target.path) in self.seen:
            return
        try:
            found = read_rule_file(target.path, display=target.display)
        except OSError as error:
            self.result.io_errors.append(f"{target.display}: {error.strerror or error}")
            return
        self.read[(_key(target.path), ())] = found
        self._note(found)

    def _note(self, rule_file: RuleFile) -> None:
        self.seen.add(_key(rule_file.path))
        if rule_file.display not in self.result.texts:
            self.result.files.append(rule_file.display)
            self.result.texts[rule_file.display] = rule_file.index

    def diagnostics(self) -> list[Diagnostic]:
        return [d for rule_file in self.read.values() for d in rule_file.diagnostics]
