"""One run of a task, and the contract between the scheduler and the executors: what an
executor does for it (:class:`Executor`) and tells it (:class:`Host`)."""

from __future__ import annotations

import asyncio
import contextvars
import os
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from conddsl.runtime.flags import Inaction, TaskTerminationException, TerminationFlag
from conddsl.runtime.tasks import Task

if TYPE_CHECKING:
    import subprocess
    import threading
    from typing import TypeAlias

    from conddsl.runtime.handles import Forked, Served
    from conddsl.runtime.leftovers import ProcessRegistry

    #: What an executor keeps of a run: an async run's asyncio task, a thread run's
    #: thread, a process run handed to the fork server or forked here, a command's Popen.
    #: Each executor checks the type of the handles it is given back.
    RunHandle: TypeAlias = (
        asyncio.Task[None] | threading.Thread | Served | Forked | subprocess.Popen[bytes] | None
    )


def new_run_id() -> str:
    """A new run's id: a random UUID's 32 hex digits."""
    import uuid  # on the first run: a waiting scheduler needs no uuid (nor platform)

    return uuid.uuid4().hex


# Messages are kept short: a record is not a log.
MAX_MESSAGE = 2000
# A failure's traceback is kept whole up to this many characters, else its end.
MAX_TRACEBACK = 64 * 1024


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
    due: datetime | None = None  # when the scheduler was due to start it (see Recorded)
    handle: RunHandle = None  # the executor's own (see RunHandle)
    root: tuple[int, int | None] | None = None  # a process run's pid and its start time
    traceback: str | None = None  # the failure's, for the finishing record
    # Its run record and timeout wait for its process to exist (see Host.began).
    pending: bool = False
    # Its run record was written by a claim on a shared history (runtime/shared.py).
    claimed: bool = False
    # When its work returned, set in the run's own thread (see Host.returned): the loop
    # may see that end late, behind another run that held it.
    returned_at: datetime | None = None
    # When an async run's coroutine first ran (see Host.stepped): a loop held by another
    # run may start it past its timeout.
    stepped_at: datetime | None = None
    # A prepared async run's body waits on this until launched (True) or dropped (False).
    gate: asyncio.Future[bool] | None = None
    # A prepared run whose function raised when called ahead: the message of its failure.
    uncalled: str | None = None
    # A prepared async run whose first step its executor takes itself, at its start (see
    # AsyncExecutor.go): the coroutine and the context its asyncio task runs it in.
    eager: tuple[contextvars.Context, Coroutine[Any, Any, object]] | None = None
    # How that first step ended (an executors._FirstStep), once taken.
    first_step: object = None
    # Its asyncio task has taken its own first step and waits on the gate: only then can
    # the executor take the body's first step for it (see AsyncExecutor.go).
    at_gate: bool = False

    @property
    def state(self) -> str:
        """``"running"``, ``"terminating"`` (asked to stop, its work not ended yet) or
        ``"finished"``."""
        if self.finished:
            return "finished"
        return "running" if self.reason is None else "terminating"


@dataclass
class Host:
    """What executors use of the scheduler."""

    loop: asyncio.AbstractEventLoop
    finish: Callable[[Run, str, str | None], None]  # the run ended with this action and message
    kill_grace: float  # seconds between SIGTERM and SIGKILL, and for abandoned work
    spawn: Callable[[Coroutine[Any, Any, None]], None]  # run a coroutine the scheduler keeps
    procs: ProcessRegistry | None = None  # the durable list of live process trees, if any
    stopping: Callable[[], bool] = lambda: False  # the scheduler is shutting down
    # ``run`` was asked to stop, its grace is over and it is still alive (a thread that
    # ignores its flag): the scheduler lets (virtual) time go on.
    overdue: Callable[[Run], None] = lambda run: None
    # The run's process exists now (executors with ``records_when_started``): its run
    # record is written, stamped now, and its timeout counts from now; then ``go`` (if
    # not None: what lets its body run) is called, unless the run was recorded already.
    began: Callable[[Run, Callable[[], None] | None], None] = lambda run, go: None
    # Called in a thread run's own thread when its function has returned: the time of
    # its end is taken there, not when the loop gets to it.
    returned: Callable[[Run], None] = lambda run: None
    # Called when an async run with a timeout runs its first line.
    stepped: Callable[[Run], None] = lambda run: None
    # Where process and command runs' output lines go, ``(task, stream, line)``
    # (:mod:`conddsl.runtime.output`); None: the children write where the scheduler does.
    output: Callable[[str, str, str], None] | None = None


