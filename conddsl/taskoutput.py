"""What tasks print under ``conddsl run``: each line prefixed with the task's name.

:class:`TaskOutput` stands in for ``sys.stdout`` (and ``sys.stderr``) while the scheduler
serves. A line written from a task's thread (threads are named ``conddsl:<task>``) or
its asyncio task (``conddsl:<task>:<run_id>``) becomes ``<task> | <line>``; anything else
(conddsl's own lines, a main task) passes through unchanged. Lines are put together per
thread or asyncio task, so two tasks printing at once never mix within a line.

Process and command tasks write from processes of their own: ``conddsl run`` reads
their pipes instead (:mod:`conddsl.runtime.output`) and prints their lines the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import IO

from conddsl.errors import printable

__all__ = ["TaskOutput", "current_task_name"]

_PREFIX = "conddsl:"


def current_task_name() -> str | None:
    """The task whose code is running here: by its asyncio task's or thread's name."""
    try:
        running = asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        running = None
    if running is not None:
        name = running.get_name()
        if name.startswith(_PREFIX):
            return name[len(_PREFIX) :].rsplit(":", 1)[0]
    name = threading.current_thread().name
    return name[len(_PREFIX) :] if name.startswith(_PREFIX) else None


class TaskOutput:
    """A text stream that hands each complete line a task wrote to ``emit(task, line)``."""

    def __init__(self, stream: IO[str], emit: Callable[[str, str], None] | None = None) -> None:
        self.stream = stream
        self._emit = emit if emit is not None else self._prefixed
        self._lock = threading.Lock()
        self._partial: dict[tuple[int, str], str] = {}  # (thread or task id, task) -> text

    def write(self, text: str) -> int:
        """Write ``text``: a task's lines go through ``emit`` once complete."""
        task = current_task_name()
        if task is None:
            return self.stream.write(text)
        key = (self._writer_id(), task)
        with self._lock:
            pending = self._partial.pop(key, "") + text
            *lines, rest = pending.split("\n")
            if rest:
                self._partial[key] = rest
        for line in lines:
            self._emit(task, line)
        return len(text)

    def flush(self) -> None:
        """Flush the stream (a task's unended line waits for its end, or :meth:`finish`)."""
        self.stream.flush()

    def finish(self) -> None:
        """Write out the lines tasks left unended (a print without a newline)."""
        with self._lock:
            pending, self._partial = self._partial, {}
        for (_, task), text in pending.items():
            self._emit(task, text)
        with contextlib.suppress(OSError, ValueError):  # the reader went away (`… | head`)
            self.stream.flush()

    def _writer_id(self) -> int:
        try:
            running = asyncio.current_task()
        except RuntimeError:
            running = None
        return id(running) if running is not None else threading.get_ident()

    def _prefixed(self, task: str, line: str) -> None:
        self.stream.write(f"{printable(task)} | {line}\n")
        self.stream.flush()

    def __getattr__(self, name: str):
        # isatty, fileno, encoding ...: the real stream's.
        return getattr(self.stream, name)
