"""The fork server: a small process that forks the scheduler's process tasks for it.

Why not fork the scheduler itself: ``fork()`` copies the page tables of the process
that calls it while that process waits, and until the child ends every page the
parent writes is copied on its first write. Both grow with the scheduler's size
(its history, its tasks, the host program around it): a start pass of 1,000 tasks
stalled the loop for 28 ms in a fresh process and for 145 ms in one 1.5 GB larger.
Forking a process that runs threads can also leave the child stuck on a lock that
another thread held at the fork. The server is a fresh interpreter holding little
more than conddsl and the tasks' modules, with one thread: it forks in well under a
millisecond, and the scheduler never waits for it.

A function goes to the server by reference (pickled at each start: a module-level
function, or a ``functools.partial`` of one with picklable arguments). When the
scheduler starts serving, the server imports its process tasks' modules once, so
the children start with them loaded; a module it does not hold yet is imported by
the child that needs it (an import that crashes then takes one run, not the
server). Whatever cannot go by reference (a lambda, a closure, a function of
``__main__`` or of a package whose import is still running) is forked from the
scheduler as before (:mod:`.process_exec`). So is everything once the server could
not start, did not say it serves within ``_READY_TIMEOUT``, or died: it is not
started again.

The protocol: one Unix ``SOCK_SEQPACKET`` socket, one pickled tuple per message.

- scheduler -> server: ``("setup", sys_path, argv)``, ``("preload", modules)`` (at the
  scheduler's start: the modules of its process tasks), ``("start", key, payload,
  params, modules, cwd, environ, grace)`` with the run's flag pipe (its read end)
  and the read end of its go pipe attached; ``environ`` is None when it did not change
  since the last start. ``("killed", key, at)`` once the run's whole tree got SIGKILL
  (sent from ``at``, monotonic).
  ``("command", key, argv, cwd, environ, grace)`` with the
  program's stderr file and the go pipe attached. Either may carry, after those, the
  body's stdout (and, for ``start``, stderr) pipes: the body writes there (``conddsl
  run`` prefixes each line: :mod:`.output`). The scheduler writes a byte to the go
  pipe once the run is listed in its process registry and its body is prepared (or
  closes it: never go).
- server -> scheduler: ``("ready", pid)``, ``("preloaded",)``, ``("started", key, pid,
  start_time)`` (the keeper is forked), ``("prepared", key)`` (its body waits for go
  with nothing left before its first line), ``("failed", key, text)``, ``("exited",
  key, exit_code, outcome)``.

Each run gets a *keeper*: a process forked by the server that leads a session of
its own and is a subreaper (``PR_SET_CHILD_SUBREAPER``: every orphan of the run, a
double-forked daemon or a ``setsid`` child whose parent ended, becomes its child,
never init's). It forks the task's body at once; the body loads the function (and
sets up its output), says so, and runs no line of the task before the scheduler says
go, which it does after listing the keeper in its process registry and recording the
run (a scheduler killed at any instant leaves no process it does not know of
that has run a line of the task), and no fork lies between go and that first line.
The keeper is the run's root: the scheduler ends the tree under it. When the body has
ended, whatever it left is ended by the keeper (SIGTERM, SIGKILL after the kill
grace) before the keeper exits the way the body did. If the server dies (the
scheduler died), the keeper gets SIGTERM and ends the run's whole tree the same way.
If the keeper dies first (SIGKILLed), what it left is the server's (the subreaper
above it), which ends it the same way before it reports the keeper's end; when the
scheduler killed the tree itself (``killed``), the end is reported at once and what
outlived that SIGKILL (forked after the scheduler's reading of /proc) gets SIGKILL
from the server a moment after. The server never exits holding such orphans (init's
then, listed nowhere): it SIGKILLs them first, on its death signal too.

The body sends its outcome (JSON: action and message) to the server on a datagram
socket before it exits; the server reports it with the keeper's exit code once it
has reaped the keeper. The keeper sends its body's exit code the same way, then a word
once what the body left is gone. The server runs in a session of its own (a signal to the
scheduler's process group is the scheduler's to handle) and ends when the scheduler
closes its socket or dies (``PR_SET_PDEATHSIG``); its children then get SIGTERM the
same way.

Over 400 lines, one job: the server's protocol, its process and the keeper it forks
for each run are one exchange, read best together (both ends of each message).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import importlib
import importlib.util
import io
import json
import logging
import math
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from conddsl.runtime.flags import PipeReadEvent, TerminationFlag
from conddsl.runtime.processes import ProcInfo, Snapshot, read_stat
from conddsl.runtime.runs import clip, exception_text, outcome_of, traceback_text

log = logging.getLogger("conddsl.runtime")

_MAX_MESSAGE = 1 << 16  # bytes; a function whose pickle is larger is forked directly
# A body's outcome datagram, with room left for the server's report of it (pickled, no
# longer than its JSON) to fit in one message to the scheduler; below a pipe's 64 KiB.
MAX_OUTCOME = _MAX_MESSAGE - 1024
_MAX_REQUEST = 1 << 22  # bytes the server reads of one request (the environment rides along)
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_EXIT_CODE = "#exit"  # a keeper's datagram: its body's exit code, not an outcome
_DONE = "#done"  # a keeper's datagram: everything its body left is gone
_READY = "#ready"  # a body's datagram: set up (its function loaded), waiting for go
_LEFTOVER_POLL = 0.02  # seconds between looks at a run's leftovers while they die
_TERMINATED_LOOK = 0.05  # seconds a terminated run's leftovers get before the first look
_HELD_LOOK = 0.005  # seconds from a killed keeper's end (or an orphan's) to the look
_ORPHAN_LOOK = 0.5  # seconds between looks at orphans that were all signalled already
_CLOSE_WAIT = 2.0  # seconds a closed server gets to exit before it is killed
_READY_TIMEOUT = 20.0  # seconds a new server gets to say it serves (a Python starts in <1 s)
# Seconds of the server's messages the scheduler handles in one turn of its loop; the rest
# at the next turn (the socket stays readable). Each run's end costs 0.1-0.2 ms: 50 runs
# ending together held the loop for 10 ms.
_READ_SLICE = 0.001
# The server's program: find conddsl where the scheduler found it, then serve. ``-c``
# puts the working folder ('') first on sys.path: dropped before anything is imported,
# or a socket.py there (anybody's, in /tmp) would run in place of the standard library's.
_BOOT = (
    "import sys; sys.path[:] = [sys.argv[2], *(p for p in sys.path if p)]; "
    "from conddsl.runtime.forkserver import serve; serve(int(sys.argv[1]), int(sys.argv[3]))"
)


# ---------------------------------------------------------------- by reference


class _ReferencePickler(pickle.Pickler):
    """Pickles functions and classes by reference, refusing those of ``__main__`` (the
    server cannot import the scheduler's main script without running it)."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.modules: dict[str, str | None] = {}

    def reducer_override(self, obj: object) -> Any:
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)):
            module = getattr(obj, "__module__", None)
            if module in (None, "__main__", "__mp_main__"):
                raise pickle.PicklingError(f"{obj!r} is not importable by reference")
            if _importing(module):
                # Still being imported: it serves the scheduler from its import (an
                # unguarded app.run()), and importing it again would run that again.
                raise pickle.PicklingError(f"module {module!r} is still being imported")
            self.modules[module] = getattr(sys.modules.get(module), "__file__", None)
        return NotImplemented


