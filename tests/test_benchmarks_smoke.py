"""The benchmark command runs: `python benchmarks/run.py --smoke` (no timing is checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = ("parse", "clock", "task-state", "cron", "memory", "cli")
RUNTIME_CASES = (
    "idle-cpu",
    "start",
    "terminate",
    "stall",
    "sched-memory",
    "total-memory",
    "check",
)


@pytest.mark.long
@pytest.mark.smoke
def test_smoke_mode_runs_every_case() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke"],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for case in CASES + RUNTIME_CASES:
        assert f"| {case} |" in out, f"case {case!r} missing from:\n{out}"
    # The peer side is not built in smoke mode.
    assert "skipped in smoke" in out
    assert "peer failed" not in out
    assert "conddsl failed" not in out
    # Every runtime row has a conddsl measurement (or says why not).
    for line in out.splitlines():
        if any(line.startswith(f"| {case} |") for case in RUNTIME_CASES):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            assert cells[3] not in ("missing", "error (see below)"), line


def test_only_selects_one_case() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--only", "cron"],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| cron |" in done.stdout
    assert "| parse |" not in done.stdout


def _run_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runtime_cells_and_ratios() -> None:
    run = _run_module()
    ours = {"p50": 0.001, "p99": 0.004, "max": 0.005}
    peer = {"p50": 0.050, "p99": 0.100, "max": 0.101}
    row = run.RuntimeRow("terminate", "w", "lateness", ours, peer, ("p99", 0.005, "p99 <= 5 ms"))
    assert run._runtime_cell(ours, "lateness") == "1.00 / 4.00 / 5.00"
    assert run._runtime_ratio(row, False) == 50
    assert run._runtime_ratio(row, True) == 25
    assert run._target_text(row) == "p99 <= 5 ms met"
    row.ours = {"p50": 0.001, "p99": 0.006, "max": 0.007}
    assert run._target_text(row) == "p99 <= 5 ms NOT met"
    assert run._runtime_cell({"unavailable": "no check"}, "wall") == "not yet available"
    assert run._runtime_cell({"unsupported": "hangs"}, "lateness") == "not supported (see below)"
    assert run._runtime_cell("skipped in smoke", "cpu") == "skipped in smoke"
    memory = {"bytes": 3 * 2**20, "per_task": 2048.0}
    assert run._runtime_cell(memory, "memory") == "3.00 (2.00)"


def test_total_memory_target_is_a_share_of_the_peer() -> None:
    run = _run_module()
    ours, peer = {"bytes": 30 * 2**20}, {"bytes": 50 * 2**20}
    row = run.RuntimeRow("total-memory", "w", "total", ours, peer, ("bytes", 0.75, "<= 0.75x"))
    assert run._runtime_cell(ours, "total") == "30.0"
    assert run._runtime_ratio(row, False) == 50 / 30
    assert run._target_text(row) == "<= 0.75x met"
    row.target = ("bytes", 0.5, "<= 0.5x")
    assert run._target_text(row) == "<= 0.5x NOT met"
    row.peer = "skipped in smoke"  # no peer: no verdict
    assert run._target_text(row) == "<= 0.5x"


def test_percentiles_are_nearest_rank() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from common import percentiles
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    values = percentiles([i / 1000 for i in range(1, 101)])
    assert (values["p50"], values["p99"], values["max"], values["n"]) == (0.05, 0.099, 0.1, 100)
    assert percentiles([0.2])["p99"] == 0.2


def test_an_opening_past_midnight_is_closed_before_it() -> None:
    from datetime import datetime, timedelta, timezone

    from conddsl import compile_condition

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from common import opening_at
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    for now, lead in (
        (datetime(2026, 12, 6, 23, 59, 59, 200_000, timezone.utc), 1.3),  # opens after midnight
        (datetime(2026, 12, 6, 14, 0, 0, tzinfo=timezone.utc), 0.6),  # the same day
    ):
        opens = now + timedelta(seconds=lead)
        cond = compile_condition(opening_at(opens, now), timezone="UTC")
        assert not cond.is_true(now), (now, str(cond))
        assert not cond.is_true(opens - timedelta(milliseconds=1))
        assert cond.is_true(opens) and cond.is_true(opens + timedelta(seconds=5))


@pytest.mark.long
@pytest.mark.smoke
def test_postgres_benchmark_smoke(postgres_server: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "postgres_bench.py"),
            "--smoke",
            "--server",
            postgres_server,
        ],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ("claims, 1 node(s)", "claims, 3 node(s)", "takeover after kill -9", "| record |"):
        assert row in done.stdout, f"{row!r} missing from:\n{done.stdout}"
    assert done.stdout.count("each exactly once") == 2
