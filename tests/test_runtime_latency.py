"""The scheduler's fast paths: what they must keep doing (no timing is checked here).

- a run cancelled before its coroutine ever ran is still recorded, at once;
- a running task's start condition is not asked when it can next change;
- runs timing out at one instant share one deadline entry; finished ones drop out;
- finishing records are stamped when the run ends and written before any condition
  is evaluated, and all of them by the time ``serve()`` returns;
- a long evaluation pass is cut into slices that are not counted as cycles;
- process trees: shared readings of /proc, the quick "gone" check, the polling fallback.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import warnings
from datetime import datetime, timedelta
from functools import partial

import pytest
from runtime_helpers import FOREVER, read_pids, spawn_grandchildren
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
from conddsl.runtime import RealClock, Scheduler, processes
from conddsl.runtime import evaluator as evaluator_module
from conddsl.runtime.executors import AsyncExecutor
from conddsl.runtime.runs import Host, Run
from conddsl.runtime.tasks import Task

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="process trees via /proc")


# ---------------------------------------------------------------- async runs


def test_a_run_cancelled_before_its_first_step_is_recorded_at_once():
    """Terminated in the same turn of the loop that started it: its body never ran."""
    ended: list[tuple[str, str | None]] = []

    async def body() -> None:
        raise AssertionError("never runs")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        host = Host(loop, lambda run, action, message: ended.append((action, message)), 60, None)
        executor = AsyncExecutor(host)
        task = Task(name="t", start=compile_condition("true"), execution="async", func=body)
        run = Run(task, "r1", datetime(2024, 1, 1))
        executor.start(run)
        run.reason = "timeout"  # as the scheduler sets it before terminate()
        executor.terminate(run)
        for _ in range(5):
            await asyncio.sleep(0)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        asyncio.run(main())
    assert ended == [("terminate", None)]  # not "abandoned" after the 60 s grace


def test_runs_abandoned_together_are_all_recorded():
    from runtime_helpers import async_ignoring_cancel

    app = virtual(kill_grace=0.05, shut_cond="time of day after 07:30")
    for name in ("a", "b", "c"):
        app.task(Once(), name=name, timeout="10 minutes")(partial(async_ignoring_cancel, 0.3))
    play(app)
    ends = finishes(app.history)
    assert sorted(end[0] for end in ends) == ["a", "b", "c"]
    for rec in app.history.records(actions="terminate"):
        assert rec.reason == "timeout"
        assert rec.message.endswith("ignored the cancellation; abandoned")


# ---------------------------------------------------------------- what the loop asks


class Recording:
    """A clock condition that records the instants it is asked about."""

    def __init__(self, text: str) -> None:
        self.cond = compile_condition(text, timezone="UTC")
        self.ast = self.cond.ast
        self.asked_next: list[datetime] = []

    def is_true(self, at: datetime, **context: object) -> bool:
        return self.cond.is_true(at)

    def next_change(self, after: datetime, **context: object) -> datetime | None:
        self.asked_next.append(after)
        return self.cond.next_change(after)


def test_a_running_task_is_not_asked_when_its_start_condition_changes():
    start = Recording("time of day between 07:00 and 08:00")
    app = virtual(shut_cond="time of day after 10:00")

    @app.task(start, name="long")
    async def two_hours():
        await app.clock.sleep(7200)

    play(app)
    assert [rec.at for rec in app.history.records(actions="run")] == [at("07:00")]
    # Asked before the run and after it (at 09:00), never while it ran.
    assert start.asked_next
    assert not [moment for moment in start.asked_next if at("07:00") <= moment < at("09:00")]


def test_a_multilaunch_task_is_still_asked_while_it_runs():
    start = Recording("time of day between 07:00 and 08:00")
    app = virtual(shut_cond="time of day after 10:00")
    app.task(start, name="many", multilaunch=True, timeout="3 hours")(FOREVER["async"])
    play(app)
    assert at("07:00") in start.asked_next


# ---------------------------------------------------------------- deadlines


def test_runs_timing_out_together_share_one_deadline():
    app = virtual(shut_cond="time of day after 08:00")
    for number in range(40):
        app.task("time of day between 07:00 and 07:01", name=f"t{number}", timeout=600)(
            FOREVER["async"]
        )

    async def look(app: Scheduler) -> None:
        await until(app, "07:05")
        assert list(app._timeouts.due) == [at("07:10")]
        assert len(app._timeouts.due[at("07:10")]) == 40

    play(app, look)
    assert sorted(finishes(app.history)) == sorted(
        (f"t{n}", "terminate", "07:10", "timeout") for n in range(40)
    )
    assert app._timeouts.due == {} and app._timeouts.heap == []


def test_runs_that_finish_early_leave_the_deadline_heap():
    app = virtual(shut_cond="time of day after 09:00")

    @app.task("time of day between 07:00 and 07:01", name="quick", timeout="1 hour")
    async def quick():
        await app.clock.sleep(60)

    app.task("time of day between 07:00 and 07:01", name="slow", timeout="1 hour")(FOREVER["async"])
    app.task("time of day between 07:00 and 07:01", name="alone", timeout="30 minutes")(
        FOREVER["async"]
    )
    play(app)
    assert finishes(app.history) == [
        ("quick", "success", "07:01", None),
        ("alone", "terminate", "07:30", "timeout"),
        ("slow", "terminate", "08:00", "timeout"),
    ]
    assert app._timeouts.due == {} and app._timeouts.heap == []


# ---------------------------------------------------------------- finishing records


def test_finishing_records_are_stamped_at_the_end_and_read_by_the_next_evaluation():
    app = virtual(shut_cond="time of day after 08:00")
    for name in ("a1", "a2", "a3"):
        app.task("time of day between 07:00 and 07:01", name=name, timeout=900)(FOREVER["async"])
    app.task(AfterFinish("a3"), name="b", timeout=300)(FOREVER["async"])
    play(app)
    assert finishes(app.history) == [
        ("a1", "terminate", "07:15", "timeout"),
        ("a2", "terminate", "07:15", "timeout"),
        ("a3", "terminate", "07:15", "timeout"),
        ("b", "terminate", "07:20", "timeout"),
    ]
    assert [(rec.task, rec.at) for rec in app.history.records(actions="run")][-1] == (
        "b",
        at("07:15"),
    )


def test_every_record_is_written_when_serve_returns():
    async def force(app: Scheduler) -> None:
        await until(app, "07:30")
        app.shut_down(force=True)

    app = virtual()
    for number in range(25):
        app.task("time of day between 07:00 and 07:01", name=f"t{number}")(FOREVER["async"])
    play(app, force)
    assert app._records.unwritten == []
    assert len(finishes(app.history)) == 25


# ---------------------------------------------------------------- slices


def test_a_sliced_pass_starts_everything_at_the_same_instant(monkeypatch):
    monkeypatch.setattr(evaluator_module, "SLICE", 0.0)  # yield after every evaluation
    app = virtual(start="06:59", shut_cond="time of day after 07:30")
    for number in range(30):
        app.task("time of day between 07:00 and 07:01", name=f"t{number}", timeout=60)(
            FOREVER["async"]
        )
    play(app)
    runs = app.history.records(actions="run")
    assert len(runs) == 30 and {rec.at for rec in runs} == {at("07:00")}
    assert len(finishes(app.history)) == 30
    # Wake-ups: start, 07:00, 07:01 (the windows close), 07:30: slices are not cycles.
    assert app.session.cycles <= 6


def test_scheduler_cycles_count_wake_ups_not_slices(monkeypatch):
    monkeypatch.setattr(evaluator_module, "SLICE", 0.0)
    app = virtual(start="06:59", shut_cond="scheduler has more than 3 cycles")
    for number in range(20):
        app.task("time of day between 07:00 and 07:01", name=f"t{number}", timeout=60)(
            FOREVER["async"]
        )
    play(app)
    assert app.session.cycles <= 5


# ---------------------------------------------------------------- the real clock


def test_real_clock_returns_when_woken_before_the_deadline():
    clock = RealClock()

    async def main() -> None:
        wake = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, wake.set)
        await asyncio.wait_for(clock.sleep_until(clock.now() + timedelta(hours=1), wake), 10)
        assert wake.is_set()

    asyncio.run(main())


def test_real_clock_returns_at_once_for_a_past_deadline_or_a_set_event():
    clock = RealClock()

    async def main() -> None:
        wake = asyncio.Event()
        await clock.sleep_until(clock.now() - timedelta(seconds=1), wake)
        wake.set()
        await clock.sleep_until(clock.now() + timedelta(hours=1), wake)

    asyncio.run(asyncio.wait_for(main(), 10))


# ---------------------------------------------------------------- process trees


@linux_only
def test_readings_of_proc_are_shared_when_recent_enough():
    first = processes.snapshot(time.monotonic())
    assert processes.snapshot(first.taken) is first
    later = processes.snapshot(time.monotonic())
    assert later is not first and later.taken >= first.taken
    assert os.getpid() in later.table
    assert any(child.pid == os.getpid() for child in later.children(os.getppid()))


@linux_only
def test_gone_now_sees_a_living_tree_and_a_reaped_one():
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        killer = processes.TreeKiller(child.pid, 5.0, asyncio.new_event_loop())
        killer._members(processes.snapshot(time.monotonic()))  # learn the tree
        assert not killer.gone_now()
    finally:
        child.kill()
        child.wait()
        killer.loop.close()
    assert killer.gone_now()


@linux_only
def test_a_tree_left_as_zombies_is_gone_without_waiting_for_their_reaper(monkeypatch):
    # Orphans are reaped by init, which may take its time (or, in a container, never
    # come): a group left with zombies only is a tree that has ended. Here the root is
    # a zombie of ours, unreaped until the end.
    async def never(self) -> bool:
        raise AssertionError("waited for the zombies to be reaped")

    monkeypatch.setattr(processes.TreeKiller, "_group_lasts", never)
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)

    async def main() -> None:
        processes.snapshot(time.monotonic())  # a reading to bring up to date
        killer = processes.TreeKiller(child.pid, 5.0, asyncio.get_running_loop())
        killer.start()
        await asyncio.wait_for(killer.wait_gone(), 5)

    try:
        asyncio.run(main())
        assert processes.read_stat(child.pid).state == "Z"  # still there, unreaped
    finally:
        child.kill()
        child.wait()


def _tree_run(tmp_path) -> list[int]:
    """A process task with grandchildren ignoring SIGTERM (one left the group): its root
    dies by SIGTERM, the grandchildren are waited for and SIGKILLed after the grace."""
    pid_file = str(tmp_path / "pids")
    app = Scheduler({"kill_grace": 0.1, "timeout": "never"})
    app.task(Once(), name="tree", execution="process", timeout=0.6)(
        partial(spawn_grandchildren, pid_file)
    )

    async def stop(app: Scheduler) -> None:
        await records_appear(app, "run")
        app.shut_down()

    play(app, stop)
    (ended,) = app.history.records(actions="terminate")
    assert ended.reason == "timeout"
    pids = read_pids(pid_file)
    assert len(pids) == 3
    return pids


def _gone(pid: int) -> bool:
    info = processes.read_stat(pid)
    return info is None or info.state in ("Z", "X")


@linux_only
def test_a_tree_is_waited_for_with_pidfds(tmp_path):
    assert all(_gone(pid) for pid in _tree_run(tmp_path))


@linux_only
def test_without_pidfds_the_table_is_polled(tmp_path, monkeypatch):
    monkeypatch.setattr(processes, "_pidfds", False)
    assert all(_gone(pid) for pid in _tree_run(tmp_path))


@linux_only
def test_a_kernel_refusing_pidfds_falls_back_to_polling(tmp_path, monkeypatch):
    def refuse(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(processes, "_pidfds", True)
    monkeypatch.setattr(processes.os, "pidfd_open", refuse, raising=False)
    # A tree ended directly: a run's keeper reaps its tree before it exits, so the
    # scheduler seldom has to wait for one.
    root = subprocess.Popen(["sh", "-c", "sleep 30 & exec sleep 30"], start_new_session=True)

    async def main() -> None:
        killer = processes.TreeKiller(root.pid, 5.0, asyncio.get_running_loop())
        killer.start()
        await asyncio.wait_for(killer.wait_gone(), 10)

    try:
        time.sleep(0.1)  # the shell has started its child
        asyncio.run(main())
        assert processes._pidfds is False
        left = processes.snapshot(time.monotonic()).group(root.pid)
        assert [info for info in left if not _gone(info.pid)] == []
    finally:
        root.kill()
        root.wait()
