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
