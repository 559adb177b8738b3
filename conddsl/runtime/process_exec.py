"""Running tasks in child processes: Python functions (process) and programs (command).

Python process tasks are forked (``multiprocessing`` fork context, Linux): the
function needs no pickling, and the child starts its own session so the whole
tree can be signalled. The scheduler never waits on a dying process: it watches
the process's sentinel (process) or a pidfd of the program (command; without
pidfds it polls). Programs start with ``subprocess.Popen`` (``vfork``, quick) and
no watcher thread each, which asyncio's subprocesses would take.

Each tree is listed in the scheduler's process registry while it lives
(:mod:`conddsl.runtime.leftovers`), so that a scheduler that died leaves none
running past the next start. A forked child also asks Linux for SIGTERM when the
scheduler's thread that forked it dies (``PR_SET_PDEATHSIG``): its own
descendants, in its group or not, are left to the next start.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import IO, Any

from conddsl.runtime.flags import TerminationFlag
from conddsl.runtime.processes import TreeKiller, keep_view, read_stat, scanner_for
from conddsl.runtime.runs import Host, Run, clip, outcome_of

_STDERR_TAIL = 2000  # bytes of a failed command's stderr kept in its record
_POLL = 0.01  # seconds between looks at a program without a pidfd
_PR_SET_PDEATHSIG = 1


def _find_prctl() -> Callable[..., int] | None:
    """libc's prctl (Linux), looked up in the scheduler so that forked children have it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl: Callable[..., int] | None = None
_prctl_found = False


def exit_text(code: int) -> str:
    """'exit code 3' or 'killed by signal SIGKILL' for a return code (negative = signal)."""
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = str(-code)
    return f"killed by signal {name}"


class _TreeExecutor:
    """Termination shared by process and command runs: the tree gets SIGTERM, then SIGKILL."""

    holds_clock = True  # time stands still while a process dies

    def __init__(self, host: Host) -> None:
        self.host = host
        self._killers: dict[Run, TreeKiller] = {}

    def terminate(self, run: Run) -> None:
        """Ask the run's process tree to stop (at once if the process is not started yet)."""
        run.flag.set()
        pid = self._pid(run)
        if pid is not None and run not in self._killers:
            start = run.root[1] if run.root is not None else None
            killer = TreeKiller(pid, self.host.kill_grace, self.host.loop, start=start)
            self._killers[run] = killer
            killer.start()

    def _spawned(self, run: Run, pid: int) -> None:
        """The run's root process started: remember it, and list it in the registry."""
        info = read_stat(pid)
        run.root = (pid, info.start if info is not None else None)
        if self.host.procs is not None:
            self.host.procs.add(run.run_id, run.task.name, *run.root)
        # Its tree may have to be ended: have a recent reading of /proc to start from.
        keep_view(scanner_for(self.host.loop))

    def _finish(self, run: Run, action: str, message: str | None) -> None:
        """The run's tree is gone: unlist it and record the run."""
        if self.host.procs is not None and run.root is not None:
            self.host.procs.discard(run.run_id)
        self.host.finish(run, action, message)

    def _pid(self, run: Run) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _gone(self, run: Run) -> bool:
        """Whether the run's tree is gone by a quick look; if so, its record is due now."""
        killer = self._killers.get(run)
        if killer is not None and not killer.gone_now():
            return False
        self._killers.pop(run, None)
        if killer is not None:
            killer.close()
        return True

    async def _ended(
        self, run: Run, action: str, message: str | None, since: float | None = None
    ) -> None:
        """Record the run once its whole tree is gone (``since``: when its root ended)."""
        killer = self._killers.pop(run, None)
        if killer is not None and not killer.gone_now():
            await killer.wait_gone(since)
        elif killer is not None:
            killer.close()
        self._finish(run, action, message)


