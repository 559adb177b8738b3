"""Task bodies for the runtime tests: importable, so process tasks behave as in a real project."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime

from conddsl.runtime import TaskTerminationException, TerminationFlag
from conddsl.runtime.processes import read_stat

# Lets tests release threads that ignore their flag, so none outlives its test.
RELEASE = threading.Event()


# ---------------------------------------------------------------- bodies that run until ended


async def async_forever() -> None:
    """Wait until cancelled."""
    await asyncio.Event().wait()


def thread_forever(flag: TerminationFlag = TerminationFlag()) -> None:  # noqa: B008
    """Poll the flag as the seed page asks, and stop by raising TaskTerminationException."""
    while not flag.wait(0.005):
        pass
    raise TaskTerminationException()


def process_forever() -> None:
    """Sleep until killed."""
    time.sleep(3600)


FOREVER = {"async": async_forever, "thread": thread_forever, "process": process_forever}


def thread_ignoring_flag(flag: TerminationFlag = TerminationFlag()) -> None:  # noqa: B008
    """Never look at the flag; end only when the test releases it."""
    RELEASE.wait(30)


async def async_ignoring_cancel(seconds: float = 0.25) -> None:
    """Swallow every cancellation for ``seconds`` of real time, then return."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------- process trees


def write_pids(path: str, *pids: int) -> None:
    """Write pids (one a line) atomically, so a reader never sees half a file."""
    with open(path + ".tmp", "w") as file:
        file.write("\n".join(map(str, pids)))
    os.replace(path + ".tmp", path)


def read_pids(path: str, timeout: float = 5.0) -> list[int]:
    """The pids a task wrote, waiting for the file to appear."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no pid file {path}")
        time.sleep(0.002)
    with open(path) as file:
        return [int(line) for line in file.read().split()]


def gone(pid: int) -> bool:
    """Whether no process has this pid any more (a zombie waiting for its reaper counts)."""
    info = read_stat(pid)
    return info is None or info.state in ("Z", "X")


def ignore_sigterm(pid_file: str) -> None:
    """A process task that ignores SIGTERM and reports its pid."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    write_pids(pid_file, os.getpid())
    time.sleep(3600)


_STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"


def spawn_grandchildren(pid_file: str) -> None:
    """A process task with two grandchildren ignoring SIGTERM: one in its group, one that left."""
    stay = subprocess.Popen([sys.executable, "-c", _STUBBORN])
    leave = subprocess.Popen([sys.executable, "-c", _STUBBORN], start_new_session=True)
    time.sleep(0.3)  # let both install their handler
    write_pids(pid_file, os.getpid(), stay.pid, leave.pid)
    time.sleep(3600)


def report_time(path: str) -> None:
    """A quick process task: write the wall time it ran at."""
    with open(path, "a") as file:
        file.write(datetime.now().isoformat() + "\n")


def raise_value_error() -> None:
    """Fail with a known message."""
    raise ValueError("disk on fire")


def raise_deep(depth: int, char: str, count: int) -> None:
    """Fail ``depth`` calls down with ``count`` times ``char`` as message (a huge traceback)."""
    if depth == 0:
        raise ValueError(char * count)
    raise_deep(depth - 1, char, count)


def exit_hard() -> None:
    """Leave without reporting, with exit code 3."""
    os._exit(3)


def kill_self() -> None:
    """Die by a signal nobody in the scheduler sent."""
    os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------- descendants that escape


def _sleeper(*, new_session: bool) -> int:
    return subprocess.Popen(["sleep", "3600"], start_new_session=new_session).pid


def double_fork_daemon(pid_file: str, then_return: bool = False) -> None:
    """Start a daemon the classic way (fork, setsid, fork, the middle one exits) and
    report its pid; then sleep (or return)."""
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.setsid()
        os.write(write, str(_sleeper(new_session=False)).encode())
        os._exit(0)
    os.waitpid(middle, 0)
    write_pids(pid_file, int(os.read(read, 32)))
    if not then_return:
        time.sleep(3600)


def setsid_child(pid_file: str) -> None:
    """Start a child in a session of its own, report it, sleep."""
    write_pids(pid_file, _sleeper(new_session=True))
    time.sleep(3600)


def fork_on_sigterm(pid_file: str) -> None:
    """On SIGTERM, start a child in a session of its own, report it and exit."""

    def on_sigterm(*_: object) -> None:
        write_pids(pid_file, _sleeper(new_session=True))
        os._exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    write_pids(pid_file + ".ready", os.getpid())
    time.sleep(3600)


def count_sigterms(path: str, linger: float = 0.5) -> None:
    """Write a line to ``path`` for each SIGTERM, and end ``linger`` seconds after the
    first (time for a second one to come): ``path`` says how many it got."""
    got: list[int] = []

    def on_sigterm(*_: object) -> None:
        got.append(1)
        with open(path, "a") as file:
            file.write("SIGTERM\n")

    signal.signal(signal.SIGTERM, on_sigterm)
    write_pids(path + ".ready", os.getpid())
    while not got:
        time.sleep(0.005)
    ends = time.monotonic() + linger
    while time.monotonic() < ends:  # (a handler cuts a sleep short: sleep what is left)
        time.sleep(max(ends - time.monotonic(), 0))


def leave_a_child(pid_file: str) -> None:
    """Start a child in a session of its own, report it, and return at once."""
    write_pids(pid_file, _sleeper(new_session=True))


def report_death_signal(path: str) -> None:
    """A process task: write the signal Linux sends it when its parent ends (0: none)."""
    import ctypes

    number = ctypes.c_int(0)
    ctypes.CDLL(None, use_errno=True).prctl(2, ctypes.byref(number), 0, 0, 0)  # GET_PDEATHSIG
    with open(path, "w") as file:
        file.write(str(number.value))


def report_open_fds(folder: str, name: str) -> None:
    """A process task: write the descriptors it holds open (their targets) to a file."""
    fds = []
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        with contextlib.suppress(OSError):
            fds.append(os.readlink(f"/proc/self/fd/{fd}"))
    write_pids(os.path.join(folder, name), len(fds))
