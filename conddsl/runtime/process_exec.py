"""Running tasks in child processes: Python functions (process) and programs (command).

Both go by the fork server (:mod:`.forkserver`), which forks a *keeper* for each run:
a subreaper in a session of its own that forks the body (the function, or an ``exec``
of the program) once the scheduler says go, after listing the keeper in its process
registry (:mod:`conddsl.runtime.leftovers`), and ends whatever the body leaves. The
keeper is the run's root: the scheduler ends the tree under it, and records the run
once all of it is gone. The run's ``run`` record is written when the body is prepared
(forked, its function loaded, waiting on one read) and is told to go, and its timeout
counts from then: nothing but that read lies between the record and its first line.
The child sees the run's ``TerminationFlag`` through a pipe. The server reports each
keeper's end on its socket; the scheduler never waits on a dying process.

Without a server (it could not start, or died), and for functions that cannot be
passed by reference, the run is forked from the scheduler itself (``multiprocessing``
fork context, Linux) and watched by its sentinel, or a program is started with
``subprocess.Popen`` and watched by a pidfd (without pidfds it polls); either starts a
session of its own, so that its whole tree can be signalled, but has no keeper.
A child forked here also asks Linux for SIGTERM when the scheduler's thread that
forked it dies (``PR_SET_PDEATHSIG``); its own descendants, and programs started
here, are left to the next start, which ends what the registry lists.

When the scheduler is given somewhere for its runs' output (``Host.output``: ``conddsl
run``), each run's stdout and stderr are pipes that :mod:`.output` reads, whichever way
it starts; otherwise they are the scheduler's, and a program's stderr is a file.

Over 400 lines, one job: the process and command executors share the tree handling;
the fork server's side of each run (its callbacks) belongs with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from conddsl.runtime.flags import PipeFlag, TerminationFlag
from conddsl.runtime.forkserver import (
    ForkServer,
    ask_death_signal,
    by_reference,
    call_for_outcome,
    find_prctl,
    fitted,
    sigterm_blocked,
)
from conddsl.runtime.handles import Forked, Served
from conddsl.runtime.output import OutputPump, Pipe
from conddsl.runtime.processes import TreeKiller, keep_view, read_stat, scanner_for
from conddsl.runtime.runs import Host, Run, clip
from conddsl.runtime.tasks import Task

_STDERR_TAIL = 2000  # bytes of a failed command's stderr kept in its record
_POLL = 0.01  # seconds between looks at a program without a pidfd
# Seconds a starting scheduler waits for its fork server to import its tasks' modules;
# past it, runs queue for the server.
_WARM_TIMEOUT = 30.0


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

    records_when_started = True  # the run record says when its process exists

    def __init__(self, host: Host) -> None:
        self.host = host
        self._killers: dict[Run, TreeKiller] = {}

    def new_flag(self) -> TerminationFlag:
        """A flag the child process sees too (see ProcessExecutor)."""
        return TerminationFlag()

    def shutting_down(self) -> None:
        """Nothing to do: a tree asked to stop is killed after its grace anyway."""

    def terminate(self, run: Run) -> None:
        """Ask the run's process tree to stop (at once if the process is not started yet)."""
        run.flag.set()
        pid = self._pid(run)
        if pid is not None and run not in self._killers:
            start = run.root[1] if run.root is not None else None
            killer = TreeKiller(
                pid, self.host.kill_grace, self.host.loop, start=start, on_kill=self._on_kill(run)
            )
            self._killers[run] = killer
            killer.start()

    def _spawned(self, run: Run, pid: int, start: int | None = None, *, ready: bool = True) -> None:
        """The run's root process started: remember it and list it in the registry;
        if ``ready`` (its body runs already, or never will), record the run now, else
        :meth:`_go` does once its body is prepared."""
        if start is None:
            info = read_stat(pid)
            start = info.start if info is not None else None
        run.root = (pid, start)
        procs = self.host.procs
        if procs is not None:
            procs.add(run.run_id, run.task.name, *run.root)
        if ready:
            self._go(run, None)
        # Its tree may have to be ended: have a recent reading of /proc to start from.
        keep_view(scanner_for(self.host.loop))

    def _go(self, run: Run, go: Callable[[], None] | None) -> None:
        """Record the run (stamped now) and let its body run (``go``; None: it runs),
        once it is listed in the registry (:meth:`_spawned`)."""
        if go is not None and self.host.procs is not None:
            # Listed in the file, not only in memory: the server's "started" and
            # "prepared" may be read in one turn, before the write queued for its end,
            # and a scheduler killed after the go would leave a tree that has run lines
            # of its task and that its restart cannot find.
            self.host.procs.flush()
        self.host.began(run, go)

    def _finish(self, run: Run, action: str, message: str | None) -> None:
        """The run's tree is gone: unlist it and record the run."""
        if self.host.procs is not None and run.root is not None:
            self.host.procs.discard(run.run_id)
        self.host.finish(run, action, message)

    def _pid(self, run: Run) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _on_kill(self, run: Run) -> Callable[[float], None] | None:
        """What to tell once the run's tree got SIGKILL (None: nobody)."""
        return None

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
    """Runs a Python function (process) or a program (command) in a child process in its
    own session, forked by the fork server (see the module docstring)."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        # Their output piped, line by line to host.output (conddsl run), or not at all.
        self._pump = OutputPump(host.output) if host.output is not None else None
        self._commands = CommandExecutor(host, self._pump)  # programs while there is no server
        self._server = ForkServer(
            host.loop,
            started=self._on_started,
            prepared=self._on_prepared,
            failed=self._on_failed,
            exited=self._on_exited,
            lost=self._on_lost,
        )
        self._served: dict[int, Run] = {}
        self._keys = itertools.count()
        self._abandoned: set[int] = set()  # runs ended before the server forked them

    def new_flag(self) -> TerminationFlag:
        """A flag the child sees too (set before the SIGTERM)."""
        return PipeFlag()

    async def warm(self, tasks: Iterable[Task], timeout: float | None = None) -> None:
        """Start the fork server with the modules of ``tasks`` loaded (process and command
        tasks), so that their first runs need not wait for it."""
        modules: dict[str, str | None] = {}
        wanted = False
        for task in tasks:
            wanted = True
            reference = None if task.execution == "command" else by_reference(task.func)
            if reference is not None:
                modules.update(reference[1])
        if wanted and not self._server.broken:
            await self._server.preload(modules, _WARM_TIMEOUT if timeout is None else timeout)

    async def close(self) -> None:
        """Stop the fork server (every run has ended) and read the last of the output."""
        await self._server.close()
        if self._pump is not None:
            self._pump.close()

    def start(self, run: Run) -> None:
        """Hand the run to the fork server, or fork (or spawn) it here."""
        if run.task.execution == "command":
            self._start_command(run)
            return
        # Pickled at each start: a partial's arguments are sent as they are now.
        reference = None if self._server.broken else by_reference(run.task.func)
        try:
            cwd = os.getcwd()
        except OSError:  # removed: a child forked here still runs in it
            reference = None
        flag_fd = run.flag.open()
        pipes = self._pipes(run)
        output = tuple(pipe.write_fd for pipe in pipes)
        try:
            if reference is not None:
                key = next(self._keys)
                self._served[key] = run
                run.handle = Served(key)
                params = run.task.flag_params
                grace = self.host.kill_grace
                if self._server.launch(key, *reference, params, flag_fd, cwd, grace, output):
                    return
                del self._served[key]
            self._fork(run, flag_fd, output)
        finally:
            for pipe in pipes:  # the child (or the server) has its copy
                pipe.close_write()

    def _pipes(self, run: Run, tail: int = 0) -> tuple[Pipe, ...]:
        """The run's stdout and stderr pipes (``tail``: bytes of stderr's end kept), or
        none when output is not piped."""
        if self._pump is None:
            return ()
        name = run.task.name
        return self._pump.pipe(name, "stdout"), self._pump.pipe(name, "stderr", tail)

    def _start_command(self, run: Run) -> None:
        task = run.task
        if not self._server.broken:
            # stderr goes to a file, not a pipe: a grandchild holding it open can never
            # block on a full pipe, and its tail is read once the program has exited.
            # Piped instead when output is (its tail kept by the pump, which reads on).
            pipes = self._pipes(run, _STDERR_TAIL)
            key = next(self._keys)
            self._served[key] = run
            environ = task.env if task.env is not None else dict(os.environ)
            grace = self.host.kill_grace
            argv = list(task.argv)
            if pipes:
                out, err = pipes
                run.handle = Served(key, output=err)
                launched = self._server.launch_command(
                    key, argv, task.cwd, environ, err.write_fd, grace, out.write_fd
                )
                out.close_write()
                err.close_write()
            else:
                stderr = _temporary_file()
                run.handle = Served(key, stderr=stderr)
                launched = self._server.launch_command(
                    key, argv, task.cwd, environ, stderr.fileno(), grace
                )
                if not launched:
                    stderr.close()
            if launched:
                return
            del self._served[key]
        self._commands.start(run)

    def terminate(self, run: Run) -> None:
        """As for any tree; a run the server has not forked yet ends after the grace if
        it still has not (the server is stuck: it never runs)."""
        if run.task.execution == "command" and not isinstance(run.handle, Served):
            self._commands.terminate(run)
            return
        super().terminate(run)
        if isinstance(run.handle, Served) and run.handle.pid is None:
            self.host.loop.call_later(self.host.kill_grace, self._unforked, run)

    def _unforked(self, run: Run) -> None:
        if run.finished or not isinstance(run.handle, Served) or run.handle.pid is not None:
            return
        key = run.handle.key
        self._served.pop(key, None)
        self._server.forget(key)
        self._abandoned.add(key)  # killed the moment it is reported forked
        _close_stderr(run)
        self._finish(run, "terminate", "never started: the fork server did not fork it")

    def _on_started(self, key: int, pid: int, start: int | None) -> None:
        if key in self._abandoned:
            self._abandoned.discard(key)
            for kill in (os.killpg, os.kill):  # its group once it made one, else itself
                with contextlib.suppress(OSError):
                    kill(pid, signal.SIGKILL)
            return
        run = self._served.get(key)
        if run is None:
            return
        served(run).pid = pid
        if run.flag.is_set():  # terminated before it was forked: end it, it never runs
            self._spawned(run, pid, start)
            self.terminate(run)
        else:  # recorded, and let go, once its body is prepared (_on_prepared)
            self._spawned(run, pid, start, ready=False)

    def _on_prepared(self, key: int) -> None:
        """Run ``key``'s body waits for go, its function loaded: record the run, go."""
        run = self._served.get(key)
        if run is None or run.finished or served(run).pid is None:
            return  # ended: its body never goes
        if run.flag.is_set():
            # Asked to stop meanwhile: its body never goes. The SIGTERM may have come
            # before its keeper forked it, and reached the keeper alone (a fork passes no
            # pending signal on): the body, in the group now, would wait for go until
            # SIGKILL. A program's body has run no line of the program: another SIGTERM
            # ends it. A function's body looks at the flag itself before its first line
            # (forkserver._child): it may have imported the task's module since, task code
            # that may handle SIGTERM, which must not get a second one.
            killer = self._killers.get(run)
            if killer is not None and run.task.execution == "command":
                killer.term_again()
            return
        self._go(run, functools.partial(self._server.go, key))

    def _on_failed(self, key: int, text: str) -> None:
        self._server.forget(key)
        run = self._served.pop(key, None)
        if run is not None:
            _close_stderr(run)
            self._finish(run, "fail", text)

    def _on_exited(self, key: int, code: int, outcome: tuple[Any, ...] | None) -> None:
        self._server.forget(key)
        run = self._served.pop(key, None)
        if run is None:
            return
        if run.task.execution == "command" and outcome is None and run.reason is None:
            outcome = ("success", None)  # a program sends nothing: its exit code says
            if code != 0:
                handle = served(run)
                if handle.output is not None and self._pump is not None:
                    text = self._pump.settle(handle.output)
                else:
                    text = _tail(handle.stderr) if handle.stderr is not None else ""
                outcome = ("fail", clip(f"{exit_text(code)}: {text}" if text else exit_text(code)))
        _close_stderr(run)
        if outcome is None and run.reason is None and served(run).pid is not None:
            # No word from the body: its keeper may have been killed before it could end
            # what the body left (it ends all of it otherwise, and this finds nothing).
            self.terminate(run)
        self._conclude(run, code, outcome, time.monotonic())

    def _on_lost(self, code: int | None) -> None:
        """The server died: runs not forked yet are forked here; what is left of the
        others is ended."""
        why = "the fork server ended" + (f" ({exit_text(code)})" if code is not None else "")
        runs, self._served = self._served, {}
        self._abandoned.clear()
        for run in runs.values():
            if served(run).pid is None:
                _close_stderr(run)
                if run.flag.is_set():
                    self._finish(run, "terminate", "never started")
                elif run.task.execution == "command":
                    self._commands.start(run)
                else:
                    self._fork(run, run.flag.open())
                continue
            _close_stderr(run)
            self.terminate(run)  # its root got SIGTERM with the server; the rest may not have
            outcome = ("terminate", why) if run.reason is not None else ("fail", why)
            self.host.spawn(self._ended(run, *outcome, time.monotonic()))

    def _fork(self, run: Run, flag_fd: int, output: tuple[int, ...] = ()) -> None:
        """Fork the child from the scheduler and watch its sentinel (``output``: its
        stdout and stderr, if piped)."""
        import multiprocessing  # only without the fork server: ~0.4 MiB of RSS otherwise

        # Found before the fork, so that the child has it (ctypes, ~0.3 MiB of RSS, loads
        # at the first such run, not in every scheduler).
        find_prctl()
        forking = multiprocessing.get_context("fork")
        reader, writer = forking.Pipe(duplex=False)
        process = forking.Process(
            target=_child,
            args=(
                *(run.task.func, run.task.flag_params, flag_fd, writer),
                *(os.getpid(), self._server.fds, output),
            ),
            name=f"conddsl:{run.task.name}",
        )
        # Forked with SIGTERM blocked, which the child unblocks once it has reset our
        # handler (a host's, conddsl run's): until then that handler would swallow a
        # SIGTERM meant for the run, sent as soon as the run is asked to stop.
        try:
            with sigterm_blocked():
                process.start()
        except OSError as exc:
            reader.close()
            writer.close()
            os.close(flag_fd)
            self._finish(run, "fail", f"could not start a process: {exc}")
            return
        writer.close()
        os.close(flag_fd)
        run.handle = Forked(process, reader)
        self._spawned(run, process.pid)
        self.host.loop.add_reader(process.sentinel, self._exited, run)

    def _on_kill(self, run: Run) -> Callable[[float], None] | None:
        # Its keeper dies by our hand: the server need not look for what it left.
        handle = run.handle
        if isinstance(handle, Served):
            return functools.partial(self._server.kill_sent, handle.key)
        return None

    def _pid(self, run: Run) -> int | None:
        handle = run.handle
        if isinstance(handle, Served):
            return handle.pid
        if isinstance(handle, Forked):
            return handle.process.pid
        return None

    def _finish(self, run: Run, action: str, message: str | None) -> None:
        run.flag.close()
        super()._finish(run, action, message)

    def _exited(self, run: Run) -> None:
        ended = time.monotonic()
        assert isinstance(run.handle, Forked)
        process, reader = run.handle.process, run.handle.reader
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
        self._conclude(run, code, outcome, ended)

    def _conclude(self, run: Run, code: int, outcome: tuple[Any, ...] | None, ended: float) -> None:
        """The run's root exited with ``code`` after sending ``outcome`` (None: nothing;
        else its action, message and, from a body, its traceback)."""
        if run.reason is not None:  # terminated: how it died is what matters
            outcome = ("terminate", exit_text(code))
        elif outcome is None:
            outcome = ("fail", f"the process ended without a result ({exit_text(code)})")
        action, message, *trace = outcome
        if action == "fail" and trace:
            run.traceback = trace[0]
        if self._gone(run):  # the usual case: no task hop before the record
            self._finish(run, action, message)
        else:
            self.host.spawn(self._ended(run, action, message, ended))


