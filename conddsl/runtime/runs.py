"""One run of a task, and what an executor tells the scheduler about it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conddsl.runtime.flags import Inaction, TaskTerminationException, TerminationFlag
from conddsl.runtime.tasks import Task

if TYPE_CHECKING:
    from conddsl.runtime.leftovers import ProcessRegistry

# Messages are kept short: a record is not a log.
MAX_MESSAGE = 2000


@dataclass(eq=False)
class Run:
    """A started run: alive until ``finished``; ``reason`` is set once termination is asked."""

    task: Task
    run_id: str
    started: datetime
    flag: TerminationFlag = field(default_factory=TerminationFlag)
    deadline: datetime | None = None
    reason: str | None = None
    message: str | None = None
    finished: bool = False
    launched: bool = False  # the executor has it
    manual: bool = False  # started by run_task(), not by its start condition
    held: bool = False  # the run holds a VirtualClock while it dies
    handle: Any = None  # the executor's own: an asyncio.Task, a Thread, a process
    root: tuple[int, int | None] | None = None  # a process run's pid and its start time
    # Its run record and timeout wait for its process to exist (see Host.began).
    pending: bool = False


@dataclass
class Host:
    """What executors use of the scheduler."""

    loop: asyncio.AbstractEventLoop
    finish: Callable[[Run, str, str | None], None]  # the run ended with this action and message
    kill_grace: float  # seconds between SIGTERM and SIGKILL, and for abandoned work
    spawn: Callable[[Coroutine[Any, Any, None]], None]  # run a coroutine the scheduler keeps
    procs: ProcessRegistry | None = None  # the durable list of live process trees, if any
    # The run's process exists now (executors with ``records_when_started``): its run
    # record is written, stamped now, and its timeout counts from now.
    began: Callable[[Run], None] = lambda run: None


def outcome_of(exc: BaseException | None) -> tuple[str, str | None]:
    """The action and message for a run that returned (None) or raised ``exc``."""
    if exc is None:
        return "success", None
    if isinstance(exc, TaskTerminationException):
        return "terminate", exception_text(exc)
    if isinstance(exc, Inaction):
        return "inaction", exception_text(exc)
    return "fail", exception_text(exc)


def exception_text(exc: BaseException) -> str:
    """The exception's text (its class name when it has none), cut to MAX_MESSAGE."""
    if isinstance(exc, SystemExit):
        text = f"SystemExit: {exc.code}"
    else:
        text = str(exc) or type(exc).__name__
    return clip(text)


def clip(text: str) -> str:
    """``text`` cut to MAX_MESSAGE characters, keeping the end (where errors say what happened)."""
    return text if len(text) <= MAX_MESSAGE else "…" + text[-MAX_MESSAGE + 1 :]
