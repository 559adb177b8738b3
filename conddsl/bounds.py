"""Bounds of a condition with parts that cannot be known ahead: what it can be, truest and falsest.

Some parts of a condition cannot be evaluated where it is analysed: a custom condition
is a Python call the time engine cannot see into, and for ``conddsl check`` the run
history and the session are unknown too. :class:`BoundsAnalysis` reads each distinct
unknown part as one variable (the same part met twice has one value at one instant)
and builds conditions without them:

- the *cases*: the condition under each assignment of values to its unknown parts;
- ``over``: true wherever the condition *may* be true, the ``|`` of the cases;
- ``under``: true only where it *surely* is, the ``&`` of the cases.

A part read only one way (never, or always, under a ``~``) needs no enumeration: the
condition is monotone in it, so ``over`` takes the value that makes the whole truest
(``true`` where it is not negated, ``false`` under a ``~``) and ``under`` the other.
Only the parts read both ways, as ``x`` in ``(a & x) | (~a & ~x)``, are enumerated.

Enumerating costs ``2 ** n`` passes and, for ``next_change``, as many compiled cases
each searched at every call, so it stops at :data:`EXACT_LIMIT` parts. Beyond it the
analysis falls back to the polarity bounds above for every part (sound, less precise:
``a | ~a`` instead of ``true``), and the cases are just ``over`` and ``under``.

The users: ``Condition.next_change`` with custom parts (:mod:`conddsl.compile`) finds
the first change of any case (:class:`CustomCases`, the cases compiled); the scheduler's
:class:`~conddsl.runtime.customs.GatedCondition` calls custom functions only while
``over`` and ``under`` differ; the checker claims "never true" only when ``over`` has
no window (:mod:`conddsl.lint.clock`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from conddsl import ast
from conddsl.resolve import Resolver
from conddsl.visitor import ConditionVisitor

__all__ = [
    "EXACT_LIMIT",
    "FALSE",
    "TRUE",
    "Bounds",
    "BoundsAnalysis",
    "CustomCases",
    "Evaluable",
    "Part",
    "Readings",
    "conjunction",
    "disjunction",
    "negation",
]

TRUE = ast.Constant(True)
FALSE = ast.Constant(False)
#: ``(over, under)``: see the module doc.
Bounds = tuple[ast.Node, ast.Node]
#: Up to this many distinct unknown parts the analysis tries every assignment of their
#: values (16 cases); beyond it, the polarity bounds (see the module doc).
EXACT_LIMIT = 4

# How an unknown part is read: not negated, negated, or both in places.
_POSITIVE, _NEGATIVE = 1, 2
_BOTH = _POSITIVE | _NEGATIVE
_NO_UNKNOWNS: Mapping[Hashable, int] = {}


def _fold(items: Iterable[ast.Node], zero: bool, node_type) -> ast.Node:
    kept = []
    for item in items:
        # A type check, not ``==``: comparing trees field by field is slow.
        if type(item) is not ast.Constant:
            kept.append(item)
        elif item.value is zero:
            return item
    if not kept:
        return ast.Constant(not zero)
    return kept[0] if len(kept) == 1 else node_type(tuple(kept))


def conjunction(items: Iterable[ast.Node]) -> ast.Node:
    """``&`` of the items with constants folded away."""
    return _fold(items, False, ast.All)


def disjunction(items: Iterable[ast.Node]) -> ast.Node:
    """``|`` of the items with constants folded away."""
    return _fold(items, True, ast.Any)


def negation(item: ast.Node) -> ast.Node:
    """``~`` of the item, folding constants and double negation."""
    if isinstance(item, ast.Constant):
        return ast.Constant(not item.value)
    if isinstance(item, ast.Not):
        return item.item
    return ast.Not(item)


def _zoned(node: ast.Node, zone: str) -> ast.Node:
    return node if isinstance(node, ast.Constant) else ast.Zoned(node, zone)


def _distinct(nodes: Iterable[ast.Node]) -> tuple[ast.Node, ...]:
    return tuple(dict.fromkeys(nodes))


class Part(NamedTuple):
    """One subtree analysed: its bounds and its unknown parts with how they are read."""

    over: ast.Node
    under: ast.Node
    unknowns: Mapping[Hashable, int]


def _merged(parts: list[Part]) -> Mapping[Hashable, int]:
    found: dict[Hashable, int] = {}
    for part in parts:
        if part.unknowns is not _NO_UNKNOWNS:
            for key, reading in part.unknowns.items():
                found[key] = found.get(key, 0) | reading
    return found or _NO_UNKNOWNS


_FLIPPED = {_POSITIVE: _NEGATIVE, _NEGATIVE: _POSITIVE, _BOTH: _BOTH}
_CYCLE = Part(TRUE, FALSE, _NO_UNKNOWNS)


@dataclass(frozen=True, slots=True)
class Readings:
    """What a condition can be, its unknown parts given values (see the module doc)."""

    #: True wherever the condition may be true.
    over: ast.Node
    under: ast.Node
    #: The distinct conditions it is under each assignment; beyond the limit, over and under.
    cases: tuple[ast.Node, ...]
    #: The names of its custom conditions, in the order met.
    customs: tuple[str, ...]
    #: Whether over and under are the exact bounds (no part beyond the limit).
    exact: bool


class BoundsAnalysis(ConditionVisitor[Part]):
    """Bounds and cases of conditions with custom parts, named conditions through ``rules``.

    A reference that is not a rule (a custom condition) is unknown; every other form is
    kept as it is. A subclass reads more forms as unknown by answering
    :meth:`visit_unknown` (or :meth:`unknown_part`) for them.
    """

    def __init__(self, rules: Mapping[str, ast.Node] | None) -> None:
        self.resolver = Resolver(rules)
        # The pass being made: the values given to unknown parts, and the zone around.
        self._values: Mapping[Hashable, bool] = {}
        self._values_key: frozenset = frozenset()
        self._zone: str | None = None

    def bounds(self, node: ast.Node) -> Bounds:
        """``(over, under)`` of ``node`` (see the module doc)."""
        free = self._pass(node, {})
        return self._bounds(node, free)[:2]

    def readings(self, node: ast.Node) -> Readings:
        """Bounds, cases and custom parts of ``node`` (see the module doc)."""
        free = self._pass(node, {})
        keys = list(free.unknowns)
        if len(keys) > EXACT_LIMIT:
            over, under, exact = self._bounds(node, free)
            return Readings(over, under, _distinct((over, under)), _customs(free), exact)
        cases = _distinct(self._pass(node, values).over for values in _assignments(keys))
        if all(reading == _BOTH for reading in free.unknowns.values()):
            # Every part is enumerated for the bounds too: the same passes.
            over, under = disjunction(cases), conjunction(cases)
        else:
            over, under, _ = self._bounds(node, free)
        return Readings(over, under, cases, _customs(free), True)

    def customs(self, node: ast.Node) -> tuple[str, ...]:
        """The names of the custom conditions in ``node``, in the order met."""
        return _customs(self._pass(node, {}))

    def _bounds(self, node: ast.Node, free: Part) -> tuple[ast.Node, ast.Node, bool]:
        """``(over, under, exact)``: the parts read both ways enumerated, up to the limit."""
        both = [key for key, reading in free.unknowns.items() if reading == _BOTH]
        if not both:
            return free.over, free.under, True
        if len(both) > EXACT_LIMIT:
            return free.over, free.under, False
        parts = [self._pass(node, values) for values in _assignments(both)]
        over = disjunction(_distinct(part.over for part in parts))
        under = conjunction(_distinct(part.under for part in parts))
        return over, under, True

    def _pass(self, node: ast.Node, values: Mapping[Hashable, bool]) -> Part:
        self._values, self._values_key, self._zone = values, frozenset(values.items()), None
        try:
            return self.visit(node)
        finally:
            self._values, self._values_key = {}, frozenset()

    # ------------------------------------------------------------ the forms

    def visit_known(self, node: ast.Node) -> Part:
        """A form the caller can evaluate: it bounds itself."""
        return Part(node, node, _NO_UNKNOWNS)

    def visit_unknown(self, node: ast.Node) -> Part:
        """A form the caller cannot evaluate: true or false."""
        return self.unknown_part(node, TRUE)

    def unknown_part(self, node: ast.Node, within: ast.Node, key: Hashable = None) -> Part:
        """An unknown part that can be true only where ``within`` is (``within & u``).

        Equal nodes in the same zone (or equal ``key``) are one part: one value at one instant.
        """
        key = (node, self._zone) if key is None else key
        value = self._values.get(key)
        if value is None:
            return Part(within, FALSE, {key: _POSITIVE})
        found = within if value else FALSE
        return Part(found, found, {key: _POSITIVE})

    visit_Constant = visit_TimeOf = visit_Periodic = visit_Cron = visit_Every = visit_known
    visit_TaskHas = visit_AfterTask = visit_TaskRunning = visit_RunningFor = visit_known
    visit_SchedulerCycles = visit_SchedulerUptime = visit_known
    visit_Env = visit_ParamExists = visit_ParamIs = visit_known

    def visit_All(self, node: ast.All) -> Part:
        return self._combined(node.items, conjunction)

    def visit_Any(self, node: ast.Any) -> Part:
        return self._combined(node.items, disjunction)

    def _combined(self, items: tuple[ast.Node, ...], combine) -> Part:
        parts = [self.visit(item) for item in items]
        over = combine([part.over for part in parts])
        if all(part.over is part.under for part in parts):  # nothing unknown left here
            return Part(over, over, _merged(parts))
        return Part(over, combine([part.under for part in parts]), _merged(parts))

    def visit_Not(self, node: ast.Not) -> Part:
        part = self.visit(node.item)
        unknowns = {key: _FLIPPED[reading] for key, reading in part.unknowns.items()}
        over = negation(part.under)
        under = over if part.over is part.under else negation(part.over)
        return Part(over, under, unknowns or _NO_UNKNOWNS)

    def visit_Zoned(self, node: ast.Zoned) -> Part:
        outer, self._zone = self._zone, node.zone
        try:
            part = self.visit(node.item)
        finally:
            self._zone = outer
        over = _zoned(part.over, node.zone)
        under = over if part.over is part.under else _zoned(part.under, node.zone)
        return Part(over, under, part.unknowns)

    def visit_Reference(self, node: ast.Reference) -> Part:
        # A custom condition (with arguments, or a name no rule defines) only Python can
        # answer, in real time whatever the zone; an unknown name or a cycle is reported
        # elsewhere (E120, E121).
        if self.resolver.target(node) is None:
            return self.unknown_part(node, TRUE, key=node)
        # What a name stands for depends on the values of this pass and the zone around.
        key = (self._zone, self._values_key)
        return self.resolver.expand(node, self.visit, on_cycle=lambda chain: _CYCLE, key=key)


def _customs(part: Part) -> tuple[str, ...]:
    return tuple(key.name for key in part.unknowns if isinstance(key, ast.Reference))


def _assignments(keys: list[Hashable]) -> Iterable[dict[Hashable, bool]]:
    """Every assignment of true/false to ``keys``."""
    for values in itertools.product((True, False), repeat=len(keys)):
        yield dict(zip(keys, values, strict=True))


class Evaluable(Protocol):
    """A compiled condition, as :class:`CustomCases` asks it."""

    def is_true(self, at: datetime, *, task: str | None, history, session) -> bool:
        """The value at ``at``."""
        ...

    def next_change(
        self, after: datetime, *, task: str | None, history, session
    ) -> datetime | None:
        """The first instant after ``after`` at which the value can change."""
        ...


class CustomCases:
    """A condition's cases and bounds (:class:`Readings`) compiled, custom parts held.

    Its custom parts hold their value until they are checked again (``recheck``), so
    the value can change first where a case changes, or at the next check while the
    cases disagree (the custom parts decide the value). While they agree, the first
    case to change is where the bound that decides changes.
    """

    __slots__ = ("over", "under", "cases", "customs", "recheck")

    def __init__(
        self,
        readings: Readings,
        compile: Callable[[ast.Node], Evaluable],
        recheck: timedelta | None,
    ) -> None:
        compiled: dict[ast.Node, Evaluable] = {}

        def build(node: ast.Node) -> Evaluable:
            found = compiled.get(node)
            if found is None:
                found = compiled[node] = compile(node)
            return found

        #: True wherever the condition may be true, and only where it surely is.
        self.over = build(readings.over)
        self.under = build(readings.under)
        self.cases = tuple(build(case) for case in readings.cases)
        #: The phrases of its custom parts.
        self.customs = readings.customs
        #: How soon custom parts are looked at again while they decide (None: no custom part).
        self.recheck = recheck

    def decided(self, at: datetime, task: str | None, history, session) -> bool | None:
        """The value at ``at`` if the known parts decide it, else None."""
        if not self.over.is_true(at, task=task, history=history, session=session):
            return False
        if self.under.is_true(at, task=task, history=history, session=session):
            return True
        return None

    def next_change(self, after: datetime, task: str | None, history, session) -> datetime | None:
        """The first change of any case after ``after``, or the next check while undecided."""
        context = {"task": task, "history": history, "session": session}
        decided = self.decided(after, task, history, session)
        # Decided, every case has the same value: the first case to change changes
        # the bound (false: over, true: under), one search instead of one per case.
        if decided is not None:
            return (self.under if decided else self.over).next_change(after, **context)
        found = [case.next_change(after, **context) for case in self.cases]
        if self.recheck is not None:
            found.append(after + self.recheck)
        changes = [change for change in found if change is not None]
        return min(changes) if changes else None
