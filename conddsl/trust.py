"""The trust rule for files conddsl finds rather than is given: caches, process registries,
journals, histories and the modules a task file names.

A file may be believed when nobody but its reader (or root) could have put it there:

- it is owned by the current user or by root, and nobody else may write it: not
  everybody, and not a group unless it is the user's alone (their primary group with
  no other member: ``umask 002`` makes files group-writable there);
- every folder above it is owned by the current user or by root, and a folder that
  everybody may write has the sticky bit (then only a file's owner, or the folder's,
  may replace or remove it).

A file of another user in ``/tmp`` fails the first test; a file in a folder another
user owns, or in a world-writable folder without the sticky bit, fails the second.
Callers go on safely without such a file (no cache, no registry) or stop, and say why.

A history is stricter (:func:`history_folder_problem`): files are made and opened by
name beside it, some by SQLite, so its own folder must be one nobody else may add to.
Task and rules files are what the user pointed conddsl at: they are read whoever may
write them, with a warning (:func:`others_may_change`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import stat
import sys
from types import ModuleType

__all__ = [
    "untrusted",
    "untrusted_folder",
    "unshared_folder_problem",
    "history_folder_problem",
    "history_files",
    "HISTORY_FOLDER_HINT",
    "JOURNAL_SUFFIX",
    "REGISTRY_SUFFIX",
    "others_may_change",
    "believed",
    "add_import_folder",
    "import_module",
]

log = logging.getLogger("conddsl")


def _owner_ok(info: os.stat_result) -> bool:
    return info.st_uid in (0, os.geteuid())


def _private_group(gid: int) -> bool:
    """Whether the group ``gid`` is the current user's alone: their primary group with
    no other member listed (a user-private group, where ``umask 002`` makes files
    group-writable). Another account sharing it as its own primary group is not seen."""
    import grp
    import pwd

    if gid != os.getegid():
        return False
    try:
        members = grp.getgrgid(gid).gr_mem
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a group or user with no name: nothing says it is private
        return False
    return all(member == user for member in members)


def _group_name(gid: int) -> str:
    import grp

    try:
        return f"group {grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"group {gid}"


def _writers(info: os.stat_result) -> str | None:
    """Who else than its owner may write a file or folder: anyone, or a group that is
    not the current user's alone; None when nobody."""
    if info.st_mode & stat.S_IWOTH:
        return "anyone"
    if info.st_mode & stat.S_IWGRP and not _private_group(info.st_gid):
        return _group_name(info.st_gid)
    return None


def _foreign_link(path: str | os.PathLike[str]) -> str | None:
    """The first symlink on the way to ``path`` that another user owns, if any.

    Resolving ``path`` once and judging where it led is no promise for the next open:
    the owner of a symlink may point it elsewhere at any time.
    """
    pending = os.path.abspath(path).split("/")[::-1]
    current, hops = "/", 0
    while pending:
        name = pending.pop()
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, name)
        try:
            info = os.lstat(candidate)
        except OSError:
            return None  # absent (or unreadable): nothing beyond it is a symlink yet
        if not stat.S_ISLNK(info.st_mode):
            current = candidate
            continue
        if not _owner_ok(info):
            return f"{candidate} is a symlink of another user (uid {info.st_uid})"
        hops += 1
        if hops > 40:
            return f"{path} goes through too many symlinks"
        target = os.readlink(candidate)
        if os.path.isabs(target):
            current = "/"
        pending.extend(target.split("/")[::-1])
    return None


def untrusted_folder(folder: str | os.PathLike[str]) -> str | None:
    """Why files in ``folder`` could have been put there by another user (None if not)."""
    link = _foreign_link(folder)
    if link is not None:
        return link
    path = os.path.realpath(folder)
    while True:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            info = None  # not made yet: whoever may make it is decided above
        except OSError as error:
            return f"{path} cannot be examined ({error.strerror})"
        if info is not None:
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
    link = _foreign_link(path)
    if link is not None:
        return link
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
        writers = _writers(info)
        if writers is not None:
            return f"{real} may be written by {writers}"
    return untrusted_folder(os.path.dirname(real))


def unshared_folder_problem(folder: str | os.PathLike[str], what: str = "files") -> str | None:
    """Why another user could add a file to ``folder`` (the rule, or anybody may write it,
    sticky or not): a name looked up there could be theirs by the next open."""
    why = untrusted_folder(folder)
    if why is not None:
        return why
    entry = os.path.realpath(folder)
    with contextlib.suppress(FileNotFoundError):
        if os.stat(entry).st_mode & stat.S_IWOTH:
            return f"anybody may add {what} to {entry}"
    return None


# Files kept beside a history, named after it: the records it could not take yet, and
# the process trees of its scheduler (conddsl.runtime.leftovers).
JOURNAL_SUFFIX = ".pending.jsonl"
REGISTRY_SUFFIX = ".procs.json"