def served(run: Run) -> Served:
    """The handle of a run handed to the fork server."""
    assert isinstance(run.handle, Served), run.handle
    return run.handle


def _close_stderr(run: Run) -> None:
    """Close a served command's stderr file (its tail is read, or never will be)."""
    if isinstance(run.handle, Served) and run.handle.stderr is not None:
        run.handle.stderr.close()
        run.handle.stderr = None


def _child(
    func: Any,
    params: tuple[str, ...],
    flag_fd: int,
    conn: Any,
    parent: int,
    server_fds: tuple[int, ...],
    output: tuple[int, ...] = (),
) -> None:
    """The side of a child forked from the scheduler: a session of its own, default
    signals, one result sent back."""
    os.setsid()
    # A host's loop that handles signals (loop.add_signal_handler) has Python write each
    # signal's number to its wakeup descriptor, ours too since the fork: a signal that
    # this process (or the task's handler) catches would reach the host's handler, a
    # SIGTERM the run got would shut the host down. Not ours to wake.
    signal.set_wakeup_fd(-1)
    # The parent's handlers (shutdown on SIGINT/SIGTERM) mean nothing here: reset them
    # before anything can send one (the death signal below, or the scheduler's killer;
    # a SIGTERM it sent before waits, blocked since the fork: see ProcessExecutor._fork).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if ask_death_signal(signal.SIGTERM) and os.getppid() != parent:
        os._exit(1)  # the scheduler died before we asked: nobody waits for a result
    for fd in server_fds:  # the server ends when the scheduler does, not when we do
        os.close(fd)
    if output:
        for stream in (sys.stdout, sys.stderr):  # what the scheduler buffered is its own
            with contextlib.suppress(Exception):
                stream.flush()
        for target, fd in enumerate(output, start=1):  # 1: stdout, 2: stderr
            os.dup2(fd, target)
        # The scheduler's sys.stdout may not write to fd 1 (a host program's, conddsl
        # run's TaskOutput): the child's own, a line at a time, do.
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    action, message, trace = call_for_outcome(func, params, flag_fd)
    try:
        # Fitted: the scheduler reads the pipe only once we exited, so a send larger
        # than the pipe would never end.
        conn.send_bytes(fitted(lambda tb: pickle.dumps((action, message, tb)), trace))
    finally:
        conn.close()


