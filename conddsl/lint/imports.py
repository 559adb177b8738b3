"""``--import-funcs``: import each task's ``func`` and report those that do not import.

This runs the code of the imported modules, as the scheduler would.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from conddsl.rules.diagnostics import Diagnostic
from conddsl.rules.taskfile import TaskFileReport
from conddsl.trust import add_import_folder, import_module

__all__ = ["check_imports", "import_error"]


def import_error(spec: str, folder: Path) -> str | None:
    """Why ``package.module:callable`` cannot be imported from ``folder`` (None if it can)."""
    module_name, _, attribute = spec.partition(":")
    added = None
    try:
        added = add_import_folder(folder)
        # A module that prints while it is imported must not spoil --output-format json.
        with contextlib.redirect_stdout(sys.stderr):
            target = import_module(module_name)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - SystemExit from user code included
        return f"{type(error).__name__}: {error}"
    finally:
        if added is not None:
            with contextlib.suppress(ValueError):
                sys.path.remove(added)
    for part in attribute.split("."):
        if not hasattr(target, part):
            return f"{module_name!r} has no attribute {attribute!r}"
        target = getattr(target, part)
    if not callable(target):
        return f"{spec!r} is not callable"
    return None


def check_imports(report: TaskFileReport) -> Iterator[Diagnostic]:
    """C501 for every ``func`` that does not import (the task file's folder on sys.path)."""
    if report.model is None:
        return
    for name, task in report.model.tasks.items():
        if task.func is None:
            continue
        why = import_error(task.func, report.path.parent)
        if why is not None:
            yield Diagnostic(
                "C501",
                f"cannot import {task.func!r}: {why}",
                report.display,
                report.span(("tasks", name, "func")),
                hint="the task file's folder is on sys.path (last) while checking",
            )
