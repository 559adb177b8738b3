"""The TOML task file as pydantic models: ``[scheduler]`` and ``[tasks.NAME]`` tables.

Unknown keys are errors (``extra="forbid"``); ``conddsl schema`` prints the JSON Schema
of :class:`TaskFile` for editors. Condition strings are kept as text here: the loader
parses them, so that their errors get a position in the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from conddsl import ast
from conddsl.compile import Condition, compile_condition
from conddsl.settings import (
    NEVER,
    ROLES,
    DefaultExecution,
    Duration,
    Execution,
    NodeLost,
    SchedulerSettings,
    Timeout,
)

__all__ = [
    "NEVER",
    "DefaultExecution",
    "Execution",
    "SchedulerTable",
    "TaskTable",
    "TaskFile",
]


_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_FUNC = re.compile(rf"{_DOTTED}:{_DOTTED}")


def _func(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("func_type", "func must be text: 'package.module:callable'")
    if not _FUNC.fullmatch(value):
        hint = None
        if ":" not in value and "." in value:
            module, _, name = value.rpartition(".")
            hint = f"write {module}:{name}"
        raise PydanticCustomError(
            "func_value",
            f"{value!r} is not 'package.module:callable'",
            {"hint": hint},
        )
    return value


def _command(value: Any) -> list[str] | str:
    if isinstance(value, str) and value.strip():
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(item, str) for item in value)
        and value[0].strip()
    ):
        return value
    raise PydanticCustomError(
        "command_value",
        "command must be a non-empty list of strings (the program and its arguments)",
        {"hint": 'for example command = ["rsync", "-a", "src/", "dst/"]'},
    )


Func = Annotated[
    str,
    PlainValidator(_func),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^{_DOTTED}:{_DOTTED}$",
            "description": "The Python callable to run: 'package.module:callable'",
        }
    ),
]
Command = Annotated[
    list[str] | str,
    PlainValidator(_command),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
                {"type": "string", "minLength": 1},
            ],
            "description": "The program and its arguments; one string only with shell = true",
        }
    ),
]
ConditionString = Annotated[
    str,
    Field(
        description="A condition in the conddsl language, e.g. 'daily after 22:00'",
        json_schema_extra={"minLength": 1},
    ),
]


class _Model(BaseModel):
    # TOML values are typed: no coercion of "yes" to true or 1.0 to 1.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SchedulerTable(SchedulerSettings):
    """The ``[scheduler]`` table: settings for the whole file."""

    # (The docstring is the schema's description.) The settings shared with the API's
    # SchedulerConfig are SchedulerSettings'; here are those whose kind or default
    # differs in a file (unset stays None, so the checker can tell it from a value) and
    # those only a file has.
    model_config = ConfigDict(title="scheduler", strict=True)

    timeout: Timeout | None = Field(
        None, description="Default timeout of every task (default: 30 minutes)"
    )
    shut_cond: ConditionString | None = Field(None, description="Shut the scheduler down when true")
    history: str | None = Field(
        None,
        description="The SQLite run-history file, relative to this task file, or a"
        " postgresql:// connection string shared by several schedulers (also the environment"
        " variable CONDDSL_HISTORY, which wins)",
    )
    node: str | None = Field(
        None,
        min_length=1,
        description="This scheduler's name on a shared history (default: hostname:pid)",
    )
    lease: Duration | None = Field(
        None,
        description="On a shared history, how long a node counts as alive after its last"
        " renewal (default: 10 seconds)",
        json_schema_extra={"default": 10},
    )
    rules: list[str] = Field(
        default_factory=list,
        description="Files of named conditions (.cond), relative to this task file, in order",
    )
    keep: Duration | None = Field(
        None,
        description="Delete history records older than this while serving ('90 days');"
        " a run still going keeps its records (default: keep everything)",
    )


class TaskTable(_Model):
    """A ``[tasks.NAME]`` table: what to run, and when it starts and stops."""

    model_config = ConfigDict(title="task")

    func: Func | None = None
    command: Command | None = None
    shell: bool = Field(False, description="Run command through the shell (command tasks only)")
    execution: Execution | None = Field(
        None, description="How the task is run (default: the [scheduler] execution)"
    )
    start_cond: ConditionString | None = Field(
        None, description="Start the task when true (default: never by itself)"
    )
    end_cond: ConditionString | None = Field(None, description="Terminate a run when true")
    timeout: Timeout | None = Field(
        None, description="Terminate a run after this long (default: the [scheduler] timeout)"
    )
    multilaunch: bool = Field(False, description="Allow several runs at the same time")
    on_node_lost: NodeLost = Field(
        "fail",
        description="On a shared history, a run whose node is lost: recorded as crashed"
        " ('fail': at most once) or started again on another node ('retry': at least once)",
    )
    disabled: bool = Field(False, description="Never start the task")
    on_startup: bool = Field(
        False, description="Run once when the scheduler starts, before anything else"
    )
    permanent: bool = Field(
        False,
        description="Start once after the startup tasks, never time out, end at shutdown",
    )
    on_shutdown: bool = Field(False, description="Run once when the scheduler shuts down")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments func is called with"
    )
    cwd: str | None = Field(
        None,
        description="The folder a command runs in, relative to this task file"
        " (default: the task file's folder)",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables of a command, added to those conddsl run has",
    )

    @property
    def role(self) -> str | None:
        """``on_startup``, ``permanent`` or ``on_shutdown`` when one is set."""
        for role in ROLES:
            if getattr(self, role):
                return role
        return None

    @model_validator(mode="after")
    def _one_kind(self) -> TaskTable:
        if (self.func is None) == (self.command is None):
            both = self.func is not None
            raise PydanticCustomError(
                "task_kind",
                "has both func and command" if both else "needs func or command",
                {"hint": "give exactly one of func = 'package.module:callable' or command = [...]"},
            )
        if self.shell and self.command is None:
            raise PydanticCustomError(
                "task_shell", "has shell = true, which is for command tasks only", {"hint": None}
            )
        if isinstance(self.command, str) and not self.shell:
            raise PydanticCustomError(
                "task_shell",
                "has a command given as one string, which needs shell = true",
                {"hint": 'split it into a list: command = ["program", "arg"]'},
            )
        self._check_keys()
        return self

    def _check_keys(self) -> None:
        """Keys that belong to one kind of task, and the roles' rules."""
        if self.params and self.func is None:
            raise _keys("has params, which are keyword arguments for func", "drop params")
        for key in ("cwd", "env"):
            if getattr(self, key) and self.command is None:
                raise _keys(f"has {key}, which is for command tasks only", f"drop {key}")
        roles = [role for role in ROLES if getattr(self, role)]
        if len(roles) > 1:
            raise _keys(f"has two roles ({' and '.join(roles)})", "keep one of them")
        if not roles:
            return
        role = roles[0]
        started = "the scheduler starts it" if role != "on_shutdown" else "it runs at shutdown"
        for key, given in (
            ("start_cond", self.start_cond is not None),
            ("end_cond", self.end_cond is not None),
            ("multilaunch", self.multilaunch),
        ):
            if given:
                raise _keys(f"is {role}: {started}, so it takes no {key}", f"drop {key}")
        if role == "permanent" and self.timeout is not None:
            raise _keys("is permanent: it is never timed out (it ends at shutdown)", "drop timeout")
        if role == "permanent" and self.execution == "main":
            raise _keys(
                "is permanent and would hold the scheduler for ever in the main execution",
                'use execution = "thread", "async" or "process"',
            )


