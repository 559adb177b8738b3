"""Reliability, part 4: crash recovery and a failing history file (docs/reliability.md).

(a) ``conddsl run`` on a task file with a SQLite history is SIGKILLed mid-run, at a
    random moment of a stream of records, and restarted, cycle after cycle. After each
    kill every record line it printed is in the file (none lost), no run has two
    ``run`` or two finishing records (none duplicated); at the restart each run the
    dead scheduler left open gets exactly one finishing record, ``crash``; ``daily``
    tasks that finished, or crashed, do not run again the same day.
(b) The history file locked by another process (``BEGIN EXCLUSIVE``) and a full disk
    (``PRAGMA max_page_count`` on the store's connection): the scheduler stops with a
    ``SchedulerError`` that names the cause, the records it could not write stay in the
    store's pending buffer in order, and once the lock goes or space is freed they are
    written: every run still has its ``run`` and exactly one finishing record. A
    ``conddsl run`` SIGKILLed while the file is locked loses none of the records it
    printed meanwhile (they are in the journal): its restart writes each exactly once.
(c) ``conddsl run`` against a history that stays locked reports it as such (exit 1) and
    keeps what it could not write in the journal; the task processes of a killed
    scheduler are ended by its restart. (These were product bugs, strict xfails until
    fixed.)

Smoke: 2 kill cycles. Long (``pytest -m long``): ``CONDDSL_CRASH_CYCLES`` (default 20).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from reliability import env_int, long_run, report
from reliability.crash import (
    Locker,
    as_lines,
    one_finish_per_run,
    read_until,
    record_lines,
    start_run,
    starts_file,
    task_file,
)
from reliability.load import MARK, marked

from conddsl.history import HistoryError, SQLiteHistory
from conddsl.runtime import Scheduler, SchedulerError
from conddsl.runtime.processes import read_stat
from conddsl.timeline.zones import resolve_zone

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork, /proc, SIGKILL")

SMOKE_CYCLES = 2
LONG_CYCLES = env_int("CONDDSL_CRASH_CYCLES", 20)
SMOKE_KILLS = 3
LONG_KILLS = env_int("CONDDSL_ORPHAN_KILLS", 100)
HOLDS = ("hold_thread", "hold_process", "hold_command")
DAILY = ("nightly", *HOLDS)


def _kill_stragglers(token: str) -> list[int]:
    """SIGKILL what a killed scheduler left running (found by its environment marker)."""
    found = marked(token)
    for pid in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return found


def _history_records(path: Path) -> tuple[list, set[str]]:
    """Every record of the file, and the run_ids of the runs it has open."""
    with SQLiteHistory(path) as history:
        records = history.records()
        assert history._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        open_runs = {run.run_id for task in history.tasks() for run in history.running(task)}
    return records, open_runs


def crash_cycles(folder: Path, cycles: int, seed: int) -> dict:
    rng = random.Random(seed)
    path = task_file(folder)
    db = folder / "runs.sqlite3"
    token = uuid.uuid4().hex
    zone = resolve_zone(path.read_text().split('timezone = "')[1].split('"')[0])
    left_open: set[str] = set()
    crashed_total = printed_total = stragglers = 0
    try:
        for cycle in range(cycles):
            process = start_run(path, env={MARK: token})
            ticks = rng.randrange(3, 40)  # kill at a random point of the stream

            def enough(lines, ticks=ticks, cycle=cycle):
                text = "\n".join(lines)
                first = cycle > 0 or all(f"start      {name}" in text for name in HOLDS)
                return first and text.count("success    tick") >= ticks

            try:
                lines = read_until(process, enough)
                time.sleep(rng.random() * 0.05)
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(30)
            # Its command children live on until the restart ends them (tested below,
            # test_the_processes_of_a_killed_scheduler_do_not_outlive_its_restart); they
            # hold its stdout open, so here the test ends them itself.
            stragglers += len(_kill_stragglers(token))
            rest, _ = process.communicate(timeout=30)
            lines += rest.splitlines()  # printed before it died: written before that
            records, now_open = _history_records(db)
            printed = record_lines(lines)
            printed_total += sum(printed.values())
            missing = printed - as_lines(records, zone)
            assert not missing, f"printed but not in the history file: {missing}"
            finishes = one_finish_per_run(records)
            for run_id in left_open:  # the previous scheduler's open runs: crash, once
                assert (finishes[run_id].action, finishes[run_id].reason) == (
                    "crash",
                    "scheduler died",
                )
            crashed_total += len(left_open)
            assert sum(r.action == "crash" for r in records) == crashed_total
            starts = [r.task for r in records if r.action == "run"]
            for name in DAILY:  # finished or crashed today: never started again
                assert starts.count(name) == 1, (name, cycle)
            if cycle == 0:  # the three that hang were in flight when it was killed
                holds = {r.run_id for r in records if r.action == "run" and r.task in HOLDS}
                assert holds <= now_open
            left_open = now_open
        # A last start that ends by itself: the runs left open are closed as crash.
        final = task_file(folder, shut_after=1.0, name="restart.toml")
        done = start_run(final, env={MARK: token})
        out, err = done.communicate(timeout=60)
        assert done.returncode == 0, err
        assert "Traceback" not in out + err
        records, now_open = _history_records(db)
        finishes = one_finish_per_run(records)
        assert now_open == set()
        assert all(finishes[run_id].action == "crash" for run_id in left_open)
        crashed_total += len(left_open)
        assert sum(r.action == "crash" for r in records) == crashed_total
    finally:
        _kill_stragglers(token)
    return {
        "kills": cycles,
        "records": len(records),
        "record_lines_printed_before_kills": printed_total,
        "records_lost": 0,
        "records_duplicated": 0,
        "runs_marked_crash": crashed_total,
        "task_processes_left_by_killed_schedulers": stragglers,
    }


# Seconds of real work: run by CI's smoke pass, kept out of the default run.
@pytest.mark.long
@pytest.mark.smoke
def test_crash_recovery_smoke(tmp_path):
    report("crash_smoke", **crash_cycles(tmp_path, SMOKE_CYCLES, seed=1))


@pytest.mark.long
def test_crash_recovery_long(tmp_path, request):
    long_run(request)
    report("crash_long", **crash_cycles(tmp_path, LONG_CYCLES, seed=2))


# ---------------------------------------------------------------- a failing history file


def _ticking_scheduler(history) -> Scheduler:
    app = Scheduler({"timeout": "never", "history": history, "kill_grace": 0.2})
    app.task("every 0.02 seconds", name="tick", execution="thread")(lambda: time.sleep(0.005))

    async def hold() -> None:
        await asyncio.sleep(3600)

    app.task("every 1 hour", name="hold", execution="async")(hold)
    return app


def _serve_until_it_fails(app: Scheduler, trouble) -> SchedulerError:
    """Serve; ``trouble()`` (the lock, the full disk) comes after 40 records; return the error."""

    async def main() -> None:
        serving = asyncio.ensure_future(app.serve())
        while len(app.history.records()) < 40 and not serving.done():
            await asyncio.sleep(0.01)
        await asyncio.get_running_loop().run_in_executor(None, trouble)
        await asyncio.wait_for(serving, 30)

    with pytest.raises(SchedulerError) as info:
        asyncio.run(main())
    return info.value


def _all_records_once(history: SQLiteHistory) -> None:
    records = history.records()
    finishes = one_finish_per_run(records)
    runs = {r.run_id for r in records if r.action == "run"}
    assert set(finishes) == runs, "a run without its finishing record"
    assert finishes[next(r.run_id for r in records if r.task == "hold")].reason == "shutdown"


def test_a_locked_history_stops_the_scheduler_without_losing_records(tmp_path):
    path = tmp_path / "runs.sqlite3"
    history = SQLiteHistory(path, timeout=0.2)
    lock: list[Locker] = []
    error = _serve_until_it_fails(_ticking_scheduler(history), lambda: lock.append(Locker(path)))
    try:
        assert "locked by another connection" in str(error)
        assert isinstance(error.__cause__, HistoryError)
        pending = history.pending
        assert pending, "the records it could not write are kept"
        assert [r.at for r in pending] == sorted(r.at for r in pending)
        with pytest.raises(HistoryError, match="locked"):
            history.flush()  # still locked: still kept
        assert len(history.pending) == len(pending)
    finally:
        lock[0].release()
    history.flush()
    assert history.pending == []
    _all_records_once(history)
    history.close()


LOCK_SECONDS = 3.0
HOLD_TIMEOUT = 1.0  # due inside the lock's window


@pytest.mark.long
@pytest.mark.smoke
def test_a_locked_history_never_blocks_the_event_loop(tmp_path):
    """Another process holds the file's lock for 3 s, less than the store's timeout (5 s):
    a task's timeout due inside that window is applied on time and a 0.05 s timer keeps
    ticking (before, the first write waited out the lock in the event loop: the timeout
    was applied 2 s late), and once the lock goes every record is written, in order."""
    path = tmp_path / "runs.sqlite3"
    history = SQLiteHistory(path)  # timeout 5 s: the lock is waited out, not given up on
    app = Scheduler({"timeout": "never", "history": history, "kill_grace": 0.2})

    async def tick() -> None:
        pass

    async def hold() -> None:
        await asyncio.sleep(3600)

    app.task("every 0.05 seconds", name="tick", execution="async")(tick)
    app.task("every 1 hour", name="hold", execution="async", timeout=HOLD_TIMEOUT)(hold)
    lock = Locker(path, later=True)
    releaser = threading.Timer(LOCK_SECONDS, lock.release)  # off the event loop
    queued: list[int] = []

    def take_lock() -> None:
        lock.lock()
        releaser.start()

    async def main() -> None:
        serving = asyncio.ensure_future(app.serve())
        loop = asyncio.get_running_loop()
        while not history.running("hold"):
            await asyncio.sleep(0.005)
        # The lock comes milliseconds after hold started: its timeout is due inside it.
        await loop.run_in_executor(None, take_lock)
        await asyncio.sleep(LOCK_SECONDS / 2)
        queued.append(len(history.pending))
        await loop.run_in_executor(None, releaser.join)
        while history.pending and not serving.done():  # the writer's next try
            await asyncio.sleep(0.01)
        app.shut_down()
        await asyncio.wait_for(serving, 30)

    try:
        asyncio.run(main())
    finally:
        with contextlib.suppress(RuntimeError):  # never started
            releaser.join()
        lock.release()
    history.close()
    with SQLiteHistory(path) as reopened:
        records = reopened.records()
    run = next(r for r in records if r.task == "hold" and r.action == "run")
    finish = one_finish_per_run(records)[run.run_id]
    late = (finish.at - run.at).total_seconds() - HOLD_TIMEOUT
    ticks = [r.at for r in records if r.task == "tick" and r.action == "run"]
    gaps = [(b - a).total_seconds() for a, b in zip(ticks, ticks[1:], strict=False)]
    report("history locked 3 s", timeout_late_s=round(late, 3), tick_gap_max_s=max(gaps))
    assert finish.reason == "timeout" and -0.001 < late < 0.2, (finish, late)
    assert queued[0] > 0, "nothing was queued while the lock was held"
    assert len(ticks) >= LOCK_SECONDS / 0.05 / 2 and max(gaps) < 0.3, max(gaps)
    runs = {r.run_id for r in records if r.action == "run"}
    assert set(one_finish_per_run(records)) == runs, "a run without its finishing record"
    # Written in causal order: each task's records in the table's order go forward in time.
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT task, at FROM records ORDER BY id").fetchall()
    finally:
        conn.close()
    assert len(rows) == len(records)
    for task in ("tick", "hold"):
        times = [at for name, at in rows if name == task]
        assert times == sorted(times), task


@pytest.mark.long
@pytest.mark.smoke
def test_records_printed_while_the_history_is_locked_survive_a_sigkill(tmp_path):
    """``conddsl run`` goes on while another process locks its history, printing the
    records it queues; SIGKILLed before the lock goes, then restarted once the lock is
    released: every record it printed is in the history exactly once (before, those it
    queued were only in memory and died with it)."""
    path = task_file(tmp_path)
    db = tmp_path / "runs.sqlite3"
    journal = tmp_path / "runs.sqlite3.pending.jsonl"
    zone = resolve_zone(path.read_text().split('timezone = "')[1].split('"')[0])
    token = uuid.uuid4().hex
    process = start_run(path, env={MARK: token})
    lock: Locker | None = None
    try:
        lines = read_until(process, lambda lines: "\n".join(lines).count("success    tick") >= 3)
        lock = Locker(db)
        before = sum(record_lines(lines).values())
        lines += read_until(process, lambda more: sum(record_lines(more).values()) >= 8)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        _kill_stragglers(token)  # they hold its stdout open
        rest, _ = process.communicate(timeout=30)
        lines += rest.splitlines()
        queued = journal.read_text().splitlines() if journal.exists() else []
    finally:
        with contextlib.suppress(OSError):
            process.kill()
        if lock is not None:
            lock.release()
        _kill_stragglers(token)
    printed = record_lines(lines)
    assert sum(printed.values()) - before >= 8, "records printed while the file was locked"
    # The restart: it replays the journal at open, then closes the runs left open.
    restart = start_run(task_file(tmp_path, shut_after=0.5, name="restart.toml"))
    out, err = restart.communicate(timeout=60)
    assert restart.returncode == 0, err
    records, _ = _history_records(db)
    stored = as_lines(records, zone)
    wrong = {key: stored[key] for key in printed if stored[key] != printed[key]}
    assert not wrong, f"printed once, but this many times in the history: {wrong}"
    one_finish_per_run(records)  # no run recorded twice
    assert queued, "the records it queued for the lock went through the journal"
    assert not journal.exists()
    report(
        "killed while locked", printed_after_lock=sum(printed.values()) - before, queued=len(queued)
    )


def test_a_full_disk_stops_the_scheduler_without_losing_records(tmp_path):
    history = SQLiteHistory(tmp_path / "runs.sqlite3")
    conn = history._conn  # the pragma holds for this connection only: the store's own

    def fill_up() -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

    error = _serve_until_it_fails(_ticking_scheduler(history), fill_up)
    assert "full" in str(error)
    assert history.pending
    conn.execute("PRAGMA max_page_count = 1073741823")  # space was freed
    history.flush()
    assert history.pending == []
    _all_records_once(history)
    history.close()


# ---------------------------------------------------------------- bugs found: conddsl run

LOCK_JOBS = """
import os, time

