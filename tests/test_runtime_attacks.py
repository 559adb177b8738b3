"""Attacks on the runtime as a careless task author or a hostile local user would make
them (the hostile review of the scheduler split, prepared starts and shared conditions):
each case once broke the scheduler, and holds it to what the unprepared path does."""

from __future__ import annotations

import asyncio
import warnings

from runtime_helpers.scenario import at, finishes, play, virtual

from conddsl.runtime import Scheduler


def test_a_prepared_start_whose_function_cannot_be_called_is_recorded_not_raised():
    # `async def needs(x)` is accepted as a task; calling it without x raises TypeError.
    # Started at the instant, that is a run that "could not start"; prepared 50 ms ahead,
    # the TypeError escaped serve() and the scheduler died with a traceback.
    app = virtual(start="06:59", shut_cond="time of day after 07:30")

    async def needs(x: object) -> None:
        return None

    app.task("time of day after 07:00", name="needs", timeout=60)(needs)
    # It keeps failing as long as its condition holds: stop it after its first failure.
    app.subscribe(lambda recorded: recorded.record.action == "fail" and app.disable("needs"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        play(app)
    assert finishes(app.history) == [("needs", "fail", "07:00", None)]
    (failed,) = app.history.records(actions="fail")
    assert failed.at == at("07:00")
    assert "could not start" in (failed.message or "") and "'x'" in (failed.message or "")
