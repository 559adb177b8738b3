"""Serving on an event loop of the scheduler's own (``Scheduler.run``), and ending what
is left on it: not ``asyncio.run()``, which would wait forever for a coroutine that
swallows its cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("conddsl.runtime")


def run_on_new_loop(main: Callable[[], Coroutine[Any, Any, None]], grace: float) -> None:
    """Run ``main()`` on a new event loop, then end what it left there within ``grace``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("an event loop is running here: use 'await scheduler.serve()'")
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main())
    finally:
        try:
            end_leftovers(loop, grace)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def end_leftovers(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    """Cancel what still runs on ``loop`` (abandoned coroutines), waiting ``grace`` at most."""
    left = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in left:
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.wait(left, timeout=grace))
    stuck = [task for task in left if not task.done()]
    if stuck:
        log.warning("%d coroutine(s) still running when the scheduler stopped: closed", len(stuck))
    for task in stuck:
        # Closed now, not whenever the collector finds them (running their code then, at
        # a random point of the program); reported above, not again when destroyed.
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        with contextlib.suppress(BaseException):  # one that ignores GeneratorExit too
            task.get_coro().close()
    loop.run_until_complete(loop.shutdown_asyncgens())
    # As asyncio.run() does, but not forever: a to_thread() call may block for good.
    shutdown = loop.shutdown_default_executor()
    loop.run_until_complete(asyncio.wait([loop.create_task(shutdown)], timeout=grace))
