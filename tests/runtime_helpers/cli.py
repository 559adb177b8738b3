"""The ``conddsl`` command line in a subprocess, as the command-line tests start it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def start_cli(
    cwd: Path, *argv: str, env: dict[str, str] = ENV, **popen: Any
) -> subprocess.Popen[str]:
    """Start ``conddsl ARGV...`` in ``cwd``, its output read as text through pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "conddsl.cli", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def run_cli(
    cwd: Path, *argv: str, env: dict[str, str] = ENV, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``conddsl ARGV...`` in ``cwd`` to its end, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "conddsl.cli", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_run(cwd: Path, task_file: str = "tasks.toml") -> subprocess.Popen[str]:
    """Start ``conddsl run TASK_FILE`` in ``cwd``, its output read as text through pipes."""
    return start_cli(cwd, "run", task_file)
