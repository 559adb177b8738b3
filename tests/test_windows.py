"""Tests for the time engine: Condition.windows, next_change and is_true on clock conditions.

The oracle for the property tests is ``is_true`` sampled second by second: with every
literal on a whole second (and zone offsets in whole hours), a condition's value is
constant within each second, so the runs of true samples are exactly its windows. The
default run samples only the seconds of the minute that the condition's text names (and
the second before each): see :func:`sampled_windows`.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conddsl import Condition, compile_condition

UTC = timezone.utc
HELSINKI = ZoneInfo("Europe/Helsinki")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")

SECOND = timedelta(seconds=1)
US = timedelta(microseconds=1)
DAY = timedelta(days=1)
WEEK = timedelta(weeks=1)

Pairs = list[tuple[datetime, datetime]]

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def utc(*args: int) -> datetime:
    """An aware UTC datetime (how expectations are written)."""
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def as_utc(pairs: Iterable[tuple[datetime, datetime]]) -> Pairs:
    """Pairs converted to UTC, so that comparing them compares real instants (PEP 495)."""
    return [(s.astimezone(UTC), e.astimezone(UTC)) for s, e in pairs]


def windows_utc(cond: Condition, start: datetime, end: datetime) -> Pairs:
    return as_utc(cond.windows(start, end))


ALL_SECONDS = frozenset(range(60))


def named_seconds(text: str) -> frozenset[int]:
    """The seconds of the minute at which the condition ``text`` may change value (a
    superset): 0, every number written after a colon (the seconds of ``HH:MM:SS`` and of
    hour points ``MM:SS``; minutes too, which only adds samples) and every second a
    ``time of minute`` atom names (``on N`` lasts one second: N and N + 1). Cron fields
    and the other units change on whole minutes, and the zones here are whole hours off
    UTC, so a condition changes at no other second."""
    found = {0}
    found.update(int(number) % 60 for number in re.findall(r":(\d+)", text))
    minute_atoms = r"time of minute (?:between (\d+) and (\d+)|(?:after|before) (\d+)|on (\d+))"
    for atom in re.finditer(minute_atoms, text, re.IGNORECASE):
        first, second, bound, on = atom.groups()
        for number in (first, second, bound):
            if number is not None:
                found.add(int(number) % 60)
        if on is not None:
            found.update({int(on) % 60, (int(on) + 1) % 60})
    return frozenset(found)


def sampled_windows(
    cond: Condition, start: datetime, seconds: int, at_seconds: frozenset[int] = ALL_SECONDS
) -> Pairs:
    """The runs of ``is_true`` sampled at the seconds of [start, start + seconds) whose
    second of the minute is in ``at_seconds`` or just before one of them (and at start).

    Each sample's value is taken to hold until the next sample. With every second of the
    minute (the default) that is exact. With :func:`named_seconds` it is exact for the
    condition the text means, and the sample one second before each named second checks
    that ``is_true`` still holds the value there: a window edge one second off shows as a
    mismatch, as with every second sampled."""
    found: Pairs = []
    run: datetime | None = None
    is_true = cond.is_true
    for at in _sample_instants(start, start + seconds * SECOND, at_seconds):
        if is_true(at):
            if run is None:
                run = at
        elif run is not None:
            found.append((run, at))
            run = None
    if run is not None:
        found.append((run, start + seconds * SECOND))
    return found


def _sample_instants(start: datetime, end: datetime, at_seconds: frozenset[int]):
    """start, then each instant in (start, end) whose second of the minute is in
    ``at_seconds`` or one before one of them (UTC: adding seconds is wall-clock)."""
    yield start
    sampled = sorted(at_seconds | {(second - 1) % 60 for second in at_seconds})
    minute = start - start.second * SECOND
    while minute < end:
        for second in sampled:
            at = minute + second * SECOND
            if at >= end:
                return
            if at > start:
                yield at
        minute += 60 * SECOND


def assert_well_formed(cond: Condition, start: datetime, end: datetime, found: Pairs) -> None:
    """Sorted, disjoint, non-adjacent, inside [start, end), true at starts, false at ends."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    for s, e in found:
        assert start <= s < e <= end, (s, e)
        assert cond.is_true(s), f"false at the window start {s}"
        if e < end:
            assert not cond.is_true(e), f"true at the window end {e}"
    for (_, e1), (s2, _) in itertools.pairwise(found):
        assert e1 < s2, found


# --- strategies ------------------------------------------------------------------------


def _ordinal(n: int) -> str:
    if n % 100 in (11, 12, 13):
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


# A few values that make windows touch or coincide, mixed with the full range.
_HOURS = st.one_of(st.sampled_from([0, 8, 12, 18, 23]), st.integers(0, 23))
_MINUTES = st.one_of(st.sampled_from([0, 15, 30, 45, 59]), st.integers(0, 59))
_SECONDS = st.one_of(st.just(0), st.integers(0, 59))

_TIME_OF_DAY = st.one_of(
    st.builds(lambda h, m: f"{h:02d}:{m:02d}", _HOURS, _MINUTES),
    st.builds(lambda h, m, s: f"{h:02d}:{m:02d}:{s:02d}", _HOURS, _MINUTES, _SECONDS),
    st.builds(lambda h, p: f"{h}{p}", st.integers(1, 12), st.sampled_from(["am", "pm"])),
    st.builds(lambda h, p: f"{h}:30 {p}", st.integers(1, 12), st.sampled_from(["AM", "PM"])),
    st.just("24:00"),
)
_WEEKDAY = st.sampled_from(["Mon", "tue", "Wednesday", "thu", "Fri", "sat", "Sunday"])
_MONTH_DAY = st.one_of(
    st.sampled_from([1, 5, 28, 29, 30, 31]).map(_ordinal),
    st.integers(1, 31).map(_ordinal),
    st.just("last"),
    st.builds(
        lambda n, d: f"{n} {d}",
        st.sampled_from(["1st", "2nd", "3rd", "4th", "5th", "last"]),
        _WEEKDAY,
    ),
)


