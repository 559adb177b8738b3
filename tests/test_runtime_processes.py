"""Process and command tasks in real time: whole trees end, SIGKILL follows SIGTERM, outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from functools import partial

import pytest
from runtime_helpers import (
    FOREVER,
    count_sigterms,
    double_fork_daemon,
    exit_hard,
    fork_on_sigterm,
    gone,
    ignore_sigterm,
    kill_self,
    leave_a_child,
    raise_deep,
    raise_value_error,
    read_pids,
    report_death_signal,
    report_time,
    setsid_child,
    spawn_grandchildren,
)
from runtime_helpers.scenario import Once, at, finishes, play, records_appear, seconds, virtual

from conddsl.runtime import Inaction, Scheduler, processes

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process trees via /proc")

GRACE = 0.2


def real(**config: object) -> Scheduler:
    config.setdefault("kill_grace", GRACE)
    config.setdefault("timeout", "never")
    return Scheduler(config)


async def stop_after_start(app: Scheduler, count: int = 1) -> None:
    """Ask for a graceful shutdown once ``count`` runs started: they end on their own terms."""
    await records_appear(app, "run", count)
    app.shut_down()


def the_run(app: Scheduler, task: str):
    (started,) = app.history.records(task, actions="run")
    (ended,) = [rec for rec in app.history.records(task) if rec.action != "run"]
    return started, ended


def test_a_process_forked_from_the_scheduler_gets_its_death_signal(tmp_path, monkeypatch):
    """Without a fork server (as in a frozen program) runs are forked from the scheduler,
    and the child asks for SIGTERM when the scheduler ends (libc's prctl is found at the
    first such fork, no longer when every scheduler starts)."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # no fork server
    path = str(tmp_path / "signal")
    app = real()
    app.task(Once(), name="child", execution="process")(partial(report_death_signal, path))
    play(app, stop_after_start)
    _, ended = the_run(app, "child")
    assert ended.action == "success", ended.message
    with open(path) as file:
        assert int(file.read()) == signal.SIGTERM


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    pid_file = str(tmp_path / "pid")
    app = real()
    app.task(Once(), name="stubborn", execution="process", timeout=0.3)(
        partial(ignore_sigterm, pid_file)
    )
    play(app, stop_after_start)
    started, ended = the_run(app, "stubborn")
    assert (ended.action, ended.reason) == ("terminate", "timeout")
    assert ended.message.endswith("killed by signal SIGKILL")
    # Not gone before the grace, and gone soon after it (the upper bound is loose: the
    # run's timeout and the kill are timers of a loop that shares 2 cores with the other
    # test workers).
    late = seconds(ended.at - started.at) - 0.3
    assert GRACE - 0.01 <= late <= GRACE + 0.5, late
    (pid,) = read_pids(pid_file)
    assert gone(pid)


@pytest.mark.parametrize(
    "how", ["timeout", pytest.param("terminate", marks=[pytest.mark.long, pytest.mark.smoke])]
)
def test_a_terminated_process_gets_one_sigterm(tmp_path, how):
    """The scheduler signals the run's tree (its group and each process), and the run's
    keeper does not pass the SIGTERM it got on to the group again: the task's handler
    runs once."""
    path = str(tmp_path / "sigterms")
    app = real(kill_grace=5)
    timeout = "never" if how == "terminate" else 0.3
    app.task(Once(), name="counted", execution="process", timeout=timeout)(
        partial(count_sigterms, path)
    )

    async def end_it(app: Scheduler) -> None:
        while not os.path.exists(path + ".ready"):
            await asyncio.sleep(0.005)
        if how == "terminate":
            app.terminate("counted")
        app.shut_down()

    play(app, end_it)
    started, ended = the_run(app, "counted")
    assert (ended.action, ended.reason) == ("terminate", "forced" if how == "terminate" else how)
    assert ended.message.endswith("exit code 0"), ended  # it ended by itself, in its grace
    with open(path) as file:
        assert file.read() == "SIGTERM\n"


