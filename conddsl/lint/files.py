"""The files ``conddsl run`` would find beside a task file's history: the history itself,
its journal and its process registry, checked by the trust rule (:mod:`conddsl.trust`).

C601: the history or its journal is not trusted, or its folder is one anybody may add a
file to (``run`` refuses to start).
C602: the process registry is not trusted, or lists processes no scheduler of ours
started (``run`` leaves them alone): someone may be trying to make it signal them.
"""

from __future__ import annotations

import os

from conddsl.rules.codes import severity_of
from conddsl.rules.diagnostics import Diagnostic
from conddsl.rules.taskfile import TaskFileReport
from conddsl.trust import (
    HISTORY_FOLDER_HINT,
    REGISTRY_SUFFIX,
    history_files,
    history_folder_problem,
    untrusted,
)

__all__ = ["check_files"]


def check_files(report: TaskFileReport) -> list[Diagnostic]:
    """C601 and C602 for the history files of a task file that was read."""
    if report.model is None:
        return []
    settings = report.model.scheduler
    # As `conddsl run` names it (runfile.run_task_file).
    history = report.path.resolve().parent / (
        settings.history or f"{report.path.stem}.history.sqlite3"
    )
    where = ("scheduler", "history")  # placed only for a finding
    found = []
    folder_problem = history_folder_problem(history)
    if folder_problem is not None:
        return [_finding(report, "C601", folder_problem, where, HISTORY_FOLDER_HINT)]
    for path in history_files(history):
        why = untrusted(path)
        if why is not None:
            found.append(
                _finding(
                    report,
                    "C601",
                    f"the history is not trusted: {why}",
                    where,
                    "conddsl run refuses it: keep the history where only you can write",
                )
            )
            return found
    registry = f"{history}{REGISTRY_SUFFIX}"
    if not os.path.lexists(registry):
        return found  # as registry_problems says: no registry, nothing wrong with it
    # Reading one takes the runtime's process code (and asyncio): only when there is one.
    from conddsl.runtime.leftovers import registry_problems

    for problem in registry_problems(registry):
        found.append(
            _finding(
                report,
                "C602",
                problem,
                where,
                "conddsl run ignores it; remove the file if you did not expect it",
            )
        )
    return found


def _finding(report: TaskFileReport, code: str, message: str, where, hint: str) -> Diagnostic:
    span = report.span(where)
    return Diagnostic(code, message, report.display, span, severity_of(code), hint)
