"""The scheduler's loop: outcomes, record-driven starts, idle cost, shutdown paths, signals."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import runtime_helpers
from runtime_helpers import FOREVER, async_ignoring_cancel, thread_ignoring_flag
from runtime_helpers.scenario import (
    AfterFinish,
    Once,
    at,
    finishes,
    play,
    records_appear,
    until,
    virtual,
)

from conddsl.compile import compile_condition
from conddsl.history import HistoryError, MemoryHistory, SQLiteHistory
from conddsl.runtime import (
    Inaction,
    Scheduler,
    SchedulerError,
    TaskTerminationException,
    TerminationFlag,
    install_signal_handlers,
)


@pytest.fixture
def release():
    """Lets go of task bodies that ignore termination at the end of the test."""
    runtime_helpers.RELEASE.clear()
    yield runtime_helpers.RELEASE
    runtime_helpers.RELEASE.set()


def _history_conditions_ready() -> bool:
    try:
        compile_condition("every 1 hour").is_true(at("07:00"), task="x", history=MemoryHistory())
    except NotImplementedError:
        return False
    return True


# Task-state conditions (every, daily, after task) are evaluated with a history by the
# compile work in progress: these tests run as soon as it lands.
needs_history = pytest.mark.skipif(
    not _history_conditions_ready(), reason="task-state conditions need the compile side"
)


# ---------------------------------------------------------------- outcomes


def succeed(flag=TerminationFlag()):  # noqa: B008
    pass


def fail(flag=TerminationFlag()):  # noqa: B008
    raise ValueError("disk on fire")


def inact(flag=TerminationFlag()):  # noqa: B008
    raise Inaction("nothing new")


def give_up(flag=TerminationFlag()):  # noqa: B008
    raise TaskTerminationException("gave up")


async def async_succeed(flag=TerminationFlag()):  # noqa: B008
    pass


async def async_fail(flag=TerminationFlag()):  # noqa: B008
    raise ValueError("disk on fire")


async def async_inact(flag=TerminationFlag()):  # noqa: B008
    raise Inaction("nothing new")


async def async_give_up(flag=TerminationFlag()):  # noqa: B008
    raise TaskTerminationException("gave up")


OUTCOMES = [
    (succeed, async_succeed, "success", None, None),
    (fail, async_fail, "fail", None, "disk on fire"),
    (inact, async_inact, "inaction", None, "nothing new"),
    (give_up, async_give_up, "terminate", "task", "gave up"),
]


@pytest.mark.parametrize("execution", ["main", "thread", "async"])
@pytest.mark.parametrize(
    "plain, coroutine, action, reason, message", OUTCOMES, ids=[o[2] for o in OUTCOMES]
)
def test_outcomes(execution, plain, coroutine, action, reason, message):
    app = virtual(shut_cond="time of day after 07:00", threshold=0.02)
    func = coroutine if execution == "async" else plain
    app.task(Once(), name="once", execution=execution)(func)
    play(app)
    (record,) = app.history.records(actions=action)
    assert (record.reason, record.message) == (reason, message)
    finishes(app.history)


def test_each_run_gets_its_own_flag():
    seen: list[TerminationFlag] = []

    def keep(flag=TerminationFlag()):  # noqa: B008
        seen.append(flag)

    default = keep.__defaults__[0]
    app = virtual(shut_cond="time of day after 07:00", threshold=0.02)
    app.task(Once(), name="first", execution="main")(keep)
    app.task(AfterFinish("first"), name="second", execution="main")(keep)
    play(app)
    assert len(seen) == 2 and seen[0] is not seen[1] and default not in seen


def test_a_coroutine_cancelled_by_someone_else_fails():
    async def cancel_it(app: Scheduler) -> None:
        await until(app, "07:10")
        (run,) = app.running_runs
        run.handle.cancel()

    app = virtual(shut_cond="time of day after 07:20")
    app.task("time of day between 07:00 and 07:01", name="work")(FOREVER["async"])
    play(app, cancel_it)
    assert finishes(app.history) == [("work", "fail", "07:10", None)]
    (record,) = app.history.records(actions="fail")
    assert record.message == "cancelled from outside the scheduler"


def test_a_coroutine_swallowing_cancellation_is_abandoned_after_the_grace():
    app = virtual(shut_cond="time of day after 07:30", kill_grace=0.1)
    app.task("time of day between 07:00 and 07:01", name="stubborn", timeout="10 minutes")(
        async_ignoring_cancel
    )
    started = time.monotonic()
    play(app)
    assert time.monotonic() - started >= 0.1
    # Time stood still while it was given its grace: the record is at the timeout.
    assert finishes(app.history) == [("stubborn", "terminate", "07:10", "timeout")]
    (record,) = app.history.records(actions="terminate")
    assert record.message.endswith("ignored the cancellation; abandoned")


def test_a_thread_ignoring_its_flag_is_terminating_until_abandoned_at_shutdown(release):
    states = []

    async def watch(app: Scheduler) -> None:
        await until(app, "07:20")
        states.append((app.task_state("deaf"), [run.state for run in app.running_runs]))

    app = virtual(shut_cond="time of day after 07:30", kill_grace=0.2)
    app.task("time of day between 07:00 and 07:01", name="deaf", timeout="10 minutes")(
        thread_ignoring_flag
    )
    started = time.monotonic()
    play(app, watch)
    waited = time.monotonic() - started
    # Alive (terminating) after its timeout; recorded when abandoned at shutdown, never as
    # a success, with a message saying it still runs; the scheduler exits after kill_grace.
    assert states == [("terminating", ["terminating"])]
    assert finishes(app.history) == [("deaf", "terminate", "07:30", "timeout")]
    (record,) = app.history.records(actions="terminate")
    assert "still running" in record.message and "abandoned" in record.message
    assert 0.2 <= waited < 0.4 + 0.5, waited
    deaf = [t for t in threading.enumerate() if t.name == "conddsl:deaf"]
    assert deaf and deaf[0].daemon and deaf[0].is_alive()
    release.set()
    deaf[0].join(2)


def _sleeps_until_released():
    runtime_helpers.RELEASE.wait(10)


def test_a_thread_task_past_its_timeout_is_not_started_twice(release):
    """The issue's repro: daily, timeout 1 second, a body that sleeps 10 s ignoring its flag."""
    app = virtual(shut_cond="scheduler has run over 5 seconds", kill_grace=0.2)
    app.task("daily", name="n", timeout="1 second")(_sleeps_until_released)
    play(app)
    records = [(rec.action, rec.reason) for rec in app.history.records()]
    assert records == [("run", None), ("terminate", "timeout")]
    (record,) = app.history.records(actions="terminate")
    assert record.at >= at("06:00:05")  # written when abandoned, not when it was asked to stop
    assert "still running" in record.message