def history_files(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The files a history at ``path`` reads that must pass the trust rule: the database,
    SQLite's side files (a ``-journal`` left there is rolled back into the database when
    it is opened) and the journal (``conddsl check`` looks at the same ones)."""
    path = os.fspath(path)
    sides = (f"{path}-wal", f"{path}-shm", f"{path}-journal")
    return (path, *sides, path + JOURNAL_SUFFIX)


def history_folder_problem(history: str | os.PathLike[str]) -> str | None:
    """Why the folder of the history file ``history`` is no place for it, or None.

    Beside a history live files conddsl makes and opens by name: its lock
    (``.run.lock``), process registry (``.procs.json``), journal (``.pending.jsonl``)
    and SQLite's ``-wal``/``-shm``/``-journal``. In a folder anybody may add a file to
    (sticky or not, whoever owns it: ``/tmp`` is root's) another user can create one of
    those names first, or swap it between a check and SQLite's own open, which conddsl
    cannot make ``O_NOFOLLOW``. So such a folder is refused outright: no race is left.
    """
    folder = os.path.dirname(os.path.abspath(history))
    # A folder not made yet is made in the nearest one there is: whoever may add to
    # that one may make it first (and own it).
    existing = folder
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    why = unshared_folder_problem(existing, "files")
    if why is None:
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(os.path.realpath(existing))
            if info.st_mode & stat.S_IWGRP and not _private_group(info.st_gid):
                why = f"{_group_name(info.st_gid)} may add files to {os.path.realpath(existing)}"
    if why is None:
        return None
    return (
        f"the history's folder {folder} is not private: {why} (another user could create"
        " its lock, process registry, journal or SQLite side files first)"
    )


HISTORY_FOLDER_HINT = (
    "keep the history in a folder only you (or root) may write, e.g. ~/.local/state/conddsl/"
    " (`mkdir -p -m 700` it first), named by the `history` setting of [scheduler]"
)


def others_may_change(path: str | os.PathLike[str]) -> str | None:
    """A warning when someone else could change ``path``, a task or rules file conddsl
    was pointed at (by the command line, or by that task file): it belongs to another
    user, or anyone or a group not the user's alone may write it. Such a file is read
    anyway (it is what the user asked for) but whoever may write it decides what
    ``conddsl run`` does; None when nobody else may."""
    try:
        info = os.stat(path)
    except OSError:
        return None  # reading it says what is wrong
    if not _owner_ok(info):
        why = f"belongs to another user (uid {info.st_uid})"
    elif (writers := _writers(info)) is not None:
        why = f"may be written by {writers}"
    else:
        return None
    return f"{path} {why}: whoever may change it decides what conddsl run does as you"


def believed(path: str | os.PathLike[str], what: str, consequence: str) -> bool:
    """Whether ``path`` passes the rule; when not, a warning names it, why, and what
    conddsl does instead (``consequence``: "it is not used", say)."""
    why = untrusted(path)
    if why is None:
        return True
    log.warning("%s %s is not trusted: %s; %s", what, path, why, consequence)
    return False


def add_import_folder(folder: str | os.PathLike[str]) -> str | None:
    """Put a task file's folder on ``sys.path`` after the standard library and
    site-packages (so a ``ctypes.py`` beside it shadows nothing); returns the entry
    added (None if it was there already).

    Raises :class:`ImportError` when the folder fails the rule, or anybody may write it
    (sticky or not: anybody may then add a module it imports): anything imported from
    it could be another user's code.
    """
    why = unshared_folder_problem(folder, "modules")
    entry = os.path.realpath(folder)
    if why is not None:
        raise ImportError(
            f"the task file's folder is not trusted: {why}; keep a task file that names a"
            " func in a folder only you (or root) may write"
        )
    if entry in sys.path:
        return None
    sys.path.append(entry)
    return entry


def import_module(name: str) -> ModuleType:
    """Import ``name`` (``package.module``) once every file it comes from passes the rule.

    Each enclosing package is checked before it is imported (finding ``a.b`` imports
    ``a``); raises :class:`ImportError` naming an untrusted file.
    """
    parts = name.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if prefix in sys.modules:
            continue
        spec = importlib.util.find_spec(prefix)
        # The compiled file in __pycache__ runs instead of the source when it is current.
        cached = spec.cached if spec is not None else None
        files = (spec.origin if spec is not None else None, cached)
        for file in files:
            if (
                not file
                or not os.path.isabs(file)
                or (file == cached and not os.path.lexists(file))
            ):
                continue
            why = untrusted(file)
            if why is None and file != cached:
                # Its folder too, as the task folder: a module it imports beside it (from
                # . import helper) could be added by anybody if anybody may write there.
                why = unshared_folder_problem(os.path.dirname(file), "modules")
            if why is not None:
                raise ImportError(f"module {prefix!r} is not trusted: {why}", name=prefix)
    return importlib.import_module(name)