def _importing(module: str) -> bool:
    """Whether ``module`` or a package above it is in the middle of its import."""
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        found = sys.modules.get(".".join(parts[:depth]))
        if getattr(getattr(found, "__spec__", None), "_initializing", False):
            return True
    return False


def by_reference(func: Callable[..., Any]) -> tuple[bytes, dict[str, str | None]] | None:
    """The pickle of ``func`` and the modules it names (with their files), or None when
    it cannot be passed by reference to another interpreter."""
    buffer = io.BytesIO()
    pickler = _ReferencePickler(buffer)
    try:
        pickler.dump(func)
    except Exception:  # PicklingError, or anything an odd object's __reduce__ raises
        return None
    payload = buffer.getvalue()
    if len(payload) > _MAX_MESSAGE:
        return None
    return payload, pickler.modules


def _import(name: str, file: str | None) -> types.ModuleType:
    """Import ``name``; if it is not on the path, load it from the file it came from."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if file is None or exc.name != name:
            raise
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


class _ReferenceUnpickler(pickle.Unpickler):
    def __init__(self, payload: bytes, modules: dict[str, str | None]) -> None:
        super().__init__(io.BytesIO(payload))
        self._files = modules

    def find_class(self, module: str, name: str) -> Any:
        if module not in sys.modules and module in self._files:
            _import(module, self._files[module])
        return super().find_class(module, name)


# ---------------------------------------------------------------- the server


def serve(fd: int, scheduler: int) -> NoReturn:
    """The server's main loop (``python -c _BOOT fd path scheduler-pid``): fork on
    request, reap, report."""
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the scheduler's to handle
    if ask_death_signal(signal.SIGTERM) and os.getppid() != scheduler:
        os._exit(0)  # the scheduler died before we could ask
    # A keeper SIGKILLed with its tree leaves its orphans to us, not to init: reaped at once.
    become_subreaper()
    # Loaded here, once: each keeper's exit uses it (_exit_like), and an import in each of
    # a hundred keepers ending at once costs up to milliseconds each.
    import resource  # noqa: F401

    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the poll through the pipe
    # Our death signal (the scheduler died), or anybody's SIGTERM: not a death on the
    # spot, which would hand the orphans we hold to init (see _Server.kill_orphans).
    dying: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: dying.append(True))
    results, results_for_children = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    results.setblocking(False)
    own = (sock.fileno(), wake_read, wake_write, results.fileno())
    server = _Server(sock, results, results_for_children, own)
    poller = select.poll()
    for watched in (sock.fileno(), wake_read, results.fileno()):
        poller.register(watched, select.POLLIN)
    with contextlib.suppress(_Gone):
        _send(sock, ("ready", os.getpid()))
        closed = False  # the scheduler closed the socket, or died
        while not dying:  # (a scheduler that died wants no more forks)
            ready = {fd for fd, _ in poller.poll(server.timeout())}
            if wake_read in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_read, 512):
                        pass
            # Outcomes first: a child sends its outcome before it exits, so one that is
            # reaped below has its outcome read already.
            server.read_outcomes()
            server.reap()
            server.end_orphans()
            if sock.fileno() in ready and not closed:
                closed = not server.read_requests()
            if server.requests:
                server.handle_request()
            elif closed:
                break
    server.kill_orphans()
    # Nothing to tear down: skip the interpreter's (a tenth of a second, which the
    # scheduler would wait for).
    _flush_output()
    os._exit(0)


class _Server:
    def __init__(
        self,
        sock: socket.socket,
        results: socket.socket,
        for_children: socket.socket,
        own: tuple[int, ...],
    ) -> None:
        self.sock = sock
        self.results = results
        self.for_children = for_children
        self.own = own  # the server's descriptors, which a child closes (not its modules')
        self.children: dict[int, int] = {}  # pid -> the scheduler's key for it
        self.outcomes: dict[int, Any] = {}  # keeper pid -> what its body sent
        self.codes: dict[int, int] = {}  # keeper pid -> its body's exit code (sent by it)
        self.graces: dict[int, float] = {}  # keeper pid -> its run's kill grace
        self.done: set[int] = set()  # keepers that said all their body left is gone
        # Reports of keepers that died before saying so (SIGKILLed): their orphans are ours
        # now (we are a subreaper), and each report waits until none is left (see
        # end_orphans); with its deadline for SIGKILL and when it was reaped, monotonic.
        self.held: list[tuple[tuple[Any, ...], float, float]] = []
        self.signalled: set[tuple[int, int, int]] = set()  # orphans signalled (pid, start, sig)
        self.look_at = 0.0  # monotonic: when to look for orphans in /proc again
        self.orphans = 0  # how many were reaped
        self.killed: set[int] = set()  # runs whose tree the scheduler SIGKILLed
        # A keeper the scheduler SIGKILLed is reported at once, but a process its body
        # forked after the scheduler's reading of /proc outlived that SIGKILL and is ours
        # now: look once for such orphans (SIGKILL: their run is over), off its report.
        self.sweep = False
        self.requests: collections.deque[tuple[tuple[Any, ...], list[int]]] = (
            collections.deque()
        )  # read, not served yet (one a turn of the loop, each after a look at the ends)

    def read_requests(self) -> bool:
        """Read every message waiting: a ``killed`` is served at once (it may free a held
        report, which must not wait behind a hundred forks), the others queue. False
        once the scheduler is gone."""
        # Not blocking while reading only: a send to the scheduler waits for room.
        self.sock.setblocking(False)  # (recv_fds drops its flags in Python 3.11)
        try:
            while True:
                try:
                    data, fds, _, _ = socket.recv_fds(self.sock, _MAX_REQUEST, 4)
                except BlockingIOError:
                    return True
                except ConnectionResetError:
                    return False
                if not data:
                    for fd in fds:
                        os.close(fd)
                    return False
                message = pickle.loads(data)
                if message[0] == "killed":
                    self.kill_sent(message[1], message[2])
                else:
                    self.requests.append((message, fds))
        finally:
            self.sock.setblocking(True)

    def handle_request(self) -> None:
        """Serve the first message queued."""
        message, fds = self.requests.popleft()
        if message[0] == "setup":
            sys.path[:], sys.argv[:] = message[1], message[2]
        elif message[0] == "preload":
            _preload(message[1])
            _send(self.sock, ("preloaded",))
        elif message[0] == "start":
            body = functools.partial(_child, fds[0], self.for_children, *message[2:6])
            self.start(message[1], message[6], message[7], _writing_to(fds[2:], body), fds)
        elif message[0] == "command":
            body = functools.partial(_exec_child, *message[2:5], fds[0], self.for_children)
            self.start(message[1], None, message[5], _writing_to(fds[2:], body), fds)

    def start(
        self,
        key: int,
        environ: dict[str, str] | None,
        grace: float,
        body: Callable[[int, Callable[[], None]], NoReturn],
        passed: list[int],
    ) -> None:
        """Fork the keeper of one run (``body``: what it forks, to run on go) and say
        which pid it got; ``passed``: the body's descriptor (the flag pipe, the program's
        stderr) and the read end of the run's go pipe."""
        if environ is not None:
            os.environ.clear()
            os.environ.update(environ)
        server = os.getpid()
        # Forked with SIGTERM blocked, which the keeper unblocks once its own handler is
        # in place: until then it has ours, which only notes the server's death (for this
        # loop), and would swallow a SIGTERM meant for the run (the scheduler sends it the
        # moment it reads "started" if the run was asked to stop already); one caught
        # before Python's after-fork reset in the child is even forgotten unhandled.
        try:
            with sigterm_blocked():  # (the keeper never returns)
                pid = os.fork()
                if pid == 0:
                    # The descriptors of the requests read but not served yet are theirs:
                    # a copy kept open here would hold their pipes open (no end of file).
                    queued = tuple(fd for _, fds in self.requests for fd in fds)
                    _keeper(server, self.own + queued, passed[1], grace, body, self.for_children)
        except OSError as exc:
            for fd in passed:
                os.close(fd)
            _send(self.sock, ("failed", key, f"could not start a process: {exc}"))
            return
        for fd in passed:
            os.close(fd)
        self.children[pid] = key
        self.graces[pid] = grace
        info = read_stat(pid)  # read before it can be reaped (only this loop reaps)
        _send(self.sock, ("started", key, pid, info.start if info is not None else None))

    def read_outcomes(self) -> None:
        while True:
            try:
                data = self.results.recv(_MAX_MESSAGE)
            except BlockingIOError:
                return
            with contextlib.suppress(ValueError, TypeError):
                pid, action, message, *trace = json.loads(data)
                if action == _EXIT_CODE:  # from a keeper: how its body ended
                    self.codes[int(pid)] = int(message)
                elif action == _DONE:
                    self.done.add(int(pid))
                elif action == _READY:
                    key = self.children.get(int(pid))
                    if key is not None:  # (not reaped yet: its keeper sent nothing after)
                        _send(self.sock, ("prepared", key))
                else:
                    text = None if message is None else str(message)
                    tb = str(trace[0]) if trace and trace[0] is not None else None
                    self.outcomes[int(pid)] = (str(action), text, tb)

    def reap(self) -> None:
        """Reap every child that ended (keepers, and orphans handed to us) and report
        the keepers."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            # It sent its outcome before it exited: read since the last look, it is
            # queued now.
            self.read_outcomes()
            key = self.children.pop(pid, None)
            outcome = self.outcomes.pop(pid, None)
            # How the body ended, which its keeper may not outlive (SIGKILLed with
            # the leftovers it was ending).
            code = self.codes.pop(pid, os.waitstatus_to_exitcode(status))
            grace = self.graces.pop(pid, 0.0)
            if key is None:
                self.orphans += 1
                self._look_soon()  # an orphan ended: a held report may be due
                continue
            report = ("exited", key, code, outcome)
            if pid in self.done or key in self.killed:
                self.done.discard(pid)
                if key in self.killed:
                    self.killed.discard(key)
                    self._sweep_soon()
                _send(self.sock, report)
            else:
                now = time.monotonic()
                self.held.append((report, now + grace, now))
                self._look_soon()

    def kill_sent(self, key: int, at: float) -> None:
        """The scheduler sent SIGKILL to run ``key``'s whole tree from ``at`` (monotonic):
        the keeper's end, at its hand, leaves nothing to look for (a report held for it
        goes now). A keeper that ended before (killed by another) may have left what the
        scheduler cannot see: its report waits for the look."""
        for index, (report, _, ended) in enumerate(self.held):
            if report[1] == key:
                if ended >= at:
                    del self.held[index]
                    self._sweep_soon()
                    _send(self.sock, report)
                return
        if key in self.children.values():
            self.killed.add(key)

    def _look_soon(self) -> None:
        """Look for orphans within ``_HELD_LOOK``: a keeper killed with its body is
        reaped a moment before the body (ours then), and keepers killed together share
        one reading of /proc."""
        now = time.monotonic()
        if not now < self.look_at <= now + _HELD_LOOK:
            self.look_at = now + _HELD_LOOK

    def _sweep_soon(self) -> None:
        """Look for orphans of a keeper the scheduler SIGKILLed (see ``sweep``)."""
        self.sweep = True
        self._look_soon()

    def timeout(self) -> int | None:
        """Milliseconds the loop may wait for an event (None: until one comes)."""
        if self.requests:
            return 0
        if not self.held and not self.sweep:
            return None
        return max(0, math.ceil((self.look_at - time.monotonic()) * 1000))

    def end_orphans(self) -> None:
        """End what dead keepers left (SIGTERM, SIGKILL after their grace) and send their
        held reports once nothing is left. A process whose keeper is gone is ours or has
        an ancestor that is ours (we are the subreaper above every keeper), while a
        keeper's own descendants are below it: our children that are not keepers, and
        everything under them, are every orphan there is. Which run each came from
        cannot be told, so each held report waits for all of them. Orphans looked for
        only after keepers the scheduler SIGKILLed (no report held) get SIGKILL at once."""
        if not self.held and not self.sweep:
            self.signalled.clear()
            return
        now = time.monotonic()
        if now < self.look_at:
            return
        if not self.held and not self._strangers():
            self.sweep = False  # only keepers are ours: nothing outlived the SIGKILL
            return
        left = new = False
        kill_at = min((deadline for _, deadline, _ in self.held), default=now)
        sig = signal.SIGKILL if now >= kill_at else signal.SIGTERM
        for info in self._orphans():
            left = True
            if (info.pid, info.start, sig) not in self.signalled:  # each signal once
                new = True
                self.signalled.add((info.pid, info.start, sig))
                with contextlib.suppress(OSError):
                    os.kill(info.pid, sig)
        if left:
            # The end of each of our children wakes us (and of those under them: they are
            # ours once it ended); only what was just signalled may fork meanwhile: look
            # again soon then.
            soon = now + _LEFTOVER_POLL
            self.look_at = soon if new else max(soon, min(now + _ORPHAN_LOOK, kill_at))
            return
        # An orphan that ended while /proc was read may have had children it was shown
        # as the parent of (ours now), and so may a keeper that died meanwhile: if
        # either is waiting to be reaped, look again.
        held, orphans = len(self.held), self.orphans
        self.reap()
        if len(self.held) != held or self.orphans != orphans:
            self.look_at = 0.0
            return
        held, self.held = self.held, []
        self.sweep = False
        for report, _, _ in held:
            _send(self.sock, report)

    def _strangers(self) -> bool:
        """Whether a child of ours is not a keeper, by one small read (what outlived a
        keeper is our child once its parents are gone); True when that cannot be read."""
        me = os.getpid()
        try:
            with open(f"/proc/{me}/task/{me}/children", "rb") as file:
                pids = file.read().split()
        except OSError:
            return True  # (no such file without CONFIG_PROC_CHILDREN): read all of /proc
        return any(int(pid) not in self.children for pid in pids)

    def kill_orphans(self) -> None:
        """SIGKILL every process of ours that no live keeper holds (the scheduler is gone:
        left to init, they would outlive it, listed nowhere). Keepers end their own trees
        at our death (their death signal)."""
        for info in self._orphans():
            with contextlib.suppress(OSError):
                os.kill(info.pid, signal.SIGKILL)

    def _orphans(self) -> Iterator[ProcInfo]:
        """Every live process of ours that no live keeper holds: our children that are not
        keepers and everything under them, by one read of the process table."""
        table = Snapshot()
        stack = [info for info in table.children(os.getpid()) if info.pid not in self.children]
        while stack:
            info = stack.pop()
            stack += table.children(info.pid)
            if info.state not in ("Z", "X"):
                yield info


def _preload(modules: dict[str, str | None]) -> None:
    """Import the modules here, once, so that every later child has them. A module that
    fails to import is left to the child, which reports the error as its run's."""
    for name, file in modules.items():
        if name not in sys.modules:
            with contextlib.suppress(BaseException):
                _import(name, file)


