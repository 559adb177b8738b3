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
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from conddsl.ast import Reference
from conddsl.errors import CustomConditionError, suggest

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
        # Who to tell that a phrase may have changed: serving schedulers (held weakly).
        self._listeners: list[weakref.WeakMethod[Callable[[str], None]]] = []

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

    def recheck(self, phrase: str) -> None:
        """Custom condition ``phrase`` may have changed: the schedulers serving with this
        registry look again at once at the conditions that use it. Thread-safe."""
        phrase = known_phrase(self, phrase)
        with self._lock:
            listeners = [ref() for ref in self._listeners]
            self._listeners = [ref for ref in self._listeners if ref() is not None]
        for listener in listeners:
            if listener is not None:
                listener(phrase)

    def listen(self, method: Callable[[str], None]) -> None:
        """Call the bound ``method`` with each phrase given to :meth:`recheck` (held weakly)."""
        with self._lock:
            self._listeners.append(weakref.WeakMethod(method))  # type: ignore[arg-type]

    def unlisten(self, method: Callable[[str], None]) -> None:
        """Stop calling ``method``."""
        with self._lock:
            self._listeners = [ref for ref in self._listeners if ref() not in (None, method)]

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


def known_phrase(registry: Any, phrase: str) -> str:
    """``phrase`` with its words joined by one space; ValueError (with the closest phrase)
    if ``registry`` has no such condition."""
    words = " ".join(phrase.split()) if isinstance(phrase, str) else phrase
    if isinstance(words, str) and words in registry:
        return words
    close = suggest(str(words), registry.phrases())
    hint = f"; did you mean {close!r}?" if close else ""
    raise ValueError(f"no custom condition {phrase!r} is registered{hint}")


def _as_timedelta(value: timedelta | float | str) -> timedelta:
    """``recheck`` read as every duration setting is (the same errors and hints)."""
    from conddsl.setting_values import read_duration

    return read_duration(value, "recheck")


#: The registry ``compile_condition`` uses when none is given.
default_registry = ConditionRegistry()


def condition(phrase: str, *, recheck: timedelta | float | str = DEFAULT_RECHECK):
    """Register a custom condition in the default registry (a decorator)."""
    return default_registry.cond(phrase, recheck=recheck)