def _with_time(day: st.SearchStrategy[str], times: st.SearchStrategy[str]) -> st.SearchStrategy:
    return st.builds(lambda d, t: d if t is None else f"{d} {t}", day, st.none() | times)


POINTS: dict[str, st.SearchStrategy[str]] = {
    "minute": st.one_of(st.sampled_from([0, 15, 30, 45, 60]), st.integers(0, 60)).map(str),
    "hour": st.one_of(
        st.builds(lambda m, s: f"{m:02d}:{s:02d}", _MINUTES, _SECONDS),
        st.integers(0, 4).map(lambda q: f"{q} quarter"),
    ),
    "day": _TIME_OF_DAY,
    "week": _with_time(_WEEKDAY, _TIME_OF_DAY),
    "month": _with_time(_MONTH_DAY, _TIME_OF_DAY),
}


def clock_atoms(unit: str, points: st.SearchStrategy[str] | None = None) -> st.SearchStrategy:
    p = POINTS[unit] if points is None else points
    return st.one_of(
        st.builds(lambda a, b: f"time of {unit} between {a} and {b}", p, p),
        p.map(lambda a: f"time of {unit} after {a}"),
        p.map(lambda a: f"time of {unit} before {a}"),
        p.map(lambda a: f"time of {unit} on {a}"),
    )


def _cron_field(
    low: int, high: int, names: list[str] | None = None, max_step: int = 10
) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    steps = st.integers(1, max_step)
    options = [
        st.just("*"),
        value.map(str),
        st.builds(lambda a, b: f"{min(a, b)}-{max(a, b)}", value, value),
        steps.map(lambda k: f"*/{k}"),
        st.builds(lambda a, b: f"{a},{b}", value, value),
        st.builds(lambda a, b, k: f"{min(a, b)}-{max(a, b)}/{k}", value, value, steps),
    ]
    if names:
        options.append(st.sampled_from(names))
    return st.one_of(*options)


CRON = st.one_of(
    st.builds(
        lambda *fields: "cron " + " ".join(fields),
        _cron_field(0, 59),
        _cron_field(0, 23),
        st.one_of(st.just("*"), _cron_field(1, 31, ["L", "1,L", "29-31"])),
        st.one_of(st.just("*"), _cron_field(1, 12, ["jan", "jun-aug", "feb,mar"])),
        st.one_of(
            st.just("*"), _cron_field(0, 7, ["mon-fri", "sat,sun", "friL", "SUN"], max_step=7)
        ),
    ),
    st.sampled_from(["cron @hourly", "cron @daily", "cron @weekly", "cron @monthly"]),
)

CONSTANTS = st.sampled_from(["true", "false", "always true", "always false"])


@st.composite
def combined(draw, atoms: st.SearchStrategy[str], max_leaves: int = 5) -> str:
    """A condition of up to ``max_leaves`` atoms joined by &, | (or their words), with
    ~ or not in front of operands and parentheses here and there."""
    negation = st.sampled_from(["", "", "~", "not "])

    def operand() -> str:
        if draw(st.integers(0, 3)) == 0:  # sometimes a parenthesized pair
            op = draw(st.sampled_from(["&", "|"]))
            return f"({draw(negation)}{draw(atoms)} {op} {draw(negation)}{draw(atoms)})"
        return draw(atoms)

    expr = operand()
    for _ in range(draw(st.integers(0, max_leaves - 1))):
        op = draw(st.sampled_from(["&", "|", "and", "or"]))
        left = f"({expr})" if draw(st.booleans()) else expr
        expr = f"{left} {op} {draw(negation)}{operand()}"
    prefix = draw(negation)
    return f"{prefix}({expr})" if prefix else expr


ATOMS_OF_KIND: dict[str, st.SearchStrategy[str]] = {
    **{unit: clock_atoms(unit) for unit in ("minute", "hour", "day", "week", "month")},
    "cron": CRON,
    "constant": CONSTANTS,
}


def atoms(*kinds: str) -> st.SearchStrategy[str]:
    """Atoms of the given kinds, each kind equally likely (one_of would weigh them by the
    number of branches inside each)."""
    return st.sampled_from(kinds).flatmap(ATOMS_OF_KIND.__getitem__)


ALL_ATOMS = atoms("minute", "hour", "day", "week", "month", "cron", "cron")
# Units whose combined patterns repeat every week (minute, hour and day divide it).
WEEKLY_ATOMS = atoms("minute", "hour", "day", "week", "constant")
# Days of the month repeat every 28 years between 1901 and 2099.
CALENDAR_ATOMS = atoms("day", "week", "month", "month", "constant")

# Whole-second instants; the calendar repeats every 28 years well inside this range.
INSTANTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 12, 31)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC)
)
# A few hours, or a day, somewhere in a random week.
SPANS = st.one_of(st.integers(3600, 6 * 3600), st.just(86_400))


# --- 1. windows == brute-force sampling, in UTC ------------------------------------


def check_against_sampling(
    text: str, zone: str, start: datetime, seconds: int, every_second: bool = False
) -> None:
    """windows() over the span equals ``is_true`` sampled at the seconds the text names (or
    at every second)."""
    cond = compile_condition(text, timezone=zone)
    end = start + seconds * SECOND
    found = windows_utc(cond, start, end)
    assert_well_formed(cond, start, end, found)
    at_seconds = ALL_SECONDS if every_second else named_seconds(text)
    assert found == sampled_windows(cond, start.astimezone(UTC), seconds, at_seconds), text


