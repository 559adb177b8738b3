"""Control and extensibility: custom conditions of a scheduler, manual control while it
runs (from its loop and from other threads), and task roles (permanent, on_startup,
on_shutdown). Virtual time throughout, except where other threads are the point."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import date, datetime, timedelta

import pytest
from runtime_helpers import FOREVER
from runtime_helpers.scenario import at, finishes, play, until, virtual

from conddsl import ConditionSyntaxError, compile_condition
from conddsl.conds import daily, every, named
from conddsl.custom import ConditionRegistry, CustomConditionError, default_registry
from conddsl.runtime import (
    ConfigError,
    ControlError,
    Scheduler,
    SchedulerError,
    UnknownTaskError,
    VirtualClock,
)


async def quick() -> None:
    pass


def runs(app: Scheduler, task: str | None = None) -> list[tuple[str, str, str | None]]:
    """(task, HH:MM[:SS], reason) of every ``run`` record."""
    found = app.history.records(task, actions="run")
    return [(rec.task, _clock(rec.at), rec.reason) for rec in found]


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S" if moment.second else "%H:%M")


# ---------------------------------------------------------------- custom conditions


def test_a_custom_condition_of_the_scheduler_in_condition_text():
    app = virtual(start="00:00", shut_cond="time of week on Thu")
    holidays = {date(2024, 1, 2)}

    @app.cond("holiday")
    def holiday(at):
        return at.date() in holidays

    app.task("daily after 08:00 & ~holiday", name="report")(quick)
    play(app)
    days = [rec.at.day for rec in app.history.records("report", actions="run")]
    assert days == [1, 3]  # not on the Tuesday holiday
    assert "holiday" in app.registry


def test_app_cond_registers_directly_with_its_recheck():
    arrived = []
    app = virtual(start="09:00", shut_cond="time of day after 10:00")
    assert app.cond("file exists", lambda name: name in arrived, recheck="30 seconds")
    app.task("file exists 'sales.csv' & daily", name="load")(quick)

    async def upload(app: Scheduler) -> None:
        await until(app, "09:01:10")
        arrived.append("sales.csv")

    play(app, upload)
    assert runs(app) == [("load", "09:01:30", None)]  # seen at the next recheck


def test_built_conditions_with_names_are_resolved_by_the_scheduler():
    office = "time of day between 08:00 and 18:00 in UTC"
    config = {"timezone": "UTC", "timeout": "never", "shut_cond": "time of day after 10:00"}
    # Built conditions keep the system's zone: the rule pins its own.
    app = Scheduler(config, clock=VirtualClock(at("07:00")), rules={"office": office})
    closed = []
    app.cond("closed", lambda: bool(closed))
    start = named("office") & ~named("closed") & every("1 hour")
    app.task(start, name="poll")(quick)
    app.task(named("office") & named("closed") & daily, name="closing")(quick)

    async def close(app: Scheduler) -> None:
        await until(app, "09:29:30")
        closed.append(True)

    play(app, close)
    assert runs(app) == [
        ("poll", "08:00", None),
        ("poll", "09:00", None),
        ("closing", "09:30", None),
    ]
    assert str(app.tasks["poll"].start) == "office & ~closed & every 1 hour"


def test_a_condition_compiled_with_its_own_registry_keeps_it():
    registry = ConditionRegistry()
    registry.register("ready", lambda: True)
    app = virtual(shut_cond="time of day after 07:00")
    app.cond("ready", lambda: False)  # the condition's own registry comes first
    app.task(compile_condition("ready & daily", registry=registry, timezone="UTC"), name="a")(quick)
    play(app)
    assert runs(app) == [("a", "06:00", None)]


def test_the_scheduler_registry_comes_before_the_default_one():
    default_registry.register("quiet day", lambda: False)
    try:
        app = virtual(shut_cond="time of day after 07:00")
        app.cond("quiet day", lambda: True)
        app.task("quiet day & daily", name="text")(quick)
        app.task(named("quiet day") & daily, name="built")(quick)
        play(app)
    finally:
        default_registry.unregister("quiet day")
    assert runs(app) == [("built", "06:00", None), ("text", "06:00", None)]


def test_an_unknown_name_is_an_error_at_registration():
    app = virtual()
    app.cond("holiday", lambda: False)
    with pytest.raises(ConditionSyntaxError) as info:
        app.task("daily & ~holliday", name="report")(quick)
    assert (info.value.code, info.value.hint) == ("E120", "did you mean 'holiday'?")
    with pytest.raises(ConditionSyntaxError, match="unknown condition 'office'"):
        app.task(named("office") & daily, name="built")(quick)


def test_the_shut_condition_may_use_a_custom_condition_registered_later():
    done = []
    app = virtual(shut_cond="work done")

    @app.cond("work done", recheck="1 hour")
    def work_done():
        return bool(done)

    @app.task("time of day after 08:00 & daily")
    async def work():
        done.append(True)

    play(app)
    assert app.clock.now() == at("09:00")  # the next recheck after the 08:00 run
    unknown = virtual(shut_cond="no such thing")
    with pytest.raises(ConditionSyntaxError, match="unknown condition 'no such thing'"):
        unknown.run()
    assert unknown.state == "idle"


def test_custom_parts_are_not_called_while_the_clock_decides():
    """The custom part comes first in the text: the scheduler still does not call it
    outside 09:00-10:00, and inside it calls it once a recheck (a minute)."""
    calls: list[datetime] = []
    app = virtual(start="00:00", shut_cond="time of day after 12:00")

    @app.cond("queue full")
    def queue_full(at):
        calls.append(at)
        return False

    app.task("queue full & time of day between 09:00 and 10:00", name="drain")(quick)
    app.task("queue full & time of week on Sun", name="weekend")(quick)  # false all day
    play(app)
    assert app.history.records() == []
    assert calls[0] == at("09:00") and calls[-1] == at("09:59")
    assert calls == [at("09:00") + timedelta(minutes=m) for m in range(60)]


def test_custom_parts_under_a_not_are_rechecked_too():
    state = {"a": False, "b": False}
    app = virtual(start="09:00", shut_cond="time of day after 10:00")
    app.cond("a ready", lambda: state["a"], recheck="5 minutes")
    app.cond("b busy", lambda: state["b"], recheck="5 minutes")
    app.task("a ready & ~b busy & daily", name="job")(quick)

    async def change(app: Scheduler) -> None:
        await until(app, "09:07")
        state["a"] = True

    play(app, change)
    assert runs(app) == [("job", "09:10", None)]


def test_a_custom_condition_that_raises_is_a_fatal_error_naming_it():
    app = virtual()

    @app.cond("upstream ready")
    def upstream_ready():
        raise ConnectionError("no route")

    app.task("time of day after 07:00 & upstream ready", name="sync")(quick)
    with pytest.raises(SchedulerError) as info:
        play(app)
    assert "custom condition 'upstream ready' raised ConnectionError: no route" in str(info.value)
    assert app.clock.now() == at("07:00")  # not called before the clock part holds
    cause = info.value.__cause__
    assert isinstance(cause.error, CustomConditionError) and cause.error.phrase == "upstream ready"


def test_silenced_custom_errors_count_as_false_to_start_and_true_to_end():
    app = virtual(silence_cond_check=True, shut_cond="time of day after 08:00")
    failing = []

    @app.cond("flaky")
    def flaky():
        if failing:
            raise OSError("gone")
        return True

    app.task("flaky & time of day after 06:50", name="starts")(FOREVER["async"])
    app.task("time of day between 06:30 and 06:31 & daily", name="ends", end_cond="~flaky")(
        FOREVER["async"]
    )

    async def break_it(app: Scheduler) -> None:
        await until(app, "06:45:30")
        failing.append(True)

    play(app, break_it)
    assert runs(app) == [("ends", "06:30", None)]
    # Ended at the first recheck after it broke; 'starts' never started.
    assert finishes(app.history) == [("ends", "terminate", "06:46", "end_cond")]


# ---------------------------------------------------------------- manual control


def test_run_task_starts_now_and_obeys_its_timeout():
    app = virtual(shut_cond="time of day after 08:00")
    app.task("false", name="backup", timeout="10 minutes")(FOREVER["async"])

    async def press(app: Scheduler) -> None:
        await until(app, "07:00")
        app.run_task("backup")

    play(app, press)
    assert runs(app) == [("backup", "07:00", "manual")]
    assert finishes(app.history) == [("backup", "terminate", "07:10", "timeout")]


def test_run_task_obeys_the_end_condition_and_ignores_disabled():
    app = virtual(shut_cond="time of day after 08:00")
    app.task("false", name="load", end_cond="time of day after 07:00", disabled=True)(
        FOREVER["async"]
    )

    async def press(app: Scheduler) -> None:
        await until(app, "06:30")
        app.run_task("load")  # disabled: still runs when asked
        await until(app, "07:30")
        app.run_task("load")  # the end condition holds: ended at once

    play(app, press)
    assert runs(app) == [("load", "06:30", "manual"), ("load", "07:30", "manual")]
    assert finishes(app.history) == [
        ("load", "terminate", "07:00", "end_cond"),
        ("load", "terminate", "07:30", "end_cond"),
    ]


def test_run_task_refuses_a_running_task_unless_multilaunch():
    refused = []
    app = virtual(shut_cond="time of day after 08:00")
    app.task("time of day after 07:00 & daily", name="single", timeout="30 min")(FOREVER["async"])
    app.task("false", name="multi", multilaunch=True, timeout="30 min")(FOREVER["async"])

    async def press(app: Scheduler) -> None:
        await until(app, "07:10")
        with pytest.raises(ControlError, match="'single' is running"):
            app.run_task("single")
        app.run_task("multi")
        app.run_task("multi")
        refused.append(True)

    play(app, press)
    assert refused
    assert runs(app, "multi") == [("multi", "07:10", "manual")] * 2


def test_terminate_ends_every_run_of_a_task():
    app = virtual(shut_cond="time of day after 08:00")
    app.task("every 10 minutes", name="poll", multilaunch=True)(FOREVER["async"])
    app.task("false", name="inline", execution="main")(quick)

    async def stop(app: Scheduler) -> None:
        await until(app, "06:15")
        app.terminate("poll")
        with pytest.raises(ControlError, match="main execution"):
            app.terminate("inline")
        app.disable("poll")

    play(app, stop)
    assert finishes(app.history) == [("poll", "terminate", "06:15", "forced")] * 2
    messages = {rec.message for rec in app.history.records(actions="terminate")}
    assert messages == {"terminate() was called"}


def test_disable_and_enable_replan_at_once():
    app = virtual(shut_cond="time of day after 08:00")
    app.task("every 20 minutes", name="poll")(quick)

    async def toggle(app: Scheduler) -> None:
        await until(app, "06:30")
        app.disable("poll")
        assert app.tasks["poll"].disabled
        await until(app, "07:05")
        app.enable("poll")

    play(app, toggle)
    starts = [clock for _, clock, _ in runs(app)]
    assert [s[:5] for s in starts] == ["06:00", "06:20", "07:05", "07:25", "07:45"]


def test_disabling_a_running_task_keeps_its_end_condition():
    app = virtual(shut_cond="time of day after 08:00")
    app.task("time of day after 06:00 & daily", name="work", end_cond="time of day after 07:00")(
        FOREVER["async"]
    )

    async def off(app: Scheduler) -> None:
        await until(app, "06:30")
        app.disable("work")

    play(app, off)
    assert finishes(app.history) == [("work", "terminate", "07:00", "end_cond")]


def test_remove_task_terminates_its_runs_and_frees_the_name():
    app = virtual(shut_cond="time of day after 08:00")
    app.task("time of day after 06:00 & daily", name="work")(FOREVER["async"])
    app.task("after task 'work' terminated", name="follow")(quick)

    async def remove(app: Scheduler) -> None:
        await until(app, "06:30")
        removed = app.remove_task("work")
        assert removed.name == "work" and "work" not in app.tasks
        with pytest.raises(UnknownTaskError):
            app.run_task("work")
        await until(app, "07:00")
        app.task("false", name="work")(quick)  # the name is free again
        app.run_task("work")

    play(app, remove)
    assert finishes(app.history) == [
        ("follow", "success", "06:30", None),
        ("work", "terminate", "06:30", "forced"),
        ("work", "success", "07:00", None),
    ]
    (end,) = app.history.records("work", actions="terminate")
    assert end.message == "the task was removed (remove_task())"


def test_unknown_names_are_key_errors_with_a_suggestion():
    app = virtual()
    app.task("false", name="backup")(quick)
    for control in (app.run_task, app.terminate, app.disable, app.enable, app.remove_task):
        with pytest.raises(KeyError) as info:
            control("bakup")
        assert isinstance(info.value, UnknownTaskError)
        assert str(info.value) == "no task named 'bakup'; did you mean 'backup'?"
    with pytest.raises(UnknownTaskError, match="no task named 'x'; the scheduler has no tasks"):
        virtual().run_task("x")


def test_run_task_before_serving_starts_when_the_scheduler_does():
    app = virtual(shut_cond="time of day after 07:00")
    app.task("false", name="once")(quick)
    app.run_task("once")
    with pytest.raises(ControlError, match="already asked for"):
        app.run_task("once")
    play(app)
    assert runs(app) == [("once", "06:00", "manual")]
    with pytest.raises(ControlError, match="the scheduler has stopped"):
        app.run_task("once")


def test_a_run_asked_while_a_manual_start_is_being_made_is_refused_not_dropped():
    # Between taking the manual start off the queue and the run being registered (a
    # history flush, a claim on a shared history, the process launch) the task is
    # neither asked for nor running: a second ask there was told "started" and then
    # silently not started (found by a run-task flood on PostgreSQL).
    app = virtual(shut_cond="time of day after 07:00")
    app.task("false", name="once")(quick)
    launch = app._evaluator.launch
    answers: list[str] = []

    async def asking_meanwhile(task, now, **options):
        if not answers:
            try:
                app.run_task("once")
            except ControlError as error:
                answers.append(str(error))
            else:
                answers.append("accepted")
        return await launch(task, now, **options)

    app._evaluator.launch = asking_meanwhile
    app.run_task("once")
    play(app)
    assert answers == ["a run of task 'once' is already asked for"]
    assert runs(app) == [("once", "06:00", "manual")]


def test_nothing_is_run_by_hand_during_a_shutdown():
    app = virtual(timeout="1 hour")
    app.task("time of day after 06:00 & daily", name="work")(FOREVER["async"])
    app.task("false", name="other")(quick)
    refused = []

    async def late(app: Scheduler) -> None:
        await until(app, "06:10")
        app.shut_down()
        await app.clock.sleep(60)  # the request is applied at the loop's next turn
        with pytest.raises(ControlError, match="the scheduler is shutting down"):
            app.run_task("other")
        refused.append(True)

    play(app, late)
    assert refused and runs(app) == [("work", "06:00", None)]


def _from_another_thread(call) -> BaseException | None:
    """Call ``call()`` in a thread of its own and wait for it; what it raised, if anything."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            raised.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    return raised[0] if raised else None


