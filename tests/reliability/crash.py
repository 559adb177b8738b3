"""Crash recovery helpers: a task file for ``conddsl run``, its output, and a lock holder.

The task file's zone is chosen so that the wall clock there is near noon: ``daily``
cannot roll over to the next day while a test runs, whatever the real time is.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from runtime_helpers.zones import noon_zone

from conddsl.history import FINISH_ACTIONS, Record
from conddsl.runfile import format_record

from . import SUBPROCESS_ENV

JOBS = textwrap.dedent(
    """
    import time
    from conddsl.runtime import TaskTerminationException, TerminationFlag

    def nightly():
        pass

    def quick():
        pass

    def hold(flag=TerminationFlag()):
        flag.wait()
        raise TaskTerminationException()

    def hold_process():
        time.sleep(3600)

    def escape():
        import signal, subprocess
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen(["sleep", "3600"], start_new_session=True)
        time.sleep(3600)
    """
)


def task_file(folder: Path, *, shut_after: float | None = None, name: str = "tasks.toml") -> Path:
    """The task file: a daily task that finishes, a stream of quick runs, three that hang."""
    return _write_task_file(
        folder,
        name,
        shut_after,
        f"""
        [scheduler]
        history = "runs.sqlite3"
        timezone = "{noon_zone()}"
        timeout = "never"
        kill_grace = 0.5
        instant_shutdown = true
        {{shut}}

        [tasks.nightly]
        func = "jobs:nightly"
        start_cond = "daily"

        [tasks.tick]
        func = "jobs:quick"
        start_cond = "every 0.05 seconds"

        [tasks.tock]
        command = ["true"]
        start_cond = "every 0.1 seconds"

        [tasks.hold_thread]
        func = "jobs:hold"
        execution = "thread"
        start_cond = "daily"

        [tasks.hold_process]
        func = "jobs:hold_process"
        execution = "process"
        start_cond = "daily"

        [tasks.hold_command]
        command = ["sleep", "3600"]
        start_cond = "daily"
        """,
    )


def starts_file(
    folder: Path, *, shut_after: float | None = None, name: str = "starts.toml"
) -> Path:
    """A task file whose process and command tasks start all the time, ignore SIGTERM
    and leave a child in a session of its own."""
    return _write_task_file(
        folder,
        name,
        shut_after,
        """
        [scheduler]
        history = "starts.sqlite3"
        timezone = "UTC"
        kill_grace = 0.1
        instant_shutdown = true
        {shut}

        [tasks.escape]
        func = "jobs:escape"
        execution = "process"
        start_cond = "every 0.03 seconds"
        timeout = "0.05 seconds"

        [tasks.escape_command]
        command = ["sh", "-c", "trap '' TERM; setsid sleep 3600 & sleep 3600"]
        start_cond = "every 0.03 seconds"
        timeout = "0.05 seconds"
        """,
    )


def _write_task_file(folder: Path, name: str, shut_after: float | None, text: str) -> Path:
    """Write jobs.py and the task file ``name`` from ``text``, whose ``{shut}`` line becomes
    the shut condition (none without ``shut_after``)."""
    (folder / "jobs.py").write_text(JOBS)
    shut = f'shut_cond = "scheduler has run over {shut_after} seconds"' if shut_after else ""
    path = folder / name
    path.write_text(textwrap.dedent(text).replace("{shut}", shut))
    return path


def start_run(path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``conddsl run`` in a subprocess, in the task file's folder."""
    return subprocess.Popen(
        [sys.executable, "-m", "conddsl.cli", "run", path.name],
        cwd=path.parent,
        env={**SUBPROCESS_ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+)  (\S+)\s+(\S+)")


def record_lines(lines: list[str]) -> Counter:
    """(time, verb, task) of each record line ``conddsl run`` printed."""
    found: Counter = Counter()
    for line in lines:
        match = LINE.match(line)
        if match:
            found[match.groups()] += 1
    return found


def as_lines(records: list[Record], zone) -> Counter:
    """The same key for records read from the history file."""
    return record_lines([format_record(record, zone) for record in records])


def read_until(process: subprocess.Popen, done, limit: float = 30.0) -> list[str]:
    """Lines of the process's stdout until ``done(lines)`` holds (or the process ends)."""
    lines: list[str] = []
    deadline = time.monotonic() + limit
    while not done(lines):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {limit} s; got {lines[-5:]}")
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"the scheduler ended early: {process.stderr.read()}")
        lines.append(line.rstrip("\n"))
    return lines


def one_finish_per_run(records: list[Record]) -> dict[str, Record]:
    """Check every run has one ``run`` record and at most one finish; the finish by run_id."""
    starts = Counter(r.run_id for r in records if r.action == "run")
    ends = Counter(r.run_id for r in records if r.action in FINISH_ACTIONS)
    assert all(n == 1 for n in starts.values()), "a run was recorded twice"
    assert all(n == 1 for n in ends.values()), "a run has two finishing records"
    assert set(ends) <= set(starts), "a finishing record without its run"
    return {r.run_id: r for r in records if r.action in FINISH_ACTIONS}


LOCKER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    if sys.argv[2:] == ["later"]:
        print("ready", flush=True)
        sys.stdin.readline()
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    conn.close()
    """
)


class Locker:
    """Another process holding ``BEGIN EXCLUSIVE`` on a SQLite file until released
    (``later``: started now, the lock taken by ``lock()``, in milliseconds)."""

    def __init__(self, path: Path, *, later: bool = False) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(path), *(["later"] if later else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        expected = "ready" if later else "locked"
        assert self.process.stdout.readline().strip() == expected

    def lock(self) -> None:
        """Take the lock (a Locker made with ``later``)."""
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("\n")
            self.process.stdin.flush()
            self.process.wait(10)