def slow():
    # Let the test take the lock while this run is in flight, then finish.
    open("started", "w").close()
    while not os.path.exists("locked"):
        time.sleep(0.01)
"""

LOCK_TASKS = """
[scheduler]
history = "runs.sqlite3"
timeout = "never"

[tasks.slow]
func = "lockjobs:slow"
start_cond = "every 1 hour"
"""


@pytest.fixture
def locked_run(tmp_path, monkeypatch, capsys):
    """``conddsl run`` (in-process, its store's busy timeout cut to 0.2 s) whose history is
    locked by another process while a run is in flight, and stays locked until it exits."""
    from conddsl import runfile
    from conddsl.cli import main

    (tmp_path / "lockjobs.py").write_text(LOCK_JOBS)
    (tmp_path / "tasks.toml").write_text(LOCK_TASKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(
        runfile, "SQLiteHistory", lambda path, **kw: SQLiteHistory(path, timeout=0.2, **kw)
    )
    lock: list[Locker] = []

    def take_lock() -> None:
        while not (tmp_path / "started").exists():
            time.sleep(0.01)
        lock.append(Locker(tmp_path / "runs.sqlite3"))
        (tmp_path / "locked").touch()

    taker = threading.Thread(target=take_lock, daemon=True)
    taker.start()
    try:
        code = main(["run", "tasks.toml"])
    finally:
        taker.join(10)
        captured = capsys.readouterr()
        lock[0].release()
        sys.modules.pop("lockjobs", None)
    with SQLiteHistory(tmp_path / "runs.sqlite3") as history:
        records = history.records()
    return code, captured.out, captured.err, records


def test_conddsl_run_keeps_the_records_it_holds_when_the_history_stays_locked(locked_run):
    code, out, err, records = locked_run
    assert [r.action for r in records if r.task == "slow"] == ["run", "success"]


def test_conddsl_run_reports_a_locked_history_as_such(locked_run):
    code, out, err, records = locked_run
    assert "locked" in err
    assert "internal error" not in err
    assert code == 1


def test_the_processes_of_a_killed_scheduler_do_not_outlive_its_restart(tmp_path):
    path = task_file(tmp_path)
    token = uuid.uuid4().hex
    process = start_run(path, env={MARK: token})
    try:
        read_until(process, lambda lines: sum("start      hold_" in line for line in lines) == 3)
        time.sleep(0.2)  # the process and command children are up
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        process.stdout.close()  # its children hold the other end
        process.stderr.close()
    try:
        restart = start_run(task_file(tmp_path, shut_after=0.5, name="restart.toml"))
        out, err = restart.communicate(timeout=60)
        assert restart.returncode == 0, err
        assert marked(token) == []
    finally:
        _kill_stragglers(token)


def orphan_kills(folder: Path, kills: int, seed: int) -> dict:
    """SIGKILL ``conddsl run`` 0-8 ms after one of its first starts (process and
    command bodies ignoring SIGTERM, each with a child in a session of its own), restart
    it on the same history, and count what the killed one left alive."""
    rng = random.Random(seed)
    path = starts_file(folder)
    restart = starts_file(folder, shut_after=0.2, name="restart.toml")
    orphans: list[int] = []
    for _ in range(kills):
        token = uuid.uuid4().hex
        process = start_run(path, env={MARK: token})
        try:
            starts = rng.randrange(1, 6)
            read_until(process, lambda lines, n=starts: sum(" start " in x for x in lines) >= n)
            time.sleep(rng.random() * 0.008)  # 0-8 ms after a start was printed
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            process.stdout.close()
            process.stderr.close()
        try:
            again = start_run(restart)
            _, err = again.communicate(timeout=60)
            assert again.returncode == 0, err
            # Trees the registry did not list yet end by their death signal, within
            # their grace: give them a moment.
            give_up = time.monotonic() + 3.0
            while marked(token) and time.monotonic() < give_up:
                time.sleep(0.05)
            orphans += [_described(pid) for pid in marked(token)]
        finally:
            _kill_stragglers(token)
    return {"kills": kills, "orphans": len(orphans), "orphan_processes": orphans}


def _described(pid: int) -> str:
    """A process by its pid, command line, parent and group (what an orphan report needs)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            command = file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = "?"
    info = read_stat(pid)
    if info is None:
        return f"{pid} {command} (gone)"
    return f"{pid} {command} (parent {info.ppid}, group {info.pgid}, state {info.state})"


# Seconds of real work: run by CI's smoke pass, kept out of the default run.
@pytest.mark.long
@pytest.mark.smoke
def test_no_orphan_after_sigkills_around_starts(tmp_path):
    figures = orphan_kills(tmp_path, SMOKE_KILLS, seed=3)
    assert figures["orphan_processes"] == []


@pytest.mark.long
def test_no_orphan_after_100_sigkills_around_starts(tmp_path, request):
    long_run(request)
    figures = orphan_kills(tmp_path, LONG_KILLS, seed=4)
    report("orphans_long", **figures)
    assert figures["orphan_processes"] == []