@settings(PROPERTY, max_examples=40)
@given(text=combined(ALL_ATOMS), start=INSTANTS, seconds=SPANS, offset=st.integers(0, 6))
def test_windows_match_sampling(text: str, start: datetime, seconds: int, offset: int) -> None:
    check_against_sampling(text, "UTC", start + offset * DAY, seconds)


@pytest.mark.long
@settings(PROPERTY, max_examples=400)
@given(text=combined(ALL_ATOMS), start=INSTANTS, seconds=SPANS, offset=st.integers(0, 6))
def test_windows_match_sampling_long(text: str, start: datetime, seconds: int, offset: int) -> None:
    """:func:`test_windows_match_sampling` with ten times the examples (the default run
    keeps 40 of them: it must stay under 100 s on 2 cores), sampled at every second."""
    check_against_sampling(text, "UTC", start + offset * DAY, seconds, every_second=True)


@settings(PROPERTY, max_examples=3)
@given(text=combined(ALL_ATOMS), start=INSTANTS)
def test_windows_match_sampling_over_a_week(text: str, start: datetime) -> None:
    check_against_sampling(text, "UTC", start, 7 * 86_400)


@pytest.mark.parametrize(
    "text",
    [
        "time of day between 08:00 and 18:00",
        "time of day between 22:00 and 02:00 & ~time of week on Sat",
        "(time of hour before 15:00 | time of minute after 45) & time of week between Mon and Fri",
        "time of month between 29th and 5th | time of day on 12:00",
        "time of month on last Fri & ~cron */10 9-17 * * *",
        "cron 0-29/7 */3 * * mon-fri or time of week after Sat 23:00",
        "time of minute between 15 and 45 & time of hour between 45:00 and 15:00",
        "time of day between 10:00 and 10:00 & ~time of day on 10:00",
    ],
)
def test_windows_match_sampling_examples(text: str) -> None:
    # From Tuesday 2024-02-27 over the leap day into March.
    check_against_sampling(text, "UTC", utc(2024, 2, 27), 4 * 86_400)


def test_windows_are_exact_to_the_microsecond() -> None:
    cond = compile_condition("time of day between 08:00:00.5 and 08:00:00.750001", timezone="UTC")
    found = list(cond.windows(utc(2024, 1, 1), utc(2024, 1, 2)))
    assert found == [(utc(2024, 1, 1, 8, 0, 0, 500_000), utc(2024, 1, 1, 8, 0, 0, 750_001))]
    assert not cond.is_true(utc(2024, 1, 1, 8, 0, 0, 499_999))
    assert cond.is_true(utc(2024, 1, 1, 8, 0, 0, 750_000))
    assert not cond.is_true(utc(2024, 1, 1, 8, 0, 0, 750_001))


def test_windows_are_clipped_to_the_span_at_microseconds() -> None:
    cond = compile_condition("time of day between 08:00 and 18:00", timezone="UTC")
    start, end = utc(2024, 1, 1, 9, 0, 0, 1), utc(2024, 1, 1, 17, 59, 59, 999_999)
    assert list(cond.windows(start, end)) == [(start, end)]


@pytest.mark.parametrize(
    ("start", "end"),
    [(utc(2024, 1, 1, 9), utc(2024, 1, 1, 9)), (utc(2024, 1, 2), utc(2024, 1, 1))],
)
@pytest.mark.parametrize("text", ["true", "time of day between 08:00 and 18:00", "~false"])
def test_windows_of_an_empty_span_are_empty(text: str, start: datetime, end: datetime) -> None:
    assert list(compile_condition(text, timezone="UTC").windows(start, end)) == []


# --- 2. next_change ----------------------------------------------------------------


def first_boundary_after(cond: Condition, after: datetime, horizon: timedelta) -> datetime | None:
    """The first window start or end strictly after ``after``, within ``horizon``."""
    limit = after + horizon
    for s, e in cond.windows(after, limit):
        s, e = s.astimezone(UTC), e.astimezone(UTC)
        if s > after:
            return s
        return e if e < limit else None
    return None


def check_next_change(cond: Condition, after: datetime, horizon: timedelta) -> None:
    change = cond.next_change(after)
    if change is not None:
        assert change.tzinfo is after.tzinfo
        change = change.astimezone(UTC)  # arithmetic on a shared ZoneInfo is wall-clock
    start = after.astimezone(UTC)
    assert change == first_boundary_after(cond, start, horizon)
    if change is None:
        return
    value = cond.is_true(after)
    for at in (start, start + US, start + (change - start) / 2, change - US):
        if start <= at < change:
            assert cond.is_true(at) == value, at
    assert cond.is_true(change) != value


@settings(PROPERTY, max_examples=60)
@given(
    text=combined(WEEKLY_ATOMS),
    after=INSTANTS,
    micros=st.one_of(st.just(0), st.integers(0, 999_999)),
)
def test_next_change_is_the_first_boundary(text: str, after: datetime, micros: int) -> None:
    # The value repeats every week, so a boundary, if any, comes within a week.
    cond = compile_condition(text, timezone="UTC")
    check_next_change(cond, after + micros * US, 2 * WEEK)


@settings(PROPERTY, max_examples=25)
@given(text=combined(CALENDAR_ATOMS, max_leaves=3), after=INSTANTS)
def test_next_change_is_the_first_boundary_with_month_days(text: str, after: datetime) -> None:
    cond = compile_condition(text, timezone="UTC")
    check_next_change(cond, after, timedelta(days=366 * 29))


