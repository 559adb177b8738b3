"""Memory per waiting task (issue 21): what registering a task with its own clock window
keeps, measured with tracemalloc, and that the memory-saving shapes answer as before."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import datetime, timedelta

from conddsl import compile_condition
from conddsl.compile import _TABLE_AFTER
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
