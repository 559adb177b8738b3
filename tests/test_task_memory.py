"""Memory per waiting task (issue 21): what registering a task with its own clock window
keeps, measured with tracemalloc, and that the memory-saving shapes answer as before."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import datetime, timedelta, timezone

import pytest

from conddsl import compile_condition
from conddsl.compile import _TABLE_AFTER, Condition
from conddsl.parse import parse
from conddsl.reads import NOTHING, reads_of
from conddsl.runtime import Scheduler

# Measured ~1,480 B a task at this size after issue 21 (1,330 B at 10,000 tasks, where
# dicts grow less lumpily; 2,180 B before): the bound leaves room for interpreter
# differences, not for the ~370 B closure or the per-task dicts coming back.
MAX_BYTES_PER_TASK = 1_800


def _window(i: int) -> str:
    start = datetime(2026, 1, 1, 1) + timedelta(seconds=i)
    end = start + timedelta(hours=1)
    return f"time of day between {start:%H:%M:%S} and {end:%H:%M:%S}"


def _body() -> None:
    """Never runs: the windows stay closed, nothing is started."""


def test_a_waiting_task_with_its_own_window_keeps_little_memory():
    app = Scheduler({"timezone": "UTC", "timeout": "never"})
    for i in range(200):  # first uses (lazy imports, caches) happen before the baseline
        app.task(_window(i), name=f"warm{i}")(_body)
    count = 1_500
    texts = [_window(1_000 + i) for i in range(count)]
    names = [f"t{i}" for i in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for text, name in zip(texts, names, strict=True):
            app.task(text, name=name)(_body)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown / count < MAX_BYTES_PER_TASK, f"{grown / count:.0f} bytes a task"


def test_a_clock_condition_answers_the_same_before_and_after_its_table():
    cond = compile_condition("time of day between 08:00 and 18:30", timezone="UTC")
    instants = [datetime(2026, 3, 1) + timedelta(minutes=17 * i) for i in range(4 * _TABLE_AFTER)]
    expected = [8 <= at.hour < 18 or (at.hour == 18 and at.minute < 30) for at in instants]
    assert [cond.is_true(at) for at in instants] == expected


def test_conditions_without_rules_share_no_state_through_their_empty_rules():
    first = compile_condition("time of day after 10:00", timezone="UTC")
    second = compile_condition("time of day before 09:00", timezone="UTC")
    assert first.rules == second.rules == {}
    both = first | second
    assert both.is_true(datetime(2026, 1, 1, 11)) and both.is_true(datetime(2026, 1, 1, 8))
    assert not both.is_true(datetime(2026, 1, 1, 9, 30))
    assert first.rules == {}


# Measured ~990 B a task (registered, then looked at once and waiting) once a plain
# window kept its two ends alone (no AST, no ClockWindow, no memo entry per task) and
# Task and Condition lost a field; ~1,910 B before. The bound leaves room for interpreter
# differences, not for an AST (~250 B) or a window (~280 B) per task coming back.
MAX_BYTES_PER_WAITING_TASK = 1_150


def test_a_waiting_task_that_was_looked_at_keeps_little_memory():
    """Registered and evaluated once (its window found closed, its next change set): what
    stays per task, on the virtual clock (no sleeping)."""
    from runtime_helpers.scenario import play, until, virtual

    app = virtual("06:00")
    for i in range(200):  # first uses (lazy imports, caches) happen before the baseline
        app.task(_window(i), name=f"warm{i}")(_body)
    count = 2_000
    texts = [_window(3_000 + i) for i in range(count)]  # 01:50 to 03:23 plus an hour
    names = [f"t{i}" for i in range(count)]
    grown: list[int] = []

    async def measure(app: Scheduler) -> None:
        await until(app, "06:01")  # every task looked at: the virtual clock jumps when idle
        gc.collect()
        grown.append(tracemalloc.get_traced_memory()[0] - before)
        app.shut_down()

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for text, name in zip(texts, names, strict=True):
            app.task(text, name=name)(_body)
        play(app, measure)
    finally:
        tracemalloc.stop()
    assert grown[0] / count < MAX_BYTES_PER_WAITING_TASK, f"{grown[0] / count:.0f} bytes a task"


PLAIN_TEXTS = [
    "time of day between 08:00 and 18:30",
    "time of day between 22:00 and 04:00",  # wraps around midnight
    "time of day between 10:00 and 10:00",  # equal ends: the whole day
    "time of day between 22:00 and 24:00",
    "time of day between 00:00 and 00:00:00.5",
    "time of hour between 15:00 and 45:30",
    "time of minute between 50 and 10",
]


@pytest.mark.parametrize("text", PLAIN_TEXTS)
def test_a_plain_window_answers_as_the_window_it_stands_for(text, monkeypatch):
    """The compact evaluator of ``time of <unit> between A and B`` (two offsets, its window
    found again when asked) answers is_true, windows and next_change as the general one."""
    import conddsl.compile as compile_module

    plain = Condition(parse(text), timezone="Europe/Helsinki")
    assert isinstance(plain._evaluator, compile_module._PlainClock)
    monkeypatch.setattr(compile_module, "plain_ends", lambda unit, node: None)
    general = Condition(parse(text), timezone="Europe/Helsinki")
    assert not isinstance(general._evaluator, compile_module._PlainClock)
    start = datetime(2026, 3, 28, 21, 59, 59, 750_000)  # over the spring DST gap
    instants = [start + timedelta(seconds=97.25 * i) for i in range(4 * _TABLE_AFTER)]
    instants += [at.replace(tzinfo=timezone.utc) for at in instants[::3]]
    assert [plain.is_true(at) for at in instants] == [general.is_true(at) for at in instants]
    assert [plain.next_change(at) for at in instants] == [
        general.next_change(at) for at in instants
    ]
    end = start + timedelta(days=2)
    assert list(plain.windows(start, end)) == list(general.windows(start, end))


def test_a_clock_condition_from_text_keeps_the_text_and_gives_its_ast_back():
    """A pure clock condition compiled from text keeps no AST: ``ast`` parses the text
    again, and everything public reads as before."""
    text = "time of day between 08:00:00 and 18:30  # office"
    cond = compile_condition(text, timezone="UTC")
    assert cond._ast == text  # the text alone is kept
    assert cond.ast == parse(text)
    assert str(cond) == "time of day between 08:00 and 18:30"
    assert repr(cond) == "Condition('time of day between 08:00 and 18:30')"
    built = Condition(parse(text), timezone="UTC")  # from a node: the node is kept
    assert built._ast is not text and built.ast == cond.ast
    assert cond == built and hash(cond) == hash(built)
    assert cond.reads == reads_of(parse(text), {}, None) == NOTHING
    assert str(~cond & compile_condition("daily", timezone="UTC")) == (
        "~time of day between 08:00 and 18:30 & daily"
    )


def test_a_text_naming_conditions_is_parsed_once_for_the_tasks_that_share_it(monkeypatch):
    # Such a text is not in the compile cache (its names are the scheduler's): it was
    # parsed again at each registration (~55 µs a task) once parse's cache was left out.
    from conddsl.runtime import customs

    texts: list[str] = []
    parse_fresh = customs.parse_fresh

    def counting(text: str):
        texts.append(text)
        return parse_fresh(text)

    monkeypatch.setattr(customs, "parse_fresh", counting)
    app = Scheduler({"timezone": "UTC"}, rules={"office": "time of day between 08:00 and 18:00"})
    shared = "office & time of week between Mon and Fri"
    for number in range(3):
        app.task(shared, name=f"t{number}")(_body)
    assert texts == [shared]
    noon, night = (datetime(2024, 1, 1, hour, tzinfo=timezone.utc) for hour in (12, 20))
    for number in range(3):
        start = app.tasks[f"t{number}"].start
        assert start.is_true(noon) and not start.is_true(night)  # a Monday