@pytest.mark.parametrize(
    ("text", "zone", "after", "expected"),
    [
        ("time of day between 08:00 and 18:00", "UTC", utc(2024, 1, 1, 7), utc(2024, 1, 1, 8)),
        ("time of day between 08:00 and 18:00", "UTC", utc(2024, 1, 1, 8), utc(2024, 1, 1, 18)),
        ("time of day between 08:00 and 18:00", "UTC", utc(2024, 1, 1, 12), utc(2024, 1, 1, 18)),
        (
            "time of day between 08:00 and 18:00",
            "UTC",
            utc(2024, 1, 1, 17, 59, 59, 999_999),
            utc(2024, 1, 1, 18),
        ),
        ("time of day between 08:00 and 18:00", "UTC", utc(2024, 1, 1, 18), utc(2024, 1, 2, 8)),
        ("time of week on Mon", "UTC", utc(2024, 1, 3), utc(2024, 1, 8)),
        ("time of week on Mon", "UTC", utc(2024, 1, 8), utc(2024, 1, 9)),
        ("time of month on 31st", "UTC", utc(2024, 2, 1), utc(2024, 3, 31)),
        ("time of month between 29th and 5th", "UTC", utc(2023, 2, 10), utc(2023, 3, 1)),
        ("cron */15 * * * *", "UTC", utc(2024, 1, 1, 10, 7), utc(2024, 1, 1, 10, 15)),
        ("cron */15 * * * *", "UTC", utc(2024, 1, 1, 10, 15), utc(2024, 1, 1, 10, 16)),
        ("cron 0 0 29 2 *", "UTC", utc(2025, 1, 1), utc(2028, 2, 29)),
        # DST: the gap day and the fold day in Helsinki (times in UTC).
        (
            "time of day between 03:30 and 05:00",
            "Europe/Helsinki",
            utc(2024, 3, 30, 22),
            utc(2024, 3, 31, 1),
        ),
        (
            "time of day between 03:10 and 03:50",
            "Europe/Helsinki",
            utc(2024, 3, 30, 22),
            utc(2024, 4, 1, 0, 10),
        ),
        (
            "time of day between 03:10 and 03:20",
            "Europe/Helsinki",
            utc(2024, 10, 27, 0, 15),
            utc(2024, 10, 27, 0, 20),
        ),
        (
            "time of day between 03:10 and 03:20",
            "Europe/Helsinki",
            utc(2024, 10, 27, 0, 20),
            utc(2024, 10, 27, 1, 10),
        ),
        (
            "time of day between 03:00 and 04:00",
            "Europe/Helsinki",
            utc(2024, 10, 27, 0, 30),
            utc(2024, 10, 27, 2),
        ),
        (
            "time of day between 01:10 and 01:20",
            "America/New_York",
            utc(2024, 11, 3, 5, 20),
            utc(2024, 11, 3, 6, 10),
        ),
    ],
)
def test_next_change_table(text: str, zone: str, after: datetime, expected: datetime) -> None:
    cond = compile_condition(text, timezone=zone)
    assert cond.next_change(after) == expected
    check_next_change(cond, after, timedelta(days=366 * 29))


@pytest.mark.parametrize("zone", ["UTC", "Europe/Helsinki", "America/New_York"])
@pytest.mark.parametrize(
    "text",
    [
        "true",
        "false",
        "always true",
        "~true",
        "time of day between 10:00 and 10:00",
        "time of week between Mon and Sun",
        "time of day before 08:00 & time of day after 18:00",
        "time of day between 08:00 and 18:00 | ~time of day between 08:00 and 18:00",
        "time of month on 31st & time of month on 1st",
        "cron 0 0 31 2 *",
    ],
)
@pytest.mark.parametrize(
    "after",
    # An ordinary day, and the spring-forward and fall-back days in Europe and the US.
    [utc(2024, 1, 1, 12), utc(2024, 3, 31), utc(2024, 10, 27), utc(2024, 3, 10, 6)],
)
def test_next_change_is_none_when_the_value_never_changes(
    text: str, zone: str, after: datetime
) -> None:
    assert compile_condition(text, timezone=zone).next_change(after) is None


# --- 3. laziness -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("time of day between 08:00 and 18:00", (utc(2024, 1, 1, 8), utc(2024, 1, 1, 18))),
        (
            "time of day between 08:00 and 18:00 & ~time of week on Mon",
            (utc(2024, 1, 2, 8), utc(2024, 1, 2, 18)),
        ),
        ("~time of day between 08:00 and 18:00", (utc(2024, 1, 1), utc(2024, 1, 1, 8))),
    ],
)
def test_first_window_of_a_century_is_computed_lazily(
    text: str, expected: tuple[datetime, datetime]
) -> None:
    cond = compile_condition(text, timezone="UTC")
    start = utc(2024, 1, 1)
    assert next(iter(cond.windows(start, start + timedelta(days=36_525)))) == expected


def test_first_window_of_a_century_naive() -> None:
    cond = compile_condition("time of day between 08:00 and 18:00", timezone="Europe/Helsinki")
    start = datetime(2024, 1, 1)
    first = next(iter(cond.windows(start, start + timedelta(days=36_525))))
    assert first == (datetime(2024, 1, 1, 8), datetime(2024, 1, 1, 18))


FOREVER = datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "start", "end", "expected"),
    [
        (
            "time of day between 08:00 and 18:00",
            utc(2024, 1, 1),
            FOREVER,
            (utc(2024, 1, 1, 8), utc(2024, 1, 1, 18)),
        ),
        (
            "time of day between 08:00 and 18:00",
            datetime(2024, 1, 1),
            datetime.max,
            (datetime(2024, 1, 1, 8), datetime(2024, 1, 1, 18)),
        ),
        (
            "~time of day between 08:00 and 18:00",
            utc(9999, 12, 31, 12),
            FOREVER,
            (utc(9999, 12, 31, 18), FOREVER),
        ),
    ],
    ids=["aware", "naive", "negation-at-the-end"],
)
def test_windows_up_to_datetime_max(
    text: str, start: datetime, end: datetime, expected: tuple[datetime, datetime]
) -> None:
    # "Forever" as datetime.max: ``true`` already handles it (one window up to it).
    assert next(iter(compile_condition(text, timezone="UTC").windows(start, end))) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", None), ("time of day between 08:00 and 18:00", utc(9999, 12, 31, 18))],
)
def test_next_change_in_the_last_days_of_the_calendar(text: str, expected) -> None:
    cond = compile_condition(text, timezone="UTC")
    assert cond.next_change(utc(9999, 12, 31, 12)) == expected