def test_a_thread_obeying_its_flag_is_recorded_when_it_returns():
    ended = []

    def slow_to_stop(flag=TerminationFlag()):  # noqa: B008
        flag.wait(5)
        time.sleep(0.05)  # cleans up after the flag is set
        ended.append(time.monotonic())
        raise TaskTerminationException()

    recorded = []

    class Spy(MemoryHistory):
        def record(self, task, action, **kwargs):
            if action == "terminate":
                recorded.append(time.monotonic())
            return super().record(task, action, **kwargs)

    app = virtual(shut_cond="time of day after 07:30", kill_grace=2, history=Spy())
    app.task("time of day between 07:00 and 07:01", name="tidy", timeout="10 minutes")(slow_to_stop)
    play(app)
    assert finishes(app.history) == [("tidy", "terminate", "07:10", "timeout")]
    assert ended and recorded and recorded[0] >= ended[0]


def test_forced_shutdown_does_not_wait_for_a_main_task():
    calls = []

    def quick():
        calls.append(1)

    async def force(app: Scheduler) -> None:
        await until(app, "07:30")
        app.shut_down(force=True)

    app = virtual()
    app.task("time of day between 07:00 and 07:01", name="worker", execution="async")(
        FOREVER["async"]
    )
    app.task(AfterFinish("worker"), name="never", execution="main")(quick)
    play(app, force)
    assert finishes(app.history) == [("worker", "terminate", "07:30", "forced")]
    assert calls == []  # nothing starts once a shutdown is under way


# ---------------------------------------------------------------- what wakes the loop


def test_a_record_wakes_the_tasks_that_read_it():
    app = virtual(shut_cond="time of day after 09:00")
    app.task("time of day between 07:00 and 07:01", name="a", timeout="15 minutes")(
        FOREVER["async"]
    )
    app.task(AfterFinish("a"), name="b", timeout="5 minutes")(FOREVER["async"])
    play(app)
    assert finishes(app.history) == [
        ("a", "terminate", "07:15", "timeout"),
        ("b", "terminate", "07:20", "timeout"),
    ]


