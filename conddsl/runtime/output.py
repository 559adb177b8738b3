"""What process and command runs print, read from their pipes and handed on line by line.

Under ``conddsl run`` a process or command run's stdout and stderr are pipes, not the
terminal: :class:`OutputPump` reads them on a thread of its own and hands each line to
``emit(task, stream, line)`` (``conddsl run`` prints ``task | line``, as for thread and
async tasks: :mod:`conddsl.taskoutput`). Without an ``emit`` (the Python API, unless
asked: ``Scheduler.task_output``) nothing is piped and children write where they did.

Why a thread: the sink (the terminal, a pipe to ``less``) may block, and the scheduler's
loop must never wait on it; while it blocks, the runs' pipes fill and the runs wait
on their own writes, as they would on a blocked terminal, and can still be ended.
Buffering is bounded: a line is cut at ``LINE_LIMIT`` bytes, and a line left unended
when the pipe closes (the run and all it started exited) is handed on as it is.
Bytes are decoded as UTF-8 with invalid bytes shown as ``\\xNN``; control characters
are the sink's to escape (``conddsl run`` prints through :class:`conddsl.terminal.Escaped`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import selectors
import threading
from collections.abc import Callable

__all__ = ["LINE_LIMIT", "LineSplitter", "OutputPump", "Pipe"]

log = logging.getLogger(__name__)

LINE_LIMIT = 16384  # bytes of one line held; a longer line is handed on in pieces
_READ = 65536  # bytes read at once (a pipe's default capacity)
_SETTLE_READS = 4  # reads at most by settle(): what a dead program left, not a flood
CLOSE_WAIT = 1.0  # seconds the scheduler's end waits for a blocked sink before dropping lines

Emit = Callable[[str, str, str], None]  # (task, "stdout" or "stderr", line)


class LineSplitter:
    """Bytes in, whole lines out (decoded), holding at most ``limit`` bytes of a line."""

    def __init__(self, limit: int = LINE_LIMIT) -> None:
        self.limit = limit
        self._partial = bytearray()

    def feed(self, data: bytes) -> list[str]:
        """The lines ``data`` ends (with what came before it); the rest is kept."""
        self._partial += data
        *lines, rest = self._partial.split(b"\n")
        self._partial = bytearray(rest)
        found = [_decode(line) for line in lines]
        while len(self._partial) > self.limit:
            cut = self.limit
            # Not inside a UTF-8 character: back up over its continuation bytes.
            while cut > self.limit - 4 and self._partial[cut] & 0xC0 == 0x80:
                cut -= 1
            found.append(_decode(self._partial[:cut]))
            del self._partial[:cut]
        return found

    def finish(self) -> list[str]:
        """The unended last line, if any (the pipe closed)."""
        rest, self._partial = self._partial, bytearray()
        return [_decode(rest)] if rest else []


def _decode(line: bytes | bytearray) -> str:
    if line.endswith(b"\r"):  # a CRLF line end is a line end
        line = line[:-1]
    return bytes(line).decode("utf-8", errors="backslashreplace")


class Pipe:
    """One run's stdout or stderr: the read end the pump reads, the write end for the child."""

    def __init__(self, task: str, stream: str, tail: int = 0) -> None:
        self.task = task
        self.stream = stream
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.read_fd, False)
        self.splitter = LineSplitter()
        self.tail_size = tail
        self.tail = bytearray()  # its last ``tail`` bytes (a failed command's stderr)
        self.closed = False

    def close_write(self) -> None:
        """Close the write end here (the child has its copy)."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def tail_text(self) -> str:
        """The last bytes read, decoded and stripped."""
        return bytes(self.tail).decode(errors="replace").strip()


class OutputPump:
    """Reads runs' pipes on one thread and hands their lines to ``emit`` in order."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._lock = threading.Lock()  # the pipes' reading, splitting and outbox
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._new: list[Pipe] = []
        self._open: set[Pipe] = set()
        self._outbox: collections.deque[tuple[str, str, str]] = collections.deque()
        self._closing = False
        self._thread: threading.Thread | None = None

    def pipe(self, task: str, stream: str, tail: int = 0) -> Pipe:
        """A new pipe for ``task``'s ``stream``, read from now on; hand its ``write_fd`` to
        the child, then :meth:`Pipe.close_write`. ``tail``: bytes of its end kept."""
        pipe = Pipe(task, stream, tail)
        with self._lock:
            self._new.append(pipe)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="conddsl-output")
                self._thread.daemon = True  # a sink that never unblocks must not hold exit
                self._thread.start()
        self._wake()
        return pipe

    def settle(self, pipe: Pipe) -> str:
        """Read what ``pipe`` holds now (its program exited) and return its tail; the
        lines go out on the pump's thread. Never blocks."""
        with self._lock:
            for _ in range(_SETTLE_READS):
                if not self._read(pipe):
                    break
        self._wake()
        return pipe.tail_text()

    def close(self, timeout: float | None = None) -> None:
        """Read what is left, hand on the unended lines, close every pipe (the runs have
        ended); wait up to ``timeout`` (default ``CLOSE_WAIT``) for the sink."""
        timeout = CLOSE_WAIT if timeout is None else timeout
        with self._lock:
            self._closing = True
            thread = self._thread
        self._wake()
        if thread is None:
            self._selector.close()  # never served: the thread would have closed it
        else:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("output of process tasks: the output is blocked; lines dropped")
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: a wake is pending anyway
            os.write(self._wake_w, b"\0")

    def _serve(self) -> None:
        while True:
            with self._lock:
                for pipe in self._new:
                    if pipe.closed:  # settled to its end before this thread took it up:
                        continue  # its read end is closed (its number may be another's now)
                    self._selector.register(pipe.read_fd, selectors.EVENT_READ, pipe)
                    self._open.add(pipe)
                self._new.clear()
                closing = self._closing
            if closing:
                with self._lock:
                    for pipe in list(self._open):
                        for _ in range(_SETTLE_READS):  # bounded: a leftover may write on
                            if not self._read(pipe):
                                break
                        self._drop(pipe)
                self._deliver()
                self._selector.close()
                return
            for key, _ in self._selector.select():
                if key.data is None:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    self._read(key.data)
            self._deliver()

    def _read(self, pipe: Pipe) -> bool:
        """One read of ``pipe`` (the lock held): False once nothing more is there now."""
        if pipe.closed:
            return False
        try:
            data = os.read(pipe.read_fd, _READ)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._drop(pipe)
            return False
        if pipe.tail_size:
            pipe.tail += data
            del pipe.tail[: -pipe.tail_size]
        self._outbox.extend((pipe.task, pipe.stream, line) for line in pipe.splitter.feed(data))
        return True

    def _drop(self, pipe: Pipe) -> None:
        """The pipe closed (or the pump does): its last line out, its read end closed."""
        if pipe.closed:
            return
        pipe.closed = True
        self._outbox.extend((pipe.task, pipe.stream, line) for line in pipe.splitter.finish())
        self._open.discard(pipe)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(pipe.read_fd)
        os.close(pipe.read_fd)

    def _deliver(self) -> None:
        while True:
            with self._lock:
                if not self._outbox:
                    return
                task, stream, line = self._outbox.popleft()
            try:
                self._emit(task, stream, line)
            except Exception:  # a broken sink must not end the reading
                log.exception("output of process tasks: a line could not be written")