# --- 4. naive and aware ------------------------------------------------------------


def test_naive_in_naive_out() -> None:
    cond = compile_condition("time of day between 08:00 and 18:00", timezone="Europe/Helsinki")
    found = list(cond.windows(datetime(2024, 1, 1), datetime(2024, 1, 3)))
    assert found == [
        (datetime(2024, 1, 1, 8), datetime(2024, 1, 1, 18)),
        (datetime(2024, 1, 2, 8), datetime(2024, 1, 2, 18)),
    ]
    assert all(s.tzinfo is None and e.tzinfo is None for s, e in found)
    assert cond.next_change(datetime(2024, 1, 1, 7)) == datetime(2024, 1, 1, 8)
    assert cond.next_change(datetime(2024, 1, 1, 7)).tzinfo is None
    # Naive instants are wall-clock time in the condition's zone.
    assert cond.is_true(datetime(2024, 1, 1, 8))
    assert not cond.is_true(datetime(2024, 1, 1, 18))


def test_naive_windows_are_wall_clock_across_a_dst_change() -> None:
    cond = compile_condition("time of day between 03:30 and 05:00", timezone="Europe/Helsinki")
    found = list(cond.windows(datetime(2024, 3, 31), datetime(2024, 4, 1)))
    assert found == [(datetime(2024, 3, 31, 4), datetime(2024, 3, 31, 5))]


@pytest.mark.parametrize(
    ("zone", "tz"),
    [
        ("UTC", UTC),
        ("Europe/Helsinki", HELSINKI),
        ("America/New_York", NEW_YORK),
        ("Europe/Helsinki", UTC),
        ("UTC", TOKYO),
        ("America/New_York", HELSINKI),
    ],
    ids=["UTC-UTC", "Helsinki-Helsinki", "NY-NY", "Helsinki-UTC", "UTC-Tokyo", "NY-Helsinki"],
)
@pytest.mark.parametrize(
    "text",
    [
        "time of day between 08:00 and 18:00",
        "~time of day between 08:00 and 18:00",
        "time of day after 12:00 | cron 0 9 * * *",
    ],
)
def test_aware_in_aware_out_in_the_callers_tzinfo(text: str, zone: str, tz: tzinfo) -> None:
    cond = compile_condition(text, timezone=zone)
    start = datetime(2024, 1, 1, tzinfo=tz)
    found = list(cond.windows(start, start + 2 * DAY))
    assert found
    for s, e in found:
        assert s.tzinfo is tz and e.tzinfo is tz
    change = cond.next_change(start + timedelta(hours=7))
    assert change is not None and change.tzinfo is tz


@pytest.mark.parametrize("tz", [UTC, TOKYO])
def test_aware_next_change_keeps_the_callers_tzinfo(tz: tzinfo) -> None:
    cond = compile_condition("time of day between 08:00 and 18:00", timezone="Europe/Helsinki")
    change = cond.next_change(utc(2024, 1, 1).astimezone(tz))
    assert change is not None and change.tzinfo is tz
    assert change == utc(2024, 1, 1, 6)


def test_aware_inputs_in_the_repeated_hour_are_read_with_their_fold() -> None:
    cond = compile_condition("time of day between 03:10 and 03:50", timezone="Europe/Helsinki")
    second_pass = datetime(2024, 10, 27, 3, 30, fold=1, tzinfo=HELSINKI)  # 01:30 UTC
    assert second_pass.astimezone(UTC) == utc(2024, 10, 27, 1, 30)
    found = list(cond.windows(second_pass, second_pass + timedelta(hours=1)))
    assert as_utc(found) == [(utc(2024, 10, 27, 1, 30), utc(2024, 10, 27, 1, 50))]
    assert [(s.fold, e.fold) for s, e in found] == [(1, 1)]
    # After the first pass's window, the next change is the second pass's start.
    first_pass = datetime(2024, 10, 27, 3, 55, tzinfo=HELSINKI)  # 00:55 UTC
    change = cond.next_change(first_pass)
    assert change is not None and change.tzinfo is HELSINKI
    assert change.astimezone(UTC) == utc(2024, 10, 27, 1, 10)
    assert cond.is_true(second_pass) and not cond.is_true(first_pass)


@pytest.mark.parametrize(
    ("start", "end"),
    [(datetime(2024, 1, 1), utc(2024, 1, 2)), (utc(2024, 1, 1), datetime(2024, 1, 2))],
)
def test_mixing_naive_and_aware_raises(start: datetime, end: datetime) -> None:
    cond = compile_condition("time of day between 08:00 and 18:00", timezone="UTC")
    with pytest.raises(ValueError):
        list(cond.windows(start, end))


# --- 5. daylight saving time -------------------------------------------------------

# Each case: zone, expression, span (UTC), expected windows (UTC).
# Helsinki: 2024-03-31 03:00 EET -> 04:00 EEST at 01:00 UTC;
#           2024-10-27 04:00 EEST -> 03:00 EET at 01:00 UTC (03:00-04:00 happens twice:
#           00:00-01:00 and 01:00-02:00 UTC).
# New York: 2024-03-10 02:00 EST -> 03:00 EDT at 07:00 UTC;
#           2024-11-03 02:00 EDT -> 01:00 EST at 06:00 UTC (01:00-02:00 twice: 05:00-06:00
#           and 06:00-07:00 UTC).
HEL_SPRING = (utc(2024, 3, 30, 22), utc(2024, 3, 31, 21))  # the local day, 3/31
HEL_FALL = (utc(2024, 10, 26, 21), utc(2024, 10, 27, 22))  # the local day, 10/27
NY_SPRING = (utc(2024, 3, 10, 5), utc(2024, 3, 11, 4))
NY_FALL = (utc(2024, 11, 3, 4), utc(2024, 11, 4, 5))

