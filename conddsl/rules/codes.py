"""Every code ``conddsl check`` can report, with its severity and a one-line summary.

Syntax errors in conditions keep the ``E1xx`` code of their
:class:`~conddsl.errors.ConditionSyntaxError`, and so do the errors ``compile_condition``
raises about names (E120 a name that is not defined, E121 names that refer to each other
in a cycle, E122 a custom condition given the wrong number of arguments, E123 names
nested too deep once written out). The ``C`` codes are the checker's.
"""

from __future__ import annotations

from conddsl.rules.diagnostics import Severity

CODES: dict[str, tuple[Severity, str]] = {
    # files
    "C101": ("error", "the TOML file does not parse"),
    "C102": ("error", "not a text file (not UTF-8, or binary)"),
    "C103": ("error", "a line of a .cond file that is not 'name = condition' nor a continuation"),
    "C104": ("error", "a rule name that cannot be used (not an identifier, or a keyword)"),
    "C105": ("error", "a named condition defined twice"),
    "C106": ("error", "a task defined twice"),
    # schema
    "C201": ("error", "an unknown key"),
    "C202": ("error", "a value of the wrong type or out of range"),
    "C203": ("error", "a task's keys do not go together (func or command, shell, roles ...)"),
    "C204": ("error", "a rules file that cannot be read"),
    # references
    "C301": ("error", "a task-state condition names a task the file does not define"),
    "C302": ("error", "tasks wait on each other ('after task' in a cycle): none of them can start"),
    "C303": ("error", "a shut_cond about its own task (daily, every, cron, has ...): it has none"),
    # time
    "C401": ("error", "a start condition that can never be true"),
    "C402": ("error", "an end condition that is always true"),
    "C403": ("error", "the end condition is already true whenever the task can start"),
    "C404": ("warning", "a timeout longer than the task's own period"),
    "C405": ("warning", "a timeout or end condition on a task run in the main thread"),
    "C406": ("warning", "a window of a start condition that is the whole cycle"),
    "C407": ("warning", "a cron line whose day fields AND because one starts with '*'"),
    "C408": ("warning", "a thread task that must be stoppable but takes no TerminationFlag"),
    "C409": ("warning", "a task that never starts by itself (no start_cond, after a disabled one)"),
    # imports
    "C501": ("error", "a func that does not import (with --import-funcs)"),
    # files found beside the history (the trust rule)
    "C601": ("error", "a history or journal another user could have written or created"),
    "C602": ("warning", "a process registry that is not trusted or names foreign processes"),
}

# Condition syntax codes, reported as errors (see docs/language.md).
SYNTAX_CODES = (
    *("E100", "E101", "E102", "E103", "E104", "E105", "E106"),
    *("E110", "E111", "E112", "E113", "E120", "E121", "E122", "E123"),
)


def severity_of(code: str) -> Severity:
    """The severity a code is reported with."""
    return CODES.get(code, ("error", ""))[0]
