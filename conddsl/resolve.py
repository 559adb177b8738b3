"""Named conditions: one resolver that looks a name up, guards against cycles and remembers.

Every analysis that follows names (the compiler, the checks of ``conddsl check``, the
task file's reference checks) asks a :class:`Resolver`, so all agree on what a name
stands for: a name with quoted arguments is a custom condition (no target), a name that
``rules`` does not define has none either, and a name met again inside itself is a
cycle. The problems are worded here once: E120 (unknown), E121 (cycle), E122 (wrong
number of arguments); E123 (written out too deep or too large) is measured by
:mod:`conddsl.nesting` at the first name a condition expands.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from conddsl import ast
from conddsl.errors import ConditionSyntaxError, Span, suggest
from conddsl.nesting import check_expanded_depth

__all__ = ["Resolver", "reference_problem", "cycle_message"]

T = TypeVar("T")


class Resolver:
    """Looks up the named conditions of ``rules`` for one analysis.

    :meth:`expand` analyses what a name stands for once per name (memoised);
    :meth:`expanding` hands out the target without memo. Both guard against cycles with
    one stack of the names being expanded: a cycle raises E121 unless the caller says
    what it answers (the checker reports E121 itself). With ``text`` (the condition
    being compiled), the first expansion also checks E123.
    """

    def __init__(self, rules: Mapping[str, ast.Node] | None, *, text: str | None = None) -> None:
        self.rules = rules or {}
        self.text = text
        self._expanding: list[str] = []
        self._memo: dict[Any, Any] = {}
        self._depth_checked = False

    def target(self, reference: ast.Reference) -> ast.Node | None:
        """What the name stands for; None for a custom condition or a name not defined."""
        return None if reference.args else self.rules.get(reference.name)

    def expand(
        self,
        reference: ast.Reference,
        analyse: Callable[[ast.Node], T],
        *,
        on_cycle: Callable[[list[str]], T] | None = None,
        key: Any = None,
    ) -> T:
        """``analyse(target)`` for a defined name, remembered under ``(name, key)``.

        A name met again while it is being expanded is a cycle: ``on_cycle(chain)``
        answers (not remembered), or E121 is raised.
        """
        slot = (reference.name, key)
        if slot in self._memo:
            return self._memo[slot]
        if on_cycle is not None and reference.name in self._expanding:
            return on_cycle([*self._expanding, reference.name])
        with self.expanding(reference) as target:
            result = self._memo[slot] = analyse(target)
        return result

    @contextmanager
    def expanding(self, reference: ast.Reference) -> Iterator[ast.Node]:
        """The target of a defined name, the name being on the cycle guard meanwhile.

        Not remembered: the compiler builds one evaluator per place a name is used, and
        a ``with`` adds no Python frame per level of a long chain of names.
        """
        name = reference.name
        target = self.target(reference)
        if target is None:
            raise KeyError(name)
        if name in self._expanding:
            raise self._error(reference, cycle_message([*self._expanding, name]), "E121")
        if self.text is not None and not self._depth_checked:
            # Names can nest without end (r0 = r1, r1 = r2, …) or double at each level:
            # before expanding them, check once that the condition written out is
            # neither too deep nor too large (E123).
            self._depth_checked = True
            check_expanded_depth(self.text, reference, self.rules)
        self._expanding.append(name)
        try:
            yield target
        finally:
            self._expanding.pop()

    def is_expanding(self, name: str) -> bool:
        """Whether ``name`` is being expanded now: met again, it would close a cycle."""
        return name in self._expanding

    def reached(self, name: str) -> Iterator[str]:
        """``name`` and every defined name it uses in turn, each once (no recursion)."""
        stack, visited = [name], set()
        while stack:
            current = stack.pop()
            if current in visited or current not in self.rules:
                continue
            visited.add(current)
            yield current
            stack.extend(
                item.name
                for item in ast.walk(self.rules[current])
                if isinstance(item, ast.Reference)
            )

    def check(self, reference: ast.Reference, registry, *, hint: str) -> None:
        """Raise E120 or E122 when ``reference`` resolves to nothing usable (see
        :func:`reference_problem`; ``hint`` is said when no close name is known)."""
        problem = reference_problem(reference, self.rules, registry, hint=hint)
        if problem is not None:
            code, message, found_hint = problem
            raise self._error(reference, message, code, found_hint)

    def _error(
        self, reference: ast.Reference, message: str, code: str, hint: str | None = None
    ) -> ConditionSyntaxError:
        text = self.text or str(reference)
        span = reference.span or Span.from_offsets(text, 0, len(text))
        return ConditionSyntaxError(message, text=text, span=span, code=code, hint=hint)


def reference_problem(
    reference: ast.Reference, names: Collection[str], registry, *, hint: str
) -> tuple[str, str, str | None] | None:
    """``(code, message, hint)`` when a reference resolves to nothing usable, else None.

    A reference is a named condition of ``names`` (without arguments), or a custom
    condition of ``registry`` (with as many quoted arguments as it takes).
    """
    name = reference.name
    if not reference.args and name in names:
        return None
    entry = registry.get(name) if registry is not None else None
    if entry is not None:
        if len(reference.args) == entry.arity:
            return None
        return (
            "E122",
            f"{name!r} takes {entry.arity} quoted argument(s), {len(reference.args)} given",
            f"write {name} " + " ".join(["'…'"] * entry.arity),
        )
    if name in names:
        return "E120", f"{name!r} is a named condition: it takes no quoted arguments", None
    close = suggest(name, [*names, *(registry.phrases() if registry is not None else [])])
    return "E120", f"unknown condition {name!r}", f"did you mean {close!r}?" if close else hint


def cycle_message(chain: list[str]) -> str:
    """The E121 message for names that refer to each other: ``a -> b -> a``."""
    return f"the named conditions refer to each other in a cycle: {' -> '.join(chain)}"
