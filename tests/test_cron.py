"""Tests of the cron engine, ``conddsl.timeline.cron``.

(a) a table of croniter's answers (``fixtures/croniter_table.json``, made by
    ``fixtures/make_croniter_table.py``), (b) a hand table of extensions and
    documented choices, (c) an error table, (d) random text only ever raises
    CronError, (e) ``next_fire``/``prev_fire`` against brute-force stepping.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conddsl.timeline.cron import CronError, CronSpec, parse_cron

TABLE = Path(__file__).parent / "fixtures" / "croniter_table.json"
BATCH = 250
MINUTE = timedelta(minutes=1)
TINY = timedelta(microseconds=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- (a) croniter table ----------------------------------------------------------


@cache
def croniter_cases() -> list[list]:
    return json.loads(TABLE.read_text())["cases"]


def _batches() -> list[int]:
    return list(range(0, len(croniter_cases()), BATCH))


def _check_case(case: list) -> list[str]:
    expr, start_text, match, nexts, prev = case
    start = at(start_text)
    spec = parse_cron(expr)
    problems = []
    if spec.matches(start) != match:
        problems.append(f"matches={not match}, croniter {match}")
    got: list[str] | None = []
    t: datetime | None = start
    for _ in range(3):
        t = spec.next_fire(t)
        if t is None:
            got = None
            break
        got.append(t.isoformat(timespec="minutes"))
    if got != nexts:
        problems.append(f"next={got}, croniter {nexts}")
    # croniter's get_prev is strictly before start; prev_fire is "at or before".
    before = spec.prev_fire(start - TINY)
    got_prev = None if before is None else before.isoformat(timespec="minutes")
    if got_prev != prev:
        problems.append(f"prev={got_prev}, croniter {prev}")
    return [f"{expr!r} from {start_text}: " + "; ".join(problems)] if problems else []


def test_croniter_table_is_big_enough() -> None:
    cases = croniter_cases()
    assert len(cases) >= 2000
    # The table must exercise what it claims to: names, 7, both day fields, misses.
    exprs = [c[0] for c in cases]
    assert any("-7" in e.split()[4] or e.split()[4] == "7" for e in exprs)
    assert any(e.split()[4][:1].isalpha() for e in exprs)
    assert any(e.split()[2] != "*" and e.split()[4] != "*" for e in exprs)
    assert any(c[3] is None for c in cases)


@pytest.mark.parametrize("first", _batches())
def test_croniter_table(first: int) -> None:
    problems = [p for case in croniter_cases()[first : first + BATCH] for p in _check_case(case)]
    assert not problems, "\n".join(problems[:20])


def test_canonical_text_reparses_to_the_same_spec() -> None:
    for case in croniter_cases()[:1000]:
        spec = parse_cron(case[0])
        assert parse_cron(str(spec)) == spec


# -- (b) hand table: extensions and documented choices ---------------------------

# (expr, start, expected next fire times from start), each worked out by hand.
HAND_NEXT = [
    # L: last day of the month; 2024 is a leap year, 2023 not.
    ("0 0 L * *", "2024-01-15T12:00", ["2024-01-31T00:00", "2024-02-29T00:00", "2024-03-31T00:00"]),
    ("0 0 L 2 *", "2023-01-01T00:00", ["2023-02-28T00:00", "2024-02-29T00:00", "2025-02-28T00:00"]),
    (
        "0 12 1,L * *",
        "2024-04-01T12:00",
        ["2024-04-30T12:00", "2024-05-01T12:00", "2024-05-31T12:00"],
    ),
    # W#K: 2024-03-01 is a Friday, so the 2nd Friday is the 8th; April 1 is a Monday.
    (
        "0 9 * * fri#2",
        "2024-03-01T00:00",
        ["2024-03-08T09:00", "2024-04-12T09:00", "2024-05-10T09:00"],
    ),
    (
        "0 9 * * 5#2",
        "2024-03-08T09:00",
        ["2024-04-12T09:00", "2024-05-10T09:00", "2024-06-14T09:00"],
    ),
    # 5th Monday: Apr 2024 has Mondays 1, 8, 15, 22, 29; May none; Jul 1..29.
    (
        "0 0 * * mon#5",
        "2024-04-01T00:00",
        ["2024-04-29T00:00", "2024-07-29T00:00", "2024-09-30T00:00"],
    ),
    # WL: last Friday; March 2024 ends on Sunday the 31st, so the 29th.
    (
        "0 0 * * friL",
        "2024-03-01T00:00",
        ["2024-03-29T00:00", "2024-04-26T00:00", "2024-05-31T00:00"],
    ),
    (
        "0 0 * * 0L",
        "2024-02-01T00:00",
        ["2024-02-25T00:00", "2024-03-31T00:00", "2024-04-28T00:00"],
    ),
    # Aliases.
    ("@yearly", "2024-01-01T00:00", ["2025-01-01T00:00", "2026-01-01T00:00", "2027-01-01T00:00"]),
    ("@annually", "2024-06-01T00:00", ["2025-01-01T00:00", "2026-01-01T00:00", "2027-01-01T00:00"]),
    ("@monthly", "2024-01-31T23:59", ["2024-02-01T00:00", "2024-03-01T00:00", "2024-04-01T00:00"]),
    # 2024-03-06 is a Wednesday; @weekly is Sunday midnight.
    ("@weekly", "2024-03-06T10:00", ["2024-03-10T00:00", "2024-03-17T00:00", "2024-03-24T00:00"]),
    ("@daily", "2024-12-31T00:00", ["2025-01-01T00:00", "2025-01-02T00:00", "2025-01-03T00:00"]),
    (
        "@midnight",
        "2024-12-31T23:59:59",
        ["2025-01-01T00:00", "2025-01-02T00:00", "2025-01-03T00:00"],
    ),
    ("@hourly", "2024-03-06T10:00", ["2024-03-06T11:00", "2024-03-06T12:00", "2024-03-06T13:00"]),
    ("@HOURLY", "2024-03-06T10:30", ["2024-03-06T11:00", "2024-03-06T12:00", "2024-03-06T13:00"]),
    # N/S runs from N to the field's maximum.
    (
        "0/20 * * * *",
        "2024-03-06T10:41",
        ["2024-03-06T11:00", "2024-03-06T11:20", "2024-03-06T11:40"],
    ),
    (
        "0 5/8 * * *",
        "2024-03-06T00:00",
        ["2024-03-06T05:00", "2024-03-06T13:00", "2024-03-06T21:00"],
    ),
    (
        "59/15 * * * *",
        "2024-03-06T10:00",
        ["2024-03-06T10:59", "2024-03-06T11:59", "2024-03-06T12:59"],
    ),
    # 1/2 in day of week stops at Saturday: Mon, Wed, Fri (never Sunday as 7).
    (
        "0 0 * * 1/2",
        "2024-03-09T00:00",
        ["2024-03-11T00:00", "2024-03-13T00:00", "2024-03-15T00:00"],
    ),
    # 7 is Sunday, alone, in a range, and the same as 0.
    ("0 0 * * 7", "2024-03-06T00:00", ["2024-03-10T00:00", "2024-03-17T00:00", "2024-03-24T00:00"]),
    (
        "0 0 * * 6-7",
        "2024-03-06T00:00",
        ["2024-03-09T00:00", "2024-03-10T00:00", "2024-03-16T00:00"],
    ),
    # Sunday as an end closes the week, whatever the start: 7-7 and sun-sun are every day
    # (croniter's own tests say so of Sun-Sun).
    (
        "0 0 * * 7-7",
        "2024-03-06T00:00",
        ["2024-03-07T00:00", "2024-03-08T00:00", "2024-03-09T00:00"],
    ),
    (
        "0 0 * * sun-sun/3",
        "2024-03-06T00:00",
        ["2024-03-09T00:00", "2024-03-10T00:00", "2024-03-13T00:00"],
    ),
    (
        "0 0 * * 0,7",
        "2024-03-06T00:00",
        ["2024-03-10T00:00", "2024-03-17T00:00", "2024-03-24T00:00"],
    ),
    # Any other A-A is the single value A (croniter would widen it to the whole field).
    (
        "1-1 0 * * *",
        "2024-03-06T00:00",
        ["2024-03-06T00:01", "2024-03-07T00:01", "2024-03-08T00:01"],
    ),
    # Day rule: both restricted -> either. The 13th or a Friday (Mar 8 is a Friday).
    (
        "0 0 13 * fri",
        "2024-03-06T00:00",
        ["2024-03-08T00:00", "2024-03-13T00:00", "2024-03-15T00:00"],
    ),
    (
        "0 0 13 * 5#2",
        "2024-03-06T00:00",
        ["2024-03-08T00:00", "2024-03-13T00:00", "2024-04-12T00:00"],
    ),
    (
        "0 0 L * mon",
        "2024-03-26T00:00",
        ["2024-03-31T00:00", "2024-04-01T00:00", "2024-04-08T00:00"],
    ),
    # ...one starts with '*' -> both: odd days that are Mondays (Mar 11, 25; Apr 1, 15, 29).
    (
        "0 0 */2 * mon",
        "2024-03-06T00:00",
        ["2024-03-11T00:00", "2024-03-25T00:00", "2024-04-01T00:00"],
    ),
    (
        "0 0 13 * */1",
        "2024-03-06T00:00",
        ["2024-03-13T00:00", "2024-04-13T00:00", "2024-05-13T00:00"],
    ),
    # Sunday the 13th: */7 is Sunday and starts with '*' -> AND (Oct 1 2024 is a Tuesday).
    (
        "0 0 13 * */7",
        "2024-09-14T00:00",
        ["2024-10-13T00:00", "2025-04-13T00:00", "2025-07-13T00:00"],
    ),
    # Feb 29: leap years only, skipping 2100.
    (
        "0 0 29 2 *",
        "2096-03-01T00:00",
        ["2104-02-29T00:00", "2108-02-29T00:00", "2112-02-29T00:00"],
    ),
    # Feb 29 or any Monday in February (Feb 2, 2026 is a Monday).
    (
        "0 0 29 2 mon",
        "2025-03-01T00:00",
        ["2026-02-02T00:00", "2026-02-09T00:00", "2026-02-16T00:00"],
    ),
    # Feb 29 that is a Sunday (AND, as */7 starts with '*'): 2060, 2088, then 2128, a
    # 40-year gap, as 2100 is not a leap year.
    (
        "0 0 29 2 */7",
        "2061-01-01T00:00",
        ["2088-02-29T00:00", "2128-02-29T00:00", "2156-02-29T00:00"],
    ),
    # Names in any case, in ranges.
    (
        "*/30 9-10 * JAN-feb Mon-FRI",
        "2024-02-29T10:30",
        ["2025-01-01T09:00", "2025-01-01T09:30", "2025-01-01T10:00"],
    ),
    # Seconds are ignored, and "next" is strictly later than the start minute.
    (
        "* * * * *",
        "2024-03-06T10:05:59.999999",
        ["2024-03-06T10:06", "2024-03-06T10:07", "2024-03-06T10:08"],
    ),
    # Year end rollover.
    (
        "59 23 31 12 *",
        "2024-12-31T23:59",
        ["2025-12-31T23:59", "2026-12-31T23:59", "2027-12-31T23:59"],
    ),
    # Ranges that end on Sunday (2024-01-01 is a Monday) or wrap around the field, as
    # croniter reads them; steps count on through the wrap.
    ("0 0 * * mon-sun", "2024-01-06T00:00", ["2024-01-07T00:00", "2024-01-08T00:00"]),
    (
        "0 0 * * FRI-SUN",
        "2024-01-01T00:00",
        ["2024-01-05T00:00", "2024-01-06T00:00", "2024-01-07T00:00", "2024-01-12T00:00"],
    ),
    ("0 0 * * sat-sun", "2024-01-01T00:00", ["2024-01-06T00:00", "2024-01-07T00:00"]),
    (
        "0 0 * * 6-1",
        "2024-01-01T00:00",
        ["2024-01-06T00:00", "2024-01-07T00:00", "2024-01-08T00:00", "2024-01-13T00:00"],
    ),
    (
        "0 0 * * thu-tue/2",
        "2024-01-01T00:00",
        ["2024-01-04T00:00", "2024-01-06T00:00", "2024-01-08T00:00", "2024-01-11T00:00"],
    ),
    (
        "0 0 * * Thu-Tue/3",
        "2024-01-01T00:00",
        ["2024-01-04T00:00", "2024-01-07T00:00", "2024-01-11T00:00"],
    ),
    ("0 0 * * 7-1", "2024-01-01T00:00", ["2024-01-07T00:00", "2024-01-08T00:00"]),
    (
        "0 0 1 Nov-Mar *",
        "2024-01-01T00:00",
        ["2024-02-01T00:00", "2024-03-01T00:00", "2024-11-01T00:00", "2024-12-01T00:00"],
    ),
    (
        "0 0 1 apr-mar/3 *",
        "2024-01-01T00:00",
        ["2024-04-01T00:00", "2024-07-01T00:00", "2024-10-01T00:00", "2025-01-01T00:00"],
    ),
    (
        "0 22-2/2 * * *",
        "2024-01-01T00:00",
        ["2024-01-01T02:00", "2024-01-01T22:00", "2024-01-02T00:00", "2024-01-02T02:00"],
    ),
    (
        "58-1 0 * * *",
        "2024-01-01T00:00",
        ["2024-01-01T00:01", "2024-01-01T00:58", "2024-01-01T00:59", "2024-01-02T00:00"],
    ),
    (
        "0 0 30-2 * *",
        "2024-02-01T00:00",
        ["2024-02-02T00:00", "2024-03-01T00:00", "2024-03-02T00:00", "2024-03-30T00:00"],
    ),
    # L as the end of a range: to the month's last day.
    (
        "0 0 29-L * *",
        "2024-01-31T00:00",
        ["2024-02-29T00:00", "2024-03-29T00:00", "2024-03-30T00:00", "2024-03-31T00:00"],
    ),
    (
        "0 0 1-L/8 2 *",
        "2023-02-01T00:00",
        ["2023-02-09T00:00", "2023-02-17T00:00", "2023-02-25T00:00", "2024-02-01T00:00"],
    ),
    # A range before '#' (croniter): the first Monday, first Tuesday ... first Friday.
    (
        "0 0 * * MON-FRI#1",
        "2024-01-31T00:00",
        ["2024-02-01T00:00", "2024-02-02T00:00", "2024-02-05T00:00", "2024-02-06T00:00"],
    ),
]


@pytest.mark.parametrize(("expr", "start", "expected"), HAND_NEXT)
def test_hand_next(expr: str, start: str, expected: list[str]) -> None:
    spec = parse_cron(expr)
    got = []
    t: datetime | None = at(start)
    for _ in expected:
        t = spec.next_fire(t)
        assert t is not None
        got.append(t.isoformat(timespec="minutes"))
    assert got == expected
    # prev_fire walks the same times back.
    for earlier, later in zip(expected, expected[1:], strict=False):
        assert spec.prev_fire(at(later) - TINY) == at(earlier)
        assert spec.prev_fire(at(later)) == at(later)
        assert spec.matches(at(later))


NEVER = ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 feb,apr *", "0 0 30 2 */2"]


@pytest.mark.parametrize("expr", NEVER)
def test_never_fires(expr: str) -> None:
    spec = parse_cron(expr)
    assert spec.next_fire(datetime(2024, 1, 1)) is None
    assert spec.prev_fire(datetime(2024, 1, 1)) is None
    assert not spec.matches(datetime(2024, 2, 29))


def test_ends_of_the_calendar() -> None:
    assert parse_cron("* * * * *").next_fire(datetime.max) is None
    assert parse_cron("0 0 1 1 *").next_fire(datetime(9999, 6, 1)) is None
    assert parse_cron("* * * * *").prev_fire(datetime.min) == datetime.min
    assert parse_cron("1 0 1 1 *").prev_fire(datetime.min) is None


def test_aware_datetime_keeps_its_tzinfo() -> None:
    from datetime import timezone

    start = datetime(2024, 3, 6, 10, 5, tzinfo=timezone.utc)
    assert parse_cron("0 * * * *").next_fire(start) == datetime(2024, 3, 6, 11, tzinfo=timezone.utc)


CANONICAL = [
    ("@DAILY", "@daily"),
    ("  @Midnight ", "@midnight"),
    ("*/5\t9-17  *\n* MON-Fri", "*/5 9-17 * * mon-fri"),
    ("0 0 l * FRIl", "0 0 L * friL"),
    ("0 0 1,l JUL fri#2", "0 0 1,L jul fri#2"),
    ("0 0 29-l,1-L/8 * MON-FRI#1", "0 0 29-L,1-L/8 * mon-fri#1"),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL)
def test_canonical_text(text: str, canonical: str) -> None:
    spec = parse_cron(text)
    assert str(spec) == canonical
    assert parse_cron(canonical) == spec


def test_spec_is_hashable_and_frozen() -> None:
    spec = parse_cron("0 0 * * *")
    assert hash(spec) == hash(parse_cron("0  0 * * *"))
    assert isinstance(spec, CronSpec)
    with pytest.raises(AttributeError):
        spec.text = "x"  # type: ignore[misc]


# -- (c) error table ---------------------------------------------------------------

# (text, field, (start, end), phrase in the message or hint)
ERRORS = [
    ("61 * * * *", "minute", (0, 2), "minute 61 is out of range 0-59"),
    ("* 24 * * *", "hour", (2, 4), "hour 24 is out of range 0-23"),
    ("* * 0 * *", "day of month", (4, 5), "out of range 1-31"),
    ("* * 32 * *", "day of month", (4, 6), "day of month 32"),
    ("* * * 13 *", "month", (6, 8), "month 13 is out of range 1-12"),
    ("* * * * 8", "day of week", (8, 9), "out of range 0-7"),
    ("1,99999999999999999999 * * * *", "minute", (2, 22), "out of range"),
    ("", None, (0, 0), "empty"),
    ("   \t", None, (0, 4), "empty"),
    ("* * * *", None, (0, 7), "expected 5 fields"),
    ("* * * *", None, (0, 7), "found 4"),
    ("0 * * * * *", None, (10, 11), "found 6"),
    ("0 * * * * * 2024 x", None, (10, 18), "found 8"),
    ("*/0 * * * *", "minute", (2, 3), "at least 1"),
    ("*/ * * * *", "minute", (1, 2), "step is missing"),
    ("*/x * * * *", "minute", (2, 3), "not a whole number"),
    ("*/61 * * * *", "minute", (2, 4), "too large"),
    ("1/2/3 * * * *", "minute", (3, 4), "more than one '/'"),
    ("1-2-3 * * * *", "minute", (0, 5), "more than one '-'"),
    ("-5 * * * *", "minute", (0, 1), "negative"),
    ("5- * * * *", "minute", (1, 2), "missing a value"),
    ("1-/2 * * * *", "minute", (1, 2), "missing a value"),
    ("/5 * * * *", "minute", (0, 1), "missing a value"),
    ("* * 0 * *", "day of month", (4, 5), "days of the month start at 1"),
    ("* * * 0 *", "month", (6, 7), "months start at 1"),
    ("* * * * foo", "day of week", (8, 11), "'foo' is not a number or a name"),
    ("* * * * monday", "day of week", (8, 14), "did you mean 'mon'"),
    ("* * * * thursday", "day of week", (8, 16), "did you mean 'thu'"),
    ("* * * jnu *", "month", (6, 9), "did you mean 'jun'"),
    ("* * * mon *", "month", (6, 9), "day-of-week name"),
    ("* * * * jan", "day of week", (8, 11), "month name"),
    ("* * mon * *", "day of month", (4, 7), "numbers only"),
    ("* * * * fri#6", "day of week", (12, 13), "#6 is out of range 1-5"),
    ("* * * * fri#0", "day of week", (12, 13), "out of range 1-5"),
    ("* * * * fri#", "day of week", (11, 12), "needs 1-5"),
    ("* * * * fri#2#3", "day of week", (8, 15), "more than one '#'"),
    ("* * * * fri#2/2", "day of week", (13, 15), "cannot take a step"),
    ("* * * * foo#2", "day of week", (8, 11), "not a number or a name"),
    ("* * L/2 * *", "day of month", (5, 7), "cannot take a step"),
    ("* * L-5 * *", "day of month", (4, 5), "can only end a range"),
    ("* * * * L-fri", "day of week", (8, 9), "friL"),
    ("* * 1-2-L * *", "day of month", (4, 9), "more than one '-'"),
    ("* * * * fri-mon#6", "day of week", (16, 17), "out of range 1-5"),
    ("L * * * *", "minute", (0, 1), "only allowed in day of month"),
    ("* * * * L", "day of week", (8, 9), "friL"),
    ("* * 15W * *", "day of month", (4, 7), "W (nearest weekday) is not supported"),
    ("* * ? * *", "day of month", (4, 5), "use '*'"),
    ("* * * * 7/2", "day of week", (8, 11), "0/2"),
    ("1,,2 * * * *", "minute", (1, 2), "empty list item"),
    (",1 * * * *", "minute", (0, 1), "empty list item"),
    ("1, * * * *", "minute", (1, 2), "empty list item"),
    ("1 2 3 4 5é", "day of week", (9, 10), "unexpected character"),
    ("0 0 * * @", "day of week", (8, 9), "alias"),
    ("@dialy", None, (0, 6), "did you mean '@daily'"),
    ("@reboot", None, (0, 7), "not supported"),
    ("@daily 5", None, (7, 8), "stand alone"),
    ("** * * * *", "minute", (0, 2), "not a number"),
    ("*-5 * * * *", "minute", (0, 1), "not a number"),
]


@pytest.mark.parametrize(("text", "field", "span", "phrase"), ERRORS)
def test_errors(text: str, field: str | None, span: tuple[int, int], phrase: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(text)
    error = info.value
    assert error.field == field
    assert (error.start, error.end) == span
    assert phrase in f"{error.message} {error.hint}"
    assert isinstance(error, ValueError)
    assert 0 <= error.start <= error.end <= len(text)


def test_non_string_is_a_cron_error() -> None:
    with pytest.raises(CronError):
        parse_cron(None)  # type: ignore[arg-type]


# -- (d) random text -----------------------------------------------------------------

CRONISH = st.text(alphabet="0123456789*/,-# \tLlWw?@abcdefjlmnorstuvyADFJMS", max_size=40)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), CRONISH, st.deferred(lambda: SPECS)))
def test_random_text_raises_only_cron_error(text: str) -> None:
    try:
        spec = parse_cron(text)
    except CronError as error:
        assert 0 <= error.start <= error.end <= len(text)
        assert error.message
        return
    # Whatever parses, round-trips and can be searched.
    assert parse_cron(str(spec)) == spec
    start = datetime(2024, 3, 6, 10, 5)
    nxt = spec.next_fire(start)
    assert nxt is None or (nxt > start and spec.matches(nxt))


# -- (e) against brute force -------------------------------------------------------------


def _item(index: int) -> st.SearchStrategy[str]:
    low, high = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))[index]
    top = (59, 23, 31, 12, 6)[index]
    value = st.integers(low, high)
    step = st.integers(1, (60, 24, 31, 12, 7)[index])
    rng = st.tuples(value, value)  # a start past the end wraps around the field
    options = [
        value.map(str),
        rng.map(lambda r: f"{r[0]}-{r[1]}"),
        st.tuples(rng, step).map(lambda t: f"{t[0][0]}-{t[0][1]}/{t[1]}"),
        step.map(lambda s: f"*/{s}"),
        st.tuples(st.integers(low, top), step).map(lambda t: f"{t[0]}/{t[1]}"),
    ]
    if index == 2:
        options.append(st.just("L"))
    if index == 4:
        options.append(st.tuples(value, st.integers(1, 5)).map(lambda t: f"{t[0]}#{t[1]}"))
        options.append(value.map(lambda v: f"{v}L"))
    return st.one_of(options)


def _field(index: int) -> st.SearchStrategy[str]:
    listed = st.lists(_item(index), min_size=1, max_size=3).map(",".join)
    return st.one_of(st.just("*"), listed)


SPECS = st.tuples(*(_field(i) for i in range(5))).map(" ".join)
STARTS = st.datetimes(datetime(2023, 12, 1), datetime(2025, 3, 1))


def _reference_day(spec: CronSpec, d: date) -> bool:
    """A direct reading of the day rules, independent of the engine's day masks."""
    weekday = (d.weekday() + 1) % 7  # cron: Sunday = 0
    last_of_month = (d + timedelta(days=1)).month != d.month
    last_of_its_weekday = (d + timedelta(days=7)).month != d.month
    dom = bool(spec.days >> (d.day - 1) & 1) or (spec.last_day and last_of_month)
    dow = (
        bool(spec.weekdays >> weekday & 1)
        or (weekday, (d.day - 1) // 7 + 1) in spec.nth_weekdays
        or bool(spec.last_weekdays >> weekday & 1 and last_of_its_weekday)
    )
    return bool(spec.months >> d.month & 1) and ((dom or dow) if spec.day_or else (dom and dow))


def _brute(spec: CronSpec, t: datetime, step: timedelta, minutes: int) -> datetime | None:
    """Step minute by minute from ``t`` (included) for at most ``minutes`` minutes."""
    days: dict[date, bool] = {}
    for _ in range(minutes):
        d = t.date()
        if d not in days:
            days[d] = _reference_day(spec, d)
        if days[d] and spec.hours >> t.hour & 1 and spec.minutes >> t.minute & 1:
            return t
        t += step
    return None


def _brute_next(spec: CronSpec, after: datetime, minutes: int) -> datetime | None:
    return _brute(spec, after.replace(second=0, microsecond=0) + MINUTE, MINUTE, minutes)


def _brute_prev(spec: CronSpec, at: datetime, minutes: int) -> datetime | None:
    return _brute(spec, at.replace(second=0, microsecond=0), -MINUTE, minutes)


WINDOW = 3 * 7 * 24 * 60  # three weeks of minutes


@settings(max_examples=150, deadline=None)
@given(SPECS, STARTS)
def test_next_fire_against_brute_force(text: str, start: datetime) -> None:
    spec = parse_cron(text)
    expected = _brute_next(spec, start, WINDOW)
    got = spec.next_fire(start)
    if expected is None:
        # Nothing in the window: the answer, if any, lies beyond it.
        assert got is None or got > start + timedelta(minutes=WINDOW)
    else:
        assert got == expected
        assert spec.matches(got)


@settings(max_examples=150, deadline=None)
@given(SPECS, STARTS)
def test_prev_fire_against_brute_force(text: str, start: datetime) -> None:
    spec = parse_cron(text)
    expected = _brute_prev(spec, start, WINDOW)
    got = spec.prev_fire(start)
    if expected is None:
        assert got is None or got <= start - timedelta(minutes=WINDOW)
    else:
        assert got == expected


# ---------------------------------------------------------------- Condition.next_change on cron

_WALL_NEXT_EXPRS = (
    "*/5 9-17 * * 1-5",
    "0 0 1 * *",
    "30 2 * * sun",
    "0 0 29 2 *",
    "* * * * *",
    "* 3 * * *",
    "0-58 * * * *",
    "* * 29 2 *",
    "@yearly",
    "*/7 */3 1-10 * mon",
    "0 0 30 2 *",
)


@pytest.mark.parametrize("expr", _WALL_NEXT_EXPRS)
def test_next_change_on_the_wall_clock_agrees_with_the_interval_path(expr: str) -> None:
    """A cron condition in a fixed-offset zone answers next_change from the spec alone."""
    import random
    from datetime import timezone

    from conddsl.compile import Condition, compile_condition

    rnd = random.Random(expr)
    for zone in ("UTC", timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=3))):
        fast = compile_condition(f"cron {expr}", timezone=zone)
        slow = Condition(fast.ast, timezone=zone)
        assert fast._wall_next is not None
        slow._wall_next = None  # the interval path, as every other condition takes
        for _ in range(150):
            at = datetime(2023, 1, 1) + timedelta(
                seconds=rnd.randrange(4 * 365 * 86400), microseconds=rnd.randrange(10**6)
            )
            if rnd.random() < 0.3:
                at = at.replace(second=0, microsecond=0)
            for instant in (
                at,
                at.replace(tzinfo=timezone.utc),
                at.replace(tzinfo=timezone(timedelta(hours=2))),
            ):
                got, expected = fast.next_change(instant), slow.next_change(instant)
                assert got == expected, (zone, instant)
                assert got is None or got.tzinfo is expected.tzinfo, (zone, instant)


