"""Termination under load: a mix of tasks, the bodies they run, and the process-table checks.

:func:`plan` draws ``count`` tasks of every execution type (async, thread, process,
command), each with a behaviour (ends by itself, waits to be terminated, ignores SIGTERM,
swallows its cancellation, ignores its thread flag, spawns grandchildren …), a timeout or
an end condition, and the finishing record it must get. Every task runs once (its start
condition is true until it has started), so every task has exactly one expected record.

Descendants are found two ways, each independent of the scheduler's own bookkeeping:
process tasks write ``pid start-time`` of themselves and their grandchildren to a file;
command tasks carry a marker in their environment, which every program they start
inherits and ``/proc/PID/environ`` shows.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conddsl.history import FINISH_ACTIONS, MemoryHistory
from conddsl.runtime import Inaction, TaskTerminationException, TerminationFlag

MARK = "CONDDSL_RELIABILITY_MARK"
RELEASE = threading.Event()  # set at the end of a run: frees threads that ignore their flag
KILL_GRACE = 0.5
SWALLOW = KILL_GRACE + 0.3  # how long a stubborn coroutine swallows its cancellation


# ---------------------------------------------------------------- /proc


def stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, state, start time in clock ticks) of a process, or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[1]), fields[0].decode(), int(fields[19])


def alive(pid: int, start: int | None = None) -> bool:
    """Whether the process lives (a zombie is dead); with ``start``, the same process."""
    found = stat(pid)
    if found is None or found[1] in ("Z", "X"):
        return False
    return start is None or found[2] == start


def marked(token: str) -> list[int]:
    """Live processes whose environment holds ``MARK=token``."""
    needle = f"{MARK}={token}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as file:
                environ = file.read()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(name)):
            found.append(int(name))
    return found


def write_pids(path: str, pids: list[int]) -> None:
    """Write ``pid start`` lines atomically (a reader never sees half a file)."""
    lines = []
    for pid in pids:
        found = stat(pid)
        if found is not None:
            lines.append(f"{pid} {found[2]}")
    with open(path + ".tmp", "w") as file:
        file.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)


def read_pids(path: str) -> list[tuple[int, int]]:
    """The (pid, start) pairs a task reported; none if it never got to write them."""
    try:
        with open(path) as file:
            return [tuple(map(int, line.split())) for line in file if line.strip()]
    except FileNotFoundError:
        return []


def open_fds() -> int:
    """How many file descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------- task bodies


async def async_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def async_fail(seconds: float) -> None:
    await asyncio.sleep(seconds)
    raise ValueError("async body failed on purpose")


async def async_swallow() -> None:
    """Wait to be cancelled, then swallow every cancellation for SWALLOW seconds and return."""
    end = None
    while end is None or time.monotonic() < end:
        try:
            await asyncio.sleep(0.02 if end else 3600)
        except asyncio.CancelledError:
            end = end or time.monotonic() + SWALLOW


def thread_wait(flag: TerminationFlag = TerminationFlag()) -> None:  # noqa: B008
    """Block on the flag (no polling) and stop as asked."""
    flag.wait()
    raise TaskTerminationException()


def thread_ignore(flag: TerminationFlag = TerminationFlag()) -> None:  # noqa: B008
    """Never look at the flag; end when the test releases it."""
    RELEASE.wait(120)


def thread_sleep(seconds: float) -> None:
    time.sleep(seconds)


def thread_inaction(seconds: float) -> None:
    time.sleep(seconds)
    raise Inaction("nothing to do")


def process_sleep(pid_file: str) -> None:
    write_pids(pid_file, [os.getpid()])
    time.sleep(3600)


def process_stubborn(pid_file: str) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    write_pids(pid_file, [os.getpid()])
    time.sleep(3600)


def _grandchild(leave_group: bool) -> int:
    pid = os.fork()
    if pid == 0:  # the grandchild: ignore SIGTERM, sleep, never return into the caller
        try:
            if leave_group:
                os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(3600)
        finally:
            os._exit(0)
    return pid


def process_tree(pid_file: str) -> None:
    """Two grandchildren ignoring SIGTERM: one in the task's group, one in a session of its own."""
    stay = _grandchild(leave_group=False)
    leave = _grandchild(leave_group=True)
    time.sleep(0.05)  # let both install their handler
    write_pids(pid_file, [os.getpid(), stay, leave])
    time.sleep(3600)


def process_return(seconds: float) -> None:
    time.sleep(seconds)


# Command lines. ``trap '' TERM`` is inherited by the children: SIGKILL must end them.
COMMANDS = {
    "sleep": ["sleep", "60"],
    "stubborn": ["/bin/sh", "-c", "trap '' TERM; sleep 60 & sleep 60 & wait"],
    "setsid": ["/bin/sh", "-c", "trap '' TERM; setsid sleep 60 & sleep 60"],
    "true": ["true"],
    "exit3": ["/bin/sh", "-c", "echo no space left >&2; exit 3"],
}


# ---------------------------------------------------------------- the plan


