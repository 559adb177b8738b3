"""Several ``conddsl run`` nodes on one task file and one PostgreSQL database, for real:
each due run starts exactly once, a killed or frozen node is taken over, clocks and
outages do not break it. Slow (real seconds): marked long and smoke, CI runs them."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
from runtime_helpers.zones import noon_zone

from tests.postgres_helpers.nodes import (
    pid_alive,
    records,
    runs_by_task,
    start_node,
    stop,
    unfinished,
    wait_until,
    write_setup,
)

pytest.importorskip("psycopg")
pytestmark = [pytest.mark.long, pytest.mark.smoke]


def _tables(**tasks: str) -> str:
    return "".join(f"\n[tasks.{name}]\n{body.strip()}\n" for name, body in tasks.items())


def _mixed_task_file(seconds: int) -> str:
    tasks: dict[str, str] = {}
    for n in range(25):
        tasks[f"t{n}"] = (
            'func = "nodetasks:quick"\nexecution = "thread"\nstart_cond = "every 1 second"'
        )
    for n in range(10):
        tasks[f"a{n}"] = (
            'func = "nodetasks:aquick"\nexecution = "async"\nstart_cond = "every 1 second"'
        )
    for n in range(5):
        tasks[f"p{n}"] = (
            'func = "nodetasks:proc_quick"\nexecution = "process"\nstart_cond = "every 2 seconds"'
        )
    for n in range(4):
        tasks[f"c{n}"] = (
            'func = "nodetasks:quick"\nexecution = "thread"\nstart_cond = "cron * * * * *"'
        )
    for n in range(2):
        tasks[f"d{n}"] = 'func = "nodetasks:quick"\nexecution = "thread"\nstart_cond = "daily"'
    for n in range(4):
        tasks[f"after{n}"] = (
            f'func = "nodetasks:quick"\nexecution = "thread"\nstart_cond = "after task \'t{n}\'"'
        )
    header = f"""
[scheduler]
timezone = "{noon_zone()}"
lease = "3 seconds"
shut_cond = "scheduler has run over {seconds} seconds"
"""
    return header + _tables(**tasks)


def test_three_nodes_start_each_occurrence_exactly_once(tmp_path: Path, postgres_dsn: str) -> None:
    write_setup(tmp_path, _mixed_task_file(36))
    nodes = [start_node(tmp_path, postgres_dsn) for _ in range(3)]
    # Midway, every node's listening connection is cut (pg_terminate_backend): each
    # reconnects and looks at everything again; nothing is missed or doubled.
    wait_until(lambda: len(records(postgres_dsn)) > 200, 60, "the nodes run")
    assert _terminate_listeners(postgres_dsn) == 3
    outputs = [stop(node, timeout=90) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    rows = records(postgres_dsn)
    runs = runs_by_task(rows)
    total = sum(len(found) for found in runs.values())
    assert total >= 1000, f"only {total} runs"
    assert unfinished(rows) == []  # 0 lost records: every run has exactly one finish
    assert not [row for row in rows if row[1] == "crash"]
    # Every node took part.
    assert len({row[5] for row in rows if row[1] == "run"}) == 3
    for task, found in runs.items():
        times = [row[2] for row in found]
        if task.startswith("after"):
            continue  # below
        if task[0] in "ta":  # every 1 second: never two starts within a second
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            assert min(gaps) >= 1.0 - 1e-6, (task, min(gaps))
        elif task[0] == "p":
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            assert min(gaps) >= 2.0 - 1e-6, (task, min(gaps))
        elif task[0] == "c":  # one start a minute
            minutes = [int(at // 60) for at in times]
            assert len(minutes) == len(set(minutes)), task
        elif task[0] == "d":
            assert len(found) == 1, task
    # after task 'tN': between two starts of the dependent, an upstream success; and the
    # dependent starts soon after it, whichever node recorded the success.
    delays = []
    for n in range(4):
        upstream = [row[2] for row in rows if row[0] == f"t{n}" and row[1] == "success"]
        starts = [row[2] for row in runs.get(f"after{n}", [])]
        assert starts, f"after{n} never started"
        for a, b in zip(starts, starts[1:], strict=False):
            assert any(a < at < b for at in upstream), (n, a, b)
        for start in starts:
            delays.append(start - max(at for at in upstream if at < start))
    delays.sort()
    median = delays[len(delays) // 2]
    print(
        f"dependent start after its upstream's success: median {median * 1000:.0f} ms,"
        f" p90 {delays[len(delays) * 9 // 10] * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms"
    )
    assert median < 0.5  # 100 ms on a quiet machine; this one is shared


def _terminate_listeners(dsn: str) -> int:
    """End the records' LISTEN connection of every node (its wake-ups from other nodes'
    records; the request poller listens on a connection of its own); how many there were."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'conddsl %'"
            " AND query LIKE 'LISTEN conddsl_records%'"
        ).fetchall()
    return len(rows)