DST_CASES = [
    # A window whose wall start is in the gap opens at the first instant after the gap.
    ("Europe/Helsinki", "time of day between 03:30 and 05:00", HEL_SPRING, [(1, 0, 2, 0)]),
    # Entirely inside the gap: empty that day.
    ("Europe/Helsinki", "time of day between 03:10 and 03:50", HEL_SPRING, []),
    ("Europe/Helsinki", "cron 30 3 * * *", HEL_SPRING, []),
    # Ending in the gap: closes at the transition.
    ("Europe/Helsinki", "time of day between 02:30 and 03:30", HEL_SPRING, [(0, 30, 1, 0)]),
    ("Europe/Helsinki", "time of day between 02:30 and 04:30", HEL_SPRING, [(0, 30, 1, 30)]),
    # The empty window in the gap leaves the whole day for the negation.
    ("Europe/Helsinki", "~time of day between 03:10 and 03:50", HEL_SPRING, "all"),
    # Inside the repeated hour: true in both real passes.
    (
        "Europe/Helsinki",
        "time of day between 03:10 and 03:20",
        HEL_FALL,
        [(0, 10, 0, 20), (1, 10, 1, 20)],
    ),
    ("Europe/Helsinki", "cron 30 3 * * *", HEL_FALL, [(0, 30, 0, 31), (1, 30, 1, 31)]),
    ("Europe/Helsinki", "cron 30 4 * * *", HEL_FALL, [(2, 30, 2, 31)]),
    # Starting inside the fold: the rest of the first pass, then from the second pass on.
    (
        "Europe/Helsinki",
        "time of day between 03:30 and 05:00",
        HEL_FALL,
        [(0, 30, 1, 0), (1, 30, 3, 0)],
    ),
    ("Europe/Helsinki", "time of day between 03:00 and 04:00", HEL_FALL, [(0, 0, 2, 0)]),
    ("Europe/Helsinki", "time of day between 04:00 and 05:00", HEL_FALL, [(2, 0, 3, 0)]),
    ("America/New_York", "time of day between 02:30 and 04:00", NY_SPRING, [(7, 0, 8, 0)]),
    ("America/New_York", "time of day between 02:10 and 02:50", NY_SPRING, []),
    ("America/New_York", "cron 30 2 * * *", NY_SPRING, []),
    ("America/New_York", "time of day between 01:30 and 02:30", NY_SPRING, [(6, 30, 7, 0)]),
    (
        "America/New_York",
        "time of day between 01:10 and 01:20",
        NY_FALL,
        [(5, 10, 5, 20), (6, 10, 6, 20)],
    ),
    (
        "America/New_York",
        "time of day between 01:30 and 03:00",
        NY_FALL,
        [(5, 30, 6, 0), (6, 30, 8, 0)],
    ),
    ("America/New_York", "cron 30 1 * * *", NY_FALL, [(5, 30, 5, 31), (6, 30, 6, 31)]),
]

# The same, combining windows in the fold with &, | and ~: the interval algebra must
# order both passes of the repeated hour by real time.
DST_ALGEBRA_CASES = [
    (
        "Europe/Helsinki",
        "time of day between 03:10 and 03:20 | time of day between 03:40 and 03:50",
        HEL_FALL,
        [(0, 10, 0, 20), (0, 40, 0, 50), (1, 10, 1, 20), (1, 40, 1, 50)],
    ),
    (
        "Europe/Helsinki",
        "time of day between 03:00 and 03:50 & time of day between 03:10 and 04:00",
        HEL_FALL,
        [(0, 10, 0, 50), (1, 10, 1, 50)],
    ),
    (
        "Europe/Helsinki",
        "time of day between 03:00 and 05:00 & ~time of day between 03:10 and 03:20",
        HEL_FALL,
        [(0, 0, 0, 10), (0, 20, 1, 10), (1, 20, 3, 0)],
    ),
    (
        "America/New_York",
        "cron 30 1 * * * | cron 45 1 * * *",
        NY_FALL,
        [(5, 30, 5, 31), (5, 45, 5, 46), (6, 30, 6, 31), (6, 45, 6, 46)],
    ),
]


def _expected(span: tuple[datetime, datetime], expected) -> Pairs:
    if expected == "all":
        return [span]
    day = (span[0] + timedelta(hours=12)).replace(hour=0)  # the local day, in UTC
    return [
        (day.replace(hour=a, minute=b), day.replace(hour=c, minute=d)) for a, b, c, d in expected
    ]


def _dst_ids(case) -> str:
    zone, text, span, _ = case
    return f"{zone.split('/')[1]}-{span[0]:%m%d}-{text}"


def _check_dst(form: str, zone: str, text: str, span, expected) -> None:
    if form == "timezone":
        cond = compile_condition(text, timezone=zone)
    else:
        # The suffix decides the zone; the condition's own zone must not matter.
        cond = compile_condition(f"({text}) in {zone}", timezone="Asia/Tokyo")
    start, end = span
    found = windows_utc(cond, start, end)
    assert found == _expected(span, expected)
    assert_well_formed(cond, start, end, found)
    # The same instants given in other zones give the same answers; given in the DST
    # zone itself, the results must carry the fold that names the right pass.
    for tz in (TOKYO, HELSINKI, NEW_YORK):
        assert windows_utc(cond, start.astimezone(tz), end.astimezone(tz)) == found, tz


