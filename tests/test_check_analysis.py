"""The analyses behind the time and waiting checks: sound clock bounds, horizons that see
everything, periods, and cycles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conddsl.compile import Condition
from conddsl.lint.clock import REFERENCE, ClockAnalysis, negation
from conddsl.lint.period import start_period
from conddsl.parse import parse
from conddsl.rules.graph import find_cycles

RULES = {
    "office": parse("time of day between 08:00 and 18:00"),
    "weekday": parse("time of week between Mon and Fri"),
    "after_extract": parse("after task 'extract'"),
}


def analysis() -> ClockAnalysis:
    return ClockAnalysis(RULES, "Europe/Helsinki")


@pytest.mark.parametrize(
    ("text", "over", "under"),
    [
        ("time of day after 10:00", "time of day after 10:00", "time of day after 10:00"),
        ("daily after 10:00", "daily after 10:00", "false"),
        ("daily starting 10:00", "true", "false"),
        ("every 10 minutes & office", "time of day between 08:00 and 18:00", "false"),
        ("has succeeded today | weekday", "true", "time of week between Mon and Fri"),
        ("~(office & has failed)", "true", "~time of day between 08:00 and 18:00"),
        ("~~office", "time of day between 08:00 and 18:00", "time of day between 08:00 and 18:00"),
        ("undefined_name & office", "time of day between 08:00 and 18:00", "false"),
        (
            "(time of day after 09:00 in Asia/Tokyo) & env 'prod'",
            "time of day after 09:00 in Asia/Tokyo",
            "false",
        ),
    ],
)
def test_bounds(text: str, over: str, under: str) -> None:
    found = analysis().bounds(parse(text))
    assert (str(found[0]), str(found[1])) == (over, under)


@pytest.mark.parametrize(
    ("text", "never"),
    [
        ("time of day before 08:00 & time of day after 18:00", True),
        ("time of day before 08:00 & ~time of day before 08:00", True),
        ("time of week on Sat & weekday", True),
        ("time of month on 31st & time of month between 1st and 30th", True),
        ("cron 0 9 * * * & time of day before 08:00", True),
        ("cron 0 9 * * mon & time of week on Tue", True),
        # Task state is read as "may be true": none of these is claimed never true.
        ("time of day before 08:00 & ~(time of day before 08:00 & has succeeded)", False),
        ("time of day before 08:00 & (time of day after 18:00 | task 'x' is running)", False),
        ("cron 0 0 29 2 * & time of week on Sat", False),  # 29 February 2048 is a Saturday
        ("time of month on 2nd Monday & time of month between 8th and 14th", False),
    ],
)
def test_never_true(text: str, never: bool) -> None:
    checker = analysis()
    over, _ = checker.bounds(parse(text))
    assert (checker.first_window(over) is None) is never


@pytest.mark.parametrize(
    ("text", "always"),
    [
        ("true", True),
        ("time of day after 00:00", True),
        ("office | ~office", True),
        ("time of week on Mon | time of week between Tue and Sun", True),
        ("office | running for more than 1 hour", False),
        ("~task 'a' is running", False),
        ("time of month between 1st and 30th | time of month on 31st", True),
    ],
)
def test_always_true(text: str, always: bool) -> None:
    checker = analysis()
    _, under = checker.bounds(parse(text))
    assert (checker.first_window(negation(under)) is None) is always


# ---------------------------------------------------------------- horizons

_ATOMS = [
    "time of day between 08:00 and 18:00",
    "time of day after 22:00",
    "time of day before 02:30",
    "time of hour between 15:00 and 45:00",
    "time of week on Mon",
    "time of week between Fri 18:00 and Mon 06:00",
    "time of month on 31st",
    "time of month on last",
    "time of month between 29th and 2nd",
    "time of month on 2nd Monday",
    "time of month on 29th",
    "cron 0 9 * * 1-5",
    "cron 30 23 29 2 *",
    "cron 0 12 13 * fri",
    "monthly between 28th and 3rd",
]


def _combine(children) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, children).map(lambda p: f"({p[0]}) & ({p[1]})"),
        st.tuples(children, children).map(lambda p: f"({p[0]}) | ({p[1]})"),
        children.map(lambda c: f"~({c})"),
    )


clock_conditions = st.recursive(st.sampled_from(_ATOMS), _combine, max_leaves=4)


def check_horizon(text: str) -> None:
    """The checker finds a window exactly when 29 years of windows() hold one."""
    checker = ClockAnalysis({}, "UTC")
    node = parse(text)
    over, _ = checker.bounds(node)
    full = Condition(over, timezone="UTC")
    far = REFERENCE + timedelta(days=366 * 29)
    expected = next(iter(full.windows(REFERENCE, far)), None) is not None
    assert (checker.first_window(over) is not None) is expected


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(clock_conditions)
def test_shortened_horizons_see_everything(text: str) -> None:
    """The checker looks less far than 29 years when months and weekdays do not meet;
    it must still find a window exactly when 29 years hold one. (The same 30 conditions
    each run; the long twin draws 300 new ones: the oracle scans 29 years of windows, and
    60 random conditions took 5-23 s of the run, depending on the draw.)"""
    check_horizon(text)


@pytest.mark.long
@settings(max_examples=300, deadline=None)
@given(clock_conditions)
def test_shortened_horizons_see_everything_long(text: str) -> None:
    """:func:`test_shortened_horizons_see_everything` with 300 conditions."""
    check_horizon(text)


# ---------------------------------------------------------------- periods


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("every 10 minutes", timedelta(minutes=10)),
        ("daily", timedelta(days=1)),
        ("daily between 22:00 and 04:00", timedelta(days=1)),
        ("monthly", timedelta(days=31)),
        ("cron */15 9-17 * * 1-5", timedelta(minutes=15)),
        ("cron 0 9 * * 1-5", timedelta(days=1)),
        ("daily & ~task 'x' is running", timedelta(days=1)),
        ("every 10 minutes | hourly", timedelta(minutes=10)),
        ("daily & after_extract", timedelta(days=1)),
        ("daily & office", None),  # a window changes the cadence: not claimed
        ("daily & every 2 hours", None),
        ("every 10 minutes | task 'x' has failed", None),
        ("after task 'x'", None),
        ("~daily", None),
    ],
)
def test_start_period(text: str, period: timedelta | None) -> None:
    found = start_period(parse(text), RULES)
    assert (found[0] if found else None) == period


# ---------------------------------------------------------------- cycles


@pytest.mark.parametrize(
    ("edges", "cycles"),
    [
        ({"a": ["b"], "b": ["a"]}, [["a", "b", "a"]]),
        ({"a": ["a"], "b": []}, [["a", "a"]]),
        ({"a": ["b"], "b": ["c"], "c": []}, []),
        ({"a": ["b"], "b": ["c"], "c": ["b", "a"]}, [["a", "b", "c", "a"]]),
        ({"x": ["y"], "y": ["x"], "p": ["q"], "q": ["p"]}, [["p", "q", "p"], ["x", "y", "x"]]),
        ({"a": ["missing"]}, []),
    ],
)
def test_find_cycles(edges: dict, cycles: list) -> None:
    order = sorted(edges)
    assert find_cycles(edges, order) == cycles


def test_find_cycles_handles_long_chains() -> None:
    edges = {f"t{i}": [f"t{i + 1}"] for i in range(5000)}
    edges["t5000"] = ["t0"]
    (cycle,) = find_cycles(edges, list(edges))
    assert len(cycle) == 5002
