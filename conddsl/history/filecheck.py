"""Noticing that a history file in use was deleted or replaced, and keeping its records.

An open SQLite connection keeps reading and writing the file it opened even after that
file is deleted or another file is renamed over it: every record written from then on
(and, once the connection closes, every record at all) would be lost without an error.
So a history compares the file at its path with the one it opened (device and inode)
after each write and when it closes; what it holds is copied out of the connection
(SQLite's backup API) to the path when the file was deleted, or beside it when another
file took its place. The copy is always a file made new (never through a symlink): in a
folder anybody may write, its name could have been planted by another user.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import uuid

__all__ = ["identity", "reserve", "copy_into", "copy_out"]

# Pages copied per step of a copy: between steps, other threads may use the connection
# (a history's reads go on while a writer thread copies it out).
_STEP_PAGES = 256


def identity(path: str) -> tuple[int, int] | None:
    """The device and inode of the file at ``path``, or None if there is none."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def reserve(path: str, *, beside: bool) -> str:
    """Make the new, empty file a copy will go to (a few system calls, no copying):
    ``path`` itself (its stale SQLite side files removed first), or with ``beside`` (or
    when something took ``path`` meanwhile) a new name next to it. Raises
    :class:`OSError` when none can be made."""
    if not beside:
        # The deleted file's WAL must not be applied to the copy: it is in the copy already.
        for side in (f"{path}-wal", f"{path}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(side)
        if _created(path):
            return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = f"{path}.replaced-{stamp}-{os.getpid()}.sqlite3"
    if not _created(target):  # the name can be guessed: one planted there is not used
        target = f"{path}.replaced-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}.sqlite3"
        if not _created(target):
            raise FileExistsError(f"{target} exists")
    return target


def copy_into(conn: sqlite3.Connection, target: str) -> None:
    """Copy the database ``conn`` holds into the file ``target`` (from :func:`reserve`),
    a few pages at a time; raises :class:`sqlite3.Error` when it cannot be."""
    copy = sqlite3.connect(target)
    try:
        conn.backup(copy, pages=_STEP_PAGES)
    finally:
        copy.close()


def copy_out(conn: sqlite3.Connection, path: str, *, beside: bool) -> str:
    """:func:`reserve` then :func:`copy_into`: returns the file written."""
    target = reserve(path, beside=beside)
    copy_into(conn, target)
    return target


def _created(path: str) -> bool:
    """Make a new empty file at ``path``; False if there is anything there (a symlink
    another user planted in a folder anybody may write is never followed)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(path, flags, 0o666))
    except FileExistsError:
        return False
    return True
