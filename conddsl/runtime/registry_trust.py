"""Whether a process registry (:mod:`conddsl.runtime.leftovers`) may be obeyed.

Ending what a registry lists signals whole process trees, so a registry is obeyed only
when the trust rule (:mod:`conddsl.trust`) holds for its file, and then each tree only
when it looks like one a scheduler started: never pid 1, this process, one of its
ancestors or their process groups; only a root that leads its own process group
(every task starts in a session of its own) and runs as this user.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from conddsl.runtime.processes import read_stat

if TYPE_CHECKING:
    from conddsl.runtime.leftovers import Tree

__all__ = ["refusal", "screen"]


def _ancestry() -> tuple[set[int], set[int]]:
    """This process and its ancestors, and their process groups."""
    pids, groups = set(), {os.getpgrp()}
    pid = os.getpid()
    while pid > 0 and pid not in pids:
        pids.add(pid)
        info = read_stat(pid)
        if info is None:
            break
        groups.add(info.pgid)
        pid = info.ppid
    return pids, groups


def refusal(tree: Tree, ancestry: tuple[set[int], set[int]] | None = None) -> str | None:
    """Why ``tree`` must not be signalled, or None when it may."""
    pids, groups = ancestry if ancestry is not None else _ancestry()
    if tree.pid <= 1 or tree.pgid <= 1:
        return "pid 1 and the kernel's are never ended"
    if tree.pgid != tree.pid:
        return "the group named is not the root's own (a task's root leads its group)"
    if tree.pid in pids or tree.pgid in groups:
        return "it is this scheduler or one of its ancestors"
    root = read_stat(tree.pid)
    if root is not None and root.start == tree.start:
        if root.pgid != tree.pid:
            return "its root does not lead its process group"
        try:
            uid = os.stat(f"/proc/{tree.pid}").st_uid
        except OSError:
            uid = os.geteuid()  # gone meanwhile: nothing to signal either way
        if uid != os.geteuid():
            return f"it runs as another user (uid {uid})"
    return None


def screen(trees: Iterable[Tree]) -> tuple[list[Tree], list[str]]:
    """The trees that may be ended, and a line for each refused one."""
    ancestry = _ancestry()
    kept, refused = [], []
    for tree in trees:
        why = refusal(tree, ancestry)
        if why is None:
            kept.append(tree)
        else:
            refused.append(f"{tree.task} (pid {tree.pid}): {why}")
    return kept, refused