def test_requests_racing_the_shut_condition_are_applied_or_refused_never_dropped():
    """Requests from another thread queued during the loop's last turn (after it read its
    queue, before the shut condition ended the session) were left in the queue: a manual
    run accepted and never started, a task added or removed that was not. Each is either
    applied or refused."""
    app = virtual(shut_cond="time of day after 07:00")
    app.task("false", name="asked")(quick)
    app.task("false", name="removed")(quick)
    app.task("false", name="other")(quick)
    collect = app._evaluator.collect
    answers: dict[str, BaseException | None] = {}

    def collect_and_race(now, **options):
        collect(now, **options)
        if now == at("07:00") and not answers:  # the last turn: its queue was read
            answers["run"] = _from_another_thread(lambda: app.run_task("asked"))
            answers["add"] = _from_another_thread(lambda: app.task("false", name="added")(quick))
            answers["remove"] = _from_another_thread(lambda: app.remove_task("removed"))
            answers["disable"] = _from_another_thread(lambda: app.disable("other"))
            answers["terminate"] = _from_another_thread(lambda: app.terminate("other"))

    app._evaluator.collect = collect_and_race
    play(app)
    assert answers == dict.fromkeys(["run", "add", "remove", "disable", "terminate"])  # accepted
    assert runs(app) == [("asked", "07:00", "manual")]  # ... and applied
    assert sorted(app.tasks) == ["added", "asked", "other"] and app.tasks["other"].disabled
    assert app._control.take() == []  # nothing left behind


