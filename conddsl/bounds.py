"""Bounds of a condition with parts that cannot be known ahead: the truest and the falsest reading.

Some parts of a condition cannot be evaluated where it is analysed: a custom condition
is a Python call the time engine cannot see into, and for ``conddsl check`` the run
history and the session are unknown too. :class:`BoundsAnalysis` builds two conditions
without those parts:

- ``over``: each unknown part replaced by the value that makes the whole truest
  (``true`` where it is not negated, ``false`` under a ``~``): true wherever the
  condition *may* be true;
- ``under``: the other way round: true only where the condition *surely* is.

``&``, ``|`` and ``~`` being monotone, the condition's value always lies between the
two. The scheduler calls custom functions only while the bounds differ
(:mod:`conddsl.runtime.customs`); the checker claims "never true" only when ``over``
has no window (:mod:`conddsl.lint.clock`, which also reads the history forms as unknown).
"""

from __future__ import annotations

from collections.abc import Mapping

from conddsl import ast
from conddsl.resolve import Resolver
from conddsl.visitor import ConditionVisitor

__all__ = ["FALSE", "TRUE", "Bounds", "BoundsAnalysis", "conjunction", "disjunction", "negation"]

TRUE = ast.Constant(True)
FALSE = ast.Constant(False)
#: ``(over, under)``: see the module doc.
Bounds = tuple[ast.Node, ast.Node]
UNKNOWN_BOUNDS: Bounds = (TRUE, FALSE)


def _fold(items: list[ast.Node], unit: ast.Node, zero: ast.Node, node_type) -> ast.Node:
    kept = []
    for item in items:
        if item == zero:
            return zero
        if item != unit:
            kept.append(item)
    if not kept:
        return unit
    return kept[0] if len(kept) == 1 else node_type(tuple(kept))


def conjunction(items: list[ast.Node]) -> ast.Node:
    """``&`` of the items with constants folded away."""
    return _fold(items, TRUE, FALSE, ast.All)


def disjunction(items: list[ast.Node]) -> ast.Node:
    """``|`` of the items with constants folded away."""
    return _fold(items, FALSE, TRUE, ast.Any)


def negation(item: ast.Node) -> ast.Node:
    """``~`` of the item, folding constants and double negation."""
    if isinstance(item, ast.Constant):
        return ast.Constant(not item.value)
    if isinstance(item, ast.Not):
        return item.item
    return ast.Not(item)


def _zoned(node: ast.Node, zone: str) -> ast.Node:
    return node if isinstance(node, ast.Constant) else ast.Zoned(node, zone)


class BoundsAnalysis(ConditionVisitor[Bounds]):
    """``(over, under)`` of conditions with custom parts, named conditions through ``rules``.

    A reference that is not a rule (a custom condition) is unknown and its name is
    kept in :attr:`unknown`; every other form is kept as it is. A subclass reads more
    forms as unknown by answering ``(TRUE, FALSE)`` for them (see ``visit_unknown``).
    """

    def __init__(self, rules: Mapping[str, ast.Node] | None) -> None:
        self.resolver = Resolver(rules)
        #: The names of the references read as unknown, in the order met (custom conditions).
        self.unknown: list[str] = []

    def bounds(self, node: ast.Node) -> Bounds:
        """``(over, under)`` of ``node`` (see the module doc)."""
        return self.visit(node)

    def visit_known(self, node: ast.Node) -> Bounds:
        """A form the caller can evaluate: it bounds itself."""
        return node, node

    def visit_unknown(self, node: ast.Node) -> Bounds:
        """A form the caller cannot evaluate: true at most, false at least."""
        return UNKNOWN_BOUNDS

    visit_Constant = visit_TimeOf = visit_Periodic = visit_Cron = visit_Every = visit_known
    visit_TaskHas = visit_AfterTask = visit_TaskRunning = visit_RunningFor = visit_known
    visit_SchedulerCycles = visit_SchedulerUptime = visit_known
    visit_Env = visit_ParamExists = visit_ParamIs = visit_known

    def visit_All(self, node: ast.All) -> Bounds:
        pairs = [self.visit(item) for item in node.items]
        return conjunction([o for o, _ in pairs]), conjunction([u for _, u in pairs])

    def visit_Any(self, node: ast.Any) -> Bounds:
        pairs = [self.visit(item) for item in node.items]
        return disjunction([o for o, _ in pairs]), disjunction([u for _, u in pairs])

    def visit_Not(self, node: ast.Not) -> Bounds:
        over, under = self.visit(node.item)
        return negation(under), negation(over)

    def visit_Zoned(self, node: ast.Zoned) -> Bounds:
        over, under = self.visit(node.item)
        return _zoned(over, node.zone), _zoned(under, node.zone)

    def visit_Reference(self, node: ast.Reference) -> Bounds:
        # A custom condition (with arguments, or a name no rule defines) only Python can
        # answer; an unknown name or a cycle is reported elsewhere (E120, E121).
        if self.resolver.target(node) is None:
            self.unknown.append(node.name)
            return UNKNOWN_BOUNDS
        return self.resolver.expand(node, self.visit, on_cycle=lambda chain: UNKNOWN_BOUNDS)
