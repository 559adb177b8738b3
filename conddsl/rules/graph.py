"""Cycles in a directed graph of names (named conditions, tasks waiting on tasks)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def find_cycles(edges: Mapping[str, Iterable[str]], order: Iterable[str]) -> list[list[str]]:
    """One cycle per strongly connected component that has one, as a path of names.

    Each cycle starts at the component's first name in ``order`` and ends where it
    started (``["a", "b", "a"]``); a name with an edge to itself is a cycle too.
    """
    graph = {name: [t for t in targets if t in edges] for name, targets in edges.items()}
    rank = {name: i for i, name in enumerate(order)}
    cycles = []
    for component in _components(graph):
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue  # most names: no cycle through them
        first = min(component, key=lambda name: rank.get(name, len(rank)))
        if len(component) > 1 or first in graph[first]:
            cycles.append(_path_back(graph, first, set(component)))
    cycles.sort(key=lambda cycle: rank.get(cycle[0], len(rank)))
    return cycles


def _components(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            advanced = False
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(graph[target])))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found


def _path_back(graph: Mapping[str, list[str]], start: str, allowed: set[str]) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``allowed`` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in graph[node]:
                if target not in allowed:
                    continue
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    return [start, start]  # pragma: no cover - a component always leads back
