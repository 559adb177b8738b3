"""The scheduler's settings: what ``Scheduler(config)`` accepts, as its pydantic model says.

The rule book is the model in :mod:`conddsl.runtime.config_model`. Pydantic and the
model cost a process about 10 MiB of RSS, more than 10,000 waiting tasks, so a mapping
of plain values (a bool, a duration as a number, text or timedelta, a zone name, a
store...) is read here with the same readers the model's validators call, and gives the
same values. Anything else, and every value to refuse, goes to the model, so what is
accepted and every message stay the model's (``tests/test_runtime_config.py`` holds the
two paths to the same answers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta, tzinfo
from typing import TYPE_CHECKING, Any, get_args

from conddsl.errors import ConfigError as ConfigError
from conddsl.errors import SettingValueError, suggest
from conddsl.history import History, MemoryHistory
from conddsl.setting_values import DefaultExecution, read_duration, read_timeout, read_zone

if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic.fields import FieldInfo

#: The settings, in the model's order (a test holds them equal).
FIELDS = (
    "instant_shutdown",
    "kill_grace",
    "max_process_count",
    "timezone",
    "execution",
    "silence_cond_check",
    "timeout",
    "shut_cond",
    "history",
    "env",
    "params",
)


def _model() -> Any:
    from conddsl.runtime import config_model

    return config_model.SchedulerConfigModel


class _Fields(type):
    """Gives the class the model's ``model_fields`` and other ``model_*`` class
    attributes (``model_json_schema``...), loading the model when asked."""

    @property
    def model_fields(cls) -> dict[str, FieldInfo]:
        """The model's fields: name, default, description."""
        return _model().model_fields

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("model_"):
            return getattr(_model(), name)
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")


class SchedulerConfig(metaclass=_Fields):
    """Session settings, validated and frozen; unknown keys are an error (Rocketry ignores
    them silently). ``SchedulerConfig(**values)`` validates as the model does (and raises
    its ``ValidationError``); :meth:`load` raises :class:`ConfigError`."""

    __slots__ = FIELDS

    instant_shutdown: bool
    kill_grace: timedelta
    max_process_count: int | None
    timezone: str | tzinfo | None
    execution: str
    silence_cond_check: bool
    timeout: timedelta | None
    shut_cond: Any
    history: History
    env: str | None
    params: dict[str, Any]

    def __init__(self, **values: Any) -> None:
        model = _model()(**values)
        for name in FIELDS:
            object.__setattr__(self, name, getattr(model, name))

    @classmethod
    def load(cls, config: SchedulerConfig | Mapping[str, Any] | None) -> SchedulerConfig:
        """Validate a mapping of settings, raising :class:`ConfigError` with readable messages."""
        if isinstance(config, SchedulerConfig):
            return config
        values = _plain(config)
        if values is None:
            from pydantic import ValidationError

            try:
                model = _model().model_validate(config or {})
            except ValidationError as exc:
                raise ConfigError(_describe(exc)) from None
            values = {name: getattr(model, name) for name in FIELDS}
        made = object.__new__(cls)
        for name in FIELDS:
            object.__setattr__(made, name, values[name])
        return made

    def _as_model(self) -> Any:
        return _model().model_construct(**{name: getattr(self, name) for name in FIELDS})

    def __setattr__(self, name: str, value: Any) -> None:
        self._as_model().__setattr__(name, value)  # frozen: raises the model's error

    def __getattr__(self, name: str) -> Any:
        # model_dump, model_copy... answer as the model would.
        if name.startswith("model_"):
            return getattr(self._as_model(), name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __reduce__(self) -> tuple[Callable[..., SchedulerConfig], tuple[Any, ...]]:
        return _restore, tuple(getattr(self, name) for name in FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SchedulerConfig):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in FIELDS)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, name) for name in FIELDS))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS)
        return f"SchedulerConfig({shown})"


def _restore(*values: Any) -> SchedulerConfig:
    made = object.__new__(SchedulerConfig)
    for name, value in zip(FIELDS, values, strict=True):
        object.__setattr__(made, name, value)
    return made


# ---------------------------------------------------------------- plain values


class _NotPlain(Exception):
    """A value for the model to judge."""


def _bool(value: object) -> bool:
    if type(value) is not bool:
        raise _NotPlain
    return value


def _grace(value: object) -> timedelta:
    return read_duration(value, "kill_grace", allow_zero=True)


def _count(value: object) -> int | None:
    if value is None or (type(value) is int and value >= 1):
        return value
    raise _NotPlain


def _zone(value: object) -> str | tzinfo | None:
    if value is None or isinstance(value, tzinfo) or type(value) is str:
        return None if value is None else read_zone(value)
    raise _NotPlain


_DEFAULT_EXECUTIONS = get_args(DefaultExecution)


def _execution(value: object) -> str:
    if type(value) is str and value in _DEFAULT_EXECUTIONS:
        return value
    raise _NotPlain


def _history(value: object) -> History:
    if isinstance(value, History):
        return value
    raise _NotPlain  # a file name: the model opens the store


def _text(value: object) -> str | None:
    if value is None or type(value) is str:
        return value
    raise _NotPlain


def _params(value: object) -> dict[str, Any]:
    if type(value) is dict and all(type(key) is str for key in value):
        return dict(value)  # the model's copy
    raise _NotPlain


_READERS: dict[str, Callable[[Any], Any]] = {
    "instant_shutdown": _bool,
    "kill_grace": _grace,
    "max_process_count": _count,
    "timezone": _zone,
    "execution": _execution,
    "silence_cond_check": _bool,
    "timeout": lambda value: read_timeout(value, "timeout"),
    "shut_cond": lambda value: value,
    "history": _history,
    "env": _text,
    "params": _params,
}


def _default(name: str) -> Any:
    if name == "history":
        return MemoryHistory()  # one store per scheduler
    if name == "params":
        return {}
    return _DEFAULTS[name]


_DEFAULTS: dict[str, Any] = {
    "instant_shutdown": False,
    "kill_grace": timedelta(seconds=5),
    "max_process_count": None,
    "timezone": None,
    "execution": "thread",
    "silence_cond_check": False,
    "timeout": timedelta(minutes=30),
    "shut_cond": None,
    "env": None,
}


def _plain(config: object) -> dict[str, Any] | None:
    """The settings of a dict of plain values, as the model gives them; None for the
    model to read (another kind of value, an unknown key, a value to refuse)."""
    if config is None:
        config = {}
    if type(config) is not dict:
        return None
    values = {}
    for name, value in config.items():
        reader = _READERS.get(name)
        if reader is None:
            return None
        try:
            values[name] = reader(value)
        except (_NotPlain, SettingValueError):
            return None
    return {name: values[name] if name in values else _default(name) for name in FIELDS}


def _describe(exc: ValidationError) -> str:
    # Sorted: the declaration order (shared settings first) means nothing to a reader.
    known = sorted(FIELDS)
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