@pytest.mark.parametrize("form", ["timezone", "suffix"])
@pytest.mark.parametrize(
    ("zone", "text", "span", "expected"), DST_CASES, ids=map(_dst_ids, DST_CASES)
)
def test_dst_windows(form: str, zone: str, text: str, span, expected) -> None:
    _check_dst(form, zone, text, span, expected)


@pytest.mark.parametrize("form", ["timezone", "suffix"])
@pytest.mark.parametrize(
    ("zone", "text", "span", "expected"), DST_ALGEBRA_CASES, ids=map(_dst_ids, DST_ALGEBRA_CASES)
)
def test_dst_windows_combined_in_the_repeated_hour(
    form: str, zone: str, text: str, span, expected
) -> None:
    _check_dst(form, zone, text, span, expected)


def test_next_change_combined_in_the_repeated_hour() -> None:
    cond = compile_condition(
        "time of day between 03:10 and 03:20 | time of day between 03:40 and 03:50",
        timezone="Europe/Helsinki",
    )
    assert cond.next_change(utc(2024, 10, 27, 0, 30)) == utc(2024, 10, 27, 0, 40)


@pytest.mark.parametrize(
    ("day", "overlap"),
    [
        (utc(2024, 1, 15), (14, 15)),  # EET and EST
        (utc(2024, 3, 15), (13, 15)),  # EET and EDT: the US has changed, Europe not yet
        (utc(2024, 3, 31), (13, 14)),  # EEST and EDT, from Helsinki's change day on
        (utc(2024, 7, 1), (13, 14)),
        (utc(2024, 10, 28), (13, 15)),  # EET and EDT again
        (utc(2024, 11, 4), (14, 15)),  # EET and EST
    ],
)
def test_a_mix_of_zones_gives_the_overlap_in_real_time(day: datetime, overlap) -> None:
    text = (
        "(time of day between 09:00 and 17:00 in Europe/Helsinki)"
        " & (time of day between 09:00 and 17:00 in America/New_York)"
    )
    for zone in ("UTC", "Asia/Tokyo", "Europe/Helsinki"):
        cond = compile_condition(text, timezone=zone)
        found = windows_utc(cond, day, day + DAY)
        assert found == [(day.replace(hour=overlap[0]), day.replace(hour=overlap[1]))], zone
        assert_well_formed(cond, day, day + DAY, found)


# Hour literals around the changes, so that windows start and end in the gap or fold.
_DST_TIMES = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 6), st.sampled_from([0, 10, 30, 50])
)
DST_ATOMS = st.one_of(
    clock_atoms("day", _DST_TIMES),
    clock_atoms("hour"),
    st.builds(
        lambda m, h: f"cron {m} {h} * * *",
        st.sampled_from(["0", "30", "*/20", "10-15"]),
        st.sampled_from(["*", "1-4", "2", "3"]),
    ),
)


@settings(PROPERTY, max_examples=15)
@given(text=combined(DST_ATOMS, max_leaves=3))
@pytest.mark.parametrize(
    ("zone", "start"),
    [("Europe/Helsinki", utc(2024, 3, 30, 22)), ("America/New_York", utc(2024, 3, 10, 4))],
)
def test_windows_match_sampling_on_spring_forward_days(
    zone: str, start: datetime, text: str
) -> None:
    check_against_sampling(text, zone, start, 8 * 3600)


@settings(PROPERTY, max_examples=15)
@given(text=combined(DST_ATOMS, max_leaves=3))
@pytest.mark.parametrize(
    ("zone", "start"),
    [("Europe/Helsinki", utc(2024, 10, 26, 22)), ("America/New_York", utc(2024, 11, 3, 3))],
)
def test_windows_match_sampling_on_fall_back_days(zone: str, start: datetime, text: str) -> None:
    check_against_sampling(text, zone, start, 8 * 3600)


# --- 6. is_true with instants in any zone -------------------------------------------


@pytest.mark.parametrize(
    ("text", "zone", "instant", "expected"),
    [
        # 08:30 UTC is 17:30 in Tokyo; 09:30 UTC is 18:30 in Tokyo.
        ("time of day between 08:00 and 18:00", "UTC", utc(2024, 1, 1, 8, 30), True),
        ("time of day between 08:00 and 18:00", "UTC", utc(2024, 1, 1, 9, 30), True),
        ("time of day between 08:00 and 18:00", "UTC", utc(2024, 1, 1, 18, 30), False),
        # Tokyo's Monday 02:00 is Sunday 17:00 in UTC.
        ("time of week on Mon", "UTC", utc(2024, 1, 7, 17), False),
        ("time of week on Mon", "Asia/Tokyo", utc(2024, 1, 7, 17), True),
        # The second pass of Helsinki's repeated hour, and just after the spring gap.
        ("time of day between 03:10 and 03:20", "Europe/Helsinki", utc(2024, 10, 27, 1, 15), True),
        ("time of day between 03:10 and 03:20", "Europe/Helsinki", utc(2024, 10, 27, 0, 15), True),
        ("time of day between 03:10 and 03:20", "Europe/Helsinki", utc(2024, 10, 27, 2, 15), False),
        ("time of day between 03:30 and 05:00", "Europe/Helsinki", utc(2024, 3, 31, 1), True),
        ("time of day between 03:30 and 05:00", "Europe/Helsinki", utc(2024, 3, 31, 0, 59), False),
        ("cron 30 1 * * *", "America/New_York", utc(2024, 11, 3, 6, 30, 59), True),
    ],
)
def test_is_true_reads_the_instant_in_the_condition_zone(
    text: str, zone: str, instant: datetime, expected: bool
) -> None:
    cond = compile_condition(text, timezone=zone)
    for tz in (UTC, TOKYO, HELSINKI, NEW_YORK):
        assert cond.is_true(instant.astimezone(tz)) is expected, tz