def test_next_change_with_a_history_or_a_dst_zone_takes_the_interval_path() -> None:
    from conddsl.compile import compile_condition
    from conddsl.history import MemoryHistory

    helsinki = compile_condition("cron 30 2 * * *", timezone="Europe/Helsinki")
    assert helsinki._wall_next is None
    # On 2024-03-31 Helsinki skips 03:00-04:00, not 02:30: the change is at 02:30.
    assert helsinki.next_change(datetime(2024, 3, 31, 1, 0)) == datetime(2024, 3, 31, 2, 30)
    utc = compile_condition("cron 30 2 * * *", timezone="UTC")
    history = MemoryHistory()
    history.record("t", "run", at=datetime(2024, 3, 31, 2, 30, 10, tzinfo=utc.zone))
    at = datetime(2024, 3, 31, 2, 30, 20)
    # The start in that minute turned it false: nothing changes until the next fire.
    assert utc.next_change(at, task="t", history=history) == datetime(2024, 4, 1, 2, 30)
    assert utc.next_change(at) == datetime(2024, 3, 31, 2, 31)


@pytest.mark.parametrize("expr", ["*/5 9-17 * * 1-5", "* * * * *", "0 0 1 * *", "* 3 * * *"])
def test_next_change_with_a_history_agrees_with_the_interval_path(expr: str) -> None:
    """With no start from the instant's minute on, a history leaves cron to its clock;
    otherwise the interval path answers: both give the interval path's answer."""
    import random
    from datetime import timezone

    from conddsl.compile import Condition, compile_condition
    from conddsl.history import MemoryHistory

    rnd = random.Random(expr)
    history = MemoryHistory()
    at = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)
    for _ in range(300):
        at += timedelta(minutes=rnd.randrange(0, 30), seconds=rnd.randrange(60))
        history.record("t", "run", at=at)
        history.record("t", "success", at=at + timedelta(seconds=rnd.randrange(1, 90)))
    for zone in ("UTC", timezone(timedelta(hours=-4, minutes=-30))):
        fast = compile_condition(f"cron {expr}", timezone=zone)
        slow = Condition(fast.ast, timezone=zone)
        slow._wall_next = None
        clock_alone = 0
        for _ in range(60):
            instant = datetime(2024, 3, 1, 6) + timedelta(seconds=rnd.randrange(12 * 86400))
            if rnd.random() < 0.3:
                instant = instant.replace(second=0, microsecond=0)
            got = fast.next_change(instant, task="t", history=history)
            assert got == slow.next_change(instant, task="t", history=history), (zone, instant)
            clock_alone += fast._clock_alone(instant, "t", history)
        assert 0 < clock_alone < 60  # both paths were taken
