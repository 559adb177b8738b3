"""The pydantic model of what ``Scheduler(config)`` accepts: the rule book of
:mod:`conddsl.runtime.config`, loaded when a config is more than plain values, when one
is refused (its messages are this model's), and for its fields and schema."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from conddsl.errors import SettingValueError
from conddsl.history import History, MemoryHistory
from conddsl.settings import (
    SchedulerSettings,
    read_duration,
    read_timeout,
    read_zone,
)


class SchedulerConfigModel(SchedulerSettings):
    """Session settings; unknown keys are an error (Rocketry ignores them silently).

    Titled as the public :class:`conddsl.runtime.config.SchedulerConfig` is named, so
    that a ``ValidationError`` of ``SchedulerConfig(**values)`` reads as it always did."""

    model_config = ConfigDict(arbitrary_types_allowed=True, title="SchedulerConfig")

    # instant_shutdown, kill_grace, max_process_count, timezone, execution and
    # silence_cond_check come from SchedulerSettings, shared with the task file. Here:
    # what only the API has, and what it holds in another kind (a store, a compiled
    # condition, the 30-minute default where the file keeps "unset").

    timeout: timedelta | None = Field(default=timedelta(minutes=30), validate_default=False)
    """Default run timeout of terminable tasks; None (or "never") for none."""
    shut_cond: Any = None
    """A condition (text or compiled) that shuts the scheduler down when it becomes true."""
    history: History = Field(default_factory=MemoryHistory)
    """Where runs are recorded: a store, or a file path for a SQLiteHistory."""
    env: str | None = None
    """The session environment name read by ``env 'x'``."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Session parameters read by ``param 'x' exists`` and ``param 'x' is 'v'``."""

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> timedelta | None:
        return read_timeout(value, "timeout")

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone(cls, value: object) -> object:
        # The API's message carries the hint (the file's puts it on its own line).
        if isinstance(value, str):
            try:
                return read_zone(value)
            except SettingValueError as error:
                raise ValueError(f"{error.reason}; {error.hint}") from None
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
        # Read first by the API's reader, so that its error names the setting
        # ("kill_grace must be zero or more") as the other keys' errors do.
        return read_duration(value, "kill_grace", allow_zero=True)
