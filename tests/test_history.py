"""The run history stores: each behaviour checked on the memory, SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import conddsl
from conddsl.history import (
    ACTIONS,
    FINISH_ACTIONS,
    History,
    HistoryError,
    HistoryJournaled,
    MemoryHistory,
    PostgresHistory,
    Record,
    SQLiteHistory,
)
from conddsl.history.base import batch_adder, batch_writer, new_record
from conddsl.history.sqlite import _journal_line

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
US = timedelta(microseconds=1)
REPO = Path(conddsl.__file__).resolve().parent.parent


def t(minutes: float) -> datetime:
    """A time ``minutes`` after T0."""
    return T0 + timedelta(minutes=minutes)


def rec(task: str, action: str, minutes: float, run_id: str | None = None, **kw: str) -> Record:
    return Record(task, action, t(minutes), run_id, kw.get("reason"), kw.get("message"))


def fill(history: History, rows: list[tuple]) -> None:
    """Record (task, action, minutes[, run_id]) rows in the given order."""
    for task, action, minutes, *rest in rows:
        history.record(task, action, at=t(minutes), run_id=rest[0] if rest else None)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make(request: pytest.FixtureRequest, tmp_path: Path):
    """A factory of empty histories of one kind, closed after the test."""
    opened: list[History] = []
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None

    def factory(**kwargs) -> History:
        if request.param == "memory":
            history: History = MemoryHistory(**kwargs)
        elif request.param == "postgres":
            history = PostgresHistory(dsn, **kwargs)
        else:
            history = SQLiteHistory(tmp_path / f"history-{len(opened)}.sqlite3", **kwargs)
        opened.append(history)
        return history

    yield factory
    for history in opened:
        history.close()


@pytest.fixture
def history(make) -> History:
    return make()


# The query table ------------------------------------------------------------------

RUNS = [
    ("a", "run", 0, "r1"),
    ("a", "success", 1, "r1"),
    ("a", "run", 2, "r2"),
    ("a", "fail", 3, "r2"),
    ("b", "run", 5),
]
SUCCESSES = [("a", "success", 1), ("a", "success", 2), ("a", "success", 3)]
LATE = [("a", "success", 1), ("a", "success", 9), ("a", "success", 4), ("a", "success", 7)]

CASES = [
    # last
    ("last one action", RUNS, "last", ("a", "success"), t(1)),
    ("last of several actions", RUNS, "last", ("a", ("success", "fail")), t(3)),
    ("last as a list", RUNS, "last", ("a", ["run"]), t(2)),
    ("last never happened", RUNS, "last", ("a", "crash"), None),
    ("last unknown task", RUNS, "last", ("zzz", ACTIONS), None),
    ("last no actions", RUNS, "last", ("a", ()), None),
    ("last other task apart", RUNS, "last", ("b", ACTIONS), t(5)),
    ("last late record older", LATE, "last", ("a", "success"), t(9)),
    # first_in / last_in: since inclusive, until exclusive
    ("first_in since inclusive", SUCCESSES, "first_in", ("a", "success", t(1), t(3)), t(1)),
    ("first_in since inside", SUCCESSES, "first_in", ("a", "success", t(1) + US, t(3)), t(2)),
    ("last_in until exclusive", SUCCESSES, "last_in", ("a", "success", t(1), t(3)), t(2)),
    ("last_in until 1us after", SUCCESSES, "last_in", ("a", "success", t(1), t(3) + US), t(3)),
    ("first_in empty window", SUCCESSES, "first_in", ("a", "success", t(2), t(2)), None),
    ("last_in window before", SUCCESSES, "last_in", ("a", "success", t(-9), t(1)), None),
    ("first_in window after", SUCCESSES, "first_in", ("a", "success", t(3) + US, t(9)), None),
    ("first_in other action", SUCCESSES, "first_in", ("a", "fail", t(0), t(9)), None),
    ("first_in across actions", RUNS, "first_in", ("a", ("fail", "success"), t(0), t(9)), t(1)),
    ("last_in across actions", RUNS, "last_in", ("a", ("run", "success"), t(0), t(9)), t(2)),
    ("first_in late inserts", LATE, "first_in", ("a", "success", t(2), t(9)), t(4)),
    ("last_in late inserts", LATE, "last_in", ("a", "success", t(0), t(7)), t(4)),
    # count_in
    ("count_in half open", SUCCESSES, "count_in", ("a", "success", t(1), t(3)), 2),
    ("count_in until 1us after", SUCCESSES, "count_in", ("a", "success", t(1), t(3) + US), 3),
    ("count_in empty window", SUCCESSES, "count_in", ("a", "success", t(3), t(3)), 0),
    ("count_in several actions", RUNS, "count_in", ("a", ("run", "fail"), t(0), t(9)), 3),
    ("count_in no actions", RUNS, "count_in", ("a", (), t(0), t(9)), 0),
    ("count_in unknown task", RUNS, "count_in", ("zzz", "run", t(0), t(9)), 0),
    ("count_in late inserts", LATE, "count_in", ("a", "success", t(4), t(9)), 2),
    # running: match by run_id, else the oldest open run without one
    ("running all finished", RUNS, "running", ("a",), []),
    ("running other task", RUNS, "running", ("b",), [rec("b", "run", 5)]),
    ("running unknown task", RUNS, "running", ("zzz",), []),
    (
        "running by run_id",
        [("a", "run", 0, "r1"), ("a", "run", 1, "r2"), ("a", "success", 2, "r1")],
        "running",
        ("a",),
        [rec("a", "run", 1, "r2")],
    ),
    (
        "running finish timed before its run",
        [("a", "run", 5, "r1"), ("a", "run", 6, "r2"), ("a", "fail", 4, "r2")],
        "running",
        ("a",),
        [rec("a", "run", 5, "r1")],
    ),
    (
        "running anonymous oldest first",
        [("a", "run", 0), ("a", "run", 1), ("a", "terminate", 2)],
        "running",
        ("a",),
        [rec("a", "run", 1)],
    ),
    (
        "running anonymous finish leaves run_id runs",
        [("a", "run", 0, "r1"), ("a", "success", 1)],
        "running",
        ("a",),
        [rec("a", "run", 0, "r1")],
    ),
    (
        "running run_id finish leaves anonymous runs",
        [("a", "run", 0), ("a", "success", 1, "r9")],
        "running",
        ("a",),
        [rec("a", "run", 0)],
    ),
    (
        "running sorted by time",
        [("a", "run", 3, "late"), ("a", "run", 1), ("a", "run", 2, "mid")],
        "running",
        ("a",),
        [rec("a", "run", 1), rec("a", "run", 2, "mid"), rec("a", "run", 3, "late")],
    ),
    (
        "running finish of another task",
        [("a", "run", 0, "r1"), ("b", "success", 1, "r1")],
        "running",
        ("a",),
        [rec("a", "run", 0, "r1")],
    ),
    # records: time order, half open, filters
    (
        "records late inserts in time order",
        LATE,
        "records",
        ("a",),
        [rec("a", "success", m) for m in (1, 4, 7, 9)],
    ),
    ("records task filter", RUNS, "records", ("b",), [rec("b", "run", 5)]),
    (
        "records half open",
        SUCCESSES,
        "records",
        ("a", {"since": t(1), "until": t(3)}),
        [rec("a", "success", 1), rec("a", "success", 2)],
    ),
    (
        "records actions filter over tasks",
        RUNS,
        "records",
        (None, {"actions": "run"}),
        [rec("a", "run", 0, "r1"), rec("a", "run", 2, "r2"), rec("b", "run", 5)],
    ),
    (
        "records ties: task, then action order",
        [("b", "run", 1), ("a", "success", 1), ("a", "run", 1)],
        "records",
        (),
        [rec("a", "run", 1), rec("a", "success", 1), rec("b", "run", 1)],
    ),
]


@pytest.mark.parametrize(
    ("rows", "query", "args", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_query_table(history: History, rows, query, args, expected) -> None:
    fill(history, rows)
    if args and isinstance(args[-1], dict):
        args, kwargs = args[:-1], args[-1]
    else:
        kwargs = {}
    assert getattr(history, query)(*args, **kwargs) == expected


@pytest.mark.parametrize("finish", sorted(FINISH_ACTIONS))
def test_every_finish_action_closes_a_run(history: History, finish: str) -> None:
    fill(history, [("a", "run", 0, "x"), ("a", "run", 1), ("a", finish, 2, "x"), ("a", finish, 3)])
    assert history.running("a") == []


# Validation -----------------------------------------------------------------------


def test_record_returns_the_record_in_utc(history: History) -> None:
    plus_two = timezone(timedelta(hours=2))
    made = history.record("a", "run", at=T0.astimezone(plus_two), run_id="r", message="hi")
    assert made == Record("a", "run", T0, "r", None, "hi")
    assert made.at.utcoffset() == timedelta(0)
    assert history.records() == [made]
    assert history.last("a", "run") == T0


def test_unknown_action_names_the_allowed_ones(history: History) -> None:
    with pytest.raises(ValueError, match="run, success, fail, terminate, inaction, crash"):
        history.record("a", "started", at=T0)
    with pytest.raises(ValueError, match="expected one of"):
        history.last("a", ("run", "succeeded"))
    assert history.records() == []


@pytest.mark.parametrize("query", ["first_in", "last_in", "count_in"])
def test_naive_times_are_rejected(history: History, query: str) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        history.record("a", "run", at=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        getattr(history, query)("a", "run", datetime(2024, 1, 1), T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        history.mark_crashed(datetime(2024, 1, 1))
    assert history.records() == []


def test_tasks_and_context_manager(make) -> None:
    with make() as history:
        fill(history, RUNS)
        assert history.tasks() == ["a", "b"]


# mark_crashed ---------------------------------------------------------------------


def test_mark_crashed_closes_every_open_run(history: History) -> None:
    fill(
        history,
        [
            ("a", "run", 0, "done"),
            ("a", "success", 1, "done"),
            ("a", "run", 2, "open"),
            ("b", "run", 3),
            ("b", "run", 4),
        ],
    )
    crashed = history.mark_crashed(t(10))
    assert crashed == [
        rec("a", "crash", 10, "open", reason="scheduler died"),
        rec("b", "crash", 10, reason="scheduler died"),
        rec("b", "crash", 10, reason="scheduler died"),
    ]
    assert history.running("a") == history.running("b") == []
    assert history.last("b", "crash") == t(10)
    assert history.count_in("b", "crash", t(0), t(11)) == 2
    assert history.mark_crashed(t(11)) == []


# Retention ------------------------------------------------------------------------


def _latest_by_action(rows: list[Record]) -> dict[tuple[str, str], datetime]:
    latest: dict[tuple[str, str], datetime] = {}
    for row in rows:
        key = (row.task, row.action)
        latest[key] = max(latest.get(key, row.at), row.at)
    return latest


def test_max_records_bounds_the_store_but_keeps_latest_and_open_runs(make) -> None:
    history = make(max_records=100)
    # Two runs that never finish, older than everything else of their task.
    stuck = history.record("b", "run", at=t(0), run_id="forever")
    anonymous = history.record("c", "run", at=t(0.25))
    written = [stuck, anonymous, history.record("a", "inaction", at=t(0.5))]
    for i in range(1, 500):
        task = "abc"[i % 3]
        written.append(history.record(task, "run", at=t(i), run_id=str(i)))
        outcome = "fail" if i % 7 == 0 else "success"
        written.append(history.record(task, outcome, at=t(i + 0.5), run_id=str(i)))
        assert len(history.records()) <= 100
    assert len(written) > 1000

    kept = history.records()
    assert 90 <= len(kept) <= 100
    assert history.running("b") == [stuck]
    assert history.running("c") == [anonymous]
    assert {stuck, anonymous} <= set(kept)
    for (task, action), at in _latest_by_action(written).items():
        assert history.last(task, action) == at, (task, action)
    # What went is older than what stayed (the protected records aside).
    protected = set(written[:3])
    dropped = [row for row in written if row not in set(kept)]
    oldest_kept = min(row.at for row in kept if row not in protected)
    assert max(row.at for row in dropped) <= oldest_kept


def test_max_age_drops_old_records_but_never_recent_ones(make) -> None:
    history = make(max_age=timedelta(hours=1))
    written = [
        history.record("job", "run", at=t(0), run_id="stuck"),
        history.record("job", "run", at=t(0.1)),  # anonymous, never finished
        history.record("old", "success", at=t(0.2)),  # the latest success of "old"
    ]
    for i in range(1, 400):
        written.append(history.record("job", "run", at=t(i), run_id=str(i)))
        written.append(history.record("job", "success", at=t(i + 0.5), run_id=str(i)))
    now = t(399.5)
    kept = set(history.records())
    # Nothing younger than max_age goes; sweeps run each tenth of it, so nothing
    # older than 1.1 * max_age stays unless it is protected.
    assert {row for row in written if row.at >= now - timedelta(hours=1)} <= kept
    assert {row for row in kept if row.at < now - timedelta(minutes=66)} == set(written[:3])
    assert history.running("job") == written[:2]
    assert history.last("old", "success") == t(0.2)
    assert len(kept) < 140


def test_retention_never_drops_the_latest_late_record(make) -> None:
    history = make(max_records=10)
    history.record("a", "fail", at=t(0))  # the only fail: the latest fail forever
    for i in range(1, 50):
        history.record("a", "success", at=t(100 + i))
    history.record("a", "success", at=t(50))  # late: older than everything kept
    assert history.last("a", "fail") == t(0)
    assert history.last("a", "success") == t(149)
    assert len(history.records()) <= 10


# Threads --------------------------------------------------------------------------


def test_several_threads_record_at_once(history: History) -> None:
    def work(n: int) -> None:
        for i in range(100):
            history.record(f"t{n}", "run", at=t(i), run_id=str(i))
            history.record(f"t{n}", "success", at=t(i + 0.5), run_id=str(i))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert history.tasks() == ["t0", "t1", "t2", "t3"]
    for n in range(4):
        assert history.count_in(f"t{n}", ACTIONS, t(0), t(100)) == 200
        assert history.running(f"t{n}") == []
        assert history.last(f"t{n}", "success") == t(99.5)


# SQLite: persistence, processes, failures -----------------------------------------


def test_sqlite_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    with SQLiteHistory(path) as history:
        fill(history, RUNS + [("a", "success", 0.5, "r0"), ("c", "run", 9, "left-open")])
        before = history.records()
    with SQLiteHistory(path) as history:
        assert history.records() == before
        assert history.tasks() == ["a", "b", "c"]
        assert history.last("a", ("success", "fail")) == t(3)
        assert history.last("a", "success") == t(1)
        assert history.running("c") == [rec("c", "run", 9, "left-open")]
        # A new scheduler process finds the runs the previous one left open.
        assert history.mark_crashed(t(20)) == [
            rec("b", "crash", 20, reason="scheduler died"),
            rec("c", "crash", 20, "left-open", reason="scheduler died"),
        ]
    with SQLiteHistory(path) as history:
        assert history.running("b") == history.running("c") == []
        assert history.last("c", "crash") == t(20)


def test_sqlite_reader_sees_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    with SQLiteHistory(path) as writer, SQLiteHistory(path) as reader:
        writer.record("a", "run", at=t(0), run_id="1")
        assert reader.running("a") == [rec("a", "run", 0, "1")]
        assert reader.last("a", "run") == t(0)
        writer.record("a", "success", at=t(1), run_id="1")
        assert reader.running("a") == []
        assert reader.last("a", "success") == t(1)
        assert reader.tasks() == ["a"]
        # The reader's own writes keep its caches whole too.
        reader.record("b", "run", at=t(2))
        writer.record("a", "run", at=t(3))
        reader.record("b", "success", at=t(4))
        assert reader.last("a", "run") == t(3)
        assert writer.last("b", "success") == t(4)


WRITER = textwrap.dedent(
    """
    import os, sys
    from datetime import datetime, timedelta, timezone
    from conddsl.history import SQLiteHistory

    path, stop = sys.argv[1], sys.argv[2]
    t0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
    with SQLiteHistory(path) as history:
        i = 0
        while not os.path.exists(stop):
            at = t0 + timedelta(seconds=i)
            history.record("job", "run", at=at, run_id=str(i))
            history.record("job", "success", at=at + timedelta(milliseconds=500), run_id=str(i))
            i += 1
        history.record("job", "run", at=t0 + timedelta(seconds=i), run_id="final")
    print(i)
    """
)


def test_sqlite_read_by_one_process_while_another_writes(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    stop = tmp_path / "stop"
    reader = SQLiteHistory(path)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 20
        # Read until the count has grown several times while the writer runs.
        while len(set(seen)) < 5 or seen[-1] < 100:
            assert writer.poll() is None, writer.communicate()
            assert time.monotonic() < deadline, "the writer made no progress"
            count = reader.count_in("job", ("run", "success"), T0, t(10_000))
            last_run = reader.last("job", "run")
            seen.append(count)
            if count:
                # The cached last() follows the writer's commits.
                assert last_run is not None and last_run >= T0 + timedelta(seconds=count // 2 - 1)
            time.sleep(0.002)
        assert seen == sorted(seen)
        stop.touch()
        out, err = writer.communicate(timeout=20)
        assert writer.returncode == 0, err
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    runs = int(out)
    assert reader.count_in("job", ("run", "success"), T0, t(10_000)) == 2 * runs + 1
    assert reader.last("job", "run") == T0 + timedelta(seconds=runs)
    assert reader.running("job") == [Record("job", "run", T0 + timedelta(seconds=runs), "final")]
    reader.close()


def _gives_up(history: SQLiteHistory) -> threading.Event:
    """An event set (with the error in ``.failure``) when the history's writer gives up."""
    event = threading.Event()

    def heard(exc: HistoryError) -> None:
        event.failure = exc  # type: ignore[attr-defined]
        event.set()

    history.watch_failures(heard)
    return event


