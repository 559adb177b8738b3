"""The loop under a backlog: end conditions go first, and /proc is never read in the loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from runtime_helpers import FOREVER
from runtime_helpers.scenario import Once, play, records_appear

from conddsl.runtime import Scheduler, processes

SLOW = 0.005  # real seconds each start condition of the backlog takes
BACKLOG = 200  # tasks: a second of start conditions to evaluate


class Slow:
    """A start condition that takes SLOW seconds to say no (as a slow custom condition)."""

    def is_true(self, at: datetime, **context: object) -> bool:
        time.sleep(SLOW)
        return False

    def next_change(self, after: datetime, **context: object) -> None:
        return None

    def __str__(self) -> str:
        return "slow"


def test_a_due_end_condition_goes_ahead_of_a_backlog_of_starts():
    app = Scheduler({"timeout": "never", "kill_grace": 0.2})
    app.task(Once(), name="victim", end_cond="running for more than 0.2 seconds")(FOREVER["async"])
    for i in range(BACKLOG):  # looked at after the victim started, one by one
        app.task(Slow(), name=f"slow-{i}")(FOREVER["async"])

    async def stop(app: Scheduler) -> None:
        await records_appear(app, "terminate")
        app.shut_down(force=True)

    play(app, stop)
    (started,) = app.history.records("victim", actions="run")
    (ended,) = app.history.records("victim", actions="terminate")
    assert ended.reason == "end_cond"
    late = (ended.at - started.at).total_seconds() - 0.2
    # Behind the backlog it would wait for all of it (about BACKLOG * SLOW = 1 s).
    assert late < 0.15, late


@pytest.mark.skipif(sys.platform != "linux", reason="/proc")
def test_proc_is_read_off_the_loop_when_process_runs_are_terminated(monkeypatch):
    readers: list[int] = []
    taken = processes.Snapshot.__init__

    def reading(self: processes.Snapshot) -> None:
        readers.append(threading.get_ident())
        taken(self)

    monkeypatch.setattr(processes.Snapshot, "__init__", reading)
    monkeypatch.setattr(processes, "_last", None)
    app = Scheduler({"timeout": "never", "kill_grace": 0.2})
    for i in range(5):
        app.task(Once(), name=f"work-{i}", execution="process", timeout=0.1)(FOREVER["process"])
        app.command_task(Once(), argv=["sleep", "60"], name=f"cmd-{i}", timeout=0.1)
    loop_thread: list[int] = []

    async def stop(app: Scheduler) -> None:
        loop_thread.append(threading.get_ident())
        await records_appear(app, "terminate", 10)
        app.shut_down()

    play(app, stop)
    ends = app.history.records(actions="terminate")
    assert {(rec.reason, rec.message.split("; ")[-1]) for rec in ends} == {
        ("timeout", "killed by signal SIGTERM")
    }
    assert readers, "the trees were read in /proc"
    assert loop_thread[0] not in readers


def test_the_heap_is_frozen_only_while_serving():
    before = gc.get_freeze_count()
    seen: list[int] = []
    app = Scheduler({"timeout": "never"})

    async def look(app: Scheduler) -> None:
        await asyncio.sleep(0.01)
        seen.append(gc.get_freeze_count())
        app.shut_down()

    play(app, look)
    assert seen[0] > before  # what existed when it started: out of the collector's way
    assert gc.get_freeze_count() == before


def _tree_with_a_setsid_grandchild(tmp_path) -> tuple[subprocess.Popen[bytes], int]:
    """A root in a session of its own, and a grandchild that left its group (pid read back)."""
    pid_file = tmp_path / "pid"
    root = subprocess.Popen(
        ["/bin/sh", "-c", f"setsid sleep 60 & echo $! > {pid_file}; exec sleep 60"],
        start_new_session=True,
    )
    for _ in range(500):
        text = pid_file.read_text().strip() if pid_file.exists() else ""
        if text:
            grandchild = int(text)
            info = processes.read_stat(grandchild)
            if info is not None and info.pgid == grandchild:  # its setsid is done
                return root, grandchild
        time.sleep(0.01)
    raise AssertionError("the grandchild never started")


def _wait_gone(pids: list[int], seconds: float = 2.0) -> list[int]:
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        alive = [
            pid
            for pid in pids
            if (info := processes.read_stat(pid)) is not None and info.state not in ("Z", "X")
        ]
        if not alive:
            return []
        time.sleep(0.01)
    return alive


@pytest.mark.skipif(sys.platform != "linux", reason="/proc")
def test_a_tree_is_signalled_at_once_from_a_reading_brought_up_to_date(tmp_path, monkeypatch):
    """The last reading predates the tree: the pids handed out since are looked at one by
    one, in the loop, and the whole tree (the grandchild that left the group too) gets
    its SIGTERM there and then, with no new reading of /proc."""
    monkeypatch.setattr(processes, "_last", processes.Snapshot())
    monkeypatch.setattr(processes, "_view", None)
    root, grandchild = _tree_with_a_setsid_grandchild(tmp_path)
    readings: list[int] = []
    taken = processes.Snapshot.__init__

    def reading(self: processes.Snapshot) -> None:
        readings.append(threading.get_ident())
        taken(self)

    monkeypatch.setattr(processes.Snapshot, "__init__", reading)
    loop = asyncio.new_event_loop()
    try:
        start = processes.read_stat(root.pid).start
        killer = processes.TreeKiller(root.pid, 5.0, loop, start=start)
        killer.start()  # no turn of the loop: the signals are out when this returns
        assert not killer._pending
        assert readings == []
        root.wait(timeout=2)
        assert _wait_gone([grandchild]) == []
        killer.close()
    finally:
        loop.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)


@pytest.mark.skipif(sys.platform != "linux", reason="/proc")
def test_a_tree_waiting_for_a_reading_is_stopped_meanwhile(tmp_path, monkeypatch):
    """With no reading to start from, the group is stopped until /proc is read (in a
    worker thread): the root cannot die and orphan its grandchild before it is found."""
    monkeypatch.setattr(processes, "_last", None)
    monkeypatch.setattr(processes, "_view", None)
    root, grandchild = _tree_with_a_setsid_grandchild(tmp_path)

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        start = processes.read_stat(root.pid).start
        killer = processes.TreeKiller(root.pid, 5.0, loop, start=start)
        killer.start()
        # No turn of the loop yet, so no reading came back: the stop lands meanwhile.
        states = []
        for _ in range(100):
            states.append(processes.read_stat(root.pid).state)
            if states[-1] == "T":
                break
            time.sleep(0.01)
        await asyncio.wait_for(killer.wait_gone(), 3)
        return states[-1:]

    try:
        states = asyncio.run(main())
        assert states == ["T"]
        assert root.wait(timeout=2) == -signal.SIGTERM
        assert _wait_gone([grandchild]) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)


def _collected(loop: weakref.ref[asyncio.AbstractEventLoop]) -> bool:
    gc.collect()
    return loop() is None


def test_a_loop_that_read_proc_is_not_kept_once_closed(monkeypatch):
    """The scanner of a loop (kept per loop, for its trees to share readings) does not keep
    the loop: a process that runs schedulers one after another would keep each of them."""
    monkeypatch.setattr(processes, "_last", None)
    loop = asyncio.new_event_loop()
    try:
        scanner = processes.scanner_for(loop)
        table = loop.run_until_complete(scanner.next())  # read in the loop's executor
        assert isinstance(table, processes.Snapshot)
        assert processes.scanner_for(loop) is scanner
    finally:
        loop.close()
    gone = weakref.ref(loop)
    del loop, scanner
    assert _collected(gone)


def test_a_loop_closed_while_a_reading_was_asked_for_is_forgotten(monkeypatch):
    """A reading asked for and never delivered (the loop closed first) holds the loop by its
    future: the next loop that asks for a scanner clears it."""
    monkeypatch.setattr(processes, "_last", None)
    monkeypatch.setattr(processes, "_indexed_snapshot", lambda: time.sleep(0.2))
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(1)
    loop.set_default_executor(executor)
    asking = processes.scanner_for(loop).next()
    loop.close()  # before the reading came back: its future stays pending
    executor.shutdown(wait=True)  # the worker's reading no longer refers to the loop
    assert not asking.done()
    gone = weakref.ref(loop)
    del loop, asking
    other = asyncio.new_event_loop()
    try:
        processes.scanner_for(other)
        assert _collected(gone)
    finally:
        other.close()


def test_a_late_run_record_does_not_put_off_an_end_check_already_due():
    """A process run's record comes when its process exists (the check of its task is then
    computed again, from that instant): a check due before, that the loop was too busy to
    look at yet, stays. ``scheduler has run over`` has no later change: dropped, its run
    went on to its timeout (the long load test, three times under a load average of 10)."""
    app = Scheduler({"timeout": "never"})

    @app.task("false", end_cond="scheduler has run over 1 second")
    async def job() -> None:
        pass

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    app.session.started_at = start
    checks = app._book.checks
    checks.set("job", start + timedelta(seconds=1))  # its end check, not looked at yet
    app._evaluator.reschedule(app.tasks["job"], start + timedelta(seconds=3))
    assert checks.next() == start + timedelta(seconds=1)