class Executor(Protocol):
    """An execution (main, async, thread, process, command): starts and stops runs, and
    reports through its :class:`Host` how each ended (``host.finish``, exactly once).

    Time on a virtual clock stands still from the moment the scheduler asks a run to
    stop until the run ends (or ``host.overdue(run)``): executors know nothing of clocks.
    """

    #: Whether the run record waits for the run's process to exist (``host.began``):
    #: its timeout then counts from there.
    records_when_started: bool

    def new_flag(self) -> TerminationFlag:
        """The termination flag a new run of this execution gets."""
        ...

    def start(self, run: Run) -> Awaitable[None] | None:
        """Start ``run``; an awaitable (a main coroutine's) is awaited by the scheduler."""
        ...

    def terminate(self, run: Run) -> None:
        """Ask ``run`` to stop (``run.reason`` is set already); it ends when it ends."""
        ...

    def shutting_down(self) -> None:
        """The scheduler has begun shutting down (runs still alive get their last grace)."""
        ...


def outcome_of(exc: BaseException | None) -> tuple[str, str | None]:
    """The action and message for a run that returned (None) or raised ``exc``."""
    if exc is None:
        return "success", None
    if isinstance(exc, TaskTerminationException):
        return "terminate", exception_text(exc)
    if isinstance(exc, Inaction):
        return "inaction", exception_text(exc)
    return "fail", exception_text(exc)


def ended(run: Run, exc: BaseException | None) -> tuple[str, str | None]:
    """``outcome_of(exc)``, keeping a failure's traceback on ``run`` for its record."""
    action, message = outcome_of(exc)
    if action == "fail" and exc is not None:
        run.traceback = traceback_text(exc)
    return action, message


def traceback_text(exc: BaseException) -> str:
    """The exception's traceback as Python prints it from the task's own code (the
    executors' and asyncio's frames above it left out), cut to its last MAX_TRACEBACK chars."""
    text = "".join(traceback.format_exception(type(exc), exc, _from_task(exc.__traceback__)))
    return text if len(text) <= MAX_TRACEBACK else "…" + text[-MAX_TRACEBACK + 1 :]


# Frames a run's exception passes through on its way out of the task: conddsl's runtime
# (the executors, the fork server's child) and asyncio (a coroutine run by asyncio.run).
_WRAPPERS = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(asyncio.__file__))


def _from_task(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` from its first frame outside the wrappers: what the task's code did (None,
    just the exception, when the task has no frame of its own: a builtin that raised)."""
    while tb is not None and os.path.dirname(tb.tb_frame.f_code.co_filename) in _WRAPPERS:
        tb = tb.tb_next
    return tb


def exception_text(exc: BaseException) -> str:
    """The exception's text (its class name when it has none), cut to MAX_MESSAGE."""
    try:
        if isinstance(exc, SystemExit):
            text = f"SystemExit: {exc.code}"
        else:
            text = str(exc) or type(exc).__name__
    except Exception as failed:  # a task's own exception class: its run is still recorded
        text = f"{type(exc).__name__} (its text could not be made: {type(failed).__name__})"
    return clip(text)


def clip(text: str) -> str:
    """``text`` cut to MAX_MESSAGE characters, keeping the end (where errors say what happened)."""
    return text if len(text) <= MAX_MESSAGE else "…" + text[-MAX_MESSAGE + 1 :]
