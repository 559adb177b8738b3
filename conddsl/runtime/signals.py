"""SIGINT and SIGTERM for a command-line scheduler: the first shuts down gracefully, the second
forces."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from conddsl.runtime.scheduler import Scheduler


def install_signal_handlers(
    scheduler: Scheduler,
    signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
) -> Callable[[], None]:
    """Route the signals to ``scheduler.shut_down()``; return a function restoring the old handlers.

    Call it from the main thread, before or while the scheduler runs. The first
    signal asks for a graceful shutdown, any later one forces it (running tasks
    are terminated with reason ``forced``), as a second ``shut_down()`` does.
    """

    def handle(signum: int, frame: FrameType | None) -> None:
        scheduler.shut_down()

    previous: dict[signal.Signals, Any] = {}
    for sig in signals:
        previous[sig] = signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
