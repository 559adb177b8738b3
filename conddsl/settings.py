"""The settings' pydantic types, and the scheduler settings the API and the file share.

The readers of durations, timeouts and timezones live in :mod:`conddsl.setting_values`
(re-exported here), which does not need pydantic. They raise
:class:`~conddsl.errors.SettingValueError`, which names the setting for the API; the
pydantic types (``Duration``, ``Grace``, ``Timeout``, ``Zone``) turn the same facts into
a task file's finding (its key is the finding's location, so the message starts with
"the duration").

:class:`SchedulerSettings` declares once the scheduler settings that the API's
``SchedulerConfig`` and the task file's ``[scheduler]`` table share (name, type, default
and description); each of the two extends it with the settings only it has.
"""

from __future__ import annotations

from datetime import timedelta, tzinfo
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictBool, WithJsonSchema
from pydantic_core import PydanticCustomError

from conddsl.errors import SettingValueError
from conddsl.setting_values import (
    DURATION_HELP,
    EXECUTIONS,
    NEVER,
    NODE_LOST,
    ROLES,
    DefaultExecution,
    Execution,
    NodeLost,
    read_duration,
    read_timeout,
    read_zone,
)

__all__ = [
    "DURATION_HELP",
    "NEVER",
    "DefaultExecution",
    "EXECUTIONS",
    "ROLES",
    "Duration",
    "Execution",
    "NODE_LOST",
    "NodeLost",
    "Grace",
    "SchedulerSettings",
    "Timeout",
    "Zone",
    "read_duration",
    "read_timeout",
    "read_zone",
]

# ---------------------------------------------------------------- the pydantic types
# Task files: the facts of a SettingValueError as a finding (``duration_value``...).


def _finding(error: SettingValueError, kind: str, subject: str) -> PydanticCustomError:
    if error.kind == "type":
        return PydanticCustomError(
            f"{kind}_type", f"expected a {subject}: {DURATION_HELP}", {"hint": None}
        )
    message = error.reason if error.kind == "text" else f"the {subject} {error.reason}"
    return PydanticCustomError(f"{kind}_{error.kind}", message, {"hint": error.hint})


def _file_duration(value: Any, *, allow_zero: bool = False) -> timedelta:
    try:
        return read_duration(value, "duration", allow_zero=allow_zero)
    except SettingValueError as error:
        raise _finding(error, "duration", "duration") from None


def _file_timeout(value: Any) -> timedelta | str:
    if isinstance(value, str) and value.strip().lower() == NEVER:
        return NEVER
    try:
        found = read_timeout(value)
    except SettingValueError as error:
        raise _finding(error, "duration", "duration") from None
    return NEVER if found is None else found


def _file_zone(value: Any) -> str | tzinfo:
    if isinstance(value, tzinfo):  # not in a file: the API's, or a model built in code
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("timezone_type", "timezone must be text like 'Europe/Helsinki'")
    try:
        read_zone(value)
    except SettingValueError as error:
        raise PydanticCustomError("timezone_value", error.reason, {"hint": error.hint}) from None
    return value


def _json_duration(description: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*[0-9.]"},
            ],
            "description": f"{description} ({DURATION_HELP})",
        }
    )


#: A duration longer than zero.
Duration = Annotated[timedelta, PlainValidator(_file_duration), _json_duration("A duration")]
#: A duration of zero or more: how long a terminated run gets before it is killed.
Grace = Annotated[
    timedelta,
    PlainValidator(lambda value: _file_duration(value, allow_zero=True)),
    _json_duration("How long a terminated run gets before it is killed"),
]
#: A duration longer than zero, or ``"never"``.
Timeout = Annotated[
    timedelta | Literal["never"],
    PlainValidator(_file_timeout),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^\s*([0-9.]|never\s*$)"},
            ],
            "description": "How long a run may take before it is terminated "
            f"({DURATION_HELP}), or 'never'",
        }
    ),
]
#: An IANA timezone name (in a file), or a ``tzinfo`` (given in code).
Zone = Annotated[
    str | tzinfo,
    PlainValidator(_file_zone),
    WithJsonSchema({"type": "string", "description": "An IANA timezone such as Europe/Helsinki"}),
]


# ---------------------------------------------------------------- the shared settings


class SchedulerSettings(BaseModel):
    """The scheduler settings the API and the task file share: one declaration of each."""

    # The runtime's SchedulerConfig keeps this lax (the API takes what Python passes);
    # the task file's SchedulerTable adds strict=True (TOML values are typed). A setting
    # whose default or kind differs is declared by each: timeout (the file keeps unset
    # and "never" apart for the checker), shut_cond (the API takes a compiled one),
    # history (a store against a file name).
    # tests/test_settings.py holds that list, so a new shared key comes here.
    model_config = ConfigDict(extra="forbid", frozen=True)

    instant_shutdown: StrictBool = Field(
        False,
        description="On shutdown, terminate running tasks instead of waiting for them",
    )
    kill_grace: Grace = Field(
        timedelta(seconds=5),
        description="Time between terminate and kill for processes (and for threads"
        " abandoned at exit)",
        json_schema_extra={"default": 5},
    )
    max_process_count: int | None = Field(
        None, ge=1, description="At most this many tasks run in processes at once"
    )
    timezone: Zone | None = Field(
        None, description="The zone conditions are evaluated in (default: the system's)"
    )
    execution: DefaultExecution = Field(
        "thread",
        description="How tasks without their own execution are run (coroutine functions: async)",
    )
    silence_cond_check: StrictBool = Field(
        False,
        description="A condition that raises is taken as false instead of stopping the"
        " scheduler (Rocketry's silence_cond_check)",
    )
