"""Running tasks in child processes: Python functions (process) and programs (command).

Python process tasks are forked (``multiprocessing`` fork context, Linux): the
function needs no pickling, and the child starts its own session so the whole
tree can be signalled. The scheduler never waits on a dying process: it watches
the process's sentinel (process) or awaits the asyncio subprocess (command).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import tempfile
import time
from typing import IO, Any

from conddsl.runtime.flags import TerminationFlag
from conddsl.runtime.processes import TreeKiller
from conddsl.runtime.runs import Host, Run, clip, outcome_of

_STDERR_TAIL = 2000  # bytes of a failed command's stderr kept in its record


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
            killer = self._killers[run] = TreeKiller(pid, self.host.kill_grace, self.host.loop)
            killer.start()

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
        self.host.finish(run, action, message)


class ProcessExecutor(_TreeExecutor):
    """Runs a Python function in a forked child process in its own session."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self._mp = multiprocessing.get_context("fork")

    def new_flag(self) -> TerminationFlag:
        """A flag the child sees too (set before the SIGTERM)."""
        return TerminationFlag(self._mp.Event())

    def start(self, run: Run) -> None:
        """Fork the child and watch its sentinel."""
        reader, writer = self._mp.Pipe(duplex=False)
        process = self._mp.Process(
            target=_child,
            args=(run.task.func, run.task.kwargs(run.flag), writer),
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
            self.host.finish(run, *outcome)
        else:
            self.host.spawn(self._ended(run, *outcome, ended))


def _child(func: Any, kwargs: dict[str, Any], conn: Any) -> None:
    """The child's side: a session of its own, default signals, one result sent back."""
    os.setsid()
    # The parent's handlers (shutdown on SIGINT/SIGTERM) mean nothing here.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
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
        """Start the program from a coroutine on the loop."""
        run.handle = None
        self.host.spawn(self._body(run))

    def _pid(self, run: Run) -> int | None:
        return run.handle.pid if run.handle is not None else None

    async def _body(self, run: Run) -> None:
        task = run.task
        # stderr goes to a file, not a pipe: a grandchild holding it open can never
        # block on a full pipe, and its tail is read once the program has exited.
        with tempfile.TemporaryFile() as stderr:
            try:
                process = await asyncio.create_subprocess_exec(
                    *task.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stderr=stderr,
                    cwd=task.cwd,
                    env=task.env,
                    start_new_session=True,
                )
            except FileNotFoundError as exc:
                missing = task.cwd if task.cwd and not os.path.isdir(task.cwd) else task.argv[0]
                what = "working directory" if missing == task.cwd else "executable"
                await self._ended(run, "fail", f"{what} not found: {missing!r} ({exc.strerror})")
                return
            except OSError as exc:
                await self._ended(run, "fail", f"could not start {task.argv[0]!r}: {exc}")
                return
            run.handle = process
            if run.reason is not None:
                self.terminate(run)  # asked to stop while it was starting
            code = await process.wait()
            if run.reason is not None:
                await self._ended(run, "terminate", exit_text(code), time.monotonic())
            elif code == 0:
                await self._ended(run, "success", None)
            else:
                text = _tail(stderr)
                message = f"{exit_text(code)}: {text}" if text else exit_text(code)
                await self._ended(run, "fail", clip(message))


def _tail(file: IO[bytes]) -> str:
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - _STDERR_TAIL))
    return file.read().decode(errors="replace").strip()