class ProcessExecutor(_TreeExecutor):
    """Runs a Python function in a forked child process in its own session."""

    def __init__(self, host: Host) -> None:
        global _prctl, _prctl_found
        super().__init__(host)
        self._mp = multiprocessing.get_context("fork")
        if not _prctl_found:
            _prctl, _prctl_found = _find_prctl(), True

    def new_flag(self) -> TerminationFlag:
        """A flag the child sees too (set before the SIGTERM)."""
        return TerminationFlag(self._mp.Event())

    def start(self, run: Run) -> None:
        """Fork the child and watch its sentinel."""
        reader, writer = self._mp.Pipe(duplex=False)
        process = self._mp.Process(
            target=_child,
            args=(run.task.func, run.task.kwargs(run.flag), writer, os.getpid()),
            name=f"conddsl:{run.task.name}",
        )
        try:
            process.start()
        except OSError as exc:
            reader.close()
            writer.close()
            self.host.finish(run, "fail", f"could not start a process: {exc}")
            return
        writer.close()
        run.handle = (process, reader)
        self._spawned(run, process.pid)
        self.host.loop.add_reader(process.sentinel, self._exited, run)

    def _pid(self, run: Run) -> int | None:
        return run.handle[0].pid if run.handle else None

    def _exited(self, run: Run) -> None:
        ended = time.monotonic()
        process, reader = run.handle
        self.host.loop.remove_reader(process.sentinel)
        process.join()  # already over: this only reaps it
        outcome: Any = None
        try:
            if reader.poll():
                outcome = reader.recv()
        except Exception:  # cut short (killed while sending): treated as no result
            outcome = None
        finally:
            reader.close()
        code = process.exitcode if process.exitcode is not None else -1
        process.close()
        if run.reason is not None:  # terminated: how it died is what matters
            outcome = ("terminate", exit_text(code))
        elif outcome is None:
            outcome = ("fail", f"the process ended without a result ({exit_text(code)})")
        if self._gone(run):  # the usual case: no task hop before the record
            self._finish(run, *outcome)
        else:
            self.host.spawn(self._ended(run, *outcome, ended))


def _child(func: Any, kwargs: dict[str, Any], conn: Any, parent: int) -> None:
    """The child's side: a session of its own, default signals, one result sent back."""
    os.setsid()
    # The parent's handlers (shutdown on SIGINT/SIGTERM) mean nothing here: reset them
    # before anything can send one (the death signal below, or the scheduler's killer).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # SIGTERM when the scheduler dies (see the module docstring); ctypes reports a
    # failure as -1 (errno), not as an exception: then the child just lacks it.
    asked = _prctl is not None and _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    if asked and os.getppid() != parent:  # it died before: nobody waits for a result
        os._exit(1)
    try:
        result = func(**kwargs)
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    except BaseException as exc:
        outcome = outcome_of(exc)
    else:
        outcome = outcome_of(None)
    try:
        conn.send(outcome)
    finally:
        conn.close()


class CommandExecutor(_TreeExecutor):
    """Runs a program (argv, no shell) in its own session; stderr's tail goes in a fail record."""

    def start(self, run: Run) -> None:
        """Start the program here (its cost counts in the scheduler's time slice); a
        coroutine on the loop waits for it."""
        task = run.task
        run.handle = None
        # stderr goes to a file, not a pipe: a grandchild holding it open can never
        # block on a full pipe, and its tail is read once the program has exited.
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - _body closes it
        try:
            process = subprocess.Popen(
                task.argv,
                stdin=subprocess.DEVNULL,
                stderr=stderr,
                cwd=task.cwd,
                env=task.env,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            stderr.close()
            missing = task.cwd if task.cwd and not os.path.isdir(task.cwd) else task.argv[0]
            what = "working directory" if missing == task.cwd else "executable"
            self._finish(run, "fail", f"{what} not found: {missing!r} ({exc.strerror})")
            return
        except OSError as exc:
            stderr.close()
            self._finish(run, "fail", f"could not start {task.argv[0]!r}: {exc}")
            return
        run.handle = process
        self._spawned(run, process.pid)
        self.host.spawn(self._body(run, process, stderr))

    def _pid(self, run: Run) -> int | None:
        return run.handle.pid if run.handle is not None else None

    async def _body(self, run: Run, process: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
        with stderr:
            code = await self._exit_code(process)
            if run.reason is not None:
                await self._ended(run, "terminate", exit_text(code), time.monotonic())
            elif code == 0:
                await self._ended(run, "success", None)
            else:
                text = _tail(stderr)
                message = f"{exit_text(code)}: {text}" if text else exit_text(code)
                await self._ended(run, "fail", clip(message))

    async def _exit_code(self, process: subprocess.Popen[bytes]) -> int:
        """Wait for the program to exit (a pidfd wakes the loop), reap it, return its code."""
        loop = self.host.loop
        try:
            fd = os.pidfd_open(process.pid)
        except (AttributeError, OSError):  # no pidfds (old kernel, not Linux): poll
            while (code := process.poll()) is None:
                await asyncio.sleep(_POLL)
            return code
        exited = loop.create_future()
        loop.add_reader(fd, _settle, exited)
        try:
            await exited
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        return process.wait()  # it has exited: this only reaps it


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _tail(file: IO[bytes]) -> str:
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - _STDERR_TAIL))
    return file.read().decode(errors="replace").strip()
