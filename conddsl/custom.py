"""Custom conditions: Python callables registered under a phrase, usable in any expression.

A phrase is one or more words (``holiday``, ``file exists``); in an expression it may
be followed by quoted arguments, which are passed to the callable as strings:
``daily after 08:00 & ~ holiday``, ``file exists '/data/x.csv'``.

The time engine cannot see inside a callable, so a custom condition "may change at
any time": ``next_change`` answers with the next instant it must be checked again,
``recheck`` after now, but only while its value matters to the whole condition.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from conddsl.ast import Reference
from conddsl.errors import CustomConditionError

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_RECHECK = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class CustomCondition:
    """A registered callable: its phrase, how many arguments it takes, how often to recheck."""

    phrase: str
    func: Callable[..., object]
    arity: int
    recheck: timedelta
    wants_at: bool

    def __call__(self, args: tuple[str, ...], at) -> bool:
        try:
            result = self.func(*args, at=at) if self.wants_at else self.func(*args)
        except Exception as error:  # reported with its name, handled by the caller
            raise CustomConditionError(self.phrase, error) from error
        return bool(result)


class ConditionRegistry:
    """Named custom conditions; thread-safe; usable with or without a scheduler."""

    def __init__(self) -> None:
        self._by_phrase: dict[str, CustomCondition] = {}
        self._lock = threading.Lock()

    def register(
        self,
        phrase: str,
        func: Callable[..., object],
        *,
        recheck: timedelta | float | str = DEFAULT_RECHECK,
    ) -> CustomCondition:
        """Register ``func`` under ``phrase``; its positional parameters are the arguments."""
        words = phrase.split()
        if not words or not all(_WORD.fullmatch(word) for word in words):
            raise ValueError(
                f"a condition phrase is one or more words of letters, digits and _: {phrase!r}"
            )
        from conddsl.parse import parse  # lark loads at the first registration, not on import

        try:
            parsed = parse(" ".join(words))
        except ValueError:
            parsed = None
        if not isinstance(parsed, Reference) or parsed.words != tuple(words):
            raise ValueError(f"{phrase!r} collides with a keyword of the language")
        arity, wants_at = _signature(func)
        entry = CustomCondition(" ".join(words), func, arity, _as_timedelta(recheck), wants_at)
        with self._lock:
            self._by_phrase[entry.phrase] = entry
        return entry

    def cond(self, phrase: str, *, recheck: timedelta | float | str = DEFAULT_RECHECK):
        """Decorator form of :meth:`register`."""

        def decorate(func):
            self.register(phrase, func, recheck=recheck)
            return func

        return decorate

    def unregister(self, phrase: str) -> None:
        """Forget a phrase."""
        with self._lock:
            self._by_phrase.pop(" ".join(phrase.split()), None)

    def get(self, phrase: str) -> CustomCondition | None:
        """The condition registered under ``phrase``, if any."""
        return self._by_phrase.get(phrase)

    def phrases(self) -> list[str]:
        """Every registered phrase."""
        return sorted(self._by_phrase)

    def __contains__(self, phrase: str) -> bool:
        return phrase in self._by_phrase


def _signature(func: Callable[..., object]) -> tuple[int, bool]:
    """How many string arguments ``func`` takes, and whether it wants ``at=``."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 0, False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    wants_at = any(p.name == "at" and p.kind != p.VAR_KEYWORD for p in parameters)
    return len([p for p in positional if p.name != "at"]), wants_at


def _as_timedelta(value: timedelta | float | str) -> timedelta:
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float):
        result = timedelta(seconds=value)
    else:
        from conddsl.literals import parse_duration

        result = parse_duration(value, 0)
    if result <= timedelta(0):
        raise ValueError("recheck must be longer than zero")
    return result


#: The registry ``compile_condition`` uses when none is given.
default_registry = ConditionRegistry()


def condition(phrase: str, *, recheck: timedelta | float | str = DEFAULT_RECHECK):
    """Register a custom condition in the default registry (a decorator)."""
    return default_registry.cond(phrase, recheck=recheck)