def test_a_shut_down_after_the_loop_ended_is_a_no_op():
    """``shut_down()`` from another thread after the loop sealed its queue (its last turn
    is over) was queued anyway and applied after the scheduler finished: a shutdown begun
    on a scheduler that is done. Now it changes nothing, and leaves nothing queued."""
    from conddsl.runtime import State

    app = virtual(shut_cond="time of day after 07:00")
    app.task("false", name="idle")(quick)
    finish = app._life.finish

    def finish_after_a_late_shut_down() -> None:
        assert _from_another_thread(app.shut_down) is None  # between seal() and finish()
        finish()

    app._life.finish = finish_after_a_late_shut_down
    play(app)
    stopped = app.stopped_by
    assert app.state is State.DONE and stopped is not None and stopped[1] != "shut_down"
    assert app.shut_down() is None  # and after serve() returned: nothing either
    assert app.state is State.DONE and app.stopped_by == stopped
    assert app._control.take() == []


def test_a_request_queued_after_the_loop_ended_is_refused():
    """The loop's queue takes nothing once sealed: a request other than a shutdown is
    refused with the reason (a shutdown is a no-op: the scheduler has stopped)."""
    from conddsl.runtime.control import Control, Request

    control = Control()
    control.attach(asyncio.new_event_loop(), lambda: None)
    applied: list[str] = []
    assert control.seal()
    control.queue(Request(lambda: applied.append("shut"), "shut"))
    with pytest.raises(ControlError, match="the scheduler has stopped: 'run' request not taken"):
        control.queue(Request(lambda: applied.append("run"), "run", "job"))
    assert control.close() == [] and applied == []