class CommandExecutor(_TreeExecutor):
    """Runs a program (argv, no shell) in its own session; stderr's tail goes in a fail record."""

    def __init__(self, host: Host, pump: OutputPump | None = None) -> None:
        super().__init__(host)
        self._pump = pump  # output piped to it, or not

    def start(self, run: Run) -> None:
        """Start the program here (its cost counts in the scheduler's time slice); a
        coroutine on the loop waits for it."""
        task = run.task
        run.handle = None
        # stderr goes to a file, not a pipe: a grandchild holding it open can never
        # block on a full pipe, and its tail is read once the program has exited. When
        # output is piped, the pump reads on whatever happens (its tail kept there).
        stderr = _temporary_file()  # _body closes it
        out = err = None
        if self._pump is not None:
            out = self._pump.pipe(task.name, "stdout")
            err = self._pump.pipe(task.name, "stderr", _STDERR_TAIL)
        try:
            process = subprocess.Popen(
                task.argv,
                stdin=subprocess.DEVNULL,
                stdout=out.write_fd if out is not None else None,
                stderr=err.write_fd if err is not None else stderr,
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
        finally:
            for pipe in (out, err):
                if pipe is not None:
                    pipe.close_write()
        run.handle = process
        self._spawned(run, process.pid)
        self.host.spawn(self._body(run, process, stderr, err))

    def _pid(self, run: Run) -> int | None:
        return run.handle.pid if isinstance(run.handle, subprocess.Popen) else None

    async def _body(
        self, run: Run, process: subprocess.Popen[bytes], stderr: IO[bytes], err: Pipe | None
    ) -> None:
        with stderr:
            code = await self._exit_code(process)
            if run.reason is not None:
                await self._ended(run, "terminate", exit_text(code), time.monotonic())
            elif code == 0:
                await self._ended(run, "success", None)
            else:
                pump = self._pump
                text = pump.settle(err) if pump is not None and err is not None else _tail(stderr)
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


def _temporary_file() -> IO[bytes]:
    """An unnamed temporary file, closed by the caller with the run."""
    # Imported at the first run in a process: tempfile brings shutil and random (~0.7 MiB
    # of RSS), which a scheduler without such runs never needs.
    import tempfile

    return tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