def test_a_task_added_while_running_is_looked_at():
    async def add(app: Scheduler) -> None:
        await until(app, "07:30")
        app.task("time of day after 07:00", name="late", timeout="5 minutes")(FOREVER["async"])

    app = virtual(shut_cond="time of day after 07:35")
    play(app, add)
    assert finishes(app.history) == [("late", "terminate", "07:35", "timeout")]


def test_disabled_tasks_never_start():
    app = virtual(shut_cond="time of day after 09:00")
    app.task("true", name="off", disabled=True)(FOREVER["async"])
    play(app)
    assert app.history.records() == []


class Counting:
    """A clock condition that counts how often the scheduler asks it."""

    def __init__(self, text: str) -> None:
        self.cond = compile_condition(text, timezone="UTC")
        self.ast = self.cond.ast
        self.calls = 0

    def is_true(self, at: datetime, **context: object) -> bool:
        self.calls += 1
        return self.cond.is_true(at)

    def next_change(self, after: datetime, **context: object) -> datetime | None:
        self.calls += 1
        return self.cond.next_change(after)


def test_idle_cost_does_not_grow_with_the_number_of_tasks():
    """1,000 idle tasks over a day: a few wake-ups, and each task is asked once or twice."""
    app = virtual(start="00:00", shut_cond="time of day after 22:00")
    conds = [Counting("time of day between 23:00 and 23:01") for _ in range(500)]
    conds += [Counting("false") for _ in range(500)]
    for number, cond in enumerate(conds):
        app.task(cond, name=f"t{number}")(FOREVER["async"])
    started = time.monotonic()
    play(app)
    assert app.history.records() == []
    assert app.session.cycles <= 3
    assert max(cond.calls for cond in conds) <= 2  # one is_true and one next_change
    assert time.monotonic() - started < 20  # a hang guard; the counts above are the test


def test_max_process_count_queues_starts():
    app = virtual(max_process_count=1, shut_cond="time of day after 07:25")
    for name in "abc":
        app.task("time of day after 07:00", name=name, execution="process", timeout="10 min")(
            FOREVER["process"]
        )
    play(app)
    assert finishes(app.history) == [
        ("a", "terminate", "07:10", "timeout"),
        ("b", "terminate", "07:20", "timeout"),
        ("c", "terminate", "07:30", "timeout"),
    ]


# ---------------------------------------------------------------- history-based conditions


@needs_history
def test_daily_runs_once_a_day_for_three_days():
    async def quick():
        pass

    app = virtual(start="00:00", shut_cond="time of week on Thu")
    app.task("daily between 07:00 and 08:00", name="report")(quick)
    play(app)
    runs = app.history.records(actions="run")
    assert [rec.at for rec in runs] == [at("07:00", day) for day in (1, 2, 3)]
    finishes(app.history)


@needs_history
def test_every_with_multilaunch():
    app = virtual(start="07:00", shut_cond="time of day after 07:25")
    app.task("every 10 minutes", name="poll", multilaunch=True, timeout="25 minutes")(
        FOREVER["async"]
    )
    play(app)
    runs = app.history.records(actions="run")
    assert [rec.at.strftime("%H:%M") for rec in runs] == ["07:00", "07:10", "07:20"]
    ends = {rec.run_id: rec.at for rec in app.history.records(actions="terminate")}
    assert all(ends[rec.run_id] - rec.at == timedelta(minutes=25) for rec in runs)
    assert finishes(app.history)


@needs_history
def test_after_task_starts_right_after_the_finish():
    async def quick():
        pass

    app = virtual(shut_cond="time of day after 07:30")

    @app.task("time of day between 07:00 and 07:01", name="a")
    async def five_minutes():
        await app.clock.sleep(300)

    app.task("after task 'a'", name="b")(quick)
    play(app)
    assert [(rec.task, rec.at) for rec in app.history.records(actions="run")] == [
        ("a", at("07:00")),
        ("b", at("07:05")),
    ]


# ---------------------------------------------------------------- starting and stopping


def test_open_runs_of_a_dead_scheduler_are_marked_crashed(tmp_path):
    path = tmp_path / "runs.db"
    with SQLiteHistory(path) as history:
        history.record("backup", "run", at=at("05:00"), run_id="r1")
    app = virtual(history=str(path), shut_cond="time of day after 06:00")
    play(app)
    (crash,) = app.history.records(actions="crash")
    assert (crash.task, crash.run_id, crash.at) == ("backup", "r1", at("06:00"))
    app.history.close()