def test_a_process_let_go_late_gets_its_whole_timeout(tmp_path, monkeypatch):
    """The loop is held (by another run: here time jumps 2 s) after the keeper is
    reported and before the run is told to go: its timeout of 1 s counts from the go,
    so the body, which returns at once, is a success, not 'ran longer than its timeout'."""
    from conddsl.runtime.process_exec import ProcessExecutor

    app = virtual(threshold=0.5, shut_cond="time of day after 06:05", kill_grace=GRACE)
    app.process_registry = tmp_path / "registry"
    started = ProcessExecutor._on_started
    prepared = ProcessExecutor._on_prepared

    def held_before_go(executor: ProcessExecutor, *args: object) -> None:
        executor.host.loop.call_soon(app.clock.advance, 2)  # queued ahead of the go
        started(executor, *args)

    def go_a_turn_later(executor: ProcessExecutor, key: int) -> None:
        # The server's "started" and "prepared" may be read in one turn (a busy loop):
        # the go then comes after the hold all the same.
        executor.host.loop.call_soon(prepared, executor, key)

    monkeypatch.setattr(ProcessExecutor, "_on_started", held_before_go)
    monkeypatch.setattr(ProcessExecutor, "_on_prepared", go_a_turn_later)
    path = str(tmp_path / "time")
    app.task(Once(), name="late", execution="process", timeout=1)(partial(report_time, path))
    play(app)
    (start, end) = app.history.records("late")
    assert (end.action, end.reason, end.message) == ("success", None, None), end
    assert start.at == at("06:00:02")  # stamped when it was let go


def test_no_descendant_survives_a_terminated_process(tmp_path):
    """Grandchildren ignoring SIGTERM, one of them in a session of its own, are SIGKILLed."""
    pid_file = str(tmp_path / "pids")
    app = real()
    app.task(Once(), name="tree", execution="process", timeout=0.6)(
        partial(spawn_grandchildren, pid_file)
    )
    play(app, stop_after_start)
    pids = read_pids(pid_file)
    assert len(pids) == 3
    started, ended = the_run(app, "tree")
    assert (ended.action, ended.reason) == ("terminate", "timeout")
    assert seconds(ended.at - started.at) <= 0.6 + GRACE + 0.1
    assert [pid for pid in pids if not gone(pid)] == []


def test_process_outcomes(tmp_path):
    def inacted() -> None:
        raise Inaction("nothing new")

    app = real()
    bodies = {
        "ok": partial(print, end=""),
        "raises": raise_value_error,
        "exits": exit_hard,
        "killed": kill_self,
        "inacted": inacted,
    }
    for name, body in bodies.items():
        app.task(Once(), name=name, execution="process")(body)
    play(app, partial(stop_after_start, count=len(bodies)))
    ended = {rec.task: (rec.action, rec.message) for rec in app.history.records() if rec.run_id}
    assert ended == {
        "ok": ("success", None),
        "raises": ("fail", "disk on fire"),
        "exits": ("fail", "the process ended without a result (exit code 3)"),
        "killed": ("fail", "the process ended without a result (killed by signal SIGKILL)"),
        "inacted": ("inaction", "nothing new"),
    }
    finishes(app.history)


PY = sys.executable
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
COMMANDS = [
    # (name, argv, timeout, action, reason, message)
    ("true", [PY, "-c", "pass"], None, "success", None, None),
    (
        "no-shell",
        [PY, "-c", "import sys; sys.exit(sys.argv[1] != 'a;b $HOME *')", "a;b $HOME *"],
        None,
        "success",
        None,
        None,
    ),
    (
        "exit-3",
        [PY, "-c", "import sys; sys.stderr.write('no space left\\n'); sys.exit(3)"],
        None,
        "fail",
        None,
        "exit code 3: no space left",
    ),
    (
        "missing",
        ["conddsl-no-such-program", "--flag"],
        None,
        "fail",
        None,
        "executable not found: 'conddsl-no-such-program' (No such file or directory)",
    ),
    ("slow", ["sleep", "30"], 0.2, "terminate", "timeout", "killed by signal SIGTERM"),
    # -S: no site to import, so the interpreter reaches its SIG_IGN well within the timeout
    # even on a loaded machine (else SIGTERM ends it first, rightly, and the case is lost).
    (
        "stubborn",
        [PY, "-S", "-c", STUBBORN],
        0.5,
        "terminate",
        "timeout",
        "killed by signal SIGKILL",
    ),
]


def test_a_process_fail_record_keeps_the_exception_type_and_traceback():
    """From the fork server and from a child forked by the scheduler (a local function)."""

    def local() -> None:
        raise_value_error()

    app = real()
    app.task(Once(), name="served", execution="process")(raise_value_error)
    app.task(Once(), name="forked", execution="process")(local)
    play(app, partial(stop_after_start, count=2))
    failed = app.history.records(actions="fail")
    assert sorted(rec.task for rec in failed) == ["forked", "served"]
    for rec in failed:
        assert rec.message == "disk on fire"
        assert rec.traceback.startswith("Traceback (most recent call last):"), rec.traceback
        assert 'raise ValueError("disk on fire")' in rec.traceback
        assert rec.traceback.rstrip().endswith("ValueError: disk on fire")
        # The outermost frame is the task's own, not conddsl's (call_for_outcome).
        first = next(line for line in rec.traceback.splitlines() if line.startswith("  File"))
        own = "raise_value_error" if rec.task == "served" else "local"
        where = "runtime_helpers" if rec.task == "served" else "test_runtime_processes.py"
        assert where in first and first.endswith(f"in {own}"), rec.traceback


