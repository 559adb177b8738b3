"""Task-state forms against the run history: Rocketry's verdicts, the reference table,
windows and next_change with a history, DST, and crash marking after a real kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from bisect import bisect_right
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conddsl import ConditionSyntaxError, compile_condition
from conddsl.history import MemoryHistory, SQLiteHistory

UTC = timezone.utc
US = timedelta(microseconds=1)
FIXTURES = Path(__file__).parent / "fixtures"
ROCKETRY_CASES = json.loads((FIXTURES / "rocketry_task_verdicts.json").read_text())


@pytest.fixture(params=["memory", "sqlite"])
def make_history(request, tmp_path):
    """A factory of empty histories of one kind."""
    counter = iter(range(1_000_000))

    def make():
        if request.param == "memory":
            return MemoryHistory()
        return SQLiteHistory(tmp_path / f"history-{next(counter)}.sqlite3")

    return make


def _fill(history, rows):
    for task, action, at in rows:
        history.record(task, action, at=datetime.fromisoformat(at).replace(tzinfo=UTC))
    return history


# ------------------------------------------------------------------ reference table

# (expression, history of t as (action, "HH:MM"), now "HH:MM" on 2024-01-01, value)
REFERENCE = [
    ("daily between 07:00 and 08:00", [], "07:10", True),
    ("daily between 07:00 and 08:00", [("run", "07:10"), ("success", "07:20")], "07:30", False),
    ("daily between 07:00 and 08:00", [("run", "07:10"), ("fail", "07:20")], "07:30", False),
    ("daily between 07:00 and 08:00", [("run", "06:50"), ("success", "06:55")], "07:30", True),
    ("every 10 minutes", [("run", "10:00")], "10:20", True),
    ("every 10 minutes", [("run", "10:15")], "10:20", False),
    ("daily", [("run", "10:00")], "11:00", True),  # still running: not finished
    ("daily", [("run", "10:00"), ("crash", "10:30")], "11:00", False),  # crash ends the day
    ("has succeeded today", [("run", "10:00"), ("success", "10:05")], "12:00", True),
    ("has succeeded in past 1 hour", [("run", "10:00"), ("success", "10:05")], "12:00", False),
    ("has failed", [("run", "10:00"), ("fail", "10:05")], "23:00", True),
    ("running for more than 1 hour", [("run", "10:00")], "11:30", True),
    ("running for more than 1 hour", [("run", "10:00")], "10:30", False),
    ("running for less than 1 hour", [("run", "10:00")], "10:30", True),
    ("running for less than 1 hour", [("run", "10:00"), ("success", "10:10")], "10:30", False),
]


@pytest.mark.parametrize(("expr", "rows", "now", "value"), REFERENCE)
def test_reference_task_state_examples(make_history, expr, rows, now, value):
    history = _fill(make_history(), [("t", action, f"2024-01-01T{at}") for action, at in rows])
    at = datetime.fromisoformat(f"2024-01-01T{now}")
    assert compile_condition(expr, timezone="UTC").is_true(at, task="t", history=history) is value


def test_after_task_forms(make_history):
    history = _fill(
        make_history(),
        [
            ("a", "run", "2024-01-01T10:00"),
            ("a", "success", "2024-01-01T10:05"),
            ("b", "run", "2024-01-01T10:00"),
            ("b", "terminate", "2024-01-01T10:06"),
        ],
    )
    at = datetime(2024, 1, 1, 11)

    def check(expr):
        return compile_condition(expr, timezone="UTC").is_true(at, task="t", history=history)

    assert check("after task 'a'")
    assert check("after task 'a' succeeded")
    assert not check("after task 'a' failed")
    assert check("after task 'b' terminated")  # conddsl parses it; Rocketry could not
    assert not check("after task 'b' finished")  # finished = success or fail
    assert not check("after tasks 'a', 'b'")
    assert check("after any tasks 'a', 'b'")
    assert check("task 'a' has succeeded today & ~task 'b' is running")
    history.record("t", "run", at=datetime(2024, 1, 1, 10, 30, tzinfo=UTC))
    assert not check("after task 'a'")  # t started after a's success
    assert check("task 't' is running")


def test_history_forms_need_the_task():
    history = MemoryHistory()
    with pytest.raises(ValueError, match="task="):
        compile_condition("daily", timezone="UTC").is_true(datetime(2024, 1, 1), history=history)


# ------------------------------------------------------------------ Rocketry's verdicts

# Rocketry answers at the first instant of a cycle or window as if the previous instant
# were still current (REFERENCE.md: "a cycle starts at its first instant" is our fix).
# Its value there equals ours one microsecond earlier. One more case of the same
# boundary family does not follow even that rule; it is listed by hand.
BOUNDARY_EXCEPTIONS = {("has finished this hour after 2 quarter", "2023-09-05T17:30:00")}


def _rocketry_case_ids():
    return [f"{i}:{case['expr']}" for i, case in enumerate(ROCKETRY_CASES)]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_rocketry_task_verdicts(kind):
    mismatched_unexplained = []
    departures = 0
    for case in ROCKETRY_CASES:
        try:
            condition = compile_condition(case["expr"], timezone="UTC")
        except ConditionSyntaxError as error:
            # Deliberate departure: "every 0 minutes" is an error here.
            assert error.code == "E111", case
            departures += 1
            continue
        if kind == "memory":
            history = MemoryHistory()
        else:
            # In memory: the same queries as a file, without 1,900 files to create.
            history = SQLiteHistory(":memory:")
        _fill(history, case["history"])
        at = datetime.fromisoformat(case["at"])
        ours = condition.is_true(at, task=case["task"], history=history)
        if ours != case["value"]:
            departures += 1
            just_before = condition.is_true(at - US, task=case["task"], history=history)
            if just_before != case["value"] and (case["expr"], case["at"]) not in (
                BOUNDARY_EXCEPTIONS
            ):
                mismatched_unexplained.append(case)
        if kind == "sqlite":
            history.close()
    assert mismatched_unexplained == []
    # The departures are a small, known family; a jump would mean a regression.
    assert departures < 0.05 * len(ROCKETRY_CASES)


# ------------------------------------------------------------------ windows with history

EXPRESSIONS = [
    "daily between 07:00 and 08:00",
    "daily",
    "every 10 minutes",
    "cron */15 * * * *",
    "has succeeded in past 30 minutes",
    "has finished today after 09:00",
    "after task 'a'",
    "task 'a' is running",
    "running for more than 20 minutes",
    "hourly & ~task 'a' is running",
    "daily after 09:00 | every 45 minutes",
]

instants = st.integers(min_value=0, max_value=48 * 60 - 1).map(
    lambda minute: datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
)
records = st.lists(
    st.tuples(st.sampled_from(["t", "a"]), st.sampled_from(["run", "success", "fail"]), instants),
    max_size=8,
)


def _history_of(rows):
    history = MemoryHistory()
    for task, action, at in sorted(rows, key=lambda row: row[2]):
        history.record(task, action, at=at)
    return history


@settings(max_examples=60, deadline=None)
@given(expr=st.sampled_from(EXPRESSIONS), rows=records)
def test_windows_with_history_match_sampling(expr, rows):
    """windows() with a history equals is_true sampled every minute (and at the edges)."""
    condition = compile_condition(expr, timezone="UTC")
    history = _history_of(rows)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=2)
    windows = list(condition.windows(start, end, task="t", history=history))
    for (s1, e1), (s2, _) in zip(windows, windows[1:], strict=False):
        assert s1 < e1 < s2  # sorted, disjoint, not adjacent
    for s, e in windows:
        assert condition.is_true(s, task="t", history=history)
        assert condition.is_true(e - US, task="t", history=history)
        if e < end:
            assert not condition.is_true(e, task="t", history=history)
    probe = start
    while probe < end:
        inside = _inside(windows, probe)
        assert inside is condition.is_true(probe, task="t", history=history), probe
        probe += timedelta(minutes=7)


@settings(max_examples=40, deadline=None)
@given(expr=st.sampled_from(EXPRESSIONS), rows=records, after=instants)
def test_next_change_with_history(expr, rows, after):
    condition = compile_condition(expr, timezone="UTC")
    history = _history_of(rows)
    change = condition.next_change(after, task="t", history=history)
    before = condition.is_true(after, task="t", history=history)
    if change is None:
        return
    assert change > after
    assert condition.is_true(change, task="t", history=history) is not before
    assert condition.is_true(change - US, task="t", history=history) is before


def test_every_turns_true_just_after_its_duration():
    history = MemoryHistory()
    history.record("t", "run", at=datetime(2024, 1, 1, 10, tzinfo=UTC))
    condition = compile_condition("every 10 minutes", timezone="UTC")
    change = condition.next_change(
        datetime(2024, 1, 1, 10, 1, tzinfo=UTC), task="t", history=history
    )
    # Rocketry's window is closed: false at exactly 10:10, true one microsecond later.
    assert change == datetime(2024, 1, 1, 10, 10, tzinfo=UTC) + US


def test_after_task_never_changes_without_new_records():
    history = MemoryHistory()
    history.record("a", "success", at=datetime(2024, 1, 1, 10, tzinfo=UTC))
    condition = compile_condition("after task 'a'", timezone="UTC")
    at = datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert condition.is_true(at, task="t", history=history)
    assert condition.next_change(at, task="t", history=history) is None


# ------------------------------------------------------------------ DST


def test_cron_fires_once_in_a_repeated_hour():
    """A start in the first pass of 03:30 counts for the second pass (Helsinki, Oct 27)."""
    zone = ZoneInfo("Europe/Helsinki")
    condition = compile_condition("cron 30 3 * * *", timezone=zone)
    first_pass = datetime(2024, 10, 27, 3, 30, 10, tzinfo=zone, fold=0)
    second_pass = datetime(2024, 10, 27, 3, 30, 10, tzinfo=zone, fold=1)
    assert second_pass.astimezone(UTC) - first_pass.astimezone(UTC) == timedelta(hours=1)
    history = MemoryHistory()
    assert condition.is_true(first_pass, task="t", history=history)
    history.record("t", "run", at=first_pass)
    assert not condition.is_true(second_pass, task="t", history=history)
    # Without a start in the first pass, the second pass may still fire.
    assert condition.is_true(second_pass, task="t", history=MemoryHistory())


def test_daily_counts_the_wall_clock_day_across_fall_back():
    zone = ZoneInfo("America/New_York")
    condition = compile_condition("daily", timezone=zone)
    history = MemoryHistory()
    history.record("t", "success", at=datetime(2024, 11, 3, 0, 30, tzinfo=zone))
    late = datetime(2024, 11, 3, 23, 30, tzinfo=zone)  # 25-hour day
    assert not condition.is_true(late, task="t", history=history)
    assert condition.is_true(datetime(2024, 11, 4, 0, 0, tzinfo=zone), task="t", history=history)


# ------------------------------------------------------------------ crash marking

WRITER = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timezone
    from conddsl.history import SQLiteHistory
    history = SQLiteHistory(sys.argv[1])
    history.record("nightly", "run", at=datetime(2024, 1, 1, 1, 0, tzinfo=timezone.utc),
                   run_id="r1")
    history.record("nightly", "success", at=datetime(2024, 1, 1, 1, 5, tzinfo=timezone.utc),
                   run_id="r1")
    history.record("report", "run", at=datetime(2024, 1, 1, 2, 0, tzinfo=timezone.utc),
                   run_id="r2")
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_crash_marking_after_the_process_is_killed(tmp_path):
    path = tmp_path / "history.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    assert writer.returncode == -signal.SIGKILL
    history = SQLiteHistory(path)
    crashed = history.mark_crashed(datetime(2024, 1, 1, 3, 0, tzinfo=UTC))
    assert [(r.task, r.action, r.run_id) for r in crashed] == [("report", "crash", "r2")]
    assert history.running("report") == []
    actions = [(r.task, r.action) for r in history.records()]
    assert actions == [
        ("nightly", "run"),
        ("nightly", "success"),
        ("report", "run"),
        ("report", "crash"),
    ]
    # The finished daily task does not rerun the same day after the restart.
    daily = compile_condition("daily", timezone="UTC")
    later = datetime(2024, 1, 1, 4, 0, tzinfo=UTC)
    assert not daily.is_true(later, task="nightly", history=history)
    assert not daily.is_true(later, task="report", history=history)
    assert daily.is_true(datetime(2024, 1, 2, 0, 0, tzinfo=UTC), task="nightly", history=history)
    history.close()


# ------------------------------------------------------------------ cron: edges, not every fire

CRONS = ["* * * * *", "*/2 * * * *", "0-29 * * * *", "* 9-17 * * *", "30 * * * *"]
starts = st.integers(min_value=0, max_value=48 * 3600 - 1).map(
    lambda second: datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=second)
)


def _cron_history(seconds):
    history = MemoryHistory()
    for at in sorted(seconds):
        history.record("t", "run", at=at)
    return history


def _inside(windows, probe):
    """Whether ``probe`` lies in one of ``windows`` (sorted and disjoint: checked by the
    tests that read them), by bisection: a scan of every window for every probe was most
    of these tests' time."""
    index = bisect_right(windows, (probe, datetime.max.replace(tzinfo=UTC))) - 1
    return index >= 0 and windows[index][0] <= probe < windows[index][1]