def test_sqlite_locked_database_queues_the_record_and_reports_the_lock_later(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.sqlite3"
    # A wait for the lock would last the whole timeout (1 s): the bound below leaves a
    # loaded machine most of that second.
    history = SQLiteHistory(path, timeout=1.0)
    gave_up = _gives_up(history)
    history.record("a", "run", at=t(0), run_id="1")
    blocker = _locked(path)
    try:
        started = time.monotonic()
        history.record("a", "success", at=t(1), run_id="1")  # queued: no wait for the lock
        assert time.monotonic() - started < 0.8
        assert history.pending == [rec("a", "success", 1, "1")]
        # Pending records are part of every answer at once.
        assert history.last("a", "success") == t(1)
        assert history.running("a") == []
        assert history.count_in("a", "success", t(0), t(2)) == 1
        assert history.records() == [rec("a", "run", 0, "1"), rec("a", "success", 1, "1")]
        assert gave_up.wait(10), "the writer never reported the lock"
        message = str(gave_up.failure)  # type: ignore[attr-defined]
        assert str(path) in message and "locked" in message and "waited 1 s" in message
        assert time.monotonic() - started >= 1.0
        with pytest.raises(HistoryError, match="locked"):  # told to every later record too
            history.record("a", "run", at=t(2), run_id="2")
        with pytest.raises(HistoryError, match="not closing"):
            history.close()
        assert len(history.pending) == 2
        assert history.running("a") == [rec("a", "run", 2, "2")]
    finally:
        _release(blocker)
    history.flush()
    assert history.pending == []
    assert history.records() == [
        rec("a", "run", 0, "1"),
        rec("a", "success", 1, "1"),
        rec("a", "run", 2, "2"),
    ]
    assert history.running("a") == [rec("a", "run", 2, "2")]
    history.close()
    with SQLiteHistory(path) as reopened:
        assert reopened.last("a", "success") == t(1)


def _until_written(history: SQLiteHistory) -> None:
    """Wait (10 s at most) for the writer thread's next try to write what is pending."""
    deadline = time.monotonic() + 10
    while history.pending and time.monotonic() < deadline:
        time.sleep(0.01)


def test_sqlite_queued_records_are_written_in_order_once_the_lock_goes(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    history = SQLiteHistory(path, timeout=30)
    blocker = _locked(path)
    try:
        for second in range(5):
            history.record("a", "run" if second % 2 == 0 else "success", at=t(second))
        assert len(history.pending) == 5
    finally:
        _release(blocker)
    _until_written(history)
    assert history.pending == []
    assert _rows(path) == [("a", a, None) for a in ("run", "success", "run", "success", "run")]
    history.record("b", "run", at=t(5))  # the file is free: written before record returns
    assert history.pending == [] and _rows(path)[-1] == ("b", "run", None)
    history.close()


def test_sqlite_full_disk_raises_and_retries_on_next_write(tmp_path: Path) -> None:
    path = tmp_path / "full.sqlite3"
    history = SQLiteHistory(path)
    history.record("a", "run", at=t(0))
    conn = history._conn  # white box: cap the file's size to act out a full disk
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(HistoryError, match="full") as info:
        history.record("a", "success", at=t(1), message="x" * 100_000)
    assert str(path) in str(info.value)
    assert len(history.pending) == 1
    conn.execute("PRAGMA max_page_count = 1000000")
    history.record("a", "run", at=t(2))  # the next write carries the pending one first
    assert history.pending == []
    assert [(r.action, r.at) for r in history.records()] == [
        ("run", t(0)),
        ("success", t(1)),
        ("run", t(2)),
    ]
    assert history.running("a") == [rec("a", "run", 2)]
    history.close()


def test_sqlite_closed_history_raises(tmp_path: Path) -> None:
    history = SQLiteHistory(tmp_path / "closed.sqlite3")
    history.close()
    history.close()  # twice is fine
    with pytest.raises(HistoryError, match="closed"):
        history.last("a", "run")
    with pytest.raises(HistoryError, match="closed"):
        history.record("a", "run", at=T0)


# SQLite: the journal of records a failing file could not take ----------------------

JOURNAL_ROWS = [rec("a", "success", 1, "1"), rec("b", "run", 2, "2", message="ünïcode\nline")]


def _locked(path: Path) -> sqlite3.Connection:
    """Another connection holding the write lock of ``path``."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    return blocker


def _release(blocker: sqlite3.Connection) -> None:
    blocker.execute("ROLLBACK")
    blocker.close()


def _journaled(path: Path) -> Path:
    """A history whose last two records went to the journal (the file stayed locked)."""
    history = SQLiteHistory(path, timeout=0.05)
    history.record("a", "run", at=t(0), run_id="1")
    blocker = _locked(path)
    try:
        for row in JOURNAL_ROWS:  # queued: the writer thread waits for the lock
            history.record(row.task, row.action, at=row.at, run_id=row.run_id, message=row.message)
        with pytest.raises(HistoryJournaled) as info:
            history.close(journal=True)
    finally:
        _release(blocker)
    journal = Path(history.journal)
    assert info.value.journal == str(journal) == f"{path}.pending.jsonl"
    assert info.value.count == 2
    assert str(journal) in str(info.value) and "locked" in str(info.value)
    with pytest.raises(HistoryError, match="closed"):
        history.record("c", "run", at=t(9))  # closed for good: nothing is pending any more
    assert len(journal.read_text(encoding="utf-8").splitlines()) == 2
    # The table does not hold them yet.
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 1
    return journal


def _rows(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT task, action, run_id FROM records ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(task, ACTIONS[code], run_id) for task, code, run_id in rows]


WRITTEN = [("a", "run", "1"), ("a", "success", "1"), ("b", "run", "2")]


def test_sqlite_close_keeps_unwritable_records_in_a_journal_replayed_at_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.sqlite3"
    journal = _journaled(path)
    with SQLiteHistory(path) as history:
        assert not journal.exists()
        assert history.records() == [rec("a", "run", 0, "1"), *JOURNAL_ROWS]
        assert history.running("a") == []  # the caches see the replayed finish
        assert history.last("a", "success") == t(1)
        assert history.mark_crashed(t(5)) == [rec("b", "crash", 5, "2", reason="scheduler died")]
    assert _rows(path) == [*WRITTEN, ("b", "crash", "2")]
    with SQLiteHistory(path) as history:  # and once only
        assert len(history.records()) == 4


def test_sqlite_journal_replayed_twice_writes_each_record_once(tmp_path: Path) -> None:
    """A replay that committed but died before deleting the journal is not written twice."""
    path = tmp_path / "h.sqlite3"
    journal = _journaled(path)
    kept = journal.read_bytes()
    SQLiteHistory(path).close()
    assert not journal.exists()
    journal.write_bytes(kept)  # as if the process died between the commit and the delete
    with SQLiteHistory(path) as history:
        assert [(r.task, r.action, r.run_id) for r in history.records()] == WRITTEN
    assert not journal.exists()
    assert _rows(path) == WRITTEN


CRASH_IN_REPLAY = textwrap.dedent(
    """
    import os, sys
    from conddsl.history import SQLiteHistory

    calls = []
    original = SQLiteHistory._insert

    def insert_then_die(self, row, written):
        original(self, row, written)
        calls.append(row)
        if len(calls) == 1:
            os._exit(3)  # killed in the middle of the replay, its transaction open

    SQLiteHistory._insert = insert_then_die
    SQLiteHistory(sys.argv[1])
    """
)


def test_sqlite_crash_during_replay_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    journal = _journaled(path)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    died = subprocess.run(
        [sys.executable, "-c", CRASH_IN_REPLAY, str(path)], env=env, capture_output=True
    )
    assert died.returncode == 3, died.stderr
    assert journal.exists()
    assert _rows(path) == [("a", "run", "1")]  # the replay's transaction was rolled back
    with SQLiteHistory(path) as history:
        assert [(r.task, r.action, r.run_id) for r in history.records()] == WRITTEN
    assert not journal.exists()


KILLED_WHILE_LOCKED = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import datetime, timedelta, timezone
    from conddsl.history import SQLiteHistory

    T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
    history = SQLiteHistory(sys.argv[1], timeout=30)  # the lock is waited out, not given up
    for minute, action in enumerate(["run", "success", "run"]):
        history.record("a", action, at=T0 + timedelta(minutes=minute))  # queued, accepted
    assert len(history.pending) == 3
    os.kill(os.getpid(), signal.SIGKILL)  # before its writer thread could write them
    """
)


def test_sqlite_records_accepted_while_locked_survive_a_sigkill(tmp_path: Path) -> None:
    """A record ``record`` returned while the file was locked is not only in memory: the
    process killed before the lock went, the next open writes it, once."""
    path = tmp_path / "h.sqlite3"
    SQLiteHistory(path).close()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    blocker = _locked(path)
    try:
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_WHILE_LOCKED, str(path)], env=env, capture_output=True
        )
    finally:
        _release(blocker)
    assert killed.returncode == -9, killed.stderr
    with SQLiteHistory(path) as history:
        assert history.records() == [rec("a", "run", 0), rec("a", "success", 1), rec("a", "run", 2)]
    assert not Path(f"{path}.pending.jsonl").exists()
    assert _rows(path) == [("a", "run", None), ("a", "success", None), ("a", "run", None)]


