"""The run lock (one scheduler per SQLite history) against planted files and races."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys

import pytest

from conddsl.cli import main
from conddsl.runtime.runlock import HistoryInUse, LockFileError, RunLock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock")


def test_a_symlinked_lock_file_is_refused_and_its_target_left_alone(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "h.sqlite3.run.lock").symlink_to(victim)
    with pytest.raises(LockFileError, match=r"h\.sqlite3\.run\.lock is not a regular file"):
        RunLock(tmp_path / "h.sqlite3").acquire()
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "h.sqlite3.run.lock").is_symlink()  # not ours to remove


def test_a_directory_as_lock_file_does_not_let_two_runs_in(tmp_path):
    (tmp_path / "h.sqlite3.run.lock").mkdir()
    with pytest.raises(LockFileError, match="is not a regular file"):
        RunLock(tmp_path / "h.sqlite3").acquire()


def test_run_stops_on_a_planted_lock_file_before_anything_runs(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "tasks.toml").write_text(
        '[scheduler]\nhistory = "h.sqlite3"\nshut_cond = "scheduler has run over 1 second"\n\n'
        '[tasks.a]\ncommand = ["true"]\nstart_cond = "true"\n'
    )
    (tmp_path / "h.sqlite3.run.lock").symlink_to(victim)
    assert main(["run", str(tmp_path / "tasks.toml")]) == 1
    err = capsys.readouterr().err
    assert "cannot start" in err and "h.sqlite3.run.lock is not a regular file" in err
    assert "Traceback" not in err
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "h.sqlite3").exists()


def test_a_lock_released_between_open_and_flock_is_not_taken_beside_a_new_one(
    tmp_path, monkeypatch
):
    """B opens the lock file, A lets it go (unlinks it), C makes a new one and locks it,
    then B's flock of the unlinked file succeeds: B must see that and find C."""
    history = tmp_path / "h.sqlite3"
    first, second, third = RunLock(history), RunLock(history), RunLock(history)
    first.acquire()
    real_flock = fcntl.flock
    raced = []

    def flock(fd, op):
        if not raced:
            raced.append(fd)
            first.release()
            third.acquire()
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    with pytest.raises(HistoryInUse, match=f"pid {os.getpid()} on "):
        second.acquire()
    assert raced
    third.release()


@contextlib.contextmanager
def _held_lock_nested_too_deep(tmp_path):
    """The run lock of ``tmp_path / "h.sqlite3"`` held (as by another process) with JSON
    nested past the recursion limit as its text."""
    path = tmp_path / "h.sqlite3.run.lock"
    path.write_bytes(b"[" * 4096)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def test_a_held_lock_whose_text_is_nested_too_deep_says_the_history_is_in_use(tmp_path):
    # Reading who holds such a lock raised RecursionError: a traceback, not HistoryInUse.
    with (
        _held_lock_nested_too_deep(tmp_path),
        pytest.raises(HistoryInUse, match="a process starting right now"),
    ):
        RunLock(tmp_path / "h.sqlite3").acquire()


def test_who_serves_a_history_is_told_although_its_lock_text_is_nested_too_deep(tmp_path):
    from conddsl.ops.requests import served_by

    with _held_lock_nested_too_deep(tmp_path):
        assert served_by(tmp_path / "h.sqlite3") == "a `conddsl run` starting now"
