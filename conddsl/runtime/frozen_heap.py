"""Keeping a serving scheduler's objects out of the garbage collector's way (``gc.freeze``).

While a scheduler serves, the objects that existed when it started (its tasks,
conditions, the modules imported) are moved where no collection walks them: a full
collection then walks only what was made since, not the whole heap (in a big process
it would hold the loop for tens of milliseconds). The state is the process's, shared
by every scheduler serving in it, so it is counted here under a lock.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_serving = 0  # schedulers serving with the heap frozen
_host_freezes = False  # the program froze objects itself: its heap is left to it


def freeze() -> None:
    """One more scheduler serves: freeze the heap if it is the first (and the program did not)."""
    global _serving, _host_freezes
    with _lock:
        if _serving == 0:
            _host_freezes = gc.get_freeze_count() > 0
        _serving += 1
        if not _host_freezes:
            gc.freeze()  # what exists now: moved to a generation no collection walks


def thaw() -> None:
    """One scheduler stopped: the heap is collectable again once none serves."""
    global _serving
    with _lock:
        _serving -= 1
        if _serving == 0 and not _host_freezes:
            gc.unfreeze()


@contextlib.contextmanager
def frozen() -> Iterator[None]:
    """The heap frozen (see :func:`freeze`) for the time of the block."""
    freeze()
    try:
        yield
    finally:
        thaw()


# Automatic collections paused for a burst of starts (see pause_collections): by how
# many schedulers, and the thresholds set when the first of them paused them.
_pausing = 0
_thresholds: tuple[int, ...] = ()


def pause_collections() -> None:
    """A burst of prepared starts begins: no automatic collection until it ends.

    A thousand runs started at one instant make some thousands of young objects, and
    the collections they set off (a dozen, one of them walking every prepared coroutine)
    took about a fifth of the burst. Paired with :func:`resume_collections`; nothing is
    lost, the objects are collected after. Counted here: the state is the process's.

    Paused by a first threshold of 0, not ``gc.disable()``: the bodies take their first
    step in the burst, and one that calls ``gc.disable()`` or ``gc.enable()`` keeps its
    choice (a ``gc.enable()`` ending the pause would undo its ``gc.disable()``).
    """
    global _pausing, _thresholds
    with _lock:
        if _pausing == 0:
            _thresholds = gc.get_threshold()
            gc.set_threshold(0, *_thresholds[1:])
        _pausing += 1


def resume_collections() -> None:
    """A burst ended: automatic collections go on once no scheduler pauses them (the
    thresholds as they were, unless something set its own meanwhile)."""
    global _pausing
    with _lock:
        _pausing -= 1
        if _pausing == 0 and gc.get_threshold() == (0, *_thresholds[1:]):
            gc.set_threshold(*_thresholds)