def test_shut_down_before_serving_stops_at_once():
    app = virtual()
    app.task("true", name="never")(FOREVER["async"])
    app.shut_down()
    play(app)
    assert app.history.records() == [] and app.state == "done"


def test_a_scheduler_serves_once():
    app = virtual()
    app.shut_down()
    play(app)
    with pytest.raises(RuntimeError, match="runs once"):
        play(app)


def test_run_inside_a_running_loop_is_refused():
    async def inside():
        Scheduler().run()

    with pytest.raises(RuntimeError, match="await scheduler.serve"):
        asyncio.run(inside())


def test_run_blocks_until_shut_down():
    app = Scheduler({"shut_cond": "true"})
    app.run()
    assert app.state == "done"


def test_signals_first_graceful_then_forced():
    async def interrupt(app: Scheduler) -> None:
        await records_appear(app, "run")
        os.kill(os.getpid(), signal.SIGINT)
        while app.state != "graceful":
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.06)  # closer, it would count as the same interrupt
        os.kill(os.getpid(), signal.SIGTERM)

    app = Scheduler({"kill_grace": 0.2})
    app.task(Once(), name="work")(FOREVER["async"])
    # What was there before (default_int_handler, or SIG_IGN in a process started in the
    # background by a non-interactive shell) is what restore() puts back.
    before = signal.getsignal(signal.SIGINT)
    restore = install_signal_handlers(app)
    try:
        play(app, interrupt)
    finally:
        restore()
    assert signal.getsignal(signal.SIGINT) is before
    (record,) = app.history.records(actions="terminate")
    assert (record.reason, record.message) == (
        "forced",
        "a second interrupt (SIGTERM) forced the shutdown",
    )
    assert app.stopped_by == ("forced", "a second interrupt (SIGTERM) forced the shutdown")


def _interrupted(app: Scheduler, interrupt) -> io.StringIO:
    """Play ``app``, one long task ``work``, with the signal handlers and ``interrupt``
    beside it; what the handlers said."""
    said = io.StringIO()
    app.task(Once(), name="work")(FOREVER["async"])
    restore = install_signal_handlers(app, out=said)
    try:
        play(app, interrupt)
    finally:
        restore()
    return said


def test_a_signal_repeated_at_once_is_one_interrupt():
    """GNU `timeout -s INT` signals the process and its group: the same interrupt, twice."""

    async def interrupt(app: Scheduler) -> None:
        await records_appear(app, "run")
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0.3)
        assert app.state == "graceful"
        app.shut_down(force=True)

    app = Scheduler({"kill_grace": 0.2})
    said = _interrupted(app, interrupt)
    assert said.getvalue() == (
        "conddsl: SIGINT: shutting down gracefully, waiting for 1 run to end;"
        " interrupt again to force\n"
    )
    assert app.stopped_by == ("forced", "shut_down(force=True) was called")


def test_a_first_interrupt_during_a_graceful_shutdown_is_not_called_a_second_one():
    """The shut condition began a graceful shutdown (a run holds it); the first SIGTERM
    (from `timeout`, say) forces it, and says so without speaking of a second interrupt."""

    async def interrupt(app: Scheduler) -> None:
        await records_appear(app, "run")
        while app.state != "graceful":
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    app = Scheduler({"kill_grace": 0.2, "shut_cond": "task 'work' has started"})
    said = _interrupted(app, interrupt)
    assert said.getvalue() == (
        "conddsl: SIGTERM during the graceful shutdown: forcing it, terminating 1 run"
        " (kill_grace 0.2 s)\n"
    )
    why = "an interrupt (SIGTERM) during the graceful shutdown forced it"
    assert app.stopped_by == ("forced", why)
    (end,) = app.history.records("work", actions="terminate")
    assert (end.reason, end.message) == ("forced", why)


def test_times_are_aware_and_in_utc():
    app = Scheduler({"shut_cond": "true"})
    app.run()
    assert app.session.started_at.tzinfo is timezone.utc


def test_session_forms_read_the_running_scheduler():
    app = virtual(env="prod", params={"region": "eu"}, shut_cond="time of day after 09:00")
    app.task(
        "scheduler has run over 1 hour & env 'prod' & param 'region' is 'eu'",
        name="uptime",
        timeout="5 minutes",
    )(FOREVER["async"])
    app.task("env 'test'", name="elsewhere")(FOREVER["async"])
    play(app)
    runs = app.history.records(actions="run")
    assert {rec.task for rec in runs} == {"uptime"}
    assert runs[0].at == at("07:00") + timedelta(microseconds=1)  # run *over* 1 hour
    assert len(runs) == len(finishes(app.history)) == 24  # started again after each timeout


