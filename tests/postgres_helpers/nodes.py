"""Several ``conddsl run`` nodes on one task file and one PostgreSQL database."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from runtime_helpers.cli import start_cli

ROOT = Path(__file__).resolve().parent.parent.parent

# The tasks the node tests run (written beside the task file as nodetasks.py).
TASKS_MODULE = '''
import asyncio, os, subprocess, time


def quick():
    time.sleep(0.01)


async def aquick():
    await asyncio.sleep(0.01)


def proc_quick():
    time.sleep(0.01)


def sleeper():
    time.sleep(float(os.environ.get("NODE_TEST_SLEEP", "8")))


def with_grandchild():
    """A process task with a grandchild: both must die with its node."""
    child = subprocess.Popen(["sleep", "300"])
    with open(f"grandchild-{os.getpid()}.pid", "w") as file:
        file.write(str(child.pid))
    time.sleep(float(os.environ.get("NODE_TEST_SLEEP", "30")))
    child.kill()
'''

# Imported first by every node (PYTHONPATH): a clock offset injected into time.time()
# (CONDDSL_TEST_CLOCK_OFFSET seconds), as a machine whose clock is wrong.
SITECUSTOMIZE = """
import os, time
_offset = float(os.environ.get("CONDDSL_TEST_CLOCK_OFFSET", "0") or 0)
if _offset:
    _real = time.time
    time.time = lambda: _real() + _offset
"""


def write_setup(folder: Path, task_file: str) -> None:
    """The task file, its tasks' module and the clock-offset hook in ``folder``."""
    (folder / "tasks.toml").write_text(task_file, encoding="utf-8")
    (folder / "nodetasks.py").write_text(TASKS_MODULE, encoding="utf-8")
    hooks = folder / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")


def start_node(
    folder: Path, dsn: str, *, offset: float = 0.0, extra: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``conddsl run tasks.toml`` in ``folder`` on the database ``dsn`` (CONDDSL_HISTORY)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(folder / "hooks"), str(ROOT), str(folder)]),
        "CONDDSL_HISTORY": dsn,
        "CONDDSL_TEST_CLOCK_OFFSET": str(offset),
        **(extra or {}),
    }
    # start_new_session: a kill -9 of the node, not of the test
    return start_cli(folder, "run", "tasks.toml", env=env, start_new_session=True)


def stop(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    """Wait for a node (SIGTERM then SIGKILL if it does not end); its output."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.communicate()


def records(dsn: str, task: str | None = None) -> list[tuple]:
    """Every record: (task, action, at seconds, run_id, reason, node), in time order."""
    import psycopg

    from conddsl.history.base import ACTIONS

    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('conddsl_records')").fetchone()[0] is None:
            return []  # no node has made the tables yet
        rows = conn.execute(
            "SELECT task, action, at, run_id, reason, node FROM conddsl_records"
            + (" WHERE task = %s" if task else "")
            + " ORDER BY at, id",
            (task,) if task else (),
        ).fetchall()
    return [(t, ACTIONS[a], at / 1e6, r, why, n) for t, a, at, r, why, n in rows]


def runs_by_task(rows: list[tuple]) -> dict[str, list[tuple]]:
    """The run records of each task."""
    found: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        if row[1] == "run":
            found[row[0]].append(row)
    return found


def unfinished(rows: list[tuple]) -> list[tuple]:
    """Run records without exactly one finishing record (lost or doubled finishes)."""
    finishes: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        if row[1] != "run":
            finishes[row[0], row[3]] += 1
    return [row for row in rows if row[1] == "run" and finishes[row[0], row[3]] != 1]


def wait_until(predicate, timeout: float, what: str) -> float:
    """Poll ``predicate`` until true; seconds taken (AssertionError after ``timeout``)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def pid_alive(pid: int) -> bool:
    """Whether a process exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
