"""One scheduler per SQLite history: ``conddsl run`` holds a lock file beside the history
while it serves, naming itself (pid, host, since when) for a second run that is refused."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

LOCK_SUFFIX = ".run.lock"


class HistoryInUse(Exception):
    """Another scheduler serves on this history now; the message names it."""


class RunLock:
    """An exclusive ``flock`` on ``<history>.run.lock``, held until :meth:`release`.

    The kernel drops the lock when the process dies, so a crashed run never blocks the
    next one; the file's text only tells who holds it.
    """

    def __init__(self, history: Path) -> None:
        self.path = Path(f"{history}{LOCK_SUFFIX}")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise HistoryInUse naming the scheduler that holds it."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return  # no folder, or not writable: opening the history says so clearly
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise HistoryInUse(
                f"{self.path.name[: -len(LOCK_SUFFIX)]} is in use by another `conddsl run`"
                f" ({holder}); one history serves one scheduler: stop that one first"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (the file goes first, so no run finds a stale name in it)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


def _describe(data: bytes) -> str:
    """Who holds the lock, from the text it wrote (it may be writing it right now)."""
    try:
        info = json.loads(data)
        return f"pid {int(info['pid'])} on {info['host']}, since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return "a process starting right now"
