"""Every run ends whatever its code does, and says how: sys.exit, a swallowed cancellation,
a blocking call; and ``conddsl run`` always stops when told to."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from runtime_helpers.cli import start_run
from runtime_helpers.scenario import Once, finishes, play, virtual

from conddsl.runtime import Scheduler
from conddsl.runtime.config import ConfigError


def exits_3():
    sys.exit(3)


async def async_exits_3():
    sys.exit(3)


def _each_execution(plain, coroutine) -> Scheduler:
    """A run of ``plain`` in main and in a thread, and of ``coroutine`` as async, played."""
    app = virtual(shut_cond="time of day after 07:00", threshold=0.02)
    app.task(Once(), name="main", execution="main")(plain)
    app.task(Once(), name="thread", execution="thread")(plain)
    app.task(Once(), name="async", execution="async")(coroutine)
    play(app)
    return app


def test_sys_exit_in_a_main_or_async_task_is_a_fail_record_not_the_schedulers_exit():
    app = _each_execution(exits_3, async_exits_3)
    assert sorted(finishes(app.history)) == [
        ("async", "fail", "06:00", None),
        ("main", "fail", "06:00", None),
        ("thread", "fail", "06:00", None),
    ]
    assert {rec.message for rec in app.history.records(actions="fail")} == {"SystemExit: 3"}
    assert app.stopped_by[0] == "shut_cond"  # it went on to its shut condition


async def swallows_every_cancellation():
    while True:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.01)


def test_run_returns_although_a_coroutine_swallows_every_cancellation():
    app = Scheduler({"shut_cond": "scheduler has run over 0.1 seconds", "kill_grace": 0.1})
    app.task(Once(), name="stubborn", execution="async", timeout="0.05 seconds")(
        swallows_every_cancellation
    )
    started = time.monotonic()
    app.run()  # asyncio.run() would wait for the coroutine forever
    assert time.monotonic() - started < 15  # a hang guard, generous for a loaded machine
    (record,) = app.history.records(actions="terminate")
    assert record.message.endswith("ignored the cancellation; abandoned")


def test_an_async_task_that_blocks_past_its_timeout_says_so():
    """time.sleep(3) in an async task with a 1 s timeout: not recorded a plain success."""
    app = virtual(shut_cond="time of day after 07:00")

    async def blocks():
        app.clock.advance(3)  # what a blocking time.sleep(3) does to the loop's time

    app.task(Once(), name="blocker", execution="async", timeout="1 second")(blocks)
    play(app)
    (record,) = app.history.records(actions="success")
    assert record.message == (
        "overran its timeout 0:00:01 by 2 s: it could not be stopped"
        " (it blocked the scheduler's loop)"
    )


def test_a_run_off_the_loop_is_not_blamed_for_another_run_blocking_it():
    """A thread run ends at once, but its end is only seen after an async run blocked the
    loop: it was recorded late, as terminated by its timeout or as having overrun it
    ("it blocked the scheduler's loop"), whichever the loop saw first."""
    app = Scheduler({"shut_cond": "scheduler has run over 0.5 seconds", "kill_grace": 0.2})
    blocking = threading.Event()

    async def blocks():
        blocking.set()
        time.sleep(1.5)  # the quick run ends meanwhile; its end waits for the loop

    app.task(Once(), name="blocker", execution="async", timeout="0.2 seconds")(blocks)
    # (A timeout that leaves a loaded machine time to start the thread.)
    app.task(Once(), name="quick", execution="thread", timeout="0.8 seconds")(
        lambda: blocking.wait(10)
    )
    app.run()
    (blocker,) = app.history.records("blocker", actions="success")
    assert "it blocked the scheduler's loop" in (blocker.message or "")
    start, end = app.history.records("quick")
    # Not "overran its timeout ... (it blocked the scheduler's loop)", nor terminated for
    # a timeout it never reached: a success, at the time it returned.
    assert (end.action, end.reason, end.message) == ("success", None, None), end
    assert (end.at - start.at).total_seconds() < 0.8


def test_an_async_run_held_up_by_another_is_not_said_to_have_blocked_the_loop():
    """Started beside a run that blocks the loop, its first line runs past its timeout:
    its record says the loop was held by another run, not that it blocked it."""
    app = Scheduler({"shut_cond": "scheduler has run over 0.5 seconds", "kill_grace": 0.2})

    async def blocks():
        app.run_task("starved")
        # Its run exists once started; its first step comes after this one's.
        while not any(run.task.name == "starved" for run in app.running_runs):
            await asyncio.sleep(0)
        time.sleep(1.0)

    async def starved():
        pass

    app.task(Once(), name="blocker", execution="async", timeout="0.2 seconds")(blocks)
    app.task("false", name="starved", execution="async", timeout="0.2 seconds")(starved)
    app.run()
    (blocker,) = app.history.records("blocker", actions="success")
    assert "(it blocked the scheduler's loop)" in (blocker.message or ""), blocker
    (end,) = app.history.records("starved", actions=("success", "fail", "terminate"))
    assert end.action == "success", end
    assert "(the scheduler's loop was held by another run)" in (end.message or ""), end


def _run_file(tmp_path: Path, tasks: str, jobs: str) -> subprocess.Popen[str]:
    (tmp_path / "tasks.toml").write_text(textwrap.dedent(tasks))
    (tmp_path / "jobs.py").write_text(textwrap.dedent(jobs))
    return start_run(tmp_path)


def _wait_for(process: subprocess.Popen[str], text: str) -> str:
    seen = ""
    while text not in seen:
        line = process.stdout.readline()
        assert line, seen + process.stderr.read()
        seen += line
    return seen


def test_run_exits_after_a_forced_shutdown_even_if_a_main_task_blocks(tmp_path):
    process = _run_file(
        tmp_path,
        """
        [scheduler]
        kill_grace = 0.2

        [tasks.block]
        func = "jobs:block"
        start_cond = "every 1 hour"
        execution = "main"
        """,
        """
        import time

        def block():
            print("blocking", flush=True)
            time.sleep(60)
        """,
    )
    try:
        _wait_for(process, "blocking")
        process.send_signal(signal.SIGINT)
        time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        forced = time.monotonic()
        out, err = process.communicate(timeout=20)
        took = time.monotonic() - forced
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 3, err
    assert took < 0.2 + 1 + 1, took  # kill_grace + 1 s, and a second for a loaded machine
    assert "SIGINT: shutting down gracefully, waiting for 1 run to end" in out
    assert "SIGTERM again: forcing the shutdown" in out
    assert "did not stop within 1 s of the forced shutdown" in out


def test_run_says_why_it_stopped_and_takes_a_doubled_signal_as_one(tmp_path):
    process = _run_file(
        tmp_path,
        """
        [scheduler]
        kill_grace = 0.5

        [tasks.tick]
        func = "jobs:tick"
        start_cond = "every 1 hour"
        """,
        """
        import time

        from conddsl import TerminationFlag

        def tick(flag=TerminationFlag()):
            print("ticking", flush=True)
            time.sleep(0.3)
        """,
    )
    try:
        _wait_for(process, "ticking")
        os.kill(process.pid, signal.SIGINT)
        os.kill(process.pid, signal.SIGINT)  # the same instant: `timeout -s INT` does this
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "forcing" not in out
    assert "success    tick" in out  # the graceful shutdown let it finish
    last = out.splitlines()[-1]
    assert last.startswith("conddsl: stopped by interrupt: interrupted (SIGINT); this session:")
    assert "1 run, 1 success" in last


def lookup_user():
    user = {}
    return user["user_id"]


async def async_lookup_user():
    return lookup_user()


def test_a_fail_record_keeps_the_exception_type_and_traceback():
    app = _each_execution(lookup_user, async_lookup_user)
    failed = app.history.records(actions="fail")
    assert sorted(rec.task for rec in failed) == ["async", "main", "thread"]
    for rec in failed:
        assert rec.message == "'user_id'"
        assert rec.traceback.startswith("Traceback (most recent call last):")
        assert 'return user["user_id"]' in rec.traceback
        assert rec.traceback.rstrip().endswith("KeyError: 'user_id'")


def test_a_long_traceback_keeps_its_end():
    def deep(depth: int) -> None:
        if depth == 0:
            raise ValueError("x" * 100_000)
        deep(depth - 1)

    app = virtual(shut_cond="time of day after 07:00", threshold=0.02)
    app.task(Once(), name="deep", execution="main")(lambda: deep(50))
    play(app)
    (rec,) = app.history.records(actions="fail")
    assert len(rec.traceback) == 64 * 1024
    assert rec.traceback.startswith("…") and rec.traceback.endswith("x" * 1000 + "\n")


def test_run_prints_the_exception_line_and_where_the_traceback_is(tmp_path):
    process = _run_file(
        tmp_path,
        """
        [scheduler]
        shut_cond = "task 'bad' has finished"

        [tasks.bad]
        func = "jobs:bad"
        start_cond = "every 1 hour"
        """,
        """
        def bad():
            return {}["user_id"]
        """,
    )
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "fail       bad  ('user_id')\n    KeyError: 'user_id'\n" in out
    assert "(full traceback: tasks.history.sqlite3, records.traceback of run_id " in out


@pytest.mark.parametrize(
    "shut_cond", ["daily after 23:59", "every 1 hour", "cron 0 * * * *", "after task 'a'"]
)
def test_a_shut_cond_about_its_own_task_is_refused_when_the_scheduler_is_made(shut_cond):
    with pytest.raises(ConfigError, match="is about the runs of the task it belongs to"):
        Scheduler({"shut_cond": shut_cond})


def test_check_and_run_agree_on_a_shut_cond_about_its_own_task(tmp_path, capsys):
    from conddsl.cli import main

    tasks = '[scheduler]\nshut_cond = "daily"\n\n[tasks.a]\ncommand = ["true"]\n'
    (tmp_path / "tasks.toml").write_text(tasks)
    code = main(["check", str(tmp_path / "tasks.toml")])
    assert code == 1 and "tasks.toml:2:14: C303" in capsys.readouterr().out
    process = start_run(tmp_path)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1, out + err
    assert "internal error" not in err
    assert "shut_cond 'daily' is about the runs of the task it belongs to" in err


def test_run_shortens_the_switch_interval_when_it_has_thread_tasks(tmp_path):
    """The loop waits behind busy task threads for the GIL (benchmarks/busy_threads.py)."""
    process = _run_file(
        tmp_path,
        """
        [scheduler]
        shut_cond = "task 'show' has finished"

        [tasks.show]
        func = "jobs:show"
        start_cond = "every 1 hour"
        """,
        """
        import sys

        def show():
            print("switch interval", sys.getswitchinterval(), flush=True)
        """,
    )
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "switch interval 0.0005\n" in out
