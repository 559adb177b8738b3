"""One scheduler per SQLite history: ``conddsl run`` holds a lock file beside the history
while it serves, naming itself (pid, host, since when) for a second run that is refused."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
from datetime import datetime, timezone
from pathlib import Path

from conddsl.errors import HistoryInUse, LockFileError

__all__ = ["LOCK_SUFFIX", "HistoryInUse", "LockFileError", "RunLock"]

LOCK_SUFFIX = ".run.lock"


class RunLock:
    """An exclusive ``flock`` on ``<history>.run.lock``, held until :meth:`release`.

    The kernel drops the lock when the process dies, so a crashed run never blocks the
    next one; the file's text only tells who holds it.
    """

    def __init__(self, history: Path) -> None:
        self.path = Path(f"{history}{LOCK_SUFFIX}")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise HistoryInUse naming the scheduler that holds it, or
        LockFileError if the lock file is not a regular file of its own."""
        import fcntl

        while True:
            try:
                # Not through a link: a planted one would have us truncate its target.
                flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
                fd = os.open(self.path, flags, 0o600)
            except OSError as error:
                if self.path.is_symlink() or self.path.is_dir():
                    raise self._not_regular() from None
                if error.errno in (errno.ENOENT, errno.EACCES, errno.EROFS):
                    return  # no folder, or not writable: opening the history says so clearly
                raise LockFileError(f"{self.path.name}: {error.strerror}") from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO, a device
                os.close(fd)
                raise self._not_regular()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(os.read(fd, 4096))
                os.close(fd)
                raise HistoryInUse(
                    f"{self.path.name[: -len(LOCK_SUFFIX)]} is in use by another `conddsl run`"
                    f" ({holder}); one history serves one scheduler: stop that one first"
                ) from None
            if _same_file(fd, self.path):
                break
            # Its holder let it go (and unlinked it) between our open and our lock, and
            # another run may hold a new one: look again.
            os.close(fd)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def _not_regular(self) -> LockFileError:
        return LockFileError(
            f"{self.path.name} is not a regular file (a link, a folder or a device put there);"
            " remove it if no `conddsl run` uses this history"
        )

    def release(self) -> None:
        """Let the lock go (the file goes first, so no run finds a stale name in it)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is the file at ``path`` now (not one unlinked since it was opened)."""
    try:
        there = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _describe(data: bytes) -> str:
    """Who holds the lock, from the text it wrote (it may be writing it right now)."""
    try:
        info = json.loads(data)
        return f"pid {int(info['pid'])} on {info['host']}, since {info['since']}"
    except (ValueError, KeyError, TypeError, RecursionError):  # (anybody may write it)
        return "a process starting right now"
