"""The seed page's termination rules, for async, thread and process tasks, on a virtual clock.

Each task starts at 07:00 (``time of day between 07:00 and 07:01``) and runs until
it is ended; the records must say when and why.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from runtime_helpers import FOREVER
from runtime_helpers.scenario import at, finishes, play, until, virtual

from conddsl.runtime import Scheduler, SchedulerError

START = "time of day between 07:00 and 07:01"
EXECUTIONS = ["async", "thread", "process"]


async def force_at_0730(app: Scheduler) -> None:
    await until(app, "07:30")
    app.shut_down(force=True)


async def twice(app: Scheduler) -> None:
    await until(app, "07:30")
    app.shut_down()
    await until(app, "07:45")
    app.shut_down()


async def once_at_0730(app: Scheduler) -> None:
    await until(app, "07:30")
    app.shut_down()


# (id, scheduler config, task options, driver, expected (action, time, reason))
SCENARIOS = [
    (
        "session timeout",
        {"timeout": "1 hour", "shut_cond": "time of day after 09:00"},
        {},
        None,
        ("terminate", "08:00", "timeout"),
    ),
    (
        "task timeout overrides the session's",
        {"timeout": "1 hour", "shut_cond": "time of day after 09:00"},
        {"timeout": "10 minutes"},
        None,
        ("terminate", "07:10", "timeout"),
    ),
    (
        "timeout never",
        {"timeout": 60, "shut_cond": "time of day after 10:00", "instant_shutdown": True},
        {"timeout": "never"},
        None,
        ("terminate", "10:00", "shutdown"),
    ),
    (
        "end condition (the seed's 08:00-18:00)",
        {"shut_cond": "time of day after 09:00"},
        {"end_cond": "time of day between 08:00 and 18:00"},
        None,
        ("terminate", "08:00", "end_cond"),
    ),
    (
        "end condition while waiting for a graceful shutdown",
        {"shut_cond": "time of day after 07:30"},
        {"end_cond": "time of day after 08:00"},
        None,
        ("terminate", "08:00", "end_cond"),
    ),
    (
        "timeout while waiting for a graceful shutdown",
        {"timeout": "1 hour"},
        {},
        once_at_0730,
        ("terminate", "08:00", "timeout"),
    ),
    (
        "instant shutdown",
        {"shut_cond": "time of day after 07:30", "instant_shutdown": True},
        {},
        None,
        ("terminate", "07:30", "shutdown"),
    ),
    (
        "shut_down(force=True)",
        {},
        {},
        force_at_0730,
        ("terminate", "07:30", "forced"),
    ),
    (
        "shut_down() twice",
        {},
        {},
        twice,
        ("terminate", "07:45", "forced"),
    ),
]


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize(
    "config, options, driver, expected", [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS]
)
def test_termination(execution, config, options, driver, expected):
    app = virtual(**config)
    app.task(START, name="work", execution=execution, **options)(FOREVER[execution])
    play(app, driver)
    assert finishes(app.history) == [("work", *expected)]
    assert app.state == "done"


class Exploding:
    """A condition that is false, and raises from ``at`` on."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def is_true(self, at: datetime, **context: object) -> bool:
        if at >= self.at:
            raise RuntimeError("sensor offline")
        return False

    def next_change(self, after: datetime, **context: object) -> datetime | None:
        return self.at if after < self.at else None

    def __str__(self) -> str:
        return "exploding"


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_fatal_error_terminates_everything_and_is_raised(execution):
    app = virtual()
    app.task(START, name="work", execution=execution, end_cond=Exploding(at("07:30")))(
        FOREVER[execution]
    )
    with pytest.raises(SchedulerError, match="sensor offline"):
        play(app)
    assert finishes(app.history) == [("work", "terminate", "07:30", "shutdown")]
    (record,) = app.history.records(actions="terminate")
    assert "fatal error" in record.message and "sensor offline" in record.message
    assert isinstance(app.fatal_error.__cause__, RuntimeError)


def test_fatal_error_in_a_start_condition():
    app = virtual()
    app.task(START, name="work", execution="async")(FOREVER["async"])
    app.task(Exploding(at("07:30")), name="broken", execution="async")(FOREVER["async"])
    with pytest.raises(SchedulerError, match="start condition of task 'broken'"):
        play(app)
    assert finishes(app.history) == [("work", "terminate", "07:30", "shutdown")]


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_silenced_condition_errors(execution):
    """silence_cond_check: a raising start condition is false, a raising end condition true."""
    app = virtual(silence_cond_check=True, shut_cond="time of day after 09:00")
    app.task(START, name="work", execution=execution, end_cond=Exploding(at("07:30")))(
        FOREVER[execution]
    )
    app.task(Exploding(at("06:30")), name="never", execution=execution)(FOREVER[execution])
    play(app)
    assert finishes(app.history) == [("work", "terminate", "07:30", "end_cond")]
    assert app.fatal_error is None


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_multilaunch_runs_are_terminated_with_their_own_run_ids(execution):
    # A run starts in the first minute of every hour and times out after 150 minutes:
    # at 09:00 three runs are alive at once.
    app = virtual(start="06:30", shut_cond="time of day after 09:05")
    app.task(
        "time of hour between 00:00 and 01:00",
        name="work",
        execution=execution,
        multilaunch=True,
        timeout="150 minutes",
    )(FOREVER[execution])
    play(app)
    assert finishes(app.history) == [
        ("work", "terminate", "09:30", "timeout"),
        ("work", "terminate", "10:30", "timeout"),
        ("work", "terminate", "11:30", "timeout"),
    ]
    records = app.history.records()
    started = {rec.run_id: rec.at for rec in records if rec.action == "run"}
    assert sorted(started.values()) == [at("07:00"), at("08:00"), at("09:00")]
    for rec in records:
        if rec.action == "terminate":
            assert rec.at - started[rec.run_id] == at("09:30") - at("07:00")


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_without_multilaunch_a_running_task_is_not_started_again(execution):
    app = virtual(start="06:30", shut_cond="time of day after 09:05")
    app.task(
        "time of hour between 00:00 and 01:00",
        name="work",
        execution=execution,
        timeout="150 minutes",
    )(FOREVER[execution])
    play(app)
    assert finishes(app.history) == [("work", "terminate", "09:30", "timeout")]


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_graceful_shutdown_starts_nothing_new(execution):
    app = virtual(shut_cond="time of day after 07:30")
    app.task(START, name="work", execution=execution, end_cond="time of day after 08:00")(
        FOREVER[execution]
    )
    app.task("time of day after 07:45", name="late", execution=execution)(FOREVER[execution])
    play(app)
    assert finishes(app.history) == [("work", "terminate", "08:00", "end_cond")]


def test_a_task_is_not_started_while_its_end_condition_holds():
    app = virtual(shut_cond="time of day after 09:00", instant_shutdown=True)
    app.task(
        "time of day after 07:00",
        name="work",
        execution="async",
        end_cond="time of day between 06:00 and 08:00",
    )(FOREVER["async"])
    play(app)
    # Not at 07:00, where it would be ended at once, but when the end condition lets go.
    assert [rec.at for rec in app.history.records(actions="run")] == [at("08:00")]
    assert finishes(app.history) == [("work", "terminate", "09:00", "shutdown")]