def test_tasks_and_shutdowns_from_another_thread():
    app = Scheduler({"kill_grace": 0.2, "timeout": "never"})

    def other() -> None:
        while app.state != "running":
            time.sleep(0.002)
        app.task(Once(), name="late", execution="async", timeout=0.05)(FOREVER["async"])
        while not app.history.records(actions="terminate"):
            time.sleep(0.002)
        app.shut_down()

    helper = threading.Thread(target=other)
    helper.start()
    app.run()
    helper.join()
    (record,) = app.history.records(actions="terminate")
    assert (record.task, record.reason) == ("late", "timeout")


class FailingOnce(MemoryHistory):
    """Keeps the second ``run`` record but reports it failed, as SQLiteHistory keeps a
    record pending when the disk is full."""

    def __init__(self) -> None:
        super().__init__()
        self.runs = 0

    def record(self, task, action, **kwargs):
        found = super().record(task, action, **kwargs)
        if action == "run":
            self.runs += 1
            if self.runs == 2:
                raise HistoryError("history file runs.db: could not write: the disk is full")
        return found


class BrokenOnSecondRun(FailingOnce):
    """A history of the caller's whose record raises something else than HistoryError."""

    def record(self, task, action, **kwargs):
        if action == "run" and self.runs == 1:
            self.runs += 1
            raise RuntimeError("the history's own bug")
        if action == "run":
            self.runs += 1
        return MemoryHistory.record(self, task, action, **kwargs)


def test_any_exception_from_the_history_is_a_fatal_error_not_a_hang():
    app = virtual(history=BrokenOnSecondRun())
    app.task("time of day between 07:00 and 07:01", name="first")(FOREVER["async"])
    app.task("time of day between 07:30 and 07:31", name="second")(FOREVER["thread"])
    with pytest.raises(SchedulerError, match="the history's own bug"):
        play(app)
    assert isinstance(app.fatal_error, RuntimeError)
    first = app.history.records("first")
    assert [(r.action, r.reason) for r in first] == [("run", None), ("terminate", "shutdown")]
    # Its run record never got in: it was not started, and says so.
    (second,) = app.history.records("second")
    assert second.action == "terminate" and second.message.endswith("not started")
    assert not [t for t in threading.enumerate() if t.name == "conddsl:second"]


def test_a_history_that_fails_is_a_fatal_error():
    app = virtual(history=FailingOnce())
    app.task("time of day between 07:00 and 07:01", name="first")(FOREVER["async"])
    app.task("time of day between 07:30 and 07:31", name="second")(FOREVER["thread"])
    with pytest.raises(SchedulerError, match="the disk is full"):
        play(app)
    assert finishes(app.history) == [
        ("first", "terminate", "07:30", "shutdown"),
        ("second", "terminate", "07:30", "shutdown"),
    ]
    (second,) = app.history.records("second", actions="terminate")
    assert second.message.endswith("not started")
    assert not [t for t in threading.enumerate() if t.name == "conddsl:second"]


def test_a_multilaunch_task_whose_threads_ignore_their_flag_does_not_pile_up(release):
    from conddsl.runtime.runtable import MAX_DYING

    app = virtual(shut_cond="time of day after 09:00", kill_grace=0.05)
    app.task("every 1 minute", name="deaf", timeout="30 seconds", multilaunch=True)(
        thread_ignoring_flag
    )
    play(app)
    release.set()
    starts = app.history.records("deaf", actions="run")
    assert len(starts) == MAX_DYING  # not one a minute for three hours
    ends = app.history.records("deaf", actions="terminate")
    assert len(ends) == MAX_DYING and all("abandoned at shutdown" in r.message for r in ends)


@pytest.mark.parametrize("where", ["scheduler", "task"])
def test_a_timeout_past_the_end_of_the_calendar_never_comes(where):
    # "999999999 days" passes the config (durations past the calendar are durations);
    # the first start once died on "date value out of range" (conddsl run: an internal error).
    far = "999999999 days"
    app = virtual(
        shut_cond="time of day after 07:00", **({"timeout": far} if where == "scheduler" else {})
    )

    async def work() -> None:
        await app.clock.sleep(60)

    app.task(
        Once(), name="long", execution="async", **({"timeout": far} if where == "task" else {})
    )(work)
    play(app)
    assert app.fatal_error is None
    assert [(r.action, r.reason) for r in app.history.records("long")] == [
        ("run", None),
        ("success", None),
    ]
