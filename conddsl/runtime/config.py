"""The scheduler's settings: a strict pydantic model, and the reader for timeouts and durations."""

from __future__ import annotations

import math
import os
from datetime import timedelta, tzinfo
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)

from conddsl.errors import ConfigError as ConfigError
from conddsl.errors import suggest
from conddsl.history import History, MemoryHistory
from conddsl.literals import LiteralError, read_duration_text
from conddsl.timeline.zones import resolve_zone, zone_names_like

_DURATION_EXAMPLES = "a number of seconds, a duration like '30 minutes', '1h30m' or '01:30:00'"


def parse_duration_setting(value: object, what: str, *, allow_zero: bool = False) -> timedelta:
    """A positive duration from seconds (int/float), text or a timedelta."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be {_DURATION_EXAMPLES}, not {value!r}")
    if isinstance(value, int | float):
        if math.isnan(value) or math.isinf(value):
            raise ConfigError(f"{what} must be a finite number of seconds, not {value!r}")
        value = timedelta(seconds=value)
    elif isinstance(value, str):
        value = _parse_duration_text(value, what)
    if not isinstance(value, timedelta):
        raise ConfigError(f"{what} must be {_DURATION_EXAMPLES}, not {type(value).__name__}")
    if value < timedelta(0) or (value == timedelta(0) and not allow_zero):
        if value == timedelta(0):
            # Rocketry silently falls back to the session timeout here; a zero that
            # terminates every run at once is never what was meant either.
            raise ConfigError(
                f"{what} of 0 would terminate every run as soon as it starts;"
                " give a positive duration, or 'never' for no timeout"
            )
        raise ConfigError(f"{what} must not be negative, got {value.total_seconds():g} seconds")
    return value


def parse_timeout(value: object, what: str = "timeout") -> timedelta | None:
    """A timeout: like :func:`parse_duration_setting`, plus ``"never"`` (None) for no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "never"):
        return None
    return parse_duration_setting(value, what)


def _parse_duration_text(text: str, what: str) -> timedelta:
    try:
        return read_duration_text(text)
    except LiteralError as error:
        raise ConfigError(f"{what} {error.message}: {error.hint}") from None


class SchedulerConfig(BaseModel):
    """Session settings; unknown keys are an error (Rocketry ignores them silently)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    timeout: timedelta | None = Field(default=timedelta(minutes=30), validate_default=False)
    """Default run timeout of terminable tasks; None (or "never") for none."""
    instant_shutdown: StrictBool = False
    """Terminate running tasks as soon as the scheduler shuts down (reason ``shutdown``)."""
    shut_cond: Any = None
    """A condition (text or compiled) that shuts the scheduler down when it becomes true."""
    timezone: str | tzinfo | None = None
    """The zone condition texts are read in; None is the local zone."""
    history: History = Field(default_factory=MemoryHistory)
    """Where runs are recorded: a store, or a file path for a SQLiteHistory."""
    kill_grace: timedelta = timedelta(seconds=5)
    """How long a terminated process (or an abandoned thread at exit) gets before SIGKILL."""
    max_process_count: int | None = Field(default=None, ge=1)
    """At most this many process and command runs at once; None for no limit."""
    execution: Literal["main", "thread", "process"] = "thread"
    """Execution of plain functions without their own; coroutine functions default to async."""
    silence_cond_check: StrictBool = False
    """A condition that raises counts as false (start) or true (end) instead of a fatal error."""
    env: str | None = None
    """The session environment name read by ``env 'x'``."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Session parameters read by ``param 'x' exists`` and ``param 'x' is 'v'``."""

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> timedelta | None:
        return parse_timeout(value, "timeout")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | tzinfo | None) -> str | tzinfo | None:
        if isinstance(value, str) and resolve_zone(value) is None:
            close = zone_names_like(value, 1)
            hint = f"did you mean {close[0]!r}?" if close else "an IANA name like Europe/Helsinki"
            raise ValueError(f"unknown timezone {value!r}; {hint}")
        return value

    @field_validator("history", mode="before")
    @classmethod
    def _history(cls, value: object) -> object:
        if isinstance(value, str | os.PathLike):
            from conddsl.history import SQLiteHistory

            return SQLiteHistory(value)
        return value

    @field_validator("kill_grace", mode="before")
    @classmethod
    def _kill_grace(cls, value: object) -> timedelta:
        return parse_duration_setting(value, "kill_grace", allow_zero=True)

    @classmethod
    def load(cls, config: SchedulerConfig | dict[str, Any] | None) -> SchedulerConfig:
        """Validate a mapping of settings, raising :class:`ConfigError` with readable messages."""
        if isinstance(config, SchedulerConfig):
            return config
        try:
            return cls.model_validate(config or {})
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    known = list(SchedulerConfig.model_fields)
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            close = suggest(key, known)
            hint = f"did you mean {close!r}?" if close else f"known keys: {', '.join(known)}"
            problems.append(f"unknown config key {key!r}; {hint}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(message if message.startswith(key) else f"config {key!r}: {message}")
    return "; ".join(problems)