def test_sqlite_records_the_writer_wrote_are_not_replayed_from_the_journal(
    tmp_path: Path,
) -> None:
    """Killed after the writer wrote the queued records but before it deleted their
    journal lines: the next open writes none of them again."""
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path, timeout=30)
    journal = Path(history.journal)
    blocker = _locked(path)
    try:
        history.record("a", "run", at=t(0), run_id="1")
        history.record("a", "success", at=t(1), run_id="1")
        kept = journal.read_bytes()  # accepted: both are in the journal already
        assert [json.loads(line)["action"] for line in kept.splitlines()] == ["run", "success"]
    finally:
        _release(blocker)
    _until_written(history)
    assert history.pending == [] and not journal.exists()
    history.close()
    journal.write_bytes(kept)  # as if it died between the writer's commit and the delete
    with SQLiteHistory(path) as reopened:
        assert reopened.records() == [rec("a", "run", 0, "1"), rec("a", "success", 1, "1")]
        assert reopened.take_replayed() == []
    assert not journal.exists()
    assert _rows(path) == [("a", "run", "1"), ("a", "success", "1")]


def _marks(path: Path) -> tuple[int, int]:
    """How many journal keys the file keeps: (replayed, kept for a history that queued them)."""
    conn = sqlite3.connect(path)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        return tuple(  # type: ignore[return-value]
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] if table in tables else 0
            for table in ("journal_replayed", "journal_unclaimed")
        )
    finally:
        conn.close()


