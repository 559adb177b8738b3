"""Setting values read one way everywhere: durations, timeouts and timezones.

The API (``Scheduler(config)``, ``task(timeout=...)``), task files, custom conditions'
``recheck=`` all read their values here, so one value is accepted or refused alike and
for the same reason. The readers raise :class:`~conddsl.errors.SettingValueError`,
which names the setting for the API; the pydantic types (``Duration``, ``Grace``,
``Timeout``, ``Zone``) turn the same facts into a task file's finding (its key is the
finding's location, so the message starts with "the duration").

:class:`SchedulerSettings` declares once the scheduler settings that the API's
``SchedulerConfig`` and the task file's ``[scheduler]`` table share (name, type, default
and description); each of the two extends it with the settings only it has.
"""

from __future__ import annotations

import math
from datetime import timedelta, tzinfo
from functools import lru_cache
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictBool, WithJsonSchema
from pydantic_core import PydanticCustomError

from conddsl.errors import SettingValueError
from conddsl.literals import LiteralError, read_duration_text
from conddsl.timeline.zones import resolve_zone, zone_names_like

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

NEVER = "never"
DURATION_HELP = "seconds as a number, or text such as '10 minutes', '1h30m' or '01:30:00'"
_NEVER_HINT = "write 'never' for no timeout"
_ZERO_HINT = f"0 would terminate every run as soon as it starts; {_NEVER_HINT}"
_LONGER_THAN_ZERO = "must be longer than zero"


def read_duration(value: object, what: str, *, allow_zero: bool = False) -> timedelta:
    """A duration from seconds (int/float), duration text (``"1h30m"``) or a timedelta.

    Zero is refused unless ``allow_zero``; a negative, non-finite or too long value
    always is. ``what`` names the setting in the error.
    """
    if isinstance(value, timedelta):
        found = value
    elif isinstance(value, str):
        try:
            found = _duration_text(value)
        except LiteralError as error:
            raise SettingValueError(what, "text", error.message, error.hint) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if math.isnan(value) or math.isinf(value):
            raise SettingValueError(what, "value", "must be a finite number")
        try:
            found = timedelta(seconds=value)
        except OverflowError:
            raise SettingValueError(what, "value", "is too long") from None
    else:
        shown = repr(value) if isinstance(value, bool) else type(value).__name__
        raise SettingValueError(what, "type", f"must be {DURATION_HELP}, not {shown}")
    if found < timedelta(0) or (not allow_zero and not found):
        reason = "must be zero or more" if allow_zero else _LONGER_THAN_ZERO
        raise SettingValueError(what, "value", reason)
    return found


# A task file says "30 minutes" for hundreds of tasks: each text is read once.
_duration_text = lru_cache(maxsize=512)(read_duration_text)


def read_timeout(value: object, what: str = "timeout") -> timedelta | None:
    """A timeout: a duration longer than zero, or ``"never"`` (and None) for no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() == NEVER):
        return None
    try:
        return read_duration(value, what)
    except SettingValueError as error:
        if error.kind != "value":
            raise
        # Zero is how other schedulers spell "no timeout": say what it would do here,
        # and how this one spells it.
        hint = _ZERO_HINT if _is_zero(value) else _NEVER_HINT
        raise SettingValueError(what, "value", error.reason, hint) from None


def _is_zero(value: object) -> bool:
    try:
        return read_duration(value, "", allow_zero=True) == timedelta(0)
    except SettingValueError:
        return False


def read_zone(value: object, what: str = "timezone") -> str | tzinfo:
    """A timezone: an IANA name this machine knows, or a ``tzinfo``."""
    if isinstance(value, tzinfo):
        return value
    if not isinstance(value, str):
        raise SettingValueError(what, "type", "must be text like 'Europe/Helsinki'")
    if resolve_zone(value) is None:
        close = zone_names_like(value, 1)
        hint = f"did you mean {close[0]!r}?" if close else "use an IANA name like Europe/Helsinki"
        raise SettingValueError(what, "value", f"unknown timezone {value!r}", hint)
    return value


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
#: How a task's runs are run.
Execution = Literal["main", "async", "thread", "process"]
EXECUTIONS: tuple[str, ...] = get_args(Execution)
#: How tasks without an execution of their own run; ``async`` is chosen per task (for
#: coroutine functions), so it is no scheduler-wide default.
DefaultExecution = Literal["main", "thread", "process"]
#: On a shared history, what a run lost with its node becomes: "fail" (recorded as
#: crashed: at most once) or "retry" (started again on another node: at least once).
NodeLost = Literal["fail", "retry"]
NODE_LOST: tuple[str, ...] = get_args(NodeLost)
#: A task started by the scheduler itself has one of these roles (the order of messages).
ROLES = ("on_startup", "permanent", "on_shutdown")


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
