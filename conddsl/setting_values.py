"""Setting values read one way everywhere: durations, timeouts, timezones, and the kinds
of execution, role and lost node.

The API (``Scheduler(config)``, ``task(timeout=...)``), task files and custom
conditions' ``recheck=`` all read their values here, so one value is accepted or
refused alike and for the same reason. The readers raise
:class:`~conddsl.errors.SettingValueError`, which names the setting for the API.
This module does not import pydantic (``conddsl.settings`` does, for the task file's
types): a scheduler built from a plain mapping never needs it.
"""

from __future__ import annotations

import math
from datetime import timedelta, tzinfo
from functools import lru_cache
from typing import Literal, get_args

from conddsl.errors import SettingValueError
from conddsl.literals import LiteralError, read_duration_text
from conddsl.timeline.zones import resolve_zone, zone_names_like

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