@pytest.mark.parametrize("char", ["x", "\N{SNOWMAN}", "\x00"])
@pytest.mark.parametrize("how", ["served", "forked"])
def test_a_huge_process_traceback_is_bounded_and_keeps_its_end(char, how):
    """Whatever its size once encoded, the outcome still arrives (not 'without a result',
    no child stuck writing to a full pipe), with the end of its traceback."""
    body = partial(raise_deep, 50, char, 100_000)
    app = real()
    app.task(Once(), name="deep", execution="process")(body if how == "served" else lambda: body())
    play(app, stop_after_start)
    (rec,) = app.history.records(actions="fail")
    assert rec.message.startswith("…") and rec.message.endswith(char * 100)
    assert len(rec.traceback) <= 64 * 1024
    assert rec.traceback.startswith("…") and rec.traceback.endswith(char * 1000 + "\n")


def test_command_tasks():
    app = real()
    for name, argv, timeout, *_ in COMMANDS:
        app.command_task(Once(), argv=argv, name=name, timeout=timeout)
    play(app, partial(stop_after_start, count=len(COMMANDS)))
    for name, _, _, action, reason, message in COMMANDS:
        _, ended = the_run(app, name)
        assert (ended.action, ended.reason) == (action, reason), name
        if message is not None:
            assert ended.message.endswith(message), (name, ended.message)
    _, stubborn = the_run(app, "stubborn")
    started, _ = the_run(app, "stubborn")
    # Killed after its grace, not left to sleep its 60 s (the bound is loose: the timeout,
    # the kill and the reaping wait for a CPU on a loaded machine; seen 0.85+ s at load 7).
    assert seconds(stubborn.at - started.at) <= 0.5 + GRACE + 1.0


def test_a_missing_working_directory_is_named(tmp_path):
    app = real()
    app.command_task(Once(), argv=["true"], name="nowhere", cwd=str(tmp_path / "missing"))
    play(app, stop_after_start)
    _, ended = the_run(app, "nowhere")
    assert ended.action == "fail"
    assert ended.message.startswith(f"working directory not found: '{tmp_path / 'missing'}'")


def test_max_process_count_limits_parallel_processes(tmp_path):
    app = real(max_process_count=1)
    for name in "abc":
        app.command_task(Once(), argv=["sleep", "0.05"], name=name)
    play(app, partial(stop_after_start, count=3))
    runs = sorted(app.history.records(actions=["run", "success"]), key=lambda rec: rec.at)
    # Never two alive at once: run, success, run, success, ...
    assert [rec.action for rec in runs] == ["run", "success"] * 3


def test_the_scheduler_does_not_wait_for_a_dying_process(tmp_path):
    """While a stubborn process has its grace, another run's timeout still fires on time."""
    app = real(kill_grace=0.5)
    app.task(Once(), name="stubborn", execution="process", timeout=0.1)(
        partial(ignore_sigterm, str(tmp_path / "pid"))
    )
    app.task(Once(), name="waiting", execution="async", timeout=0.3)(FOREVER["async"])
    play(app, partial(stop_after_start, count=2))
    started, ended = the_run(app, "waiting")
    assert 0.3 <= seconds(ended.at - started.at) <= 0.3 + 0.05
    _, stubborn = the_run(app, "stubborn")
    assert stubborn.at > ended.at  # still dying when the other run was ended