def _written_behind(history: SQLiteHistory) -> None:
    """Wait until the writer thread wrote the queued records (the lock went)."""
    _until_written(history)
    assert history.pending == []


def test_sqlite_journal_keys_go_once_no_journal_can_present_them(tmp_path: Path) -> None:
    """The keys of written journal lines do not pile up: the next write after the journal
    is deleted drops them (before, the file kept one key per journaled record forever)."""
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path, timeout=30)
    for round_ in range(3):
        blocker = _locked(path)
        try:
            history.record("a", "run", at=t(2 * round_))  # queued: in the journal
            history.record("a", "success", at=t(2 * round_ + 1))
        finally:
            _release(blocker)
        _written_behind(history)
        assert not Path(history.journal).exists()
    history.record("b", "run", at=t(9))
    assert _marks(path) == (0, 0)
    history.close()
    # The journal of a closing history: replayed at the next open, its keys dropped after.
    journal = _journaled(tmp_path / "closed.sqlite3")
    with SQLiteHistory(tmp_path / "closed.sqlite3") as reopened:
        assert not journal.exists()
        reopened.record("c", "run", at=t(9))
    assert _marks(tmp_path / "closed.sqlite3") == (0, 0)


def test_sqlite_journal_keys_are_kept_while_a_journal_may_replay_them(tmp_path: Path) -> None:
    """Killed between the commit and the journal's delete: the keys stay while the journal
    is there, so the next open writes nothing twice; then they go."""
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path, timeout=30)
    history._drop_journal = lambda replayed: None  # type: ignore[method-assign]  # "killed"
    blocker = _locked(path)
    try:
        history.record("a", "run", at=t(0))
        history.record("a", "success", at=t(1))
    finally:
        _release(blocker)
    _written_behind(history)
    history.record("b", "run", at=t(2))  # a write with the journal still there
    history.close()
    assert Path(history.journal).exists() and _marks(path) == (2, 0)
    with SQLiteHistory(path) as reopened:
        reopened.record("c", "run", at=t(3))
    assert not Path(history.journal).exists()
    assert _rows(path) == [
        ("a", "run", None),
        ("a", "success", None),
        *[(x, "run", None) for x in "bc"],
    ]
    assert _marks(path) == (0, 0)


