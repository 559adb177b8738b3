"""A history file deleted or replaced while in use (docs/reliability.md): no record is
lost, and a run whose history went elsewhere never ends with exit code 0."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

import pytest
from reliability import SUBPROCESS_ENV

from conddsl.history import HistoryError, HistoryJournaled, SQLiteHistory

NOW = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)


def actions(path) -> list[tuple[str, str]]:
    with SQLiteHistory(path) as history:
        return [(r.task, r.action) for r in history.records()]


@pytest.mark.parametrize("side_files", [False, True])
def test_deleted_history_is_written_again_with_every_record(tmp_path, side_files):
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path)
    history.record("a", "run", at=NOW)
    for name in ["h.sqlite3", *(["h.sqlite3-wal", "h.sqlite3-shm"] if side_files else [])]:
        os.remove(tmp_path / name)
    history.record("a", "success", at=NOW)  # noticed here: the file is put back
    history.flush()  # (by the writer thread: waited for here)
    assert path.exists()
    os.remove(path)  # and again, with nothing written after: noticed at close
    history.close()
    assert actions(path) == [("a", "run"), ("a", "success")]


def _copies_held(monkeypatch) -> tuple[list[int], threading.Event, threading.Event]:
    """Make the history's copies note their thread, say they started and wait for ``go``."""
    from conddsl.history import sqlite as store

    threads: list[int] = []
    started, go = threading.Event(), threading.Event()
    copy_into = store.copy_into

    def held(*args, **options):
        threads.append(threading.get_ident())
        started.set()
        go.wait(10)
        return copy_into(*args, **options)

    monkeypatch.setattr(store, "copy_into", held)
    return threads, started, go


def test_deleted_history_is_copied_back_off_the_recording_thread(tmp_path, monkeypatch, caplog):
    """``record`` (called in the event loop while serving) does not copy a deleted file
    back itself: the writer thread does, and answers go on meanwhile."""
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path)
    history.record("a", "run", at=NOW, run_id="1")
    threads, started, go = _copies_held(monkeypatch)
    os.remove(path)
    history.record("a", "success", at=NOW, run_id="1")  # accepted, the copy under way
    assert started.wait(10)
    history.record("b", "run", at=NOW)
    assert history.running("a") == [] and history.tasks() == ["a", "b"]
    assert [r.action for r in history.records("a")] == ["run", "success"]
    go.set()
    history.flush()
    assert threads and threading.get_ident() not in threads
    assert "was deleted while in use" in caplog.text
    history.close()
    assert actions(path) == [("a", "run"), ("a", "success"), ("b", "run")]


def test_a_batch_to_a_deleted_history_is_copied_back_off_the_recording_thread(
    tmp_path, monkeypatch
):
    """``record_many`` (a burst of run records) takes the same path as ``record``: a
    deleted file is copied back by the writer thread and the batch written after it."""
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path)
    history.record("a", "run", at=NOW, run_id="1")
    threads, started, go = _copies_held(monkeypatch)
    os.remove(path)
    batch = [(name, "run", NOW, None, None, None, None) for name in ("b", "c")]
    history.record_many(batch)  # accepted, the copy under way
    assert started.wait(10)
    assert history.tasks() == ["a", "b", "c"]
    go.set()
    history.flush()
    assert threads and threading.get_ident() not in threads
    history.close()
    assert actions(path) == [("a", "run"), ("b", "run"), ("c", "run")]


def test_history_deleted_again_while_it_is_written_back_loses_nothing(tmp_path, monkeypatch):
    """The file written back is deleted again before the history reconnects to it: the
    open connection, which holds every record, stays in use and writes it back again
    (before, the reconnection made a new empty file: every earlier record was gone)."""
    from conddsl.history import sqlite as store

    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path)
    history.record("a", "run", at=NOW, run_id="1")
    copy_into = store.copy_into
    copies: list[str] = []

    def copy_then_delete(conn, target):
        copy_into(conn, target)
        copies.append(target)
        if len(copies) == 1:
            os.remove(target)  # deleted again, between the copy and the reconnection

    monkeypatch.setattr(store, "copy_into", copy_then_delete)
    os.remove(path)
    history.record("a", "success", at=NOW, run_id="1")
    history.flush()
    history.record("b", "run", at=NOW)
    history.close()
    assert len(copies) >= 2
    assert actions(path) == [("a", "run"), ("a", "success"), ("b", "run")]


def test_replaced_history_is_copied_beside_it_off_the_recording_thread(tmp_path, monkeypatch):
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path)
    history.record("a", "run", at=NOW)
    threads, started, go = _copies_held(monkeypatch)
    SQLiteHistory(tmp_path / "other.sqlite3").close()
    os.replace(tmp_path / "other.sqlite3", path)
    with pytest.raises(HistoryError, match="replaced by another file") as raised:
        history.record("a", "success", at=NOW)  # told at once; the copy is under way
    assert started.wait(10)
    go.set()
    with pytest.raises(HistoryJournaled):
        history.close(journal=True)
    assert threads and threading.get_ident() not in threads
    (copy,) = tmp_path.glob("h.sqlite3.replaced-*.sqlite3")
    assert str(copy) in str(raised.value)
    assert actions(copy) == [("a", "run")]


def test_history_deleted_while_records_wait_for_its_lock_is_written_again(tmp_path):
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path)
    history.record("a", "run", at=NOW)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    history.record("a", "success", at=NOW)  # queued for the writer thread
    os.remove(path)
    blocker.execute("ROLLBACK")
    blocker.close()
    deadline = time.monotonic() + 10
    while history.pending and time.monotonic() < deadline:  # its next try notices
        time.sleep(0.01)
    assert history.pending == [] and path.exists()
    history.close()
    assert actions(path) == [("a", "run"), ("a", "success")]


