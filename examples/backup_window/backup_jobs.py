"""The Python side of the backup example.

``backup`` copies the files of ``$BACKUP_SOURCE`` that are new or changed to
``$BACKUP_TARGET`` (defaults: ``data/source`` and ``data/target`` beside this file),
pausing ``$BACKUP_PAUSE`` seconds after each file (default 0.2) to leave the disks to
others. It runs in a process of its own: on SIGTERM (an end condition, a timeout, a
shutdown) it finishes the file it is copying, leaves a note of where it stopped and
exits; the next run skips what is already copied.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path


class Stop(Exception):
    """SIGTERM arrived: stop after the current file."""


def _folders() -> tuple[Path, Path]:
    here = Path(__file__).parent / "data"
    source = Path(os.environ.get("BACKUP_SOURCE", here / "source"))
    target = Path(os.environ.get("BACKUP_TARGET", here / "target"))
    return source, target


def _stale(path: Path, copy: Path) -> bool:
    if not copy.exists():
        return True
    mine, theirs = path.stat(), copy.stat()
    return mine.st_size != theirs.st_size or mine.st_mtime > theirs.st_mtime


def backup() -> int:
    """Copy what changed; return how many files were copied."""
    source, target = _folders()
    pause = float(os.environ.get("BACKUP_PAUSE", "0.2"))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    copied = 0
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        if stopping.is_set():
            break
        copy = target / path.relative_to(source)
        if not _stale(path, copy):
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_name(copy.name + ".partial")
        shutil.copy2(path, partial)
        partial.replace(copy)  # a copy is either whole or absent
        copied += 1
        stopping.wait(pause)  # SIGTERM ends the pause at once
    if stopping.is_set():
        (target / "STOPPED").write_text(f"stopped after {copied} files\n", encoding="utf-8")
        raise Stop(f"stopped after {copied} files; the next run goes on from there")
    (target / "STOPPED").unlink(missing_ok=True)
    return copied


def report_unfinished() -> None:
    """Say that last night's backup did not finish (here: a line in backup.log)."""
    _, target = _folders()
    target.mkdir(parents=True, exist_ok=True)
    with (target.parent / "backup.log").open("a", encoding="utf-8") as log:
        log.write("the backup was stopped before it finished; it resumes tonight\n")


def verify() -> None:
    """Check that every source file has a whole copy; raise if one is missing."""
    source, target = _folders()
    missing = [
        str(path.relative_to(source))
        for path in source.rglob("*")
        if path.is_file() and _stale(path, target / path.relative_to(source))
    ]
    if missing:
        raise RuntimeError(f"{len(missing)} files have no current copy: {missing[:5]}")
