"""One bounds analysis for the unknown parts of a condition (custom conditions; for the
checker also the history and the session): exact for correlated parts up to
``bounds.EXACT_LIMIT`` of them, sound beyond, and the same in compile, runtime and lint."""

from __future__ import annotations

import itertools
import textwrap
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_helpers.scenario import at, play, virtual
from test_check_analysis import _ATOMS, _combine

from conddsl import ast
from conddsl.bounds import EXACT_LIMIT, FALSE, TRUE, BoundsAnalysis
from conddsl.cli import main
from conddsl.compile import Condition
from conddsl.custom import ConditionRegistry
from conddsl.errors import ConditionError
from conddsl.lint.clock import ClockAnalysis
from conddsl.parse import parse
from conddsl.runtime.customs import GatedCondition

# a: a clock part; x: a custom part read once as itself and once negated.
CORRELATED = (
    "(time of day between 10:00 and 11:00 & x) | (~time of day between 10:00 and 11:00 & ~x)"
)
MORNING = datetime(2024, 1, 1, 9, 0)


def _registry(**values: bool) -> ConditionRegistry:
    registry = ConditionRegistry()
    for name, value in values.items():
        registry.register(name, lambda value=value: value, recheck="6 hours")
    return registry


def test_correlated_custom_parts_are_exact():
    analysis = BoundsAnalysis({})
    found = analysis.readings(parse(CORRELATED))
    a = parse("time of day between 10:00 and 11:00")
    assert set(found.cases) == {a, ast.Not(a)}
    assert found.customs == ("x",)
    # Read once per value of x, x | ~x is always true and x & ~x never.
    assert analysis.bounds(parse("x | ~x")) == (TRUE, TRUE)
    assert analysis.bounds(parse("x & ~x")) == (FALSE, FALSE)


def test_compile_next_change_reads_one_custom_part_as_one_value():
    condition = Condition(parse("x | ~x"), registry=_registry(x=True))
    assert condition.next_change(MORNING) is None  # whatever x says, it is true
    correlated = Condition(parse(CORRELATED), registry=_registry(x=True))
    assert correlated.next_change(MORNING) == datetime(2024, 1, 1, 10, 0)


def test_gated_condition_wakes_at_the_changes_of_its_clock_part():
    registry = _registry(x=True)
    gated = GatedCondition(parse(CORRELATED), timezone="UTC", rules={}, registry=registry)
    # x holds its value until it is checked again (6 hours): a's edges change the value.
    assert gated.next_change(MORNING) == datetime(2024, 1, 1, 10, 0)
    assert gated.next_change(datetime(2024, 1, 1, 10, 0)) == datetime(2024, 1, 1, 11, 0)
    # A single-polarity part too: with x true and y false, "after 10:00" changes at 10:00.
    text = "(time of day after 10:00 & x) | (time of day after 09:30 & y)"
    gated = GatedCondition(
        parse(text), timezone="UTC", rules={}, registry=_registry(x=True, y=False)
    )
    assert gated.next_change(datetime(2024, 1, 1, 9, 30)) == datetime(2024, 1, 1, 10, 0)


def test_the_scheduler_starts_a_correlated_condition_when_its_clock_part_opens():
    app = virtual(shut_cond="time of day after 07:30", threshold=0.02)
    app.cond("x", lambda: True, recheck="6 hours")
    # False before 07:10 (x is true, a is false), true from 07:10; once a day.
    a = "time of day after 07:10"
    app.task(f"daily & (({a} & x) | (~{a} & ~x))", name="work", execution="main")(lambda: None)
    play(app)
    runs = app.history.records("work", actions="run")
    assert [run.at for run in runs] == [at("07:10")]  # not 12:00, x's recheck


def test_checker_sees_a_task_state_read_both_ways():
    checker = ClockAnalysis({}, "UTC")
    over, _ = checker.bounds(parse("time of day before 08:00 & has succeeded & ~has succeeded"))
    assert checker.first_window(over) is None  # never true: C401
    _, under = checker.bounds(parse("time of day before 08:00 | has failed | ~has failed"))
    assert under == TRUE  # always true: C402


