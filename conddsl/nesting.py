"""How deep and how large a condition is with its named conditions written out (E123).

``parse`` limits the nesting of one condition text (E104), but named conditions can refer
to each other without end: ``r0 = r1``, ``r1 = r2``, … Compiling such a chain, checking
it and evaluating what it stands for all walk it level by level, so the depth of the
whole, names written out in place, is limited too. Each name counts as one level (it is
one level of compiling), so the limit holds whether the depth comes from the names or
from what they stand for. It is measured here without recursion.
"""

from __future__ import annotations

from collections.abc import Mapping

from conddsl import ast
from conddsl.errors import ConditionSyntaxError, Span
from conddsl.parse import parse

__all__ = [
    "MAX_EXPANDED_DEPTH",
    "MAX_EXPANDED_SIZE",
    "ExpandedDepth",
    "check_expanded_depth",
    "expansion_problem",
]

# A chain of 200 names (201 names and the condition at its end) must keep working; the
# compiler and the evaluators use two to three Python frames per level, so 250 levels
# stay well inside Python's default recursion limit of 1,000.
MAX_EXPANDED_DEPTH = 250
# Compiling and evaluating walk every part written out: at 10,000 parts, far beyond any
# hand-written condition, one next_change takes about 70 ms (a scheduler's loop waits).
MAX_EXPANDED_SIZE = 10_000
HINT = (
    "each name counts as a level: let a named condition use fewer names in turn "
    "(write out the middle of a long chain)"
)
SIZE_HINT = (
    "a name used more than once is written out each time: name the repeated part once "
    "and use it in fewer places"
)


class ExpandedDepth:
    """Depths (and sizes) of conditions with the names of ``rules`` written out.

    Memoized per name. A name is one level above what it stands for; a name that
    ``rules`` does not define, or one with quoted arguments (a custom condition), is a
    single level. A name met again inside itself (a cycle, reported as E121 elsewhere)
    is a single level there. The size counts the nodes written out: names used twice
    in each of many levels (``r1 = r2 | ~r2``) double it at every level.
    """

    def __init__(self, rules: Mapping[str, ast.Node]) -> None:
        self.rules = rules
        self._names: dict[str, tuple[int, int]] = {}  # name -> (depth, size) of its target

    def _target(self, node: ast.Reference) -> ast.Node | None:
        return None if node.args else self.rules.get(node.name)

    def of(self, root: ast.Node) -> tuple[int, ast.Reference | None]:
        """``(depth, pointer)``: the depth of ``root`` written out, and the outermost name
        of ``root`` on a deepest path (None when that path has no name)."""
        depth, _, pointer = self.measure(root)
        return depth, pointer

    def measure(self, root: ast.Node) -> tuple[int, int, ast.Reference | None]:
        """``(depth, size, pointer)`` of ``root`` written out (see :meth:`of`)."""
        found: dict[int, tuple[int, int]] = {}  # id(node) -> (depth, size), nodes of root
        self._walk(root, found)
        pointer = None
        node = root
        while True:
            if isinstance(node, ast.Reference):
                pointer = node
                break
            children = ast.children(node)
            if not children:
                break
            node = max(children, key=lambda child: found[id(child)][0])
        depth, size = found[id(root)]
        return depth, size, pointer

    def _walk(self, root: ast.Node, found: dict[int, tuple[int, int]]) -> None:
        """Fill ``found`` for the nodes of ``root`` (and the names it reaches), post-order."""
        # Frames: [node, children, next child index, deepest child, size of the children,
        # name or None].
        active: set[str] = set()
        known = self._known(root, active)
        if known is not None:
            found[id(root)] = known
            return
        stack: list[list] = [self._frame(root, active)]
        while stack:
            frame = stack[-1]
            children, index = frame[1], frame[2]
            if index < len(children):
                frame[2] = index + 1
                child = children[index]
                known = self._known(child, active)
                if known is None:
                    stack.append(self._frame(child, active))
                else:
                    found[id(child)] = known
                    frame[3] = max(frame[3], known[0])
                    frame[4] += known[1]
                continue
            stack.pop()
            depth, size = found[id(frame[0])] = (1 + frame[3], 1 + frame[4])
            name = frame[5]
            if name is not None:
                active.discard(name)
                self._names[name] = (frame[3], frame[4])
            if stack:
                stack[-1][3] = max(stack[-1][3], depth)
                stack[-1][4] += size

    def _known(self, node: ast.Node, active: set[str]) -> tuple[int, int] | None:
        """(depth, size) of ``node`` when it needs no walk: a leaf, or a name measured."""
        if isinstance(node, ast.Reference):
            target = self._target(node)
            if target is None or node.name in active:
                return 1, 1
            measured = self._names.get(node.name)
            return None if measured is None else (1 + measured[0], 1 + measured[1])
        return None if ast.children(node) else (1, 1)

    def _frame(self, node: ast.Node, active: set[str]) -> list:
        if isinstance(node, ast.Reference):
            target = self._target(node)
            if target is not None and node.name not in active:
                active.add(node.name)
                return [node, (target,), 0, 0, 0, node.name]
            return [node, (), 0, 0, 0, None]
        return [node, ast.children(node), 0, 0, 0, None]


def too_deep_message(depth: int) -> str:
    return (
        f"named conditions nest too deep: written out in place, the condition nests "
        f"{depth} levels, more than {MAX_EXPANDED_DEPTH}"
    )


def too_large_message(size: int) -> str:
    return (
        f"named conditions expand too far: written out in place, the condition has "
        f"{size:,} parts, more than {MAX_EXPANDED_SIZE:,}"
    )


def expansion_problem(depth: int, size: int) -> tuple[str, str] | None:
    """(message, hint) when a condition written out is too deep or too large, else None."""
    if depth > MAX_EXPANDED_DEPTH:
        return too_deep_message(depth), HINT
    if size > MAX_EXPANDED_SIZE:
        return too_large_message(size), SIZE_HINT
    return None


def check_expanded_depth(
    text: str, reference: ast.Reference, rules: Mapping[str, ast.Node]
) -> None:
    """Raise E123 when the condition ``text`` holding ``reference`` nests too deep.

    The whole condition is measured (the nesting around the name counts too): ``text``
    is parsed again (parse is cached, so this is the tree being compiled); when that is
    not possible, the name alone is measured.
    """
    root: ast.Node = reference
    try:
        parsed = parse(text)
    except ConditionSyntaxError:
        parsed = None
    if parsed is not None and _names(parsed, reference.name):
        root = parsed
    depth, size, pointer = ExpandedDepth(rules).measure(root)
    problem = expansion_problem(depth, size)
    if problem is None:
        return
    where = pointer if pointer is not None and root is parsed else reference
    span = where.span or Span.from_offsets(text, 0, len(text))
    raise ConditionSyntaxError(problem[0], text=text, span=span, code="E123", hint=problem[1])


def _names(node: ast.Node, name: str) -> bool:
    return any(isinstance(item, ast.Reference) and item.name == name for item in ast.walk(node))
