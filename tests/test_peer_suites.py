"""The peers' own test suites, replayed through conddsl's public API.

Each table in tests/fixtures holds facts (inputs and the answers the peer's tests
assert) harvested from that peer's test suite by the make_*_suite_table.py script
beside it. Every case must agree, or be a departure listed here with its reason
(docs/language.md and docs/rocketry.md list the same departures).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from conddsl import compile_condition

FIXTURES = Path(__file__).parent / "fixtures"
MINUTE = timedelta(minutes=1)
US = timedelta(microseconds=1)
# Far enough for the rarest fire in the tables (Feb 29 on a given weekday: 28 years).
SEARCH = timedelta(days=366 * 30)

# croniter's readings that conddsl does not share, with the reason.
CRONITER_DEPARTURES = {
    # A single-value range "A-A" is widened to the whole field by croniter.
    "equal-range": "croniter reads a range A-A as '*'; conddsl, like cron, as the value A",
    # A step through a wrapping day-of-week range: croniter 7 counts Thu, Sat, then Tue.
    "wrapped-step": "conddsl counts a step on through the wrap (thu-tue/2: Thu, Sat, Mon)",
    # "0 16 */2 * sat": croniter ORs the day fields; Vixie cron (and conddsl) ANDs them
    # because the day-of-month text starts with '*'.
    "star-day-field": "a day field whose text starts with '*' makes the two day fields AND",
    # "*,sat#3": croniter keeps only sat#3; a list with '*' in it is every day.
    "star-in-list": "'*' in a list is every value, whatever else the list holds",
}


def _croniter_departure(expr: str) -> str | None:
    fields = expr.lower().split()
    if len(fields) == 5:
        dom, dow = fields[2], fields[4]
        if "*" in dow.split(",") and dow != "*":
            return "star-in-list"
        starred = [f for f in (dom, dow) if f.startswith("*") and f != "*"]
        if starred and dom != "*" and dow != "*":
            return "star-day-field"
    for field in fields:
        for item in field.split(","):
            base = item.split("/")[0]
            if "-" in base:
                low, _, high = base.partition("-")
                if low == high:
                    return "equal-range"
    if len(fields) == 5 and "/" in fields[4] and "-" in fields[4]:
        base = fields[4].split("/")[0]
        low, _, high = base.partition("-")
        if _weekday(low) > _weekday(high) % 7 and _weekday(high) != 0:
            return "wrapped-step"
    return None


def _weekday(text: str) -> int:
    names = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
    return names.index(text) if text in names else int(text)


@cache
def _croniter_table() -> dict:
    return json.loads((FIXTURES / "croniter_suite_table.json").read_text(encoding="utf-8"))


@cache
def _cron(expr: str):
    return compile_condition(f"cron {expr}", timezone="UTC")


def _fire_after(expr: str, start: datetime) -> datetime | None:
    """The first matching minute strictly after ``start``, from the windows."""
    for window_start, window_end in _cron(expr).windows(start + US, start + SEARCH):
        # A window starts at a matching minute, or is clipped inside the one holding start.
        minute = window_start.replace(second=0, microsecond=0)
        if minute > start:
            return minute
        if minute + MINUTE < window_end:
            return minute + MINUTE
    return None


def _fire_before(expr: str, start: datetime) -> datetime | None:
    """The last matching minute strictly before ``start``, from the windows."""
    # Look back a day, then further: the windows of a long span are many.
    for back in (timedelta(days=1), timedelta(days=400), SEARCH):
        last = None
        for _, window_end in _cron(expr).windows(start - back, start):
            last = window_end
        if last is not None:
            return (last - US).replace(second=0, microsecond=0)
    return None


def test_croniter_suite_table_is_what_it_claims():
    table = _croniter_table()
    assert len(table["cases"]) >= 2000
    tests = {case[4].split("[")[0] for case in table["cases"]}
    assert {"CroniterTest::test_sunday_ranges_to", "CroniterTest::test_mth_ranges_from"} <= tests


def _croniter_batches() -> list[int]:
    return list(range(0, len(_croniter_table()["cases"]), 250))


@pytest.mark.parametrize("first", _croniter_batches())
def test_croniter_suite_next_and_prev(first: int):
    problems, departures = [], 0
    for expr, start_text, direction, answer_text, test in _croniter_table()["cases"][
        first : first + 250
    ]:
        start = datetime.fromisoformat(start_text)
        answer = datetime.fromisoformat(answer_text)
        got = _fire_after(expr, start) if direction == "next" else _fire_before(expr, start)
        reason = _croniter_departure(expr)
        if reason is not None:
            departures += 1
            continue
        if got != answer:
            problems.append(f"{test}: {expr!r} {direction} from {start}: {got}, croniter {answer}")
    assert not problems, "\n".join(problems[:20])


def test_croniter_suite_match():
    for expr, instant, value, test in _croniter_table()["matches"]:
        if _croniter_departure(expr) is None:
            assert _cron(expr).is_true(datetime.fromisoformat(instant)) == value, (test, expr)


def test_croniter_departures_are_real():
    # Each departure kind in the table does answer differently from croniter.
    differing = set()
    for expr, start_text, direction, answer_text, _ in _croniter_table()["cases"]:
        reason = _croniter_departure(expr)
        if reason is None or reason in differing:
            continue
        start = datetime.fromisoformat(start_text)
        got = _fire_after(expr, start) if direction == "next" else _fire_before(expr, start)
        if got != datetime.fromisoformat(answer_text):
            differing.add(reason)
    assert differing == set(CRONITER_DEPARTURES)