def _cron_probes(history, start, end):
    """Every minute start, and each start of the task and the microsecond after it."""
    probes = {start + timedelta(minutes=m) for m in range((end - start) // timedelta(minutes=1))}
    for record in history.records("t"):
        probes.update((record.at, record.at + US))
    return sorted(p for p in probes if start <= p < end)


@settings(max_examples=60, deadline=None)
@given(expression=st.sampled_from(CRONS), runs=st.lists(starts, max_size=8))
def test_cron_windows_with_starts_match_sampling(expression, runs):
    condition = compile_condition(f"cron {expression}", timezone="UTC")
    history = _cron_history(runs)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=2)
    windows = list(condition.windows(start, end, task="t", history=history))
    for (s1, e1), (s2, _) in zip(windows, windows[1:], strict=False):
        assert s1 < e1 <= s2  # sorted and disjoint (what _inside reads them as)
    for probe in _cron_probes(history, start, end):
        inside = _inside(windows, probe)
        assert inside is condition.is_true(probe, task="t", history=history), probe


@settings(max_examples=60, deadline=None)
@given(expression=st.sampled_from(CRONS), runs=st.lists(starts, max_size=8), after=starts)
def test_cron_next_change_with_starts(expression, runs, after):
    condition = compile_condition(f"cron {expression}", timezone="UTC")
    history = _cron_history(runs)
    before = condition.is_true(after, task="t", history=history)
    change = condition.next_change(after, task="t", history=history)
    until = change if change is not None else after + timedelta(days=2)
    # No change before it (at any minute start or start of the task in between) ...
    for probe in _cron_probes(history, after + US, until):
        assert condition.is_true(probe, task="t", history=history) is before, probe
    if change is not None:  # ... and a change at it
        assert change > after
        assert condition.is_true(change, task="t", history=history) is not before


def test_cron_every_minute_looks_only_at_starts(monkeypatch):
    """next_change of ``cron * * * * *`` evaluates near the starts of the task, not at each
    of the 2,880 fire times of its two-day horizon (which stalled the scheduler)."""
    from conddsl import taskstate

    calls = []
    original = taskstate.CronForm.history_value

    def counted(self, wall, ctx):
        calls.append(wall)
        return original(self, wall, ctx)

    monkeypatch.setattr(taskstate.CronForm, "history_value", counted)
    condition = compile_condition("cron * * * * *", timezone="Europe/Helsinki")
    now = datetime(2024, 1, 1, 10, 0, 20, tzinfo=UTC)
    history = _cron_history([now - timedelta(seconds=15)])
    assert condition.next_change(now, task="t", history=history) == datetime(
        2024, 1, 1, 10, 1, tzinfo=UTC
    )
    assert condition.next_change(now, task="t", history=MemoryHistory()) is None
    assert len(calls) < 20
    # A long range is handed out lazily: the first windows come without walking it all.
    calls.clear()
    windows = condition.windows(now, now + timedelta(days=3650), task="t", history=history)
    assert next(iter(windows)) == (
        datetime(2024, 1, 1, 10, 1, tzinfo=UTC),
        now + timedelta(days=3650),
    )
    assert len(calls) < 20


def test_cron_start_in_the_first_pass_of_a_repeated_minute():
    """A start at 03:30 in the first pass (Helsinki, Oct 27) keeps the second pass of 03:30
    false, even seen from after the start's own minute."""
    condition = compile_condition("cron * * * * *", timezone="Europe/Helsinki")
    history = _cron_history([datetime(2024, 10, 27, 0, 30, 10, tzinfo=UTC)])  # 03:30:10 EEST
    start = datetime(2024, 10, 27, 0, 31, tzinfo=UTC)
    end = datetime(2024, 10, 27, 2, 0, tzinfo=UTC)
    second_pass = datetime(2024, 10, 27, 1, 30, tzinfo=UTC)  # 03:30 EET
    assert list(condition.windows(start, end, task="t", history=history)) == [
        (start, second_pass),
        (second_pass + timedelta(minutes=1), end),
    ]
    after = second_pass - timedelta(seconds=30)
    assert condition.next_change(after, task="t", history=history) == second_pass


# ---------------------------------------------------------------- fixed-offset zones


@pytest.mark.parametrize(
    "text",
    [
        "cron */5 9-17 * * 1-5",
        "cron 0 0 * * *",
        "daily between 07:00 and 08:00",
        "has succeeded today",
        "has succeeded this week between Mon and Wed",
        "daily",
        "every 10 minutes",
    ],
)
def test_fixed_offset_zones_look_no_further_back_than_their_offset(text, monkeypatch):
    """Without DST, clock points are neither looked for 3 h back nor held for 16 h:
    next_change and windows with a history are what the DST-proof walk gives."""
    import random
    from datetime import timezone as tz

    from conddsl import taskstate
    from conddsl.compile import compile_condition
    from conddsl.history import MemoryHistory

    rnd = random.Random(text)
    zones = ["UTC", tz(timedelta(hours=5, minutes=30)), tz(-timedelta(hours=3))]
    history = MemoryHistory()
    at = datetime(2024, 3, 1, 6, 0, tzinfo=tz.utc)
    for _ in range(120):
        at += timedelta(minutes=rnd.randrange(1, 200), seconds=rnd.randrange(60))
        history.record("t", "run", at=at)
        history.record("t", rnd.choice(["success", "fail"]), at=at + timedelta(seconds=20))
    instants = [
        datetime(2024, 3, 1) + timedelta(seconds=rnd.randrange(20 * 86400)) for _ in range(10)
    ]

    def answers():
        out = []
        for zone in zones:
            cond = compile_condition(text, timezone=zone)
            for instant in instants:
                out.append(cond.next_change(instant, task="t", history=history))
                end = instant + timedelta(hours=12)
                out.append(list(cond.windows(instant, end, task="t", history=history)))
        return out

    fast = answers()
    monkeypatch.setattr(taskstate, "clock_lookback", lambda zone: taskstate._LOOKBACK)
    monkeypatch.setattr(taskstate, "largest_offset", lambda zone: taskstate._MAX_OFFSET)
    assert answers() == fast