class CountingHistory(MemoryHistory):
    """A MemoryHistory that also keeps which tasks started and finished, for a cheap poll
    (``records()`` of thousands of records costs the loop tens of milliseconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.started: set[str] = set()
        self.finished: set[str] = set()

    def record(self, task, action, **kwargs):
        found = super().record(task, action, **kwargs)
        (self.finished if action in FINISH_ACTIONS else self.started).add(task)
        return found


class Once:
    """True until the task has started once (reads the history)."""

    def is_true(self, at: datetime, *, task: str, history: Any, **context: object) -> bool:
        return history.last(task, "run") is None

    def next_change(self, after: datetime, **context: object) -> None:
        return None

    def __str__(self) -> str:
        return "once"


@dataclass
class Planned:
    """One task of the load: how it is registered and the finishing record it must get."""

    name: str
    execution: str
    behaviour: str
    action: str
    reason: str | None
    timeout: float | str
    end_cond: str | None = None
    args: tuple = ()
    argv: list[str] = field(default_factory=list)
    message: str | None = None  # a part the record's message must hold
    pid_file: str | None = None
    # "scheduler has run over X" may already hold when a task of a big load is first
    # looked at; a task is not started while its end condition holds (it would be ended
    # at once), so no record at all is right for such a task too.
    may_not_start: bool = False

    @property
    def forced(self) -> bool:
        return self.reason == "forced"

    @property
    def ends_at_shutdown(self) -> bool:
        """Its run ends only when the scheduler stops: forced, or a thread that ignores its
        flag (terminating until it is abandoned at shutdown)."""
        return self.forced or (self.execution == "thread" and self.behaviour == "ignore")


MAX_LIMIT = 2.5  # the longest timeout or end condition of a run that waits to be ended


def _limit(rng: random.Random) -> float:
    # Quarter seconds: few distinct condition texts, so the compile cache stays small.
    return 0.5 + rng.randrange(9) * 0.25


def _ending(rng: random.Random, planned: Planned) -> Planned:
    """Give a run that waits to be ended a timeout, an end condition, or nothing (forced)."""
    r = rng.random()
    limit = _limit(rng)
    if r < 0.45:
        planned.reason, planned.timeout = "timeout", limit
    elif r < 0.85:
        # A timeout far behind: an end condition applied late still shows as end_cond, and
        # its lateness is measured on its own (test_reliability_load.py).
        planned.reason, planned.timeout = "end_cond", limit + 20
        if rng.random() < 0.7:
            planned.end_cond = f"running for more than {limit} seconds"
        else:
            planned.end_cond = f"scheduler has run over {limit} seconds"
            planned.may_not_start = True
    else:
        planned.reason, planned.timeout = "forced", "never"
    planned.action = "terminate"
    return planned


BEHAVIOURS = {
    # execution: [(behaviour, weight)]
    "async": [("wait", 4), ("swallow", 1), ("succeed", 2), ("fail", 1)],
    "thread": [("wait", 4), ("ignore", 1), ("succeed", 2), ("inaction", 1)],
    "process": [("wait", 2), ("stubborn", 1), ("tree", 2), ("succeed", 1)],
    "command": [("wait", 2), ("stubborn", 1), ("setsid", 1), ("succeed", 1), ("fail", 1)],
}
SHARES = {"async": 0.3, "thread": 0.3, "process": 0.2, "command": 0.2}


def plan(count: int, folder: str, seed: int = 0) -> list[Planned]:
    """``count`` tasks: 30 % async, 30 % thread, 20 % process, 20 % command."""
    rng = random.Random(seed)
    executions = []
    for execution, share in SHARES.items():
        executions += [execution] * round(count * share)
    executions = (executions + ["async"] * count)[:count]
    rng.shuffle(executions)
    tasks = []
    for i, execution in enumerate(executions):
        names, weights = zip(*BEHAVIOURS[execution], strict=True)
        behaviour = rng.choices(names, weights)[0]
        planned = Planned(f"{execution}-{behaviour}-{i}", execution, behaviour, "", None, 60)
        tasks.append(_fill(rng, planned, folder))
    return tasks


def _fill(rng: random.Random, p: Planned, folder: str) -> Planned:
    quick = 0.1 + rng.randrange(8) * 0.2
    if p.behaviour == "succeed":
        p.action, p.timeout = "success", quick + 5
        p.args = (quick,)
        if p.execution == "command":
            p.argv = COMMANDS["true"]
        return p
    if p.behaviour in ("fail", "inaction"):
        p.action, p.timeout = ("inaction" if p.behaviour == "inaction" else "fail"), quick + 5
        p.args = (quick,)
        if p.execution == "command":
            p.argv, p.message = COMMANDS["exit3"], "exit code 3: no space left"
        return p
    p = _ending(rng, p)
    if p.execution == "async" and p.behaviour == "swallow":
        p.message = "ignored the cancellation; abandoned"
    if p.execution == "thread" and p.behaviour == "ignore":
        p.message = "abandoned at shutdown: the thread was still running"
    # How the task's own process died (its grandchildren are checked in /proc).
    if p.execution == "process":
        p.message = "killed by signal " + ("SIGKILL" if p.behaviour == "stubborn" else "SIGTERM")
    elif p.execution == "command":
        p.message = "killed by signal " + ("SIGTERM" if p.behaviour == "wait" else "SIGKILL")
    if p.execution == "process":
        p.pid_file = os.path.join(folder, p.name + ".pids")
        p.args = (p.pid_file,)
    if p.execution == "command":
        p.argv = COMMANDS["sleep" if p.behaviour == "wait" else p.behaviour]
    return p


def body(p: Planned):
    """The callable registered for a planned Python task (async tasks get a coroutine function)."""
    import functools

    if p.execution == "async":
        target = {
            "wait": async_sleep,
            "swallow": async_swallow,
            "succeed": async_sleep,
            "fail": async_fail,
        }[p.behaviour]
        args = (3600,) if p.behaviour == "wait" else p.args

        async def run() -> None:
            await target(*args)

        return run
    if p.execution == "thread" and p.behaviour in ("wait", "ignore"):
        return thread_wait if p.behaviour == "wait" else thread_ignore
    target = {
        ("thread", "succeed"): thread_sleep,
        ("thread", "inaction"): thread_inaction,
        ("process", "wait"): process_sleep,
        ("process", "stubborn"): process_stubborn,
        ("process", "tree"): process_tree,
        ("process", "succeed"): process_return,
    }[(p.execution, p.behaviour)]
    return functools.partial(target, *p.args)
