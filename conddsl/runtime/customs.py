"""Conditions as one scheduler compiles them: names resolved from its own custom conditions
and rules, and custom parts called only while they can decide the value.

A scheduler has a :class:`~conddsl.custom.ConditionRegistry` of its own (``app.cond``).
Names in its conditions are looked up in the condition's own registry (when it was
compiled with one), then the scheduler's, then the default registry; named rules come
from the condition's own ``rules``, then the scheduler's ``rules=``.

A custom condition is a Python call the time engine cannot see into. The scheduler
wraps a condition with custom parts in a :class:`GatedCondition`, which reads it
through :mod:`conddsl.bounds` compiled (``Condition.custom_cases``): the *over* bound (true
wherever the condition may be true), the *under* bound (true only where it surely is)
and the cases (the condition under each value of its custom parts):

- when the over bound is false the condition is false, and when the under bound is
  true it is true, without calling any custom function;
- the value can change only where a case changes, or where a custom part changes
  while the bounds differ: then the condition is looked at again ``recheck`` later
  (the smallest ``recheck`` of its custom parts); ``next_change`` is ``Condition``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any

from conddsl import ast
from conddsl.bounds import BoundsAnalysis
from conddsl.compile import Condition, parse_fresh, text_cache
from conddsl.custom import ConditionRegistry, CustomCondition, default_registry
from conddsl.parse import parse


class RegistryChain:
    """Several registries looked up in order: the first that has a phrase answers."""

    def __init__(self, registries: Iterable[Any]) -> None:
        found: list[Any] = []
        for registry in registries:
            if registry is not None and all(registry is not seen for seen in found):
                found.append(registry)
        self.registries = tuple(found)

    def get(self, phrase: str) -> CustomCondition | None:
        """The condition registered under ``phrase`` in the first registry that has one."""
        for registry in self.registries:
            entry = registry.get(phrase)
            if entry is not None:
                return entry
        return None

    def phrases(self) -> list[str]:
        """Every phrase of every registry."""
        return sorted({phrase for registry in self.registries for phrase in registry.phrases()})

    def __contains__(self, phrase: str) -> bool:
        return self.get(phrase) is not None


class GatedCondition(Condition):
    """A condition with custom parts, called only when the rest of it leaves the value open."""

    __slots__ = ("customs", "_decided")

    def __init__(
        self,
        node: ast.Node,
        *,
        timezone: str | tzinfo | None,
        rules: Mapping[str, ast.Node],
        registry: Any,
        text: str | None = None,
    ) -> None:
        super().__init__(node, timezone=timezone, rules=rules, registry=registry, text=text)
        # Built now, not at the first wake-up: the scheduler registers it once.
        #: The phrases of its custom parts (``recheck(phrase)`` finds it by them).
        self.customs = frozenset(self.custom_cases.customs)
        self._decided = self.custom_cases.decided  # is_true is hot: no property on the way

    @property
    def recheck(self) -> timedelta:
        """How soon the condition is looked at again while its custom parts decide it."""
        recheck = self.custom_cases.recheck
        assert recheck is not None  # it has custom parts
        return recheck

    def is_true(self, at: datetime, *, task: str | None = None, history=None, session=None) -> bool:
        """The value at ``at``; the custom functions are called only if the bounds differ."""
        decided = self._decided(at, task, history, session)
        if decided is not None:
            return decided
        return super().is_true(at, task=task, history=history, session=session)


def _references(node: ast.Node) -> bool:
    return any(isinstance(item, ast.Reference) for item in ast.walk(node))


def _has_custom(node: ast.Node, rules: Mapping[str, ast.Node]) -> bool:
    return bool(BoundsAnalysis(rules).customs(node))


class SchedulerConditions:
    """Compiles a scheduler's condition settings with its zone, registry and rules."""

    def __init__(
        self,
        timezone: str | tzinfo | None,
        registry: ConditionRegistry,
        rules: Mapping[str, ast.Node],
    ) -> None:
        self.timezone = timezone
        self.registry = registry
        self.rules = rules
        # Texts that name conditions, parsed once each (many tasks often share one); the
        # others are found in the compile cache.
        self._named: dict[str, ast.Node] = {}

    def compile(self, value: object) -> object:
        """Text compiled here; a Condition with names compiled again here; others as they are."""
        if isinstance(value, str):
            zone = self.timezone
            cacheable = zone is None or isinstance(zone, str)
            found = text_cache.get(value, zone) if cacheable else None
            if found is not None:
                return found  # compiled before: it names no condition
            node = self._named.get(value)
            if node is None:
                # Parsed once, outside parse's cache: the condition keeps what it needs.
                node = parse_fresh(value)
                if not _references(node):
                    if cacheable:
                        return text_cache.compile(value, zone, node)
                    return Condition(node, timezone=zone, text=value)
                self._named[value] = node
            chain = RegistryChain((self.registry, default_registry))
            return self._build(node, self.timezone, dict(self.rules), chain, value)
        if isinstance(value, Condition) and _references(value.ast):
            if not value.lenient and not _has_custom(value.ast, value.rules):
                return value  # every name is one of its own rules: nothing to resolve
            own = None if value.registry is default_registry else value.registry
            chain = RegistryChain((own, self.registry, default_registry))
            rules = {**self.rules, **value.rules}  # the condition's own rules come first
            return self._build(value.ast, value.zone, rules, chain, None)
        return value

    @staticmethod
    def _build(node, timezone, rules, registry, text):
        kind = GatedCondition if _has_custom(node, rules) else Condition
        return kind(node, timezone=timezone, rules=rules, registry=registry, text=text)


def parse_rules(rules: Mapping[str, ast.Node | str] | None) -> dict[str, ast.Node]:
    """Named conditions for a scheduler: nodes (``load_rules``) or condition text."""
    found: dict[str, ast.Node] = {}
    for name, value in (rules or {}).items():
        key = " ".join(str(name).split())
        if isinstance(value, str):
            found[key] = parse(value)
        elif isinstance(value, Condition):
            found[key] = value.ast
        elif isinstance(value, ast.Node):
            found[key] = value
        else:
            raise TypeError(f"rule {name!r} must be condition text or a node, not {value!r}")
    return found
