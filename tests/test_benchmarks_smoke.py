"""The benchmark command runs: `python benchmarks/run.py --smoke` (no timing is checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ("parse", "clock", "task-state", "cron", "memory", "cli")


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
    for case in CASES:
        assert f"| {case} |" in out, f"case {case!r} missing from:\n{out}"
    # The peer side is not built in smoke mode.
    assert "skipped in smoke" in out
    assert "peer failed" not in out


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