def test_replaced_history_keeps_this_runs_records_beside_it_and_raises(tmp_path):
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path)
    history.record("a", "run", at=NOW)
    SQLiteHistory(tmp_path / "other.sqlite3").close()
    os.replace(tmp_path / "other.sqlite3", path)  # another file takes the name
    with pytest.raises(HistoryError, match="replaced by another file") as raised:
        history.record("a", "success", at=NOW)
    # Later records never go through the connection again: they wait for the journal.
    with pytest.raises(HistoryError, match="replaced by another file"):
        history.record("a", "fail", at=NOW)
    with pytest.raises(HistoryJournaled, match="replaced by another file") as journaled:
        history.close(journal=True)
    assert journaled.value.count == 2
    (copy,) = tmp_path.glob("h.sqlite3.replaced-*.sqlite3")
    assert str(copy) in str(raised.value)
    assert actions(copy) == [("a", "run")]
    # The newcomer is left as it was until it is opened again: then the journal's go in.
    assert actions(path) == [("a", "success"), ("a", "fail")]


def _serve_at_startup_while(history: SQLiteHistory, blocked: Callable[[], None]) -> list[str]:
    """Serve a scheduler on ``history`` whose file another connection holds locked;
    ``blocked()`` runs in a thread that releases the lock once a coroutine beside the
    scheduler has run (the event loop was not held by the scheduler's start). What
    happened, in order."""
    from runtime_helpers.scenario import play, virtual

    blocker = sqlite3.connect(history.path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    blocked()
    app = virtual(start="12:00", shut_cond="time of day after 12:00")
    app.history = history
    beside = threading.Event()
    order: list[str] = []

    def releaser() -> None:
        order.append("loop ran" if beside.wait(20) else "loop held")
        blocker.execute("ROLLBACK")
        blocker.close()

    async def coroutine(app) -> None:
        beside.set()

    thread = threading.Thread(target=releaser)
    thread.start()
    try:
        play(app, coroutine)
        order.append("served")
    finally:
        beside.set()
        thread.join()
    return order


def test_startup_marks_crashed_runs_off_the_event_loop_while_the_file_is_locked(tmp_path):
    """A journal waits to be written before the crashed runs are marked, and the file is
    locked: the wait (up to the store's timeout) is not the event loop's."""
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path, timeout=3)
    history.record("a", "run", at=NOW, run_id="1")  # left open by a scheduler that died

    def journaled() -> None:
        history.record("b", "inaction", at=NOW)  # the file is locked: to the journal
        assert history.pending

    order = _serve_at_startup_while(history, journaled)
    assert order == ["loop ran", "served"]
    history.close()
    assert sorted(actions(path)) == [("a", "crash"), ("a", "run"), ("b", "inaction")]


def test_startup_copies_a_deleted_history_back_off_the_event_loop(tmp_path, monkeypatch):
    """A journal left by the last session waits (the file was locked when it was opened),
    and the file is deleted before the scheduler serves: the copy put back before the
    journal's records and the crashes are written is not made in the event loop."""
    from runtime_helpers.scenario import play, virtual

    from conddsl.history import sqlite as store

    path = tmp_path / "h.sqlite3"
    last = SQLiteHistory(path, timeout=0.05)
    last.record("a", "run", at=NOW, run_id="1")  # left open by a scheduler that died
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        last.record("b", "inaction", at=NOW)
        with pytest.raises(HistoryJournaled):
            last.close(journal=True)
        history = SQLiteHistory(path, timeout=0.05)  # locked: its journal waits
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    os.remove(path)
    copied_in: list[int] = []
    copy_into = store.copy_into

    def noted(*args, **options):
        copied_in.append(threading.get_ident())
        return copy_into(*args, **options)

    monkeypatch.setattr(store, "copy_into", noted)
    app = virtual(start="12:00", shut_cond="time of day after 12:00")
    app.history = history
    play(app)  # its event loop runs in this thread
    history.close()
    assert copied_in and threading.get_ident() not in copied_in
    assert sorted(actions(path)) == [("a", "crash"), ("a", "run"), ("b", "inaction")]


def run(tmp_path, command: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tasks.toml").write_text(
        f"""
[scheduler]
history = "runs.sqlite3"
shut_cond = "task 'after' has succeeded"
instant_shutdown = true

[tasks.spoil]
command = ["sh", "-c", "{command}"]
start_cond = "every 1 hour"

[tasks.after]
command = ["true"]
start_cond = "after task 'spoil'"
"""
    )
    return subprocess.run(
        [sys.executable, "-m", "conddsl.cli", "run", str(tmp_path / "tasks.toml")],
        env=SUBPROCESS_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_whose_history_is_deleted_loses_no_record(tmp_path):
    result = run(tmp_path, "rm runs.sqlite3*")
    assert result.returncode == 0, result.stderr
    assert "was deleted while in use" in result.stderr
    assert actions(tmp_path / "runs.sqlite3") == [
        ("spoil", "run"),
        ("spoil", "success"),
        ("after", "run"),
        ("after", "success"),
    ]


def test_run_whose_history_is_replaced_stops_with_exit_1(tmp_path):
    result = run(tmp_path, "cp runs.sqlite3 copy.tmp && mv copy.tmp runs.sqlite3")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "replaced by another file" in result.stderr
    assert "Traceback" not in result.stderr
    # What was written before is in the copy; what came after waits in the journal.
    (copy,) = tmp_path.glob("runs.sqlite3.replaced-*.sqlite3")
    assert actions(copy) == [("spoil", "run")]
    assert "1 record is kept in" in result.stderr
    journal = (tmp_path / "runs.sqlite3.pending.jsonl").read_text()
    assert '"task": "spoil"' in journal and '"action": "success"' in journal