def test_a_manual_run_accepted_before_a_shutdown_still_runs():
    """Asked for, then a shutdown asked for, both from another thread before the loop's
    next turn: the run was accepted, so it runs (the graceful shutdown waits for it);
    asked for once the shutdown has begun, it is refused."""
    app = virtual(timeout="1 hour")
    app.task("false", name="asked", timeout="10 minutes")(FOREVER["async"])
    refused: list[BaseException | None] = []

    async def operator(app: Scheduler) -> None:
        await until(app, "06:10")
        assert _from_another_thread(lambda: app.run_task("asked")) is None
        assert _from_another_thread(app.shut_down) is None
        await app.clock.sleep(60)
        refused.append(_from_another_thread(lambda: app.run_task("asked")))

    play(app, operator)
    assert isinstance(refused[0], ControlError), refused
    assert "the scheduler is shutting down" in str(refused[0])
    assert finishes(app.history) == [("asked", "terminate", "06:20", "timeout")]


def test_a_manual_run_accepted_before_a_forced_shutdown_is_ended_at_once():
    app = virtual(timeout="1 hour")
    app.task("false", name="asked")(FOREVER["async"])

    async def operator(app: Scheduler) -> None:
        await until(app, "06:10")
        assert _from_another_thread(lambda: app.run_task("asked")) is None
        assert _from_another_thread(lambda: app.shut_down(force=True)) is None

    play(app, operator)
    assert finishes(app.history) == [("asked", "terminate", "06:10", "forced")]
    (end,) = app.history.records("asked", actions="terminate")
    assert end.message == "shut_down(force=True) was called"