@given(instant=INSTANTS, micros=st.integers(0, 999_999))
@settings(PROPERTY, max_examples=100)
def test_is_true_does_not_depend_on_the_zone_an_instant_is_given_in(
    instant: datetime, micros: int
) -> None:
    instant += micros * US
    for zone in ("UTC", "Europe/Helsinki", "America/New_York"):
        cond = compile_condition(
            "time of day between 08:00 and 18:00 & ~time of week on Sat | time of hour on 30:00",
            timezone=zone,
        )
        expected = cond.is_true(instant)
        assert cond.is_true(instant.astimezone(TOKYO)) is expected
        assert cond.is_true(instant.astimezone(NEW_YORK)) is expected
        assert (
            cond.is_true(instant.astimezone(timezone(timedelta(hours=5, minutes=45)))) is expected
        )


# --- lookup tables: is_true of a pure clock condition agrees with windows() ----------

# Any unit and the constants, at any microsecond of a wide range of years.
TABLE_ATOMS = atoms("minute", "hour", "day", "week", "month", "constant")
ANY_INSTANT = st.datetimes(min_value=datetime(1, 2, 1), max_value=datetime(9999, 11, 30))


def check_is_true_against_windows(text: str, at: datetime) -> None:
    """is_true (a lookup table after the first call) at ``at`` and at every edge of the
    windows around it equals membership in windows() (interval algebra, no table)."""
    cond = compile_condition(text, timezone="UTC")
    start, end = at - timedelta(days=2), at + timedelta(days=2)
    found = list(cond.windows(start, end))

    opens = [low for low, _ in found]

    def inside(instant: datetime) -> bool:
        index = bisect.bisect_right(opens, instant) - 1
        return index >= 0 and instant < found[index][1]

    probes = [at]
    for low, high in found:
        probes += [low, high - US, high]
        if low > start:
            probes.append(low - US)
    for instant in probes:
        if instant < end:
            assert cond.is_true(instant) == inside(instant), (text, instant, found)


@settings(PROPERTY, max_examples=50)
@given(text=combined(TABLE_ATOMS, max_leaves=4), at=ANY_INSTANT)
def test_is_true_of_combined_clock_conditions_agrees_with_windows(text, at):
    # Every form at every month length and calendar end is in the table test below; this
    # adds random combinations (50 here, 500 in the long twin: 150 took 4 s of the run).
    check_is_true_against_windows(text, at)


@pytest.mark.long
@settings(PROPERTY, max_examples=500)
@given(text=combined(TABLE_ATOMS, max_leaves=4), at=ANY_INSTANT)
def test_is_true_of_combined_clock_conditions_agrees_with_windows_long(text, at):
    """:func:`test_is_true_of_combined_clock_conditions_agrees_with_windows`, ten times."""
    check_is_true_against_windows(text, at)


@pytest.mark.parametrize(
    "text",
    [
        "time of day between 08:00 and 18:00 & time of week between Mon and Fri",
        "~time of week on Sunday | time of hour before 15:00",
        "time of month on last Friday 13:00 & ~time of day after 14:30:00.5",
        "time of month between 15th and 3rd | time of week on Sat",
        "time of minute between 59 and 00 | time of hour after 45:00",
        "time of month on 5th Friday 13:07:30 | time of day between 23:00 and 01:00",
        "time of week between Sun 23:00 and Mon 01:00 & ~time of month on 1st",
        "(time of day after 12:00 & false) | ~(time of day before 06:00 | true)",
    ],
)
def test_is_true_of_clock_tables_at_every_edge(text):
    # Months of every length and first weekday, and the ends of the calendar.
    months = [datetime(2024, m, 15, 12) for m in range(1, 13)] + [
        datetime(2023, 2, 15),
        datetime(1, 1, 3),
        datetime(9999, 12, 28),
    ]
    for at in months:
        check_is_true_against_windows(text, at)


def test_combined_clock_conditions_are_answered_from_a_table():
    from conddsl.compile import _clock_tree
    from conddsl.timeline.tables import table_predicate

    cond = compile_condition("time of day between 08:00 and 18:00 & time of week on Mon")
    assert table_predicate(_clock_tree(cond._evaluator)) is not None
    # A minute window over a month has ~89,000 edges a month: the tree answers instead.
    big = compile_condition("time of minute before 30 & time of month on 1st", timezone="UTC")
    assert table_predicate(_clock_tree(big._evaluator)) is None
    assert big.is_true(datetime(2024, 3, 1, 5, 10, 29)) is True
    assert big.is_true(datetime(2024, 3, 1, 5, 10, 30)) is False


# ---------------------------------------------------------------- a window kept as its piece


@pytest.mark.parametrize(
    "unit, window, kept",
    [
        ("day", ("between", 8, 18), False),  # one piece as it is: kept as the piece
        ("hour", ("between", 0, 60), False),
        ("day", ("between", 18, 8), True),  # wraps around: two pieces
        ("day", ("between", 8, 8), True),  # equal ends: the whole cycle
        ("day", ("after", 8, None), True),
        ("week", ("between", 8, 18), False),
    ],
)
def test_a_plain_window_is_given_back_equal_from_its_piece(unit, window, kept):
    from conddsl.timeline.clock import MICROS_PER_MINUTE, ClockWindow, CyclePoint, Window

    kind, start, end = window
    scale = MICROS_PER_MINUTE if unit == "hour" else 60 * MICROS_PER_MINUTE
    made = Window(
        kind,
        CyclePoint(start * scale),
        None if end is None else CyclePoint(end * scale),
    )
    clock = ClockWindow(unit, made)
    assert clock.window == made
    assert (clock.window is made) == kept
    if unit == "day" and window == ("between", 8, 18):
        day = datetime(2024, 5, 6)
        inside = [clock.contains(day + timedelta(hours=h)) for h in range(24)]
        assert inside == [8 <= h < 18 for h in range(24)]
    assert clock.anchor_point() == (made.start if kind == "between" and start == end else None)