def test_sqlite_keys_of_records_queued_by_another_history_outlive_its_journal(
    tmp_path: Path,
) -> None:
    """History B queued records (their lines in the journal, their keys in B's memory);
    history A replays the journal, deletes it and writes again. B's keys must stay until B
    writes, or B would write its records a second time."""
    path = tmp_path / "h.sqlite3"
    SQLiteHistory(path).close()
    b = SQLiteHistory(path, timeout=0.05)
    gave_up = _gives_up(b)
    blocker = _locked(path)
    try:
        b.record("b", "run", at=t(0), run_id="1")
        b.record("b", "success", at=t(1), run_id="1")
        assert gave_up.wait(10)  # B keeps them pending, keys and all
    finally:
        _release(blocker)
    with SQLiteHistory(path) as a:  # replays B's lines, deletes the journal
        assert not Path(a.journal).exists()
        a.record("a", "run", at=t(2))  # the write that drops keys nothing can present
    b.flush()  # B's own write finds them written: not twice
    assert b.pending == []
    b.close()
    assert _rows(path) == [("b", "run", "1"), ("b", "success", "1"), ("a", "run", None)]
    assert _marks(path) == (0, 0)


def test_sqlite_a_burst_of_queued_records_costs_one_journal_sync_off_the_callers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path, timeout=30)
    journal = os.path.realpath(history.journal)
    syncs: list[int] = []  # the threads that synced the journal
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}") == journal:
            syncs.append(threading.get_ident())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    blocker = _locked(path)
    try:
        with history._lock:  # one burst: the writer thread cannot come in between
            for second in range(50):
                history.record("a", "run", at=t(second))
        assert len(Path(journal).read_text().splitlines()) == 50  # all accepted
        deadline = time.monotonic() + 10
        while not syncs and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # ten more tries of the writer: nothing more to sync
        assert len(syncs) == 1
        assert syncs[0] != threading.get_ident()
    finally:
        _release(blocker)
    history.close()
    assert len(_rows(path)) == 50


def test_sqlite_after_the_writer_gave_up_the_next_records_do_not_wait_for_the_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.sqlite3"
    history = SQLiteHistory(path, timeout=0.5)
    gave_up = _gives_up(history)
    blocker = _locked(path)
    try:
        history.record("a", "run", at=t(0), run_id="1")
        assert gave_up.wait(10)
        assert "waited 0.5 s" in str(gave_up.failure)  # type: ignore[attr-defined]
        # The file failed just now: the next records are tried once, never waited for.
        started = time.monotonic()
        for second in (1, 2, 3):
            with pytest.raises(HistoryError, match="the last write failed moments ago"):
                history.record("a", "success", at=t(second), run_id="1")
        assert time.monotonic() - started < 1.2  # three waits would last 1.5 s
        assert len(history.pending) == 4
    finally:
        _release(blocker)
    # Once the lock is gone, the next write takes everything pending, in order.
    history.record("b", "run", at=t(4))
    assert [r.at for r in history.records()] == [t(0), t(1), t(2), t(3), t(4)]
    assert history.pending == []
    history.close()


