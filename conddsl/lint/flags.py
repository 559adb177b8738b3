"""C408: a thread task that must be stoppable (an end condition, or a timeout of its own or
of the file's ``[scheduler]``) but whose function takes no ``TerminationFlag``, so nothing
can stop it.

The function's signature is read from its module's source with :mod:`ast`, without
running the module; with ``--import-funcs`` the imported function itself is looked at.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conddsl.rules.codes import severity_of
from conddsl.rules.diagnostics import Diagnostic
from conddsl.rules.models import NEVER
from conddsl.rules.taskfile import TaskFileReport

__all__ = ["check_flags", "takes_flag_in_source"]


def check_flags(report: TaskFileReport, *, imported: bool = False) -> Iterator[Diagnostic]:
    """C408 for each thread task with a timeout or end condition whose func takes no flag."""
    model = report.model
    if model is None:
        return
    defaults = model.scheduler
    # Thousands of tasks name a handful of functions: each is looked up (its module
    # found, read and parsed) once per check.
    found: dict[str, bool | None] = {}
    for name, task in model.tasks.items():
        execution = task.execution or defaults.execution or "thread"
        if task.func is None or execution != "thread":
            continue
        why = _stoppable_by(task, defaults)
        if why is None:
            continue
        if task.func not in found:
            found[task.func] = _takes_flag(task.func, report.path.parent, imported)
        takes = found[task.func]
        if takes is not False:  # True, or not found: nothing to say
            continue
        yield Diagnostic(
            "C408",
            f"task {name!r} runs in a thread and has {why}, but {task.func!r} takes no"
            " TerminationFlag: nothing can stop it, it runs on until it returns",
            report.display,
            report.span(("tasks", name, "func")),
            severity_of("C408"),
            'use execution = "process" (it can be killed), or give the function a parameter'
            " flag=TerminationFlag() and return when it is set",
        )


def _stoppable_by(task: Any, defaults: Any) -> str | None:
    """What asks the task's runs to stop (None: nothing)."""
    if task.end_cond is not None:
        return "an end condition"
    if task.timeout is not None:
        return None if task.timeout == NEVER else "a timeout"
    # The file's [scheduler] timeout is every task's; the built-in 30 minutes is not
    # reported, as the file never asked for it (`conddsl schema` shows it).
    if defaults.timeout is not None and defaults.timeout != NEVER:
        return "the scheduler's timeout"
    return None


def _takes_flag(spec: str, folder: Path, imported: bool) -> bool | None:
    """Whether the func takes a TerminationFlag (None: its definition was not found)."""
    module_name, _, attribute = spec.partition(":")
    if imported:
        target: Any = sys.modules.get(module_name)
        for part in attribute.split("."):
            target = getattr(target, part, None)
        if target is None:
            return None
        from conddsl.runtime.tasks import flag_params

        return bool(flag_params(target))
    source = _module_source(module_name, folder)
    if source is None or "." in attribute:
        return None
    return takes_flag_in_source(source, attribute)


def takes_flag_in_source(source: str, function: str) -> bool | None:
    """Whether the top-level ``function`` of ``source`` has a parameter defaulting to
    ``TerminationFlag()`` (None: no such function, or the source does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    found = None
    for node in tree.body:  # the last definition wins, as when the module runs
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            found = node
    if found is None:
        return None
    arguments = found.args
    defaults = [*arguments.defaults, *(d for d in arguments.kw_defaults if d is not None)]
    return any(_is_flag(default) for default in defaults)


def _is_flag(node: ast.expr) -> bool:
    if not isinstance(node, ast.Call):
        return False
    called = node.func
    name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", None)
    return name == "TerminationFlag"


def _module_source(module_name: str, folder: Path) -> str | None:
    """The source of ``module_name`` found beside the task file or on sys.path, unrun."""
    relative = Path(*module_name.split("."))
    for base in (folder, *(Path(entry) for entry in sys.path if entry)):
        for candidate in (base / relative.with_suffix(".py"), base / relative / "__init__.py"):
            try:
                if candidate.is_file():
                    return candidate.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
    return None
