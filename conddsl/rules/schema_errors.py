"""Pydantic validation errors as findings at the key or value they are about."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from pydantic import BaseModel, ValidationError

from conddsl.errors import LineIndex, suggest
from conddsl.rules.diagnostics import Diagnostic
from conddsl.rules.models import SchedulerTable, TaskFile, TaskTable
from conddsl.rules.tomlpos import TomlLocations

_EXPECTED = {
    "bool_type": "true or false",
    "string_type": "text in quotes",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "list_type": "a list [...]",
    "model_type": "a table",
    "dict_type": "a table",
}
_KIND_CODES = {"task_kind": "C203", "task_shell": "C203", "task_keys": "C203"}


def schema_diagnostics(
    error: ValidationError, locations: TomlLocations, index: LineIndex, path: str
) -> list[Diagnostic]:
    """One finding per validation error, each at the key or value it is about."""
    found = []
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if part != "[key]")
        kind = item["type"]
        ctx = item.get("ctx") or {}
        hint = ctx.get("hint")
        located, size = locations.nearest(loc)
        if located is None:
            start, end = 0, 0
        elif kind == "extra_forbidden" or "[key]" in item["loc"] or size < len(loc):
            start, end = located.key
        else:
            start, end = located.value
        if kind == "extra_forbidden":
            code = "C201"
            message = f"unknown key {loc[-1]!r}{_in_table(loc[:-1])}"
            hint = _key_hint(str(loc[-1]), loc[:-1])
        elif kind in _KIND_CODES:
            code = _KIND_CODES[kind]
            message = f"task {loc[-1]!r} {item['msg']}"
        else:
            code = "C202"
            message = f"{_label(loc)}: {_describe(kind, item)}"
        found.append(Diagnostic(code, message, path, index.span(start, end), hint=hint))
    return found


def _describe(kind: str, item: dict) -> str:
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_toml_kind(item.get('input'))}"
    if kind == "literal_error":
        return f"expected one of {item['ctx']['expected']}, got {_toml_kind(item.get('input'))}"
    if kind == "greater_than_equal":
        return f"must be at least {item['ctx']['ge']}"
    if kind == "string_too_short":
        return "must not be empty"
    message = str(item["msg"])
    return message[:1].lower() + message[1:]


def _label(loc: tuple) -> str:
    if not loc:
        return "the file"
    if loc[0] == "tasks" and len(loc) == 2:
        return f"task {loc[1]!r}"
    label = ""
    for part in loc[2:] if loc[0] == "tasks" else loc[1:] or loc:
        label += f"[{part}]" if isinstance(part, int) else (f".{part}" if label else str(part))
    return label


def _in_table(loc: tuple) -> str:
    if not loc:
        return ""
    if loc[0] == "tasks" and len(loc) == 2:
        return f" in task {loc[1]!r}"
    if loc == ("scheduler",):
        return " in [scheduler]"
    return ""


def _toml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return "a date or time"
    return type(value).__name__


def _model_at(loc: tuple) -> type[BaseModel] | None:
    if not loc:
        return TaskFile
    if loc == ("scheduler",):
        return SchedulerTable
    if len(loc) == 2 and loc[0] == "tasks":
        return TaskTable
    return None


def _key_hint(key: str, table: tuple) -> str | None:
    model = _model_at(table)
    if model is None:
        return None
    names = list(model.model_fields)
    if model is TaskTable and key in SchedulerTable.model_fields:
        return f"{key!r} belongs in the [scheduler] table"
    if model is SchedulerTable and key in TaskTable.model_fields:
        return f"{key!r} belongs in a [tasks.NAME] table"
    if model is TaskFile and key in TaskTable.model_fields:
        return "task settings go in a [tasks.NAME] table"
    if model is TaskFile and key in SchedulerTable.model_fields:
        return f"{key!r} belongs in the [scheduler] table"
    close = suggest(key, names)
    if not close and len(key) >= 3:  # "start" for start_cond
        close = next((name for name in names if name.startswith(key.lower())), None)
    if close:
        return f"did you mean {close!r}?"
    return f"known keys: {', '.join(names)}"