def test_control_from_another_thread_is_applied_in_order():
    app = Scheduler({"timeout": "never", "kill_grace": 0.2})
    app.task("false", name="first")(FOREVER["async"])
    seen = {}

    def operator() -> None:
        while app.state != "running":
            time.sleep(0.002)
        app.run_task("first")
        app.task("false", name="late", execution="async")(FOREVER["async"])
        app.run_task("late")  # known at once, though the loop applies the add later
        app.disable("late")
        seen["disabled"] = app.tasks.get("late") is None or app.tasks["late"].disabled
        while len(app.history.records(actions="run")) < 2:
            time.sleep(0.002)
        app.terminate("first")
        app.remove_task("late")
        while len(app.history.records(actions="terminate")) < 2:
            time.sleep(0.002)
        app.shut_down()

    helper = threading.Thread(target=operator)
    helper.start()
    app.run()
    helper.join()
    ends = {rec.task: (rec.reason, rec.message) for rec in app.history.records() if rec.reason}
    assert ends == {
        "first": ("forced", "terminate() was called"),
        "late": ("forced", "the task was removed (remove_task())"),
    }
    assert [rec.reason for rec in app.history.records(actions="run")] == ["manual", "manual"]
    assert seen == {"disabled": True} and sorted(app.tasks) == ["first"]


