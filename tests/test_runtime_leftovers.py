"""The task processes of a scheduler that died are ended by the next one on its history.

A registry beside the history file (``<file>.procs.json``) lists the live process
trees; a new scheduler ends what a dead one listed (conddsl.runtime.leftovers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from reliability import SUBPROCESS_ENV
from runtime_helpers import gone, process_forever
from runtime_helpers.scenario import Once, play, records_appear

from conddsl.history import MemoryHistory, SQLiteHistory
from conddsl.runtime import Scheduler
from conddsl.runtime.leftovers import SUFFIX, ProcessRegistry
from conddsl.runtime.processes import read_stat, snapshot
from conddsl.runtime.registry_place import registry_path

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc, sessions, prctl")

GRACE = 0.2
DEAD_OWNER = (2**22 + 1, 0)  # above any pid_max: a scheduler that is surely gone


def start_of(pid: int) -> int:
    info = read_stat(pid)
    assert info is not None
    return info.start


def leave(db: Path, *trees: tuple[str, int, int], owner=DEAD_OWNER) -> Path:
    """Write the registry a dead scheduler would have left: (task, pid, start) each."""
    registry = ProcessRegistry(str(db) + SUFFIX)
    registry.owner = owner
    for task, pid, start in trees:
        registry.add(f"run-of-{task}", task, pid, start)
    return Path(registry.path)


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _run_recorded(db: Path, task: str) -> bool:
    """Whether the history file holds a run record of ``task``."""
    with SQLiteHistory(db) as history:
        return bool(history.records(task, actions="run"))


def restart(db: Path) -> float:
    """Serve a scheduler on the history file until its shut condition (at once); seconds."""
    with SQLiteHistory(db) as history:
        app = Scheduler(
            {"history": history, "shut_cond": "true", "kill_grace": GRACE, "timeout": "never"}
        )
        began = time.monotonic()
        app.run()
        return time.monotonic() - began


def in_session(script: str) -> subprocess.Popen:
    """A shell script in a session of its own (as a task's process is), stdin a pipe."""
    return subprocess.Popen(
        ["/bin/sh", "-c", script], stdin=subprocess.PIPE, start_new_session=True
    )


def children(pid: int, count: int) -> list[int]:
    """The pids of ``pid``'s children, once there are ``count`` of them."""
    deadline = time.monotonic() + 5
    while True:
        found = [info.pid for info in snapshot(time.monotonic()).children(pid)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def alive(pid: int) -> bool:
    return not gone(pid)


def test_a_restart_ends_the_whole_tree_a_dead_scheduler_left(tmp_path, caplog):
    # The root and its children ignore SIGTERM; one child left the group (setsid).
    root = in_session("trap '' TERM; sleep 60 & setsid sleep 60 & read line")
    try:
        kids = children(root.pid, 2)
        assert len(kids) == 2
        db = tmp_path / "runs.sqlite3"
        registry = leave(db, ("export", root.pid, start_of(root.pid)))
        with caplog.at_level(logging.WARNING, logger="conddsl.runtime"):
            took = restart(db)
        root.wait(5)  # our child: reaped here
        assert [pid for pid in kids if alive(pid)] == []
        assert took >= GRACE  # SIGTERM was ignored: SIGKILL came after the grace
        assert "left running by a scheduler that died: export (pid" in caplog.text
        assert not registry.exists()  # every tree it listed is gone
    finally:
        root.kill()
        root.wait()


def test_what_is_left_of_a_group_whose_root_ended_is_ended(tmp_path):
    root = in_session("sleep 60 & read line")
    start = start_of(root.pid)
    (kid,) = children(root.pid, 1)
    root.communicate(b"\n", timeout=5)  # the root ends; its child stays in its group
    assert alive(kid)
    db = tmp_path / "runs.sqlite3"
    leave(db, ("export", root.pid, start))
    restart(db)
    assert gone(kid)


def test_a_recycled_pid_is_not_signalled(tmp_path):
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        db = tmp_path / "runs.sqlite3"
        # The pid is listed with another start time: it names another process now.
        registry = leave(db, ("export", other.pid, start_of(other.pid) - 1))
        restart(db)
        assert other.poll() is None
        assert not registry.exists()
    finally:
        other.kill()
        other.wait()


def test_the_processes_of_a_scheduler_alive_now_are_left_alone(tmp_path, caplog):
    owner = subprocess.Popen(["sleep", "60"])  # stands for another scheduler, alive
    task = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        db = tmp_path / "runs.sqlite3"
        registry = leave(
            db, ("export", task.pid, start_of(task.pid)), owner=(owner.pid, start_of(owner.pid))
        )
        before = registry.read_text()
        with caplog.at_level(logging.WARNING, logger="conddsl.runtime"):
            restart(db)
        assert task.poll() is None
        assert registry.read_text() == before  # still that scheduler's
        assert f"another scheduler (pid {owner.pid})" in caplog.text
        with SQLiteHistory(db) as history:
            assert history.records(actions="crash") == []  # its runs are not crashed
    finally:
        for process in (owner, task):
            process.kill()
            process.wait()


def test_a_second_scheduler_of_the_same_process_leaves_the_first_ones_alone(tmp_path):
    """Two schedulers of one process on one history file: B neither ends A's live tree
    nor records A's open run as crash."""
    db = tmp_path / "runs.sqlite3"
    first = Scheduler(
        {
            "history": SQLiteHistory(db),
            "shut_cond": "scheduler has run over 3 seconds",
            "instant_shutdown": True,
            "kill_grace": GRACE,
            "timeout": "never",
        }
    )
    first.command_task("true", argv=["sleep", "30"], name="long_a")
    serving = threading.Thread(target=first.run)
    serving.start()
    try:
        registry = Path(str(db) + SUFFIX)
        deadline = time.monotonic() + 10
        # (The file names its owner from the start; the tree comes once the run does.)
        # The tree is listed before the run record is written (and the body let go): B
        # waits for both, or a loaded machine has B read no open run at all.
        while (
            not ("long_a" in _text(registry) and _run_recorded(db, "long_a"))
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        assert "long_a" in registry.read_text()
        assert _run_recorded(db, "long_a")
        restart(db)  # B: starts and stops at once
        with SQLiteHistory(db) as history:
            assert [r.action for r in history.records("long_a")] == ["run"]  # not crash
    finally:
        serving.join(30)
    with SQLiteHistory(db) as history:
        finish = [r for r in history.records("long_a") if r.action != "run"]
    assert [(r.action, r.reason) for r in finish] == [("terminate", "shutdown")]


def test_a_scheduler_with_no_process_running_is_not_taken_for_a_dead_one(tmp_path):
    """A serves on the history file with an async run open and no process tree: B,
    started beside it, must not record A's live run as crash (it once did, and A then
    wrote the run's success too: two finishing records for one run)."""
    db = tmp_path / "runs.sqlite3"
    first = Scheduler(
        {
            "history": SQLiteHistory(db),
            "shut_cond": "scheduler has run over 3 seconds",
            "timeout": "never",
        }
    )
    started = threading.Event()

    @first.task(Once(), name="waits", execution="async")
    async def waits() -> None:
        started.set()
        await asyncio.sleep(60)  # ended by the shutdown

    serving = threading.Thread(target=first.run)
    serving.start()
    try:
        assert started.wait(10)
        restart(db)  # B: starts and stops at once
        with SQLiteHistory(db) as history:
            assert [r.action for r in history.records("waits")] == ["run"]  # not crash
    finally:
        first.shut_down(force=True)
        serving.join(30)
    with SQLiteHistory(db) as history:
        assert [r.action for r in history.records("waits")] == ["run", "terminate"]
    assert not Path(str(db) + SUFFIX).exists()  # A's mark goes with it


def test_a_registry_from_before_the_last_boot_is_dropped_unread(tmp_path):
    task = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        db = tmp_path / "runs.sqlite3"
        registry = ProcessRegistry(str(db) + SUFFIX)
        registry.owner = DEAD_OWNER
        registry.boot = "an-earlier-boot"  # a pid and start tick may repeat after a boot
        registry.add("run-of-export", "export", task.pid, start_of(task.pid))
        restart(db)
        assert task.poll() is None  # not taken for the old tree
        assert not Path(registry.path).exists()
    finally:
        task.kill()
        task.wait()


def test_an_unreadable_registry_is_ignored(tmp_path, caplog):
    db = tmp_path / "runs.sqlite3"
    registry = Path(str(db) + SUFFIX)
    registry.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="conddsl.runtime"):
        restart(db)
    assert "is unreadable" in caplog.text
    assert not registry.exists()


def test_the_registry_lists_the_live_trees_while_they_run(tmp_path):
    db = tmp_path / "runs.sqlite3"
    registry = Path(str(db) + SUFFIX)
    seen: dict = {}
    with SQLiteHistory(db) as history:
        app = Scheduler({"history": history, "kill_grace": GRACE, "timeout": "never"})
        app.command_task(Once(), argv=["sleep", "60"], name="wait")
        app.task(Once(), name="work", execution="process")(process_forever)

        async def look(app: Scheduler) -> None:
            await records_appear(app, "run", 2)
            await asyncio.sleep(0.05)  # the registry is written at the end of the turn
            seen.update(json.loads(registry.read_text()))
            app.shut_down(force=True)

        play(app, look)
        runs = {rec.task: rec.run_id for rec in history.records(actions="run")}
    trees = seen["trees"]
    assert {key: tree["task"] for key, tree in trees.items()} == {
        runs["wait"]: "wait",
        runs["work"]: "work",
    }
    for tree in trees.values():
        assert tree["pgid"] == tree["pid"]
        assert gone(tree["pid"])  # ended with the run
    assert seen["owner"]["pid"] == os.getpid()
    assert seen["owner"]["start"] == start_of(os.getpid())
    assert not registry.exists()  # nothing left to list


def test_only_a_history_file_gets_a_registry(tmp_path):
    assert registry_path(MemoryHistory()) is None
    with SQLiteHistory(":memory:") as history:
        assert registry_path(history) is None
    with SQLiteHistory(tmp_path / "runs.sqlite3") as history:
        assert registry_path(history) == str(tmp_path / "runs.sqlite3") + SUFFIX


def test_the_process_registry_can_be_named_or_turned_off(tmp_path):
    """Whatever the history: a path lists the live trees there; False keeps no registry
    even beside a history file."""
    named = tmp_path / "elsewhere.processes"
    seen: list[bool] = []

    async def look(app: Scheduler) -> None:
        await records_appear(app, "run", 1)
        await asyncio.sleep(0.05)  # the registry is written at the end of the turn
        seen.append(named.exists())
        seen.append(Path(str(tmp_path / "runs.sqlite3") + SUFFIX).exists())
        app.shut_down(force=True)

    app = Scheduler(
        {"history": MemoryHistory(), "kill_grace": GRACE, "timeout": "never"},
        process_registry=named,
    )
    app.command_task(Once(), argv=["sleep", "60"], name="wait")
    play(app, look)
    with SQLiteHistory(tmp_path / "runs.sqlite3") as history:
        app = Scheduler(
            {"history": history, "kill_grace": GRACE, "timeout": "never"},
            process_registry=False,
        )
        app.command_task(Once(), argv=["sleep", "60"], name="wait")
        play(app, look)
    assert seen == [True, False, False, False]
    assert not named.exists()  # every tree ended: the file goes


SCHEDULER = textwrap.dedent(
    """
    import os, sys, time
    from conddsl.runtime import Scheduler

    def work(path=sys.argv[1]):
        with open(path + ".tmp", "w") as file:
            file.write(str(os.getpid()))
        os.replace(path + ".tmp", path)
        time.sleep(60)

    app = Scheduler({"timeout": "never"})
    app.task("true", name="work", execution="process")(work)
    app.run()
    """
)


def test_a_process_task_gets_sigterm_when_its_scheduler_dies(tmp_path):
    """Without any restart: the forked child asked Linux for SIGTERM at its parent's death."""
    pid_file = tmp_path / "pid"
    scheduler = subprocess.Popen(
        [sys.executable, "-c", SCHEDULER, str(pid_file)], env=SUBPROCESS_ENV, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists():
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.01)
        pid = int(pid_file.read_text())
        assert alive(pid)
    finally:
        scheduler.send_signal(signal.SIGKILL)
        scheduler.wait()
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone(pid)


def test_a_body_goes_only_once_the_registry_file_lists_its_keeper(tmp_path, monkeypatch):
    """The server's "started" and "prepared" read in one turn of a busy loop: the go must
    still wait for the registry's write, or a scheduler killed in between leaves a tree
    that has run lines of its task and that no registry lists (issue: orphan after kills)."""
    from conddsl.runtime import forkserver, process_exec

    db = tmp_path / "runs.sqlite3"
    registry = Path(str(db) + SUFFIX)
    keepers: dict[int, int] = {}  # run key -> its keeper's pid
    listed_at_go: dict[int, set[int]] = {}  # run key -> the pids the file listed then

    started = process_exec.ProcessExecutor._on_started

    def on_started(self, key: int, pid: int, start: int | None) -> None:
        keepers[key] = pid
        started(self, key, pid, start)

    readable = forkserver.ForkServer._readable

    def slow_readable(self) -> None:
        time.sleep(0.2)  # a loop held by other work: the server's messages pile up
        readable(self)

    go = forkserver.ForkServer.go

    def checked_go(self, key: int) -> None:
        trees = json.loads(registry.read_text())["trees"] if registry.exists() else {}
        listed_at_go[key] = {tree["pid"] for tree in trees.values()}
        go(self, key)

    monkeypatch.setattr(process_exec.ProcessExecutor, "_on_started", on_started)
    monkeypatch.setattr(forkserver.ForkServer, "_readable", slow_readable)
    monkeypatch.setattr(forkserver.ForkServer, "go", checked_go)
    with SQLiteHistory(db) as history:
        app = Scheduler({"history": history, "kill_grace": GRACE, "timeout": "never"})
        app.task(Once(), name="work", execution="process")(process_forever)

        async def look(app: Scheduler) -> None:
            await records_appear(app, "run", 1)
            app.shut_down(force=True)

        play(app, look)
    assert listed_at_go
    for key, listed in listed_at_go.items():
        assert keepers[key] in listed
