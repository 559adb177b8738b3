"""``conddsl run`` in a subprocess, as the command-line tests start it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def start_run(cwd: Path, task_file: str = "tasks.toml") -> subprocess.Popen[str]:
    """Start ``conddsl run TASK_FILE`` in ``cwd``, its output read as text through pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "conddsl.cli", "run", task_file],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