def test_sqlite_journal_waits_for_the_lock_and_goes_before_new_records(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    journal = _journaled(path)
    blocker = _locked(path)
    try:
        history = SQLiteHistory(path, timeout=0.05)  # a reader opens a locked file
        assert journal.exists()
        assert history.records() == [rec("a", "run", 0, "1")]
        with pytest.raises(HistoryError, match="locked"):
            history.mark_crashed(t(5))  # it must not take "a" for a crashed run
    finally:
        _release(blocker)
    assert history.mark_crashed(t(5)) == [rec("b", "crash", 5, "2", reason="scheduler died")]
    history.record("c", "run", at=t(6))
    history.close()
    assert not journal.exists()
    assert _rows(path) == [*WRITTEN, ("b", "crash", "2"), ("c", "run", None)]


def test_sqlite_journal_is_appended_in_order(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    journal = _journaled(path)
    blocker = _locked(path)
    try:
        history = SQLiteHistory(path, timeout=0.05)
        history.record("c", "run", at=t(7))  # queued
        with pytest.raises(HistoryJournaled) as info:
            history.close(journal=True)
        assert info.value.count == 1
    finally:
        _release(blocker)
    assert len(journal.read_text(encoding="utf-8").splitlines()) == 3
    with SQLiteHistory(path) as history:
        assert len(history.records()) == 4
    assert _rows(path) == [*WRITTEN, ("c", "run", None)]


def test_sqlite_leaving_a_with_block_keeps_unwritable_records(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    SQLiteHistory(path).close()
    blocker = _locked(path)
    try:
        with pytest.raises(HistoryJournaled), SQLiteHistory(path, timeout=0.05) as history:
            history.record("a", "run", at=t(0))  # queued; the block's end journals it
    finally:
        _release(blocker)
    with SQLiteHistory(path) as history:
        assert history.records() == [rec("a", "run", 0)]


def test_sqlite_full_disk_records_go_to_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "full.sqlite3"
    history = SQLiteHistory(path)
    history.record("a", "run", at=t(0), run_id="1")
    conn = history._conn  # white box: cap the file's size to act out a full disk
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(HistoryError, match="full"):
        history.record("a", "success", at=t(1), run_id="1", message="x" * 100_000)
    with pytest.raises(HistoryJournaled, match="full"):
        history.close(journal=True)
    with SQLiteHistory(path) as reopened:  # space was freed (a new connection has no cap)
        assert [(r.action, len(r.message or "")) for r in reopened.records()] == [
            ("run", 0),
            ("success", 100_000),
        ]


def test_sqlite_journal_that_cannot_be_written_keeps_the_history_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path, timeout=0.05)
    blocker = _locked(path)
    try:
        history.record("a", "run", at=t(0))  # queued

        def no_space(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", no_space)
        with pytest.raises(HistoryError) as info:
            history.close(journal=True)
        monkeypatch.undo()
        assert not isinstance(info.value, HistoryJournaled)
        message = str(info.value)
        assert str(path) in message and history.journal in message
        assert "locked" in message and "No space left" in message
        assert history.pending == [rec("a", "run", 0)]  # still here, still open
        # No temporary file left behind (the journal's lock file stays); the journal is
        # the one line the queued record was accepted with, unchanged.
        assert sorted(p.name for p in tmp_path.iterdir()) == ["h.sqlite3"] + [
            name
            for name in (
                "h.sqlite3-shm",
                "h.sqlite3-wal",
                "h.sqlite3.pending.jsonl",
                "h.sqlite3.pending.jsonl.lock",
            )
            if (tmp_path / name).exists()
        ]
        lines = Path(history.journal).read_text().splitlines()
        assert [json.loads(line)["task"] for line in lines] == ["a"]
    finally:
        _release(blocker)
    history.close(journal=True)  # the lock is gone: written, no journal needed
    assert not Path(history.journal).exists()
    assert _rows(path) == [("a", "run", None)]


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b'{"key": "k", "task": "a", "action": "explode", "at": 1}',
        b'{"key": "k", "task": "a", "action": "run", "at": "noon"}',
        b'{"task": "a", "action": "run", "at": 1}',
        b'{"key": "k", "task": "a", "action": "run", "at": 1180591620717411303424}',
        b'{"key": "k", "task": "a", "action": "run", "at": 4611686018427387904}',
        b"[" * 100_000,  # nested past the recursion limit: was a RecursionError traceback
    ],
)
def test_sqlite_broken_journal_is_reported_not_dropped(tmp_path: Path, line: bytes) -> None:
    path = tmp_path / "h.sqlite3"
    SQLiteHistory(path).close()
    journal = Path(f"{path}.pending.jsonl")
    good = b'{"key": "k0", "task": "a", "action": "run", "at": 1}\n'
    journal.write_bytes(good + line + b"\n")
    with pytest.raises(HistoryError, match=r"line 2: not a record") as info:
        SQLiteHistory(path)
    assert str(journal) in str(info.value)
    assert journal.read_bytes() == good + line + b"\n"
    assert _rows(path) == []  # not even the good line: a journal is replayed whole


@pytest.mark.parametrize(
    "after", [b"", b"\n" + b'{"key": "k2", "task": "c", "action": "run", "at": 3}\n']
)
def test_sqlite_journal_line_cut_short_by_a_kill_is_skipped(tmp_path: Path, caplog, after) -> None:
    # SIGKILL in the middle of an append leaves a line cut short (its record was never
    # accepted: the append had not returned), and the next append starts a line apart
    # after it. The journal was refused whole ("not a record"): no restart without a
    # person, and moving it away lost the records accepted before and after the cut.
    path = tmp_path / "h.sqlite3"
    SQLiteHistory(path).close()
    journal = Path(f"{path}.pending.jsonl")
    good = b'{"key": "k0", "task": "a", "action": "run", "at": 1}\n'
    cut = _journal_line("k1", ("b", 0, 2, "r", None, "m" * 50, None), queued=True)[:40]
    journal.write_bytes(good + cut.encode() + after)
    with caplog.at_level("WARNING", logger="conddsl.history"):
        reopened = SQLiteHistory(path)
    try:
        assert [r.task for r in reopened.records()] == ["a"] + (["c"] if after else [])
        assert not journal.exists()
        assert "cut short" in caplog.text and "line 2" in caplog.text
    finally:
        reopened.close()


def test_sqlite_journal_append_that_fails_midway_leaves_no_line_to_replay_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk fills in the middle of appending a batch's lines: the lines already in
    # the file stayed there with keys the history never kept, while the records stayed
    # pending and were written again (with new keys, or by the writer): replayed at the
    # next open, the first lines made each of their records twice.
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path, timeout=0.05)
    blocker = _locked(path)
    real_write = os.write
    calls: list[int] = []

    def fills_up(fd: int, data) -> int:
        calls.append(fd)
        if len(calls) == 1:  # a part of the batch goes in, then there is no room
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    try:
        entries = [("a", "run", t(i), str(i), None, None, None) for i in range(6)]
        monkeypatch.setattr(os, "write", fills_up)
        with pytest.raises(HistoryError, match="No space left"):
            history.record_many(entries)
        monkeypatch.undo()
    finally:
        _release(blocker)
    history.flush()
    history.close()
    reopened = SQLiteHistory(path)
    try:
        assert [r.run_id for r in reopened.records()] == [str(i) for i in range(6)]
    finally:
        reopened.close()


def test_sqlite_close_saves_its_records_beside_a_journal_line_nested_too_deep(
    tmp_path: Path,
) -> None:
    # Saving rewrites the journal's lines of its own queued records; a line nested past
    # the recursion limit raised RecursionError out of close(): no HistoryJournaled.
    path = tmp_path / "h.sqlite3"
    history = SQLiteHistory(path, timeout=0.05)
    blocker = _locked(path)
    try:
        history.record("a", "run", at=t(0), run_id="1")  # queued: its line is in the journal
        garbage = b"[" * 100_000 + b"\n"
        with open(history.journal, "ab") as journal:
            journal.write(garbage)
        with pytest.raises(HistoryJournaled):
            history.close(journal=True)
    finally:
        _release(blocker)
    lines = Path(history.journal).read_bytes().splitlines(keepends=True)
    assert garbage in lines  # kept byte for byte, reported at the next open
    assert [json.loads(line)["task"] for line in lines if line != garbage] == ["a"]