def _owner_pid(row: tuple) -> int:
    return int(row[5].rsplit(":", 1)[1])


def test_a_killed_node_is_taken_over_its_tree_dies_and_retry_starts_once(
    tmp_path: Path, postgres_dsn: str
) -> None:
    task_file = f"""
[scheduler]
timezone = "{noon_zone()}"
lease = "3 seconds"
shut_cond = "scheduler has run over 28 seconds"
kill_grace = 1

[tasks.tree]
func = "nodetasks:with_grandchild"
execution = "process"
start_cond = "daily"
on_node_lost = "retry"
timeout = "1 minute"
"""
    write_setup(tmp_path, task_file)
    extra = {"NODE_TEST_SLEEP": "8"}
    nodes = [start_node(tmp_path, postgres_dsn, extra=extra) for _ in range(2)]
    try:
        wait_until(lambda: records(postgres_dsn, "tree"), 30, "the task starts")
        wait_until(lambda: list(tmp_path.glob("grandchild-*.pid")), 15, "the grandchild runs")
        (first,) = [row for row in records(postgres_dsn, "tree") if row[1] == "run"]
        owner = next(node for node in nodes if node.pid == _owner_pid(first))
        other = next(node for node in nodes if node is not owner)
        grandchild = int(next(tmp_path.glob("grandchild-*.pid")).read_text())
        assert pid_alive(grandchild)
        os.killpg(owner.pid, signal.SIGKILL)  # the node (its session: the test's kill -9)
        killed = time.monotonic()
        owner.wait(timeout=10)

        def crashed() -> bool:
            return any(row[1] == "crash" for row in records(postgres_dsn, "tree"))

        wait_until(crashed, 3 + 1 + 2, "another node records the crash")
        assert time.monotonic() - killed <= 3 + 1 + 0.5  # lease + 1 s (and our polling)
        crash = next(row for row in records(postgres_dsn, "tree") if row[1] == "crash")
        assert crash[4] == "node lost" and crash[5] != first[5]
        wait_until(lambda: not pid_alive(grandchild), 10, "the grandchild dies with its node")
        # retry: attempt 2 starts once, on the surviving node, and finishes.
        wait_until(
            lambda: len([r for r in records(postgres_dsn, "tree") if r[1] == "run"]) == 2,
            10,
            "the retry starts",
        )
        stop(other, timeout=90)
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    rows = records(postgres_dsn, "tree")
    runs = [row for row in rows if row[1] == "run"]
    assert len(runs) == 2 and runs[1][4] == "retry"
    assert unfinished(rows) == []
    assert [row[1] for row in rows if row[3] == runs[1][3]] == ["run", "success"]