# ---------------------------------------------------------------- roles


def test_a_permanent_task_starts_once_and_ends_at_shutdown_after_the_others():
    app = virtual(timeout="1 hour", shut_cond="time of day after 12:00")
    app.task(permanent=True, name="consumer")(FOREVER["async"])
    app.task("time of day after 11:30 & daily", name="late")(FOREVER["async"])
    play(app)
    assert app.tasks["consumer"].timeout is None and app.tasks["consumer"].permanent
    assert runs(app) == [("consumer", "06:00", None), ("late", "11:30", None)]
    # The graceful shutdown waits for 'late' (its timeout), then ends the permanent task.
    assert finishes(app.history) == [
        ("consumer", "terminate", "12:30", "shutdown"),
        ("late", "terminate", "12:30", "timeout"),
    ]


def test_a_permanent_task_that_ends_is_not_restarted():
    app = virtual(shut_cond="time of day after 12:00")
    app.task(permanent=True, name="listener")(quick)
    app.task(permanent=True, name="off", disabled=True)(quick)

    async def later(app: Scheduler) -> None:
        await until(app, "09:00")
        app.enable("off")  # a disabled permanent task starts when enabled
        await until(app, "10:00")
        app.run_task("listener")  # by hand, it may run again

    play(app, later)
    assert runs(app) == [
        ("listener", "06:00", None),
        ("off", "09:00", None),
        ("listener", "10:00", "manual"),
    ]


def test_an_instant_shutdown_ends_permanent_tasks_at_once():
    app = virtual(shut_cond="time of day after 07:00", instant_shutdown=True)
    app.task(permanent=True, name="server", execution="thread")(FOREVER["thread"])
    play(app)
    assert finishes(app.history) == [("server", "terminate", "07:00", "shutdown")]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"permanent": True, "timeout": "1 hour"}, "is never timed out"),
        ({"permanent": True, "execution": "main"}, "cannot run in the main execution"),
        ({"on_startup": True, "end_cond": "true"}, "takes no end_cond"),
        ({"on_shutdown": True, "multilaunch": True}, "multilaunch does not apply"),
        ({"permanent": True, "on_startup": True}, "one role at most"),
        ({}, "needs a start condition"),
    ],
)
def test_roles_refuse_settings_that_cannot_apply(options, message):
    app = virtual()
    with pytest.raises(ConfigError, match=message):
        app.task(name="x", **options)(lambda: None)
    with pytest.raises(ConfigError, match="give it no start condition"):
        app.task("daily", name="y", permanent=True)(lambda: None)
    app.task(name="z", permanent=True, timeout="never")(quick)
    assert app.tasks["z"].timeout is None


