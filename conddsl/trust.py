"""The trust rule for files conddsl finds rather than is given: caches, process registries,
journals, histories and the modules a task file names.

A file may be believed when nobody but its reader (or root) could have put it there:

- it is owned by the current user or by root, and nobody else may write it;
- every folder above it is owned by the current user or by root, and a folder that
  everybody may write has the sticky bit (then only a file's owner, or the folder's,
  may replace or remove it).

A file of another user in ``/tmp`` fails the first test; a file in a folder another
user owns, or in a world-writable folder without the sticky bit, fails the second.
Callers go on safely without such a file (no cache, no registry) or stop, and say why.
"""

from __future__ import annotations

import logging
import os
import stat

__all__ = ["untrusted", "untrusted_folder", "believed"]

log = logging.getLogger("conddsl")


def _owner_ok(info: os.stat_result) -> bool:
    return info.st_uid in (0, os.geteuid())


def untrusted_folder(folder: str | os.PathLike[str]) -> str | None:
    """Why files in ``folder`` could have been put there by another user (None if not)."""
    path = os.path.realpath(folder)
    while True:
        try:
            info = os.stat(path)
        except OSError as error:
            return f"{path} cannot be examined ({error.strerror})"
        if not _owner_ok(info):
            return f"the folder {path} belongs to another user (uid {info.st_uid})"
        if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            return f"the folder {path} may be written by anyone and is not sticky"
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def untrusted(path: str | os.PathLike[str]) -> str | None:
    """Why the file at ``path`` must not be believed, or None when it may (or is absent
    from a folder where only its reader or root could create it)."""
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        info = None
    except OSError as error:
        return f"{real} cannot be examined ({error.strerror})"
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            return f"{real} is not a regular file"
        if not _owner_ok(info):
            return f"{real} belongs to another user (uid {info.st_uid})"
        if info.st_mode & stat.S_IWOTH:
            return f"{real} may be written by anyone"
    return untrusted_folder(os.path.dirname(real))


def believed(path: str | os.PathLike[str], what: str, consequence: str) -> bool:
    """Whether ``path`` passes the rule; when not, a warning names it, why, and what
    conddsl does instead (``consequence``: "it is not used", say)."""
    why = untrusted(path)
    if why is None:
        return True
    log.warning("%s %s is not trusted: %s; %s", what, path, why, consequence)
    return False