def _keeper(
    server: int,
    server_fds: tuple[int, ...],
    go_fd: int,
    grace: float,
    body: Callable[[int, Callable[[], None]], NoReturn],
    results: socket.socket,
) -> NoReturn:
    """A run's keeper (see the module docstring): fork the body (which waits for go),
    reap it and end what it left, then exit the way the body did."""
    status = None
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        # SIGTERM stays blocked (since the server's fork) until our handler replaces its.
        for number in (signal.SIGCHLD, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)
        if ask_death_signal(signal.SIGTERM) and os.getppid() != server:
            os._exit(1)  # the server died before we asked: the scheduler is gone
        become_subreaper()
        for fd in server_fds:  # the server's
            os.close(fd)
        keeper = os.getpid()
        terminated = []  # not empty once SIGTERM came: the group has it

        def on_sigterm(*_: object) -> None:
            terminated.append(True)
            # From the scheduler, the group has it already (passed on, the body would
            # get it twice), or it came before the body was forked (a fork does not pass
            # on a pending signal): a function's body sees the flag set then and ends by
            # SIGTERM itself, a program's gets another from the scheduler once it says it
            # is prepared (its body never goes then). From the server's death
            # (we are reparented before the death signal comes), it has not: pass it on
            # (what left the group is ended once the body is). SIGKILL what is left
            # after the grace.
            if os.getppid() != server:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                with contextlib.suppress(OSError):
                    os.killpg(0, signal.SIGTERM)
                signal.signal(signal.SIGTERM, on_sigterm)
            if not signal.getitimer(signal.ITIMER_REAL)[0]:
                signal.setitimer(signal.ITIMER_REAL, grace)

        def on_alarm(*_: object) -> None:
            _signal_subtree(signal.SIGKILL, set())

        # Our handlers are in place before the body can run, and the body gets none of
        # them: SIGTERM waits (blocked since the server's fork) until each side has its own.
        signal.signal(signal.SIGALRM, on_alarm)
        signal.signal(signal.SIGTERM, on_sigterm)
        # Forked now, so that go finds it ready: a fork is not on the way to its first line.
        pid = os.fork()
        if pid == 0:
            for number in (signal.SIGALRM, signal.SIGTERM):
                signal.signal(number, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            body(keeper, functools.partial(_await_go, go_fd))
        os.close(go_fd)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        status = _reap_until(pid)
        with contextlib.suppress(OSError):
            code = os.waitstatus_to_exitcode(status)
            results.send(json.dumps([keeper, _EXIT_CODE, code]).encode())
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # for sigtimedwait
        _end_leftovers(grace, terminated)
        with contextlib.suppress(OSError):
            # Without this word (killed before), the server ends what we left.
            results.send(json.dumps([keeper, _DONE, None]).encode())
    finally:
        _flush_output()
        _exit_like(status)


def _say_ready(results: socket.socket, keeper: int) -> None:
    """Tell the server this body waits for go with nothing left to do before its first
    line (the scheduler records the run and says go then); exit if that cannot be said."""
    try:
        results.send(json.dumps([keeper, _READY, None]).encode())
    except OSError:
        os._exit(1)  # never to be told go: nothing of the task has run


def _await_go(go_fd: int) -> None:
    """Return once the scheduler says go; exit if it closed the pipe (or died) instead."""
    if not os.read(go_fd, 1):
        os._exit(1)  # never to run: nothing of the task has
    os.close(go_fd)


def _reap_until(pid: int) -> int:
    """Reap children (orphans handed to us too) until ``pid`` has ended; its wait status."""
    while True:
        try:
            found, status = os.waitpid(-1, 0)
        except ChildProcessError:  # cannot be: it is ours until reaped
            return 0
        if found == pid:
            return status


def _end_leftovers(grace: float, terminated: list[bool]) -> None:
    """End every process the body left (all are our descendants: we are their
    subreaper): SIGTERM, then SIGKILL after ``grace`` seconds; reap them all.
    ``terminated``: not empty if the run was terminated (its group got SIGTERM)."""
    signalled: set[tuple[int, int]] = set()
    kill_at = time.monotonic() + grace
    # When to look for (new) leftovers in /proc again. Terminated, they got SIGTERM with
    # us (the group, and each process the scheduler found): most are dying already, and
    # their ends wake us. Reading all of /proc costs milliseconds a keeper (tens with a
    # thousand processes), a hundred keepers at once when a hundred runs time out
    # together: only for those still there after a while.
    look_at = time.monotonic() + _TERMINATED_LOOK if terminated else 0.0
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return  # none left
        now = time.monotonic()
        if now >= look_at:
            _signal_subtree(signal.SIGKILL if now >= kill_at else signal.SIGTERM, signalled)
            look_at = now + _LEFTOVER_POLL
        # Woken by the next child's end (SIGCHLD is blocked for this), or to look again.
        wake_at = min(look_at, kill_at) if now < kill_at else look_at
        signal.sigtimedwait({signal.SIGCHLD}, max(wake_at - time.monotonic(), 0.001))


def _signal_subtree(sig: int, signalled: set[tuple[int, int]]) -> None:
    """Send ``sig`` to every live descendant of this process (SIGTERM once each)."""
    table = Snapshot()
    stack = [os.getpid()]
    while stack:
        for info in table.children(stack.pop()):
            stack.append(info.pid)
            if info.state in ("Z", "X"):
                continue
            if sig == signal.SIGTERM and (info.pid, info.start) in signalled:
                continue
            signalled.add((info.pid, info.start))
            with contextlib.suppress(OSError):
                os.kill(info.pid, sig)


def _exit_like(status: int | None) -> NoReturn:
    """Exit with the body's wait status: its exit code, or the signal that killed it
    (None: the keeper failed before)."""
    if status is None:
        os._exit(1)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
    else:
        os._exit(os.waitstatus_to_exitcode(status))
    with contextlib.suppress(Exception):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the body's core, not ours
        if sig != signal.SIGKILL:
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
    os._exit(128 + int(sig))


def _writing_to(
    output: list[int], body: Callable[[int, Callable[[], None]], NoReturn]
) -> Callable[[int, Callable[[], None]], NoReturn]:
    """``body`` with its stdout (and stderr) on the descriptors in ``output``, if any."""
    if not output:
        return body

    def redirected(keeper: int, go: Callable[[], None]) -> NoReturn:
        _flush_output()  # nothing of the server's may land in the run's pipe
        for target, fd in enumerate(output, start=1):  # 1: stdout, 2: stderr
            os.dup2(fd, target)
        line_by_line()
        return body(keeper, go)

    return redirected


def _child(
    flag_fd: int,
    results: socket.socket,
    payload: bytes,
    params: tuple[str, ...],
    modules: dict[str, str | None],
    cwd: str,
    keeper: int,
    go: Callable[[], None],
) -> NoReturn:
    """A run's body, forked by its keeper: the function (loaded, then run on ``go``),
    its outcome."""
    code = 1
    try:
        if ask_death_signal(signal.SIGTERM) and os.getppid() != keeper:
            os._exit(1)  # the keeper died before we asked
        if TerminationFlag(PipeReadEvent(flag_fd)).is_set():
            # Asked to stop before we were in the keeper's group (the flag is set before
            # the SIGTERM goes): the SIGTERM may have reached the keeper alone (a fork
            # passes no pending signal on). Ours is at its default and unblocked, so one
            # that did reach us ended us already: end as it would have, before any line
            # of the task (an import of its module is one). One sent from now on reaches
            # us with the group's, once.
            os.kill(os.getpid(), signal.SIGTERM)
        loaded = _load(payload, modules, cwd)
        _say_ready(results, keeper)
        go()
        if isinstance(loaded, str):
            action, message, trace = "fail", loaded, None
        else:
            action, message, trace = call_for_outcome(loaded, params, flag_fd)
        results.send(_outcome_datagram(keeper, action, message, trace))
        code = 0
    finally:
        _flush_output()
        os._exit(code)


def fitted(encode: Callable[[str | None], bytes], trace: str | None) -> bytes:
    """``encode(trace)`` in at most MAX_OUTCOME bytes, cutting the traceback's start: an
    outcome must fit one datagram, or a pipe the scheduler reads only once its child ended."""
    while True:
        data = encode(trace)
        over = len(data) - MAX_OUTCOME
        if over <= 0 or trace is None or len(trace) <= 1:
            return data
        # Cut as many characters as the excess takes at their mean encoded size (1 to
        # 12 bytes, escaped), at least one: a few rounds at most.
        mean = max(1, len(data) - len(encode(None))) / len(trace)
        trace = "…" + trace[max(2, math.ceil(over / mean) + 1) :]


def _outcome_datagram(keeper: int, action: str, message: str | None, trace: str | None) -> bytes:
    """A body's outcome as one datagram that the server reads whole and can report to the
    scheduler."""
    return fitted(lambda tb: json.dumps([keeper, action, message, tb]).encode(), trace)


def _exec_child(
    argv: list[str],
    cwd: str | None,
    environ: dict[str, str],
    stderr_fd: int,
    results: socket.socket,
    keeper: int,
    go: Callable[[], None],
) -> NoReturn:
    """A command run's body, forked by its keeper: the program (on ``go``), or why it
    could not start."""
    try:
        if ask_death_signal(signal.SIGTERM) and os.getppid() != keeper:
            os._exit(1)  # the keeper died before we asked
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(stderr_fd, 2)
        _say_ready(results, keeper)
        go()
        why = _exec(argv, cwd, environ)
        with contextlib.suppress(OSError):
            results.send(json.dumps([keeper, "fail", why]).encode())
    finally:
        os._exit(127)


@contextlib.contextmanager
def sigterm_blocked() -> Iterator[None]:
    """SIGTERM blocked in this thread for the block (a child forked in it starts with it
    blocked, and unblocks it once its own handler is in place), then the mask as it was."""
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)