JOURNAL_WRITER = """
import sys
from datetime import datetime, timezone
from conddsl.history import HistoryJournaled, SQLiteHistory

history = SQLiteHistory(sys.argv[1], timeout=0.05)
history._pending.append(("other", 0, 5, None, None, None, None))  # a record it could not write
history._conn.execute("PRAGMA query_only = 1")  # so that writing it fails
try:
    history.close(journal=True)
except HistoryJournaled:
    print("journaled")
"""


def test_sqlite_journal_is_locked_against_other_processes(tmp_path: Path) -> None:
    """Two processes saving records in the journal at once each keep theirs."""
    import fcntl
    import subprocess
    import sys

    path = tmp_path / "h.sqlite3"
    SQLiteHistory(path).close()
    journal = Path(f"{path}.pending.jsonl")
    handle = os.open(f"{journal}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(handle, fcntl.LOCK_EX)  # this process is in the middle of a save
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", JOURNAL_WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(0.5)  # it waits for the lock instead of reading the journal now
        journal.write_bytes(b'{"key": "k0", "task": "mine", "action": "run", "at": 1}\n')
    finally:
        os.close(handle)
    out, _ = child.communicate(timeout=30)
    assert out.strip() == "journaled"
    with SQLiteHistory(path) as history:
        assert [r.task for r in history.records()] == ["mine", "other"]


def test_conddsl_run_refuses_a_broken_journal_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from conddsl.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tasks.toml").write_text(
        '[scheduler]\nhistory = "runs.sqlite3"\n\n[tasks.a]\ncommand = ["true"]\n'
    )
    SQLiteHistory(tmp_path / "runs.sqlite3").close()
    (tmp_path / "runs.sqlite3.pending.jsonl").write_text("{oops\n")
    assert main(["run", "tasks.toml"]) == 1
    err = capsys.readouterr().err
    assert "cannot start tasks.toml" in err and "runs.sqlite3.pending.jsonl, line 1" in err
    assert "internal error" not in err and "hint:" in err


