"""The peers' own test suites, replayed through conddsl's public API.

Each table in tests/fixtures holds facts (inputs and the answers the peer's tests
assert) harvested from that peer's test suite by the make_*_suite_table.py script
beside it. Every case must agree, or be a departure listed here with its reason
(docs/language.md and docs/rocketry.md list the same departures).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conddsl import ConditionSyntaxError, ast, compile_condition
from conddsl.history import MemoryHistory
from conddsl.parse import parse

FIXTURES = Path(__file__).parent / "fixtures"
MINUTE = timedelta(minutes=1)
US = timedelta(microseconds=1)
# Far enough for the rarest fire in the tables (Feb 29 on a given weekday: 28 years).
SEARCH = timedelta(days=366 * 30)

# croniter's readings that conddsl does not share, with the reason.
CRONITER_DEPARTURES = {
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
def _cron(expr: str, zone: str = "UTC"):
    return compile_condition(f"cron {expr}", timezone=zone)


def _fire_after(expr: str, start: datetime, zone: str = "UTC") -> datetime | None:
    """The first matching minute strictly after ``start``, from the windows."""
    for window_start, window_end in _cron(expr, zone).windows(start + US, start + SEARCH):
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
    # A case agrees, or its expression is one of the listed departures.
    problems = []
    for expr, start_text, direction, answer_text, test in _croniter_table()["cases"][
        first : first + 250
    ]:
        start = datetime.fromisoformat(start_text)
        answer = datetime.fromisoformat(answer_text)
        got = _fire_after(expr, start) if direction == "next" else _fire_before(expr, start)
        if got != answer and _croniter_departure(expr) is None:
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


# ---------------------------------------------------------------- Rocketry


@cache
def _rocketry_table() -> dict:
    return json.loads((FIXTURES / "rocketry_suite_table.json").read_text(encoding="utf-8"))


_PERIODIC = {unit: period for period, unit in ast.PERIOD_UNIT.items()}


def _window_text(kind: str, start: str | None, end: str | None, mode: str) -> str:
    """The condition string for Rocketry's TimeOf<kind>(start, end) in its mode."""
    form = "secondly" if kind == "second" else f"time of {kind}"
    if mode == "on":
        return f"{form} on {start}"
    if mode == "starting":  # a cycle anchored at start: with no history, always inside
        return f"{_PERIODIC[kind]} starting {start}"
    if start is not None and end is not None:
        return f"{form} between {start} and {end}"
    return f"{form} after {start}" if end is None else f"{form} before {end}"


# Rocketry's readings that conddsl does not share, with the reason.
ROCKETRY_DEPARTURES = {
    # Always true in Rocketry (a weekday is no time of day): an error E110 here, whose
    # hint says "did you mean 'time of week between Mon and Wed'?".
    "time of day between Mon and Wed": "a silent always-true window is refused",
    # A zero duration: "every 00:00:00" is an error E111 (a zero pace is a typo).
    "every 00:00:00": "a pace of zero is refused",
}
HISTORY_START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _compiled_or_departure(text: str):
    """The compiled condition, or None for a listed departure that conddsl refuses."""
    try:
        return compile_condition(text, timezone="UTC")
    except ConditionSyntaxError as error:
        if text in ROCKETRY_DEPARTURES and error.code in ("E110", "E111"):
            return None
        if error.code == "E120":  # a condition the test registered by name ("is foo")
            return compile_condition(text, timezone="UTC", rules=_names_as_true(text))
        raise


def _names_as_true(text: str) -> dict:
    names = {n.name for n in ast.walk(parse(text)) if isinstance(n, ast.Reference)}
    return dict.fromkeys(names, TRUE)


TRUE = ast.Constant(True)


def test_rocketry_suite_table_is_what_it_claims():
    table = _rocketry_table()
    assert len(table["windows"]) >= 150
    assert {row[0] for row in table["windows"]} >= {"minute", "hour", "day", "week", "month"}
    assert len(table["durations"]) >= 15
    assert len(table["conditions"]) >= 100


def test_rocketry_suite_windows():
    problems, departures = [], set()
    for kind, start, end, mode, instant, inside, test in _rocketry_table()["windows"]:
        text = _window_text(kind, start, end, mode)
        condition = _compiled_or_departure(text)
        if condition is None:
            departures.add(text)
            continue
        value = condition.is_true(datetime.fromisoformat(instant))
        if value != inside:
            problems.append(f"{test}: {text!r} at {instant}: {value}, Rocketry {inside}")
    assert not problems, "\n".join(problems[:20])
    assert departures == {"time of day between Mon and Wed"}


def test_rocketry_suite_durations():
    # A duration D in "every D": false exactly D after a start, true a microsecond later.
    # Rocketry's conditions count a signed duration without its sign.
    refused = set()
    for text, micros, test in _rocketry_table()["durations"]:
        condition = _compiled_or_departure(f"every {text}")
        if condition is None:
            refused.add(f"every {text}")
            continue
        history = MemoryHistory()
        history.record("t", "run", at=HISTORY_START)
        due = HISTORY_START + abs(timedelta(microseconds=micros))
        assert not condition.is_true(due, task="t", history=history), (test, text)
        assert condition.is_true(due + US, task="t", history=history), (test, text)
    assert refused == {"every 00:00:00"}


def test_rocketry_suite_condition_strings_compile():
    for text, test in _rocketry_table()["conditions"]:
        condition = _compiled_or_departure(text)
        assert condition is not None, (test, text)
        # The canonical text means the same: it compiles to an equal condition.
        again = compile_condition(str(condition), timezone="UTC", rules=_names_as_true(text))
        assert again == condition, (test, text)


# ---------------------------------------------------------------- APScheduler


@cache
def _apscheduler_table() -> dict:
    return json.loads((FIXTURES / "apscheduler_suite_table.json").read_text(encoding="utf-8"))


def _years(field: str) -> set[int] | None:
    """The years an APScheduler year field allows (None: every year)."""
    if field == "*":
        return None
    if "/" in field:
        first, step = field.split("/")
        return set(range(int(first), 2200, int(step)))
    return {int(year) for year in field.split(",")}


def _apscheduler_departure(cron: str) -> str | None:
    # APScheduler ANDs day and day_of_week even when both are restricted; cron ORs them.
    _, _, day, _, weekday = cron.split()
    if day != "*" and weekday != "*":
        return "APScheduler ANDs the two day fields; cron (and conddsl) ORs them"
    return None


def test_apscheduler_suite_table_is_what_it_claims():
    cases = _apscheduler_table()["cases"]
    assert len(cases) >= 15
    assert {case[2] for case in cases} >= {"Europe/Berlin", "US/Eastern"}  # DST zones too


def test_apscheduler_suite_cron():
    problems, departures = [], 0
    for cron, year_field, zone, now_text, answer_text, test in _apscheduler_table()["cases"]:
        now = datetime.fromisoformat(now_text)
        answer = None if answer_text is None else datetime.fromisoformat(answer_text)
        years = _years(year_field)
        # APScheduler's next fire time counts "now" itself: search from just before it.
        fire = _fire_after(cron, now - US, zone)
        while (
            fire is not None
            and years is not None
            and fire.astimezone(ZoneInfo(zone)).year not in years
        ):
            if fire.year > max(years):
                fire = None
                break
            fire = _fire_after(cron, fire, zone)
        if fire == answer:
            continue
        if _apscheduler_departure(cron) is not None:
            departures += 1
            continue
        problems.append(f"{test}: {cron!r} ({year_field}) in {zone} from {now}: {fire}, {answer}")
    assert not problems, "\n".join(problems)
    assert departures >= 1  # the departure is real