# The signals Python ignores at its start, which a program it executes gets back at
# their default (see _exec).
_RESTORED_FOR_PROGRAMS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name)
)


def _exec(argv: list[str], cwd: str | None, environ: dict[str, str]) -> str:
    """Become the program ``argv`` in ``cwd``; return only to say why that failed."""
    if cwd is not None:
        try:
            os.chdir(cwd)
        except OSError as exc:
            return f"working directory not found: {cwd!r} ({exc.strerror})"
    # Python ignores SIGPIPE and SIGXFSZ (it raises on EPIPE instead), and an ignored
    # signal stays ignored across exec: a program expects their defaults (`yes | head -1`
    # ends quietly by SIGPIPE), as subprocess's restore_signals gives it.
    for number in _RESTORED_FOR_PROGRAMS:
        signal.signal(number, signal.SIG_DFL)
    try:
        os.execvpe(argv[0], argv, environ)
    except FileNotFoundError as exc:
        return f"executable not found: {argv[0]!r} ({exc.strerror})"
    except OSError as exc:
        return f"could not start {argv[0]!r}: {exc}"
    raise AssertionError("execvpe returned")  # pragma: no cover


def _load(payload: bytes, modules: dict[str, str | None], cwd: str) -> Any:
    """The task's function, in its working directory (before go: its first line is then
    the next thing to run); or why it could not be loaded (a str)."""
    try:
        os.chdir(cwd)
        return _ReferenceUnpickler(payload, modules).load()
    except BaseException as exc:
        return clip(f"could not load the task's function: {exception_text(exc)}")


