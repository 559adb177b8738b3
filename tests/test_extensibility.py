"""Custom conditions, conditions as Python objects, and the builder module."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conddsl import ConditionError, ConditionSyntaxError, compile_condition, conds
from conddsl.custom import ConditionRegistry, CustomConditionError
from conddsl.parse import parse

UTC = timezone.utc


@pytest.fixture
def registry():
    registry = ConditionRegistry()
    state = {"holiday": False, "calls": 0}

    @registry.cond("holiday", recheck=timedelta(minutes=5))
    def holiday():
        state["calls"] += 1
        return state["holiday"]

    @registry.cond("file exists")
    def file_exists(path):
        return path == "/data/x.csv"

    @registry.cond("broken")
    def broken():
        raise RuntimeError("database down")

    registry.state = state
    return registry


def test_custom_condition_combines_with_builtin_ones(registry):
    condition = compile_condition(
        "daily after 08:00 & ~ holiday", registry=registry, timezone="UTC"
    )
    at = datetime(2024, 1, 1, 9)
    assert condition.is_true(at)
    registry.state["holiday"] = True
    assert not condition.is_true(at)


def test_parameterised_custom_condition(registry):
    assert compile_condition("file exists '/data/x.csv'", registry=registry).is_true(datetime.now())
    assert not compile_condition("file exists '/tmp/y'", registry=registry).is_true(datetime.now())
    with pytest.raises(ConditionSyntaxError) as info:
        compile_condition("file exists", registry=registry)
    assert info.value.code == "E122"


def test_unknown_name_suggests_a_registered_one(registry):
    with pytest.raises(ConditionSyntaxError) as info:
        compile_condition("~ holliday", registry=registry)
    assert (info.value.code, info.value.column, info.value.hint) == (
        "E120",
        3,
        "did you mean 'holiday'?",
    )


def test_a_raising_custom_condition_is_reported_with_its_name(registry):
    condition = compile_condition("broken | false", registry=registry)
    with pytest.raises(CustomConditionError, match="'broken' raised RuntimeError: database down"):
        condition.is_true(datetime.now())


def test_phrases_must_not_collide_with_keywords(registry):
    with pytest.raises(ValueError, match="keyword"):
        registry.register("daily", lambda: True)
    with pytest.raises(ValueError):
        registry.register("not a phrase!", lambda: True)


def test_next_change_rechecks_custom_parts_only_while_they_matter(registry):
    condition = compile_condition(
        "time of day between 08:00 and 18:00 & ~holiday", registry=registry, timezone="UTC"
    )
    # Outside the clock window the custom part does not matter: sleep until 08:00,
    # and do not call it on the way.
    registry.state["calls"] = 0
    assert condition.next_change(datetime(2024, 1, 1, 6)) == datetime(2024, 1, 1, 8)
    # Inside the window it decides the value: check it again after its recheck interval.
    assert condition.next_change(datetime(2024, 1, 1, 9)) == datetime(2024, 1, 1, 9, 5)


def test_conditions_combine_with_operators():
    office = compile_condition("time of day between 08:00 and 18:00", timezone="UTC")
    weekend = compile_condition("time of week between Sat and Sun", timezone="UTC")
    combined = office & ~weekend
    assert (
        str(combined) == "time of day between 08:00 and 18:00 & ~time of week between Sat and Sun"
    )
    assert parse(str(combined)) == combined.ast
    assert combined.is_true(datetime(2024, 1, 5, 9))
    assert not combined.is_true(datetime(2024, 1, 6, 9))
    assert str(office | weekend | office) == (
        "time of day between 08:00 and 18:00 | time of week between Sat and Sun"
        " | time of day between 08:00 and 18:00"
    )


def test_combining_conditions_in_different_zones_keeps_each_zone():
    tokyo = compile_condition("time of day after 09:00", timezone="Asia/Tokyo")
    utc = compile_condition("time of day before 12:00", timezone="UTC")
    both = tokyo & utc
    assert (
        str(both) == "(time of day after 09:00 in Asia/Tokyo) & (time of day before 12:00 in UTC)"
    )
    at = datetime(2024, 1, 1, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo, 01:00 in UTC
    assert both.is_true(at)
    assert not both.is_true(datetime(2024, 1, 1, 13, 0, tzinfo=UTC))


BUILT = [
    (lambda: conds.time_of_day.between("08:00", "18:00"), "time of day between 08:00 and 18:00"),
    (lambda: conds.time_of_week.on("Sunday"), "time of week on Sun"),
    (lambda: conds.time_of_month.after("last"), "time of month after last"),
    (lambda: conds.daily, "daily"),
    (lambda: conds.daily.between("22:00", "04:00"), "daily between 22:00 and 04:00"),
    (lambda: conds.weekly.starting("Tue"), "weekly starting Tue"),
    (lambda: conds.every("10 minutes"), "every 10 minutes"),
    (lambda: conds.every(timedelta(hours=1, minutes=30)), "every 1 hour 30 minutes"),
    (lambda: conds.cron("*/5 * * * *"), "cron */5 * * * *"),
    (lambda: conds.after_success("extract"), "after task 'extract'"),
    (lambda: conds.after_fail("it's"), "after task 'it\\'s' failed"),
    (lambda: conds.after_all_success("a", "b"), "after tasks 'a', 'b'"),
    (lambda: conds.after_any_success("a", "b"), "after any tasks 'a', 'b'"),
    (lambda: conds.running("x"), "task 'x' is running"),
    (lambda: conds.running_for_more_than(7200), "running for more than 2 hours"),
    (lambda: conds.succeeded, "has succeeded"),
    (lambda: conds.succeeded("x").today(), "task 'x' has succeeded today"),
    (
        lambda: conds.failed.this_week().between("Mon", "Fri"),
        "has failed this week between Mon and Fri",
    ),
    (lambda: conds.finished.in_past("2 hours"), "has finished in past 2 hours"),
    (
        lambda: conds.env("prod") & conds.param_is("mode", "full"),
        "env 'prod' & param 'mode' is 'full'",
    ),
    (lambda: ~conds.named("holiday") & conds.true, "~holiday & true"),
    (lambda: conds.named("file exists", "/data/x.csv"), "file exists '/data/x.csv'"),
]


@pytest.mark.parametrize(("build", "text"), BUILT, ids=[text for _, text in BUILT])
def test_builders_make_the_same_ast_as_the_strings(build, text):
    built = build()
    assert str(built) == text
    assert parse(text) == built.ast


def test_builders_refuse_values_that_are_not_one_value():
    with pytest.raises(ValueError):
        conds.time_of_day.between("08:00 | true", "10:00")
    with pytest.raises(ValueError):
        conds.cron("* * * * * # x")
    with pytest.raises(ConditionSyntaxError):
        conds.time_of_day.after("25:00")


def test_unresolved_names_fail_clearly_only_when_used():
    condition = conds.daily & ~conds.named("holiday")
    with pytest.raises(ConditionError, match="unknown condition 'holiday'"):
        condition.is_true(datetime(2024, 1, 1, 9))
    resolved = compile_condition(str(condition), rules={"holiday": parse("false")})
    assert resolved.is_true(datetime(2024, 1, 1, 9))


def test_next_change_with_a_plain_and_a_negated_custom_part():
    """Every assignment of custom values counts: 'a & ~b' can be true, so it is rechecked."""
    registry = ConditionRegistry()
    registry.register("a ok", lambda: True, recheck=60)
    registry.register("b ok", lambda: False, recheck=60)
    condition = compile_condition("a ok & ~b ok", registry=registry, timezone="UTC")
    at = datetime(2024, 1, 1)
    assert condition.is_true(at)
    assert condition.next_change(at) == datetime(2024, 1, 1, 0, 1)
