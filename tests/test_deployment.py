"""The deployment files of docs/deployment.md: the systemd unit is valid and runs conddsl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "examples" / "deploy" / "conddsl.service"


def read_unit(text: str) -> dict[str, dict[str, str]]:
    """A systemd unit's sections and keys (comments and blank lines skipped)."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"line {number}: {raw!r}"
        key, value = line.split("=", 1)
        current[key.strip()] = value.strip()
    return sections


def test_the_unit_runs_conddsl_and_stops_it_gracefully() -> None:
    unit = read_unit(UNIT.read_text(encoding="utf-8"))
    assert set(unit) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    program, command, task_file = service["ExecStart"].split()
    assert program.endswith("/conddsl") and command == "run" and task_file.endswith(".toml")
    # SIGTERM is conddsl's graceful shutdown; only the scheduler gets it (it ends its own
    # task trees and records them), and systemd waits before killing what is left.
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed"
    assert int(service["TimeoutStopSec"]) >= 30
    assert service["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify also checks that the program, user and folders exist: point them at ones that do.
    text = UNIT.read_text(encoding="utf-8")
    text = text.replace("/srv/conddsl/.venv/bin/conddsl", shutil.which("env") or "/usr/bin/env")
    text = text.replace("=conddsl\n", "=root\n").replace("/srv/conddsl", str(tmp_path))
    copy = tmp_path / "conddsl.service"
    copy.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    # It reports unknown keys and bad values on stderr without failing: both must be empty.
    problems = [line for line in done.stderr.splitlines() if str(copy) in line]
    assert done.returncode == 0 and not problems, done.stderr