def call_for_outcome(
    func: Callable[..., Any], params: tuple[str, ...], flag_fd: int
) -> tuple[str, str | None, str | None]:
    """In a task's child process: call its function, giving the run's flag (read from the
    pipe ``flag_fd``) to each of ``params``, await what it returns if that is a
    coroutine, and say how it ended: the action, message and traceback of its record."""
    flag = TerminationFlag(PipeReadEvent(flag_fd))
    try:
        result = func(**dict.fromkeys(params, flag))
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    except BaseException as exc:
        action, message = outcome_of(exc)
        return action, message, traceback_text(exc) if action == "fail" else None
    return (*outcome_of(None), None)


def ask_death_signal(number: int) -> bool:
    """Ask Linux to send ``number`` when the parent's thread ends; whether it was done."""
    prctl = find_prctl()
    return prctl is not None and prctl(_PR_SET_PDEATHSIG, int(number), 0, 0, 0) == 0


def become_subreaper() -> bool:
    """Have the orphans of our descendants reparented to us, not to init; whether done."""
    prctl = find_prctl()
    return prctl is not None and prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


@functools.cache
def find_prctl() -> Callable[..., int] | None:
    """libc's prctl (Linux), found once (before any fork, so children have it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def line_by_line() -> None:
    """Have Python write stdout and stderr at each line end (to a run's pipe: a person
    reads along, and a line printed before the run is killed is not lost in a buffer)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def _flush_output() -> None:
    """Flush what Python buffered for stdout and stderr (before ``os._exit``)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


class _Gone(Exception):
    """The scheduler is gone (its socket refused a message): so is the reason to serve."""


def _send(sock: socket.socket, message: tuple[Any, ...]) -> None:
    try:
        sock.send(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError as exc:
        raise _Gone from exc


# ---------------------------------------------------------------- the scheduler's end


class ForkServer:
    """The scheduler's handle on a fork server, started at the first use.

    Requests are queued and written when the socket takes them, so the scheduler
    never blocks on the server; the callbacks run in the event loop.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        started: Callable[[int, int, int | None], None],
        prepared: Callable[[int], None],
        failed: Callable[[int, str], None],
        exited: Callable[[int, int, tuple[str, str | None] | None], None],
        lost: Callable[[int | None], None],
    ) -> None:
        self.loop = loop
        self._started, self._failed, self._exited, self._lost = started, failed, exited, lost
        self._prepared = prepared
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        # (message, flag fd to hand over, the run's key): written when the socket takes them
        self._outbox: collections.deque[tuple[bytes, tuple[int, ...], int | None]] = (
            collections.deque()
        )
        self._gates: dict[int, int] = {}  # run key -> the write end of its go pipe
        self._environ: dict[str, str] | None = None
        self._sys_path: list[str] | None = None
        self.ready = False  # the server said it serves
        # It could not be started, did not say it serves in time, or died: the executor
        # forks from the scheduler instead (a server is started once).
        self.broken = bool(getattr(sys, "frozen", False)) or not sys.executable
        self._preloaded: asyncio.Future[None] | None = None
        self._ready_timer: asyncio.TimerHandle | None = None

    def start(self) -> bool:
        """Start the server unless it runs (it takes a few tenths of a second to import
        conddsl); whether there is one."""
        if self._sock is not None or self.broken:
            return not self.broken
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
        argv = [sys.executable, "-c", _BOOT, str(theirs.fileno()), package_root, str(os.getpid())]
        try:
            with theirs:
                self._process = subprocess.Popen(
                    argv,
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except OSError as exc:
            ours.close()
            self.broken = True
            log.warning("could not start the fork server (%s); forking the scheduler", exc)
            return False
        ours.setblocking(False)
        self._sock = ours
        self.loop.add_reader(ours.fileno(), self._readable)
        self._ready_timer = self.loop.call_later(_READY_TIMEOUT, self._not_ready)
        return True

    def _not_ready(self) -> None:
        self._ready_timer = None
        if not self.ready and self._process is not None:
            log.warning("the fork server did not start in %s s; forking instead", _READY_TIMEOUT)
            self.kill()

    def kill(self) -> None:
        """End the server now (stuck): what it held is reported lost."""
        if self._process is not None:
            with contextlib.suppress(OSError):
                self._process.kill()

    async def preload(self, modules: dict[str, str | None], timeout: float) -> None:
        """Start the server and have it import ``modules``; wait for that (at most
        ``timeout`` seconds: then runs just queue until it is done)."""
        if not self.start():
            return
        self._sync_path()
        self._preloaded = self.loop.create_future()
        self._queue(("preload", modules), (), None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._preloaded), timeout)

    def _sync_path(self) -> None:
        if self._sys_path != sys.path:
            self._sys_path = list(sys.path)
            self._queue(("setup", self._sys_path, list(sys.argv)), (), None)

    def launch(
        self,
        key: int,
        payload: bytes,
        modules: dict[str, str | None],
        params: tuple[str, ...],
        flag_fd: int,
        cwd: str,
        grace: float,
        output: tuple[int, ...] = (),
    ) -> bool:
        """Ask for a child running ``payload`` in ``cwd`` once :meth:`go` is called; the
        flag's read end is handed over (closed here), and copies of ``output`` (its
        stdout and stderr, if given). False if there is no server (``flag_fd`` is left
        alone)."""
        if not self.start():
            return False
        self._sync_path()
        environ = dict(os.environ)
        changed = environ if environ != self._environ else None
        self._environ = environ
        message = ("start", key, payload, params, modules, cwd, changed, grace)
        self._queue(message, (flag_fd, self._gate(key), *map(os.dup, output)), key)
        return True

    def launch_command(
        self,
        key: int,
        argv: list[str],
        cwd: str | None,
        environ: dict[str, str],
        stderr_fd: int,
        grace: float,
        stdout_fd: int | None = None,
    ) -> bool:
        """Ask for a child running the program ``argv`` once :meth:`go` is called, its
        stderr to ``stderr_fd`` and, if given, its stdout to ``stdout_fd`` (copies are
        handed over); False if there is no server."""
        if not self.start():
            return False
        message = ("command", key, argv, cwd, environ, grace)
        output = () if stdout_fd is None else (os.dup(stdout_fd),)
        self._queue(message, (os.dup(stderr_fd), self._gate(key), *output), key)
        return True

    def _gate(self, key: int) -> int:
        """A go pipe for run ``key``: its read end (to hand over), its write end kept."""
        read, self._gates[key] = os.pipe2(os.O_CLOEXEC)
        return read

    def go(self, key: int) -> None:
        """Let run ``key`` run its body (a byte down its go pipe, straight to it)."""
        gate = self._gates.pop(key, None)
        if gate is not None:
            with contextlib.suppress(OSError):
                os.write(gate, b"g")
            os.close(gate)

    def kill_sent(self, key: int, at: float) -> None:
        """Say that run ``key``'s whole tree got SIGKILL (sent from ``at``, monotonic):
        its keeper dies by our hand, and the server need not look for what it left."""
        if self._sock is not None:
            self._queue(("killed", key, at), (), None)

    def forget(self, key: int) -> None:
        """Run ``key`` is over: its body never goes (if it never did)."""
        gate = self._gates.pop(key, None)
        if gate is not None:
            os.close(gate)

    def _queue(self, message: tuple[Any, ...], fds: tuple[int, ...], key: int | None) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._outbox.append((data, fds, key))
        if len(self._outbox) == 1:
            self._flush()

    def _flush(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while self._outbox:
            data, fds, key = self._outbox[0]
            try:
                if not fds:
                    sock.send(data)
                else:
                    socket.send_fds(sock, [data], list(fds))
            except BlockingIOError:
                self.loop.add_writer(sock.fileno(), self._writable)
                return
            except (BrokenPipeError, ConnectionResetError):
                return  # the server is gone: _readable reports it, with every run of it
            except OSError as exc:  # this message cannot go (too large: EMSGSIZE)
                self._outbox.popleft()
                for fd in fds:
                    os.close(fd)
                if key is not None:
                    self.forget(key)
                    self._environ = None  # it did not go: the next start sends it
                    self._failed(key, f"could not hand the run to the fork server: {exc}")
                else:
                    log.warning("fork server: could not send its setup: %s", exc)
                continue
            self._outbox.popleft()
            for fd in fds:
                os.close(fd)  # the server holds its own copies now

    def _writable(self) -> None:
        if self._sock is not None:
            self.loop.remove_writer(self._sock.fileno())
        self._flush()

    def _readable(self) -> None:
        sock = self._sock
        ends = time.perf_counter() + _READ_SLICE
        while sock is not None and sock is self._sock:
            try:
                data = sock.recv(_MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._gone()
                return
            message = pickle.loads(data)
            kind = message[0]
            if kind == "ready":
                self.ready = True
                if self._ready_timer is not None:
                    self._ready_timer.cancel()
                    self._ready_timer = None
            elif kind == "preloaded":
                if self._preloaded is not None and not self._preloaded.done():
                    self._preloaded.set_result(None)
            elif kind == "started":
                self._started(*message[1:])
            elif kind == "prepared":
                self._prepared(*message[1:])
            elif kind == "failed":
                self._failed(*message[1:])
            elif kind == "exited":
                self._exited(*message[1:])
            if time.perf_counter() > ends:
                return  # the rest at the loop's next turn: the socket is still readable

    def _gone(self) -> None:
        """The server ended on its own: report its exit code (None if unknown). It is
        not started again: what made it die could do so again, with runs in it."""
        process, self._process = self._process, None
        self._disconnect()
        code = None
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = process.wait(timeout=1)
        self.broken = True
        log.warning("the fork server ended (%s); process tasks are forked from now on", code)
        self._lost(code)

    def _disconnect(self) -> None:
        if self._ready_timer is not None:
            self._ready_timer.cancel()
            self._ready_timer = None
        if self._preloaded is not None and not self._preloaded.done():
            self._preloaded.set_result(None)  # nothing more to wait for
        sock, self._sock = self._sock, None
        if sock is not None:
            self.loop.remove_reader(sock.fileno())
            self.loop.remove_writer(sock.fileno())
            sock.close()
        for _, fds, _ in self._outbox:
            for fd in fds:
                os.close(fd)
        self._outbox.clear()
        for key in list(self._gates):
            self.forget(key)

    async def close(self) -> None:
        """Stop the server (when no run of it is left): it ends when its socket closes."""
        process, self._process = self._process, None
        # Still importing the task modules: it never forked, there is nothing to wait for.
        importing = self._preloaded is not None and not self._preloaded.done()
        self._disconnect()
        if process is None:
            return
        give_up = 0.0 if importing else self.loop.time() + _CLOSE_WAIT
        while process.poll() is None:
            if self.loop.time() > give_up:  # stuck (importing a module?): it has no work left
                process.kill()
                process.wait()
                return
            await asyncio.sleep(0.005)

    @property
    def fds(self) -> tuple[int, ...]:
        """The descriptors a child forked from the scheduler must close."""
        own = (self._sock.fileno(),) if self._sock is not None else ()
        return own + tuple(self._gates.values())
