"""Reading a file that may be hostile: only a regular file, and never more than a limit.

The limit is enforced while reading, not by trusting the size ``stat`` reports (a
device such as ``/dev/zero`` says 0 and never ends), and the file is opened without
blocking, so a FIFO is refused at once instead of waiting for a writer.
"""

from __future__ import annotations

import errno
import os
import stat

from conddsl.errors import FileRefused, FileTooLarge

__all__ = ["FileRefused", "FileTooLarge", "read_bounded"]

_CHUNK = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_bounded(path: str | os.PathLike[str], limit: int, *, owned: bool = False) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them.

    With ``owned``, the file opened must be the reader's or root's and writable by
    nobody else, and not a symlink: a file conddsl writes itself (a registry, a
    journal), judged on what was opened, so one planted after a check is still refused.

    Raises :class:`FileTooLarge` past ``limit``, :class:`FileRefused` for anything
    but a regular file (or, with ``owned``, another user's), and :class:`OSError`
    when it cannot be opened.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    if owned:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        mode = info.st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a file")
            raise FileRefused(errno.EINVAL, f"not a regular file ({kind})", str(path))
        if owned and (info.st_uid not in (0, os.geteuid()) or mode & stat.S_IWOTH):
            raise FileRefused(
                errno.EPERM,
                f"not trusted: it belongs to another user (uid {info.st_uid}) or anyone may"
                " write it",
                str(path),
            )
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > limit:
                raise FileTooLarge(
                    errno.EFBIG, f"the file is larger than {limit:,} bytes", str(path)
                )
            chunks.append(chunk)
    finally:
        os.close(fd)