def test_the_demo_shows_every_cause():
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    path = os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(repo / "examples" / "termination" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    lines = result.stdout.splitlines()
    for task, words in [
        ("report", "terminate  timeout"),
        ("sync", "terminate  end_cond"),
        ("stubborn", "terminate  timeout"),
        ("archive", "terminate  shutdown"),
        ("tail", "terminate  shutdown"),
        ("hello", "success"),
        ("missing", "fail"),
    ]:
        assert any(f"{task:<9} {words}" in line for line in lines), (task, result.stdout)
    assert "killed by signal SIGKILL" in result.stdout  # stubborn, after kill_grace


def _process(body):
    return lambda app, pids, timeout: app.task(
        Once(), name="escape", execution="process", timeout=timeout
    )(partial(body, pids))


def _command(script: str):
    return lambda app, pids, timeout: app.command_task(
        Once(), argv=["sh", "-c", script.format(pids=pids)], name="escape", timeout=timeout
    )


@pytest.mark.parametrize(
    "add, timeout, action",
    [
        (_process(double_fork_daemon), 0.5, "terminate"),
        (_process(setsid_child), 0.5, "terminate"),
        (_process(fork_on_sigterm), 0.5, "terminate"),
        (_process(leave_a_child), "never", "success"),
        (_process(partial(double_fork_daemon, then_return=True)), "never", "success"),
        (_command("setsid sleep 3600 & echo $! > {pids}; sleep 3600"), 0.5, "terminate"),
        (_command("setsid sleep 3600 & echo $! > {pids}"), "never", "success"),
    ],
    ids=[
        "double-fork",
        "setsid",
        "forked-on-sigterm",
        "left-by-a-run-that-ended",
        "daemon-left",
        "command-setsid",
        "command-left-by-a-run-that-ended",
    ],
)
def test_no_descendant_escapes_the_end_of_its_run(tmp_path, add, timeout, action):
    """Whatever a run's processes do (a daemon, a session of their own, a child forked
    from the SIGTERM handler, a child left behind by a run that returned), nothing of
    the run outlives its finishing record: the run's keeper is their subreaper. The
    same for a program."""
    pid_file = str(tmp_path / "pids")
    app = real()
    add(app, pid_file, timeout)

    async def stop(app: Scheduler) -> None:
        await records_appear(app, action)
        app.shut_down()

    play(app, stop)
    _, ended = the_run(app, "escape")
    assert ended.action == action
    (escaped,) = read_pids(pid_file)
    assert gone(escaped)


def test_a_killed_keeper_leaves_nothing_of_its_run_behind(tmp_path):
    """The run's keeper SIGKILLed (by a person, the OOM killer): a grandchild in a session
    of its own, orphaned and adopted by the fork server, is ended before the run's
    record says it is over."""
    pid_file = str(tmp_path / "pids")
    app = real()
    app.task(Once(), name="escape", execution="process")(partial(setsid_child, pid_file))
    escaped: list[int] = []

    async def kill_the_keeper(app: Scheduler) -> None:
        await records_appear(app, "run")
        escaped.extend(await asyncio.to_thread(read_pids, pid_file))
        body = processes.read_stat(escaped[0]).ppid
        os.kill(processes.read_stat(body).ppid, signal.SIGKILL)
        await records_appear(app, "fail")
        escaped.append(int(gone(escaped[0])))
        app.shut_down()

    try:
        play(app, kill_the_keeper)
    finally:
        with contextlib.suppress(OSError):
            os.kill(escaped[0], signal.SIGKILL)
    _, ended = the_run(app, "escape")
    assert ended.message == "the process ended without a result (killed by signal SIGKILL)"
    assert escaped[1], "the orphan outlived its run's record"


def _gone_within(pid: int, seconds: float) -> bool:
    """Whether ``pid`` is gone, waiting up to ``seconds`` for it to go."""
    deadline = time.monotonic() + seconds
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return gone(pid)


def test_an_orphan_the_schedulers_sigkill_missed_is_ended_by_the_server(tmp_path):
    """The scheduler SIGKILLs a run's tree and says so ("killed"): the server reports the
    keeper's end at once. A grandchild in a session of its own that the scheduler's
    reading of /proc missed (forked after it) is the server's now: ended all the same,
    not kept until the server exits (and then init's, outliving a killed scheduler)."""
    pid_file = str(tmp_path / "pids")
    app = real()
    app.task(Once(), name="escape", execution="process")(partial(setsid_child, pid_file))
    escaped: list[int] = []

    async def kill_the_group(app: Scheduler) -> None:
        await records_appear(app, "run")
        escaped.extend(await asyncio.to_thread(read_pids, pid_file))
        keeper = processes.read_stat(processes.read_stat(escaped[0]).ppid).ppid
        executor = app._launcher._executors["process"]
        (key,) = executor._served
        executor._server.kill_sent(key, time.monotonic())
        await asyncio.sleep(0.2)  # the server has read it before the keeper's end
        os.killpg(keeper, signal.SIGKILL)  # the group: the tree as read before the fork
        await records_appear(app, "fail")
        escaped.append(int(await asyncio.to_thread(_gone_within, escaped[0], 5.0)))
        app.shut_down()

    try:
        play(app, kill_the_group)
    finally:
        with contextlib.suppress(OSError):
            os.kill(escaped[0], signal.SIGKILL)
    assert escaped[1], "the orphan outlived its run, kept by the fork server"
