"""A visitor of conditions that must handle every kind of condition node.

A subclass defines ``visit_<NodeName>(self, node, *args)`` for each class of
:data:`conddsl.ast.CONDITIONS`; a missing one is a ``TypeError`` when the subclass is
defined, not a silent "reads nothing" when a new form meets an old analysis. Handlers
that answer alike are still named one by one (``visit_Env = visit_ParamIs = ...``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from conddsl import ast

__all__ = ["ConditionVisitor"]

R = TypeVar("R")


class ConditionVisitor(Generic[R]):
    """Dispatches on the node's class to ``visit_<NodeName>``, decided once per class."""

    _handlers: ClassVar[dict[type, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = [t.__name__ for t in ast.CONDITIONS if not hasattr(cls, f"visit_{t.__name__}")]
        if missing:
            raise TypeError(f"{cls.__name__} does not handle {', '.join(missing)}")
        cls._handlers = {t: getattr(cls, f"visit_{t.__name__}") for t in ast.CONDITIONS}

    def visit(self, node: ast.Node, *args: Any) -> R:
        """The answer of the handler for ``node``'s class (extra ``args`` passed on)."""
        handler = self._handlers.get(type(node))
        if handler is None:
            raise TypeError(f"{type(self).__name__} cannot visit {type(node).__name__}")
        return handler(self, node, *args)