def test_conddsl_run_shows_the_records_it_could_not_keep_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conddsl.runfile import _close

    path = tmp_path / "runs.sqlite3"
    history = SQLiteHistory(path, timeout=0.05)
    blocker = _locked(path)
    try:
        history.record("extract", "success", at=t(1), run_id="r7")  # queued

        def no_space(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", no_space)
        closed = _close(history)
        monkeypatch.undo()
    finally:
        _release(blocker)
    text = "".join(closed.lines)
    assert closed.error is not None
    assert str(path) in text and history.journal in text and "No space left" in text
    assert "could not be kept anywhere" in text
    assert "success    extract" in text and "run_id=r7" in text
    history.close()


def test_sqlite_action_counts(tmp_path: Path) -> None:
    with SQLiteHistory(tmp_path / "h.sqlite3") as history:
        assert history.action_counts() == {}
        history.record("a", "run", at=t(0), run_id="1")
        history.record("a", "success", at=t(1), run_id="1")
        history.record("b", "run", at=t(2), run_id="2")
        assert history.action_counts() == {"run": 2, "success": 1}


# ---------------------------------------------------------------- tracebacks


def test_a_fail_record_keeps_its_traceback(history: History) -> None:
    text = "Traceback (most recent call last):\n  ...\nKeyError: 'user_id'\n"
    history.record("job", "run", at=t(0), run_id="r1")
    stored = history.record("job", "fail", at=t(1), run_id="r1", message="x", traceback=text)
    assert stored.traceback == text
    assert [r.traceback for r in history.records("job")] == [None, text]


def test_an_older_sqlite_file_gains_the_traceback_column(tmp_path: Path) -> None:
    """A file of schema version 1 (no traceback column) is migrated when opened."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE records (id INTEGER PRIMARY KEY AUTOINCREMENT, task TEXT NOT NULL,"
        " action INTEGER NOT NULL, at INTEGER NOT NULL, run_id TEXT, reason TEXT, message TEXT)"
    )
    conn.execute("CREATE TABLE open_runs (id INTEGER PRIMARY KEY, task TEXT NOT NULL, run_id TEXT)")
    conn.execute(
        "INSERT INTO records (task, action, at, run_id, message) VALUES ('job', 2, 0, 'r0', 'old')"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with SQLiteHistory(path) as history:
        history.record("job", "fail", at=t(1), run_id="r1", traceback="KeyError: 'k'\n")
    with SQLiteHistory(path) as history:
        found = [(r.message, r.traceback) for r in history.records("job")]
    assert found == [("old", None), (None, "KeyError: 'k'\n")]


def test_a_traceback_survives_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    history = SQLiteHistory(path, timeout=0.05)
    blocker = _locked(path)
    try:
        history.record("job", "fail", at=t(1), run_id="r1", traceback="ValueError: v\n")
        with pytest.raises(HistoryError):
            history.close(journal=True)
    finally:
        _release(blocker)
    with SQLiteHistory(path) as reopened:
        assert [r.traceback for r in reopened.records("job")] == ["ValueError: v\n"]


# Writing many records in one call ---------------------------------------------------

BATCH = [
    ("a", "run", t(0), "1", None, None, None),
    ("b", "run", t(0), "2", "manual", None, None),
    ("a", "fail", t(1), "1", None, "boom", "Traceback ...\nValueError: boom"),
    ("b", "success", t(1), "2", None, None, None),
]


def test_record_many_writes_what_record_writes(make) -> None:
    one_by_one, batched = make(), make()
    expected = [
        one_by_one.record(task, action, at=at, run_id=r, reason=why, message=m, traceback=tb)
        for task, action, at, r, why, m, tb in BATCH
    ]
    batch = batch_writer(batched)
    if isinstance(batched, PostgresHistory):  # one transaction a record, each fenced
        assert batch is None
        return
    assert batch is not None
    assert batch(BATCH) == expected
    assert batched.records() == one_by_one.records() == expected
    assert batched.running("a") == batched.running("b") == []


def test_a_burst_sharing_one_stamp_is_written_as_one_by_one() -> None:
    # The memory store's batch converts a shared stamp once, builds each Record by its
    # slots and adds inline: the same records, series, open runs and times as record().
    class Name(str):
        pass

    helsinki = timezone(timedelta(hours=2))
    at = t(5)
    burst = [
        *[(f"t{i}", "run", at, f"r{i}", None, None, None) for i in range(5)],
        (Name("t1"), "success", at, "r1", None, None, None),
        ("t2", "fail", t(6).astimezone(helsinki), "r2", None, "boom", "Traceback ...\n"),
        ("t3", "run", t(4), None, "manual", None, None),  # earlier than t3's last: inserted
        ("t3", "terminate", t(7), None, "timeout", "too long", None),
    ]
    one_by_one, batched = MemoryHistory(), MemoryHistory()
    expected = [
        one_by_one.record(task, action, at=when, run_id=r, reason=why, message=m, traceback=tb)
        for task, action, when, r, why, m, tb in burst
    ]
    got = batched.record_many(burst)
    assert got == expected
    assert [(r.at, r.at.tzinfo, r.node) for r in got] == [
        (r.at, r.at.tzinfo, r.node) for r in expected
    ]
    assert batched.records() == one_by_one.records()
    for name in ("t0", "t1", "t2", "t3", "t4"):
        assert batched.running(name) == one_by_one.running(name)
        assert batched.last(name, ACTIONS) == one_by_one.last(name, ACTIONS)
    assert batched.tasks() == one_by_one.tasks()
    with pytest.raises(ValueError, match="task must be a non-empty string"):
        batched.record_many([("", "run", at, "x", None, None, None)])
    assert batched.records() == one_by_one.records()  # nothing of a refused batch


@pytest.mark.parametrize("at", [None, "2024-03-01T12:00:00+00:00", datetime(2024, 3, 1, 12)])
def test_record_many_refuses_a_stamp_record_refuses(make, at: object) -> None:
    # Not a datetime (the first entry too: its stamp is never "the one before"), or naive.
    history = make()
    batch = batch_writer(history)
    if batch is None:
        return
    error = ValueError if isinstance(at, datetime) else TypeError
    with pytest.raises(error, match="at must be"):
        history.record("a", "run", at=at, run_id="1")  # type: ignore[arg-type]
    with pytest.raises(error, match="at must be"):
        batch([("a", "run", at, "1", None, None, None)])  # type: ignore[list-item]
    assert history.records() == []


def test_new_record_is_the_record_its_fields_make() -> None:
    made = new_record("job", "fail", t(1), "r1", "timeout", "late", "Traceback ...")
    same = Record("job", "fail", t(1), "r1", "timeout", "late", "Traceback ...")
    assert made == same and hash(made) == hash(same) and repr(made) == repr(same)
    assert made.node is None
    with pytest.raises(AttributeError):  # as frozen as any Record
        made.task = "other"  # type: ignore[misc]


def test_record_many_checks_every_entry_before_writing_any(make) -> None:
    history = make()
    batch = batch_writer(history)
    if batch is None:
        return
    history.record("a", "run", at=t(0), run_id="0")
    bad = [*BATCH[:2], ("a", "stop", t(1), "1", None, None, None), *BATCH[2:]]
    with pytest.raises(ValueError, match="unknown action 'stop'"):
        batch(bad)
    assert history.records() == [rec("a", "run", 0, "0")]  # what came before is kept


def test_sqlite_record_many_that_fails_keeps_the_batch_pending(tmp_path: Path) -> None:
    path = tmp_path / "full.sqlite3"
    history = SQLiteHistory(path)
    history.record("a", "run", at=t(0), run_id="0")
    conn = history._conn  # white box: cap the file's size to act out a full disk
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    big = [(f"t{i}", "run", t(1), str(i), None, "x" * 10_000, None) for i in range(20)]
    with pytest.raises(HistoryError, match="full"):
        history.record_many(big)
    assert len(history.pending) == 20  # one transaction: none half written
    assert _rows(path) == [("a", "run", "0")]  # the record before it is kept
    conn.execute("PRAGMA max_page_count = 1000000")
    history.flush()
    assert history.pending == [] and len(history.records()) == 21
    history.close()


def test_a_batch_is_used_only_where_it_writes_as_record_does() -> None:
    class Counting(MemoryHistory):  # overrides record alone: its record sees each one
        def record(self, task, action, **fields):
            return super().record(task, action, **fields)

    class Both(Counting):  # its own batch, below its own record
        def record_many(self, entries):
            return super().record_many(entries)

    class Forwarding:  # a wrapper that forwards what it does not define
        def __init__(self, inner: History) -> None:
            self.inner = inner

        def record(self, task, action, **fields):
            return self.inner.record(task, action, **fields)

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

    plain = MemoryHistory()
    assert batch_writer(plain) == plain.record_many
    assert batch_writer(Counting()) is None
    both = Both()
    assert batch_writer(both) == both.record_many
    assert batch_writer(Forwarding(plain)) is None


def test_add_many_writes_what_record_many_writes_without_the_records(make) -> None:
    # A burst no listener hears: the store makes no Record for the caller (the memory
    # store keeps an open run as its entry until asked), and answers as record_many's.
    returned, added = make(), make()
    add = batch_adder(added)
    if batch_writer(added) is None:  # (PostgreSQL: one transaction a record)
        assert add is None
        return
    assert add is not None
    opening = [(f"t{i}", "run", t(0), f"r{i}", None, None, None) for i in range(3)]
    later = [("t1", "success", t(1), "r1", None, None, None), *BATCH]
    for history in (returned, added):
        history.record("t0", "run", at=t(-1), run_id="old")
    returned.record_many(opening)
    assert add(opening) is None
    returned.record_many(later)
    assert add(later) is None
    assert added.records() == returned.records()
    for name in ("t0", "t1", "t2", "a", "b"):
        assert added.running(name) == returned.running(name)
        assert added.running(name) == returned.running(name)  # asked twice: the same
    assert [r.run_id for r in added.running("t0")] == ["old", "r0"]
    added.record("t0", "terminate", at=t(2), run_id="r0", reason="timeout")
    assert [r.run_id for r in added.running("t0")] == ["old"]
    with pytest.raises(ValueError, match="unknown action 'stop'"):
        add([("c", "run", t(3), "9", None, None, None), ("c", "stop", t(3), "9", *[None] * 3)])
    assert added.running("c") == []  # checked before any was added


def test_a_burst_in_another_zone_is_kept_in_utc_without_records() -> None:
    helsinki = timezone(timedelta(hours=2))
    history = MemoryHistory()
    batch_adder(history)([("a", "run", t(0).astimezone(helsinki), "1", None, None, None)])
    [run] = history.running("a")
    assert run == rec("a", "run", 0, "1") and run.at.tzinfo is timezone.utc


def test_add_many_is_used_only_where_record_many_is() -> None:
    class Spying(MemoryHistory):  # counts the batches: add_many must not go around it
        def record_many(self, entries):
            return super().record_many(entries)

    class Counting(MemoryHistory):  # overrides record alone: no batch at all
        def record(self, task, action, **fields):
            return super().record(task, action, **fields)

    class Adding(Spying):  # its own add_many, below its own record_many
        def add_many(self, entries):
            super().add_many(entries)

    plain, adding = MemoryHistory(), Adding()
    assert batch_adder(plain) == plain.add_many
    assert batch_adder(Spying()) is None
    assert batch_adder(Counting()) is None
    assert batch_adder(adding) == adding.add_many
    spied = MemoryHistory()
    spied.record_many = spied.record_many  # type: ignore[method-assign]  # replaced on it
    assert batch_adder(spied) is None


def test_sqlite_record_many_on_a_locked_file_queues_the_batch_in_order(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    history = SQLiteHistory(path, timeout=30)
    history.record("a", "run", at=t(0), run_id="0")
    blocker = _locked(path)
    try:
        history.record("a", "success", at=t(1), run_id="0")  # queued: the writer waits
        history.record_many(BATCH)  # behind it, in order, never waiting
        assert len(history.pending) == 5
        assert history.running("b") == []  # answers include what is pending
    finally:
        _release(blocker)
    _until_written(history)
    assert history.pending == []
    assert _rows(path) == [
        ("a", "run", "0"),
        ("a", "success", "0"),
        ("a", "run", "1"),
        ("b", "run", "2"),
        ("a", "fail", "1"),
        ("b", "success", "2"),
    ]
    history.close()