def test_startup_and_shutdown_tasks_run_in_order_and_failures_do_not_stop_them():
    app = virtual(timeout="2 hours", shut_cond="time of day after 09:00")
    order = []

    def step(name: str, minutes: int, fails: bool = False):
        async def body():
            order.append(name)
            await app.clock.sleep(minutes * 60)
            if fails:
                raise RuntimeError(f"{name} failed")

        return body

    app.task(on_shutdown=True, name="flush")(step("flush", 5, fails=True))
    app.task(on_startup=True, name="migrate")(step("migrate", 10, fails=True))
    app.task("daily", name="report")(step("report", 70))
    app.task(on_startup=True, name="warm")(step("warm", 20))
    app.task(on_shutdown=True, name="notify", execution="main")(lambda: order.append("notify"))
    app.task(permanent=True, name="server")(FOREVER["async"])
    play(app)
    assert order == ["migrate", "warm", "report", "flush", "notify"]
    assert runs(app) == [
        ("migrate", "06:00", None),
        ("warm", "06:10", None),
        ("report", "06:30", None),
        ("server", "06:30", None),
        ("flush", "09:00", None),
        ("notify", "09:05", None),
    ]
    assert finishes(app.history) == [
        ("migrate", "fail", "06:10", None),
        ("warm", "success", "06:30", None),
        ("report", "success", "07:40", None),
        ("server", "terminate", "09:00", "shutdown"),
        ("flush", "fail", "09:05", None),
        ("notify", "success", "09:05", None),
    ]


def test_a_shut_condition_on_a_failed_startup_task_skips_the_rest():
    app = virtual(shut_cond="task 'migrate' has failed")

    @app.task(on_startup=True)
    async def migrate():
        raise RuntimeError("schema is newer than the code")

    app.task(on_startup=True, name="warm")(quick)
    app.task(on_shutdown=True, name="notify")(quick)
    app.task("true", name="work")(quick)
    play(app)
    assert [task for task, _, _ in runs(app)] == ["migrate", "notify"]


def test_shutting_down_again_cuts_the_shutdown_tasks():
    app = virtual(shut_cond="time of day after 07:00")
    app.task(on_shutdown=True, name="slow")(FOREVER["async"])
    app.task(on_shutdown=True, name="skipped")(quick)

    async def impatient(app: Scheduler) -> None:
        await until(app, "07:05")
        app.shut_down()

    play(app, impatient)
    assert finishes(app.history) == [("slow", "terminate", "07:05", "forced")]
    assert app.state == "done"


def test_on_startup_tasks_are_registered_before_the_start():
    app = virtual(shut_cond="time of day after 07:00")

    async def add(app: Scheduler) -> None:
        with pytest.raises(ConfigError, match="before the scheduler starts"):
            app.task(on_startup=True, name="late")(quick)
        app.task(on_shutdown=True, name="bye")(quick)

    play(app, add)
    assert runs(app) == [("bye", "07:00", None)]


def test_task_state_and_phase():
    app = virtual(shut_cond="time of day after 07:00")
    app.task("false", name="later")(quick)
    app.task("false", name="off", disabled=True)(quick)
    app.task("time of day after 06:00 & daily", name="work", timeout="30 min")(FOREVER["async"])
    app.run_task("later")
    seen = {}

    async def look(app: Scheduler) -> None:
        await until(app, "06:10")
        seen.update({name: app.task_state(name) for name in app.tasks})
        seen["phase"] = app.phase

    assert (app.task_state("later"), app.phase) == ("pending", None)
    play(app, look)
    assert seen == {"later": "idle", "off": "disabled", "work": "running", "phase": "main"}
    assert app.phase == "closing" and app.task_state("work") == "idle"


def test_a_manual_run_waits_for_a_process_slot():
    app = virtual(max_process_count=1, shut_cond="time of day after 07:30")
    app.task("time of day after 07:00 & daily", name="a", execution="process", timeout="10 min")(
        FOREVER["process"]
    )
    app.task("false", name="b", execution="process", timeout="10 min")(FOREVER["process"])

    async def press(app: Scheduler) -> None:
        await until(app, "07:05")
        app.run_task("b")

    play(app, press)
    assert runs(app) == [("a", "07:00", None), ("b", "07:10", "manual")]
    assert finishes(app.history) == [
        ("a", "terminate", "07:10", "timeout"),
        ("b", "terminate", "07:20", "timeout"),
    ]