def _keys(message: str, hint: str) -> PydanticCustomError:
    return PydanticCustomError("task_keys", message, {"hint": hint})


class TaskFile(_Model):
    """A whole task file: the ``[scheduler]`` table and the ``[tasks.NAME]`` tables."""

    model_config = ConfigDict(
        title="conddsl task file",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    scheduler: SchedulerTable = Field(default_factory=SchedulerTable)
    tasks: dict[Annotated[str, StringConstraints(min_length=1)], TaskTable] = Field(
        default_factory=dict, description="The tasks, by name"
    )

    _path: Path | None = PrivateAttr(None)
    _rules: dict[str, ast.Node] = PrivateAttr(default_factory=dict)

    @property
    def path(self) -> Path | None:
        """The file this was read from (None when built in code)."""
        return self._path

    @property
    def rules(self) -> dict[str, ast.Node]:
        """The named conditions of every rules file, for ``compile_condition(rules=…)``."""
        return self._rules

    @property
    def rule_paths(self) -> list[Path]:
        """The rules files, resolved against the task file's folder."""
        return [self._base / name for name in self.scheduler.rules]

    @property
    def history_path(self) -> Path | None:
        """The history file, resolved against the task file's folder (None: in memory)."""
        return None if self.scheduler.history is None else self._base / self.scheduler.history

    @property
    def _base(self) -> Path:
        return self._path.parent if self._path is not None else Path()

    def condition(self, text: str) -> Condition:
        """Compile a condition of this file with its rules and its timezone."""
        return compile_condition(text, rules=self._rules, timezone=self.scheduler.timezone)
