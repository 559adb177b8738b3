"""Records in causal order: for every task, a run's finishing record precedes the next run's
``run`` record, whatever the executions, outcomes and timings (a property test)."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_helpers.scenario import finishes, play, virtual

from conddsl.history import FINISH_ACTIONS
from conddsl.runtime import Inaction, TaskTerminationException, TerminationFlag

OUTCOMES = ["return", "raise", "inaction", "give_up", "obey", "dawdle"]


def _end(outcome: str) -> None:
    if outcome == "raise":
        raise ValueError("broken")
    if outcome == "inaction":
        raise Inaction("nothing to do")
    if outcome == "give_up":
        raise TaskTerminationException("gave up")


def thread_body(outcome: str, pause: float):
    """A thread task: ``obey`` waits for its flag, ``dawdle`` ignores it for ``pause``."""

    def body(flag=TerminationFlag()):  # noqa: B008
        if outcome == "obey":
            if flag.wait(pause):
                time.sleep(pause / 4)  # tidies up after the flag is set
                raise TaskTerminationException()
        elif outcome == "dawdle":
            time.sleep(pause)
        _end(outcome)

    return body


def async_body(outcome: str, pause: float):
    """An async task: ``obey`` sleeps (cancellable), ``dawdle`` swallows one cancellation."""

    async def body():
        if outcome == "obey":
            await asyncio.sleep(pause)
        elif outcome == "dawdle":
            try:
                await asyncio.sleep(pause)
            except asyncio.CancelledError:
                await asyncio.sleep(pause / 4)  # unwinds slowly, then ends
        _end(outcome)

    return body


def main_body(outcome: str, pause: float):
    """A main task: it holds the scheduler's loop while it works."""

    def body():
        if outcome in ("obey", "dawdle"):
            time.sleep(pause / 4)
        _end(outcome)

    return body


BODIES = {"thread": thread_body, "async": async_body, "main": main_body}

tasks = st.lists(
    st.tuples(
        st.sampled_from(sorted(BODIES)),
        st.sampled_from(OUTCOMES),
        st.sampled_from([0.0, 0.002, 0.01, 0.03]),  # real seconds of work
        st.sampled_from([None, "1 second", "2 minutes", "7 minutes"]),  # timeout
        # (Not "true": a task that starts again the instant it ends holds virtual time still.)
        st.sampled_from(["every 3 minutes", "every 5 minutes", "minutely"]),
    ),
    min_size=1,
    max_size=4,
)


def check_records_in_causal_order(specs, threshold: float) -> None:
    """Serve the tasks ``specs`` until 06:20 (virtual) and check each task's records."""
    app = virtual(
        start="06:00", threshold=threshold, shut_cond="time of day after 06:20", kill_grace=0.05
    )
    for index, (execution, outcome, pause, timeout, start) in enumerate(specs):
        timeout = None if execution == "main" else timeout  # main runs cannot be terminated
        app.task(start, name=f"t{index}", execution=execution, timeout=timeout)(
            BODIES[execution](outcome, pause)
        )
    play(app, limit=60)
    finishes(app.history)  # every run has exactly one finishing record
    for index in range(len(specs)):
        records = app.history.records(f"t{index}")
        actions = ["run" if rec.action == "run" else "end" for rec in records]
        assert actions == ["run", "end"] * (len(records) // 2), records
        stamps = [rec.at for rec in records]
        assert stamps == sorted(stamps), records
        for rec in records:
            assert rec.action == "run" or rec.action in FINISH_ACTIONS


# The examples wait on real seconds (bodies that work or dawdle, kill graces), ~70 ms each
# mostly idle: 30 a run (60 took 4-7 s), 200 in the long twin.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks, st.sampled_from([0.0, 0.001]))
def test_a_finishing_record_precedes_the_next_run_record(specs, threshold):
    check_records_in_causal_order(specs, threshold)


@pytest.mark.long
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks, st.sampled_from([0.0, 0.001]))
def test_a_finishing_record_precedes_the_next_run_record_long(specs, threshold):
    """:func:`test_a_finishing_record_precedes_the_next_run_record` with 200 examples."""
    check_records_in_causal_order(specs, threshold)
