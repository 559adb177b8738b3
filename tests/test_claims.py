"""The occurrence a claimed start belongs to (runtime/claims.py), on a memory history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conddsl import compile_condition
from conddsl.history import MemoryHistory
from conddsl.history.base import from_us
from conddsl.runtime.claims import claim_check, occurrence

T = datetime(2024, 3, 1, 12, 0, 30, tzinfo=timezone.utc)
DAY_BEFORE = datetime(2024, 2, 29, tzinfo=timezone.utc)  # the look-back's fixed start


def occ(text: str, history: MemoryHistory, at: datetime = T) -> datetime:
    condition = compile_condition(text, timezone="UTC")
    return from_us(occurrence(condition, at, task="t", history=history))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cron */5 * * * *", datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)),
        ("daily after 08:00", datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)),
        # True for longer than the look-back: clipped to its fixed start, the same for
        # every claim of the day.
        ("daily", DAY_BEFORE),
        ("true", DAY_BEFORE),
    ],
)
def test_occurrence_is_the_start_of_the_true_window(text: str, expected: datetime) -> None:
    assert occ(text, MemoryHistory()) == expected
    assert occ(text, MemoryHistory(), T + timedelta(seconds=20)) == expected


def test_occurrence_follows_the_history() -> None:
    history = MemoryHistory()
    history.record("t", "run", at=T - timedelta(minutes=15))
    history.record("t", "success", at=T - timedelta(minutes=14))
    history.record("x", "success", at=T - timedelta(minutes=3))
    # One occurrence per upstream success, and per period after the last run.
    assert occ("after task 'x'", history) == T - timedelta(minutes=3)
    assert occ("every 10 minutes", history) == T - timedelta(minutes=5) + timedelta(microseconds=1)


def test_a_condition_without_windows_names_the_claim_instant() -> None:
    class Foreign:
        def is_true(self, at, **context):
            return True

    assert from_us(occurrence(Foreign(), T, task="t", history=MemoryHistory())) == T


def test_the_check_refuses_while_false_or_running() -> None:
    history = MemoryHistory()
    check = claim_check(compile_condition("every 10 minutes", timezone="UTC"), task="t")
    assert check(history, T) is not None
    history.record("t", "run", at=T, run_id="1")
    assert check(history, T + timedelta(hours=1)) is None  # running (on some node)
    history.record("t", "success", at=T + timedelta(seconds=1), run_id="1")
    assert check(history, T + timedelta(minutes=5)) is None  # false: ran 5 minutes ago
    assert check(history, T + timedelta(minutes=11)) is not None
    several = claim_check(compile_condition("true"), task="t", exclusive=False)
    history.record("t", "run", at=T + timedelta(minutes=12), run_id="2")
    assert several(history, T + timedelta(minutes=13)) is not None