def test_conddsl_check_reports_a_task_state_read_both_ways(tmp_path, capsys):
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(
        textwrap.dedent("""\
            [tasks.extract]
            command = ["true"]

            [tasks.load]
            command = ["true"]
            start_cond = "daily after 07:00 & after task 'extract' & ~after task 'extract'"

            [tasks.report]
            command = ["true"]
            start_cond = "daily after 07:00"
            end_cond = "time of day after 09:00 | has failed today | ~has failed today"
        """),
        encoding="utf-8",
    )
    assert main(["check", str(tasks)]) == 1
    found = [line.split(" ")[:2] for line in capsys.readouterr().out.splitlines()]
    assert [f"{tasks}:6:15:", "C401"] in found  # never true, whatever the history
    assert [f"{tasks}:11:13:", "C402"] in found  # always true, whatever the history


def test_beyond_the_limit_the_bounds_are_the_polarity_bounds():
    names = [f"c{i}" for i in range(EXACT_LIMIT + 1)]
    # Every part read both ways: too many to try every value.
    text = " & ".join(f"({n} | ~{n})" for n in names)
    found = BoundsAnalysis({}).readings(parse(text))
    assert not found.exact
    assert (found.over, found.under) == (TRUE, FALSE)
    assert set(found.cases) == {TRUE, FALSE}


# ---------------------------------------------------------------- soundness

_CUSTOM = ["p", "q", "r"]
# The checker's clock atoms (cron and month days among them), and custom parts.
mixed_conditions = st.recursive(st.sampled_from(_ATOMS + _CUSTOM), _combine, max_leaves=6)
instants = st.datetimes(datetime(2024, 1, 1), datetime(2024, 1, 8)).map(
    lambda d: d.replace(second=0, microsecond=0)
)


def _value_with(text: str, values: dict[str, bool], moment: datetime) -> bool:
    registry = ConditionRegistry()
    for name, value in values.items():
        registry.register(name, lambda value=value: value)
    return Condition(parse(text), timezone="UTC", registry=registry).is_true(moment)


ANALYSES = {
    "runtime": lambda: BoundsAnalysis({}),
    # The checker reads its cron and once-per-period parts as "in the window, and maybe".
    "checker": lambda: ClockAnalysis({}, "UTC"),
}


@pytest.mark.parametrize("kind", ANALYSES)
@settings(max_examples=50, deadline=None)
@given(mixed_conditions, st.lists(st.booleans(), min_size=3, max_size=3), instants)
def test_bounds_hold_every_assignment(kind, text, flags, moment):
    values = dict(zip(_CUSTOM, flags, strict=True))
    found = ANALYSES[kind]().readings(parse(text))
    truth = _value_with(text, values, moment)
    over = Condition(found.over, timezone="UTC").is_true(moment)
    under = Condition(found.under, timezone="UTC").is_true(moment)
    assert over >= truth >= under
    cases = [Condition(case, timezone="UTC").is_true(moment) for case in found.cases]
    assert over == any(cases) and under == all(cases)
    if found.exact and len(found.cases) > 1:
        assert truth in cases  # one case is this assignment's


@settings(max_examples=40, deadline=None)
@given(mixed_conditions, instants)
def test_exact_bounds_are_the_or_and_of_every_assignment(text, moment):
    found = BoundsAnalysis({}).readings(parse(text))
    assert found.exact  # three custom parts at most
    names = [n for n in _CUSTOM if n in found.customs]
    unused = dict.fromkeys(_CUSTOM, False)
    everything = [
        _value_with(text, {**unused, **dict(zip(names, v, strict=True))}, moment)
        for v in itertools.product((True, False), repeat=len(names))
    ]
    assert Condition(found.over, timezone="UTC").is_true(moment) == any(everything)
    assert Condition(found.under, timezone="UTC").is_true(moment) == all(everything)
    cases = {Condition(case, timezone="UTC").is_true(moment) for case in found.cases}
    assert cases == set(everything)


def test_next_change_finds_the_change_of_a_mixed_assignment():
    # With x true and y false the value is "after 10:00": its change at 10:00 must be
    # found, though from 09:30 on the bounds (after 09:30, false) do not change.
    registry = _registry(x=True, y=False)
    text = "(time of day after 10:00 & x) | (time of day after 09:30 & y)"
    condition = Condition(parse(text), registry=registry)
    assert condition.custom_cases.under.ast == FALSE
    assert condition.next_change(MORNING) == datetime(2024, 1, 1, 9, 30)
    assert condition.next_change(datetime(2024, 1, 1, 9, 30)) == datetime(2024, 1, 1, 10, 0)


def test_a_lenient_condition_with_a_name_not_defined_yet_says_so_in_next_change():
    condition = Condition(parse("x & later"), registry=_registry(x=True), lenient=True)
    with pytest.raises(ConditionError, match="unknown condition 'later'"):
        condition.next_change(MORNING)
