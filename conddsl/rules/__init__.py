"""Rule files (``.cond``) and TOML task files: reading, validating, positioned findings.

- :func:`load_rules` reads named conditions for ``compile_condition(text, rules=…)``;
- :func:`load_task_file` reads a task file into :class:`TaskFile` models for the runtime;
- both raise an error carrying every :class:`Diagnostic`, each at its line and column.
"""

from __future__ import annotations

from conddsl.rules.condfile import load_rules, read_rule_file
from conddsl.rules.diagnostics import (
    Diagnostic,
    FileCheckError,
    RuleFileError,
    TaskFileError,
)
from conddsl.rules.models import SchedulerTable, TaskFile, TaskTable
from conddsl.rules.taskfile import load_task_file, read_task_file

__all__ = [
    "Diagnostic",
    "FileCheckError",
    "RuleFileError",
    "SchedulerTable",
    "TaskTable",
    "TaskFile",
    "TaskFileError",
    "load_rules",
    "load_task_file",
    "read_rule_file",
    "read_task_file",
]
