"""Durations that reach past either end of the calendar: saturating, never OverflowError.

A window reaching back before year 1 starts at year 1 (no record is older); a change due
after the end of the calendar never comes, so next_change answers None.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conddsl import compile_condition
from conddsl.history import MemoryHistory
from conddsl.runtime.scheduler import Session

UTC = timezone.utc
US = timedelta(microseconds=1)
NOW = datetime(2024, 3, 31, 1, 30, tzinfo=UTC)
LONGEST = timedelta(days=999_999_999)


def _history(*rows: tuple[str, datetime]) -> MemoryHistory:
    history = MemoryHistory()
    for action, at in rows:
        history.record("t", action, at=at, run_id="1")
    return history


def _session() -> Session:
    return Session(started_at=NOW - timedelta(hours=1), cycles=1)


def _ask(text: str, history: MemoryHistory, zone: str = "UTC", at: datetime = NOW):
    condition = compile_condition(text, timezone=zone)
    context = {"task": "t", "history": history, "session": _session()}
    return condition.is_true(at, **context), condition.next_change(at, **context)


@pytest.mark.parametrize(
    ("text", "rows", "value"),
    [
        ("every 999999999 days", [("run", NOW - timedelta(minutes=5))], False),
        ("every 999999999 days", [], True),
        ("running for more than 999999999 days", [("run", NOW - timedelta(minutes=5))], False),
        ("running for less than 999999999 days", [("run", NOW - timedelta(minutes=5))], True),
        (
            "has succeeded in past 999999999 days",
            [("success", datetime(1, 1, 2, tzinfo=UTC))],
            True,
        ),
        ("has succeeded in past 999999999 days", [], False),
        ("scheduler has run over 999999999 days", [], False),
        ("scheduler started 999999999 days ago", [], True),
    ],
)
def test_the_longest_durations_hold_their_value_for_ever(text, rows, value):
    assert _ask(text, _history(*rows)) == (value, None)


def test_a_window_reaching_back_before_year_1_starts_at_year_1():
    ancient = datetime(1, 1, 2, tzinfo=UTC)
    history = _history(("success", ancient))
    # 800,000 days back from 2024 is before year 1: the record at its start still counts,
    # and it leaves the window 800,000 days after it was made.
    assert _ask("has succeeded in past 800000 days", history) == (
        True,
        ancient + timedelta(days=800_000) + US,
    )
    assert _ask("has succeeded in past 3000000 days", history) == (
        True,
        ancient + timedelta(days=3_000_000) + US,  # in the year 8214
    )
    assert _ask("has succeeded in past 3652058 days", history) == (True, None)  # past 9999
    assert _ask("every 3652058 days", _history(("run", ancient))) == (False, None)


def test_changes_due_inside_the_calendar_are_found():
    started = NOW - timedelta(minutes=5)
    history = _history(("run", started))
    days = timedelta(days=800_000)  # lands in year 4214
    assert _ask("every 800000 days", history) == (False, started + days + US)
    assert _ask("running for more than 800000 days", history) == (False, started + days + US)
    assert _ask("running for less than 800000 days", history) == (True, started + days)
    assert _ask("scheduler started 800000 days ago", history) == (
        True,
        NOW - timedelta(hours=1) + days + US,
    )


def test_an_instant_near_the_start_of_the_calendar():
    early = datetime(1, 1, 3, tzinfo=UTC)
    history = _history(("run", datetime(1, 1, 1, 12, tzinfo=UTC)))
    assert _ask("every 5 days", history, at=early) == (
        False,
        early - timedelta(days=1, hours=12) + timedelta(days=5) + US,
    )
    assert _ask("every 5 days", MemoryHistory(), at=early) == (True, None)


@pytest.mark.parametrize(
    "zone", ["UTC", "Europe/Helsinki", "America/New_York", "Pacific/Kiritimati"]
)
@pytest.mark.parametrize(
    "text",
    [
        "every 3000000 days & daily between 08:00 and 10:00",
        "~(has succeeded in past 3000000 days) | time of day between 08:00 and 10:00",
        "running for more than 999999999 days & cron */5 * * * *",
        "~(scheduler has run over 3000000 days) & time of day between 08:00 and 10:00",
        "has succeeded in past 999999999 days & daily between 08:00 and 10:00",
    ],
)
def test_combined_with_the_clock_in_any_zone(text, zone):
    """The search for a change runs to the end of the calendar: in zones ahead of UTC its
    wall time must still exist (it stops a day before the end of the datetime range)."""
    history = _history(("run", NOW - timedelta(minutes=5)), ("success", NOW - timedelta(minutes=4)))
    condition = compile_condition(text, timezone=zone)
    context = {"task": "t", "history": history, "session": _session()}
    before = condition.is_true(NOW, **context)
    change = condition.next_change(NOW, **context)
    windows = list(condition.windows(NOW, NOW + timedelta(days=3), **context))
    if change is not None:
        assert condition.is_true(change, **context) is not before
        assert condition.is_true(change - US, **context) is before
    assert bool(windows and windows[0][0] == NOW) is before


@pytest.mark.parametrize(
    "text",
    [
        "every 3000000 days",
        "has succeeded in past 3000000 days",
        "running for less than 3000000 days",
        "scheduler started 3000000 days ago",
    ],
)
def test_windows_of_long_durations(text):
    history = _history(("success", NOW - timedelta(minutes=4)), ("run", NOW - timedelta(minutes=3)))
    condition = compile_condition(text, timezone="UTC")
    context = {"task": "t", "history": history, "session": _session()}
    end = NOW + timedelta(days=365)
    expected = [(NOW, end)] if condition.is_true(NOW, **context) else []
    assert list(condition.windows(NOW, end, **context)) == expected
    assert text == "every 3000000 days" or expected  # the others are true here


@pytest.mark.parametrize(
    "text",
    [
        "every 800000 days",
        "has succeeded in past 3000000 days",
        "running for more than 999999999 days",
    ],
)
@pytest.mark.parametrize("command", ["next", "explain"])
def test_the_cli_lists_windows_of_the_longest_durations(text, command, capsys):
    from conddsl.cli import main

    code = main([command, text, "--tz", "UTC", "--after", "2024-01-01T00:00"])
    output = capsys.readouterr()
    assert code == 0, output.err
    assert "internal error" not in output.err
    # The listing stops at the calendar's end (year 9999), not at an overflow.
    assert "always true" in output.out or "no window before the end of the calendar" in output.out


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York"])
def test_the_cli_lists_windows_in_the_last_day_of_the_calendar(zone, capsys):
    from conddsl.cli import main

    code = main(
        [
            "next",
            "time of day between 08:00 and 18:00",
            "--tz",
            zone,
            "--after",
            "9999-12-31T07:00",
            "-n",
            "3",
        ]
    )
    output = capsys.readouterr()
    assert code == 0, output.err
    assert output.out.splitlines()[0].startswith("9999-12-31 08:00:00")
    code = main(
        [
            "next",
            "task 'a' has succeeded in past 999999999 days",
            "--tz",
            zone,
            "--after",
            "9999-12-31T12:00",
        ]
    )
    output = capsys.readouterr()
    assert code == 0, output.err
    assert "no window before the end of the calendar" in output.out


LAST_MINUTES = datetime(9999, 12, 31, 23, 58)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Helsinki", "America/New_York", "Etc/GMT-14"])
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("cron * * * * *", True),
        ("cron * 23 * * *", True),
        ("cron 0 0 1 1 *", False),
        ("time of day between 22:00 and 23:00", False),
        ("daily", True),
    ],
)
def test_the_last_minutes_of_the_calendar_in_any_zone(text, value, zone):
    # A cron minute stepping past 9999-12-31 and a zone east of UTC (whose wall time of the
    # calendar's last instant is past year 9999) both raised OverflowError.
    condition = compile_condition(text, timezone=zone)
    assert condition.is_true(LAST_MINUTES) is value
    assert condition.next_change(LAST_MINUTES) is None  # nothing changes before the end
    windows = list(condition.windows(datetime(9999, 12, 30), LAST_MINUTES))
    assert bool(windows) is (text != "cron 0 0 1 1 *")