def test_a_frozen_node_fences_itself_and_nothing_runs_twice(
    tmp_path: Path, postgres_dsn: str
) -> None:
    task_file = f"""
[scheduler]
timezone = "{noon_zone()}"
lease = "2 seconds"
shut_cond = "scheduler has run over 30 seconds"
kill_grace = 1

[tasks.slow]
func = "nodetasks:sleeper"
execution = "process"
start_cond = "daily"
timeout = "1 minute"
"""
    write_setup(tmp_path, task_file)
    extra = {"NODE_TEST_SLEEP": "10"}
    nodes = [start_node(tmp_path, postgres_dsn, extra=extra) for _ in range(2)]
    try:
        wait_until(lambda: records(postgres_dsn, "slow"), 30, "the task starts")
        (first,) = records(postgres_dsn, "slow")
        owner = next(node for node in nodes if node.pid == _owner_pid(first))
        os.kill(owner.pid, signal.SIGSTOP)
        time.sleep(2 + 2)  # past its lease: the other node takes it over
        crashed = [row for row in records(postgres_dsn, "slow") if row[1] == "crash"]
        os.kill(owner.pid, signal.SIGCONT)
        assert crashed and crashed[0][4] == "node lost"
        outputs = [stop(node, timeout=90) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    rows = records(postgres_dsn, "slow")
    # One run, crashed by the other node; the frozen node's own finish was refused.
    assert [row[1] for row in rows] == ["run", "crash"], rows
    assert rows[1][5] != first[5]
    err = outputs[nodes.index(owner)][1]
    assert "fenced" in err or "taken over" in err, err[-3000:]


@pytest.mark.parametrize("offsets", [(5.0, -5.0)])
def test_nodes_with_wrong_clocks_still_start_exactly_once(
    tmp_path: Path, postgres_dsn: str, offsets: tuple[float, float]
) -> None:
    tasks = {
        f"e{n}": 'func = "nodetasks:quick"\nexecution = "thread"\nstart_cond = "every 2 seconds"'
        for n in range(10)
    }
    tasks["follow"] = (
        'func = "nodetasks:quick"\nexecution = "thread"\nstart_cond = "after task \'e0\'"'
    )
    header = '[scheduler]\nlease = "3 seconds"\nshut_cond = "scheduler has run over 15 seconds"\n'
    write_setup(tmp_path, header + _tables(**tasks))
    nodes = [start_node(tmp_path, postgres_dsn, offset=offset) for offset in (0.0, *offsets)]
    outputs = [stop(node, timeout=90) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    assert any("differs from the database" in err for _, err in outputs)
    rows = records(postgres_dsn)
    assert unfinished(rows) == []
    runs = runs_by_task(rows)
    for n in range(10):
        times = [row[2] for row in runs[f"e{n}"]]
        assert len(times) >= 3
        assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 2.0 - 1e-6
    upstream = [row[2] for row in rows if row[0] == "e0" and row[1] == "success"]
    follows = [row[2] for row in runs["follow"]]
    for a, b in zip(follows, follows[1:], strict=False):
        assert any(a < at < b for at in upstream)


def test_an_unreachable_database_for_ten_seconds(tmp_path: Path, postgres_dsn: str) -> None:
    from tests.postgres_helpers.tcpproxy import Proxy

    task_file = f"""
[scheduler]
timezone = "{noon_zone()}"
lease = "30 seconds"
shut_cond = "scheduler has run over 30 seconds"

[tasks.long]
func = "nodetasks:sleeper"
execution = "process"
start_cond = "daily"
timeout = "1 minute"

[tasks.tick]
func = "nodetasks:quick"
execution = "thread"
start_cond = "every 1 second"
"""
    write_setup(tmp_path, task_file)
    proxy = Proxy(("127.0.0.1", 5432))
    try:
        node = start_node(tmp_path, proxy.dsn(postgres_dsn), extra={"NODE_TEST_SLEEP": "15"})
        wait_until(lambda: records(postgres_dsn, "long"), 30, "the long task starts")
        time.sleep(1)
        proxy.cut()
        cut_at = time.time()
        time.sleep(10)
        during = [row for row in records(postgres_dsn) if cut_at + 0.5 < row[2] < cut_at + 10]
        proxy.restore()
        restored_at = time.time()
        out, err = stop(node, timeout=90)
    finally:
        proxy.close()
    assert node.returncode == 0, err[-3000:]
    assert during == []  # nothing claimed (nor written) while it was cut off
    assert "cannot be reached" in err
    rows = records(postgres_dsn)
    assert unfinished(rows) == []  # nothing recorded was lost: the pending ones came
    long_rows = [row for row in rows if row[0] == "long"]
    assert [row[1] for row in long_rows] == ["run", "success"]  # it kept running
    assert any(row[0] == "tick" and row[1] == "run" and row[2] > restored_at for row in rows)
    per_task = defaultdict(int)
    for row in rows:
        per_task[row[0]] += 1
    assert per_task["tick"] > 10
