"""How deep a condition nests once its named conditions are written out in place (E123).

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

__all__ = ["MAX_EXPANDED_DEPTH", "ExpandedDepth", "check_expanded_depth"]

# A chain of 200 names (201 names and the condition at its end) must keep working; the
# compiler and the evaluators use two to three Python frames per level, so 250 levels
# stay well inside Python's default recursion limit of 1,000.
MAX_EXPANDED_DEPTH = 250
HINT = (
    "each name counts as a level: let a named condition use fewer names in turn "
    "(write out the middle of a long chain)"
)


def _children(node: ast.Node) -> tuple[ast.Node, ...]:
    if isinstance(node, ast.All | ast.Any):
        return node.items
    if isinstance(node, ast.Not | ast.Zoned):
        return (node.item,)
    return ()


class ExpandedDepth:
    """Depths of conditions with the names of ``rules`` written out (memoized per name).

    A name is one level above what it stands for; a name that ``rules`` does not define,
    or one with quoted arguments (a custom condition), is a single level. A name met
    again inside itself (a cycle, reported as E121 elsewhere) is a single level there.
    """

    def __init__(self, rules: Mapping[str, ast.Node]) -> None:
        self.rules = rules
        self._names: dict[str, int] = {}  # name -> depth of what it stands for

    def _target(self, node: ast.Reference) -> ast.Node | None:
        return None if node.args else self.rules.get(node.name)

    def of(self, root: ast.Node) -> tuple[int, ast.Reference | None]:
        """``(depth, pointer)``: the depth of ``root`` written out, and the outermost name
        of ``root`` on a deepest path (None when that path has no name)."""
        depths: dict[int, int] = {}  # id(node) -> depth, for the nodes of root itself
        self._walk(root, depths)
        pointer = None
        node = root
        while True:
            if isinstance(node, ast.Reference):
                pointer = node
                break
            children = _children(node)
            if not children:
                break
            node = max(children, key=lambda child: depths[id(child)])
        return depths[id(root)], pointer

    def _walk(self, root: ast.Node, depths: dict[int, int]) -> None:
        """Fill ``depths`` for the nodes of ``root`` (and the names it reaches), post-order."""
        # Frames: [node, children, next child index, deepest child so far, name or None].
        active: set[str] = set()
        known = self._known(root, active)
        if known is not None:
            depths[id(root)] = known
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
                    depths[id(child)] = known
                    frame[3] = max(frame[3], known)
                continue
            stack.pop()
            depth = depths[id(frame[0])] = 1 + frame[3]
            name = frame[4]
            if name is not None:
                active.discard(name)
                self._names[name] = frame[3]
            if stack:
                stack[-1][3] = max(stack[-1][3], depth)

    def _known(self, node: ast.Node, active: set[str]) -> int | None:
        """The depth of ``node`` when it needs no walk: a leaf, or a name already measured."""
        if isinstance(node, ast.Reference):
            target = self._target(node)
            if target is None or node.name in active:
                return 1
            found = self._names.get(node.name)
            return None if found is None else 1 + found
        return None if _children(node) else 1

    def _frame(self, node: ast.Node, active: set[str]) -> list:
        if isinstance(node, ast.Reference):
            target = self._target(node)
            if target is not None and node.name not in active:
                active.add(node.name)
                return [node, (target,), 0, 0, node.name]
            return [node, (), 0, 0, None]
        return [node, _children(node), 0, 0, None]


def too_deep_message(depth: int) -> str:
    return (
        f"named conditions nest too deep: written out in place, the condition nests "
        f"{depth} levels, more than {MAX_EXPANDED_DEPTH}"
    )


def check_expanded_depth(
    text: str, reference: ast.Reference, rules: Mapping[str, ast.Node]
) -> None:
    """Raise E123 when the condition ``text`` holding ``reference`` nests too deep.

    The whole condition is measured (the nesting around the name counts too): ``text``
    is parsed again (parse is cached, so this is the tree being compiled); when that is
    not possible, the name alone is measured.
    """
    from conddsl.parse import parse

    root: ast.Node = reference
    try:
        parsed = parse(text)
    except ConditionSyntaxError:
        parsed = None
    if parsed is not None and _names(parsed, reference.name):
        root = parsed
    depth, pointer = ExpandedDepth(rules).of(root)
    if depth <= MAX_EXPANDED_DEPTH:
        return
    where = pointer if pointer is not None and root is parsed else reference
    span = where.span or Span.from_offsets(text, 0, len(text))
    raise ConditionSyntaxError(
        too_deep_message(depth), text=text, span=span, code="E123", hint=HINT
    )


def _names(node: ast.Node, name: str) -> bool:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Reference) and current.name == name:
            return True
        stack.extend(_children(current))
    return False
