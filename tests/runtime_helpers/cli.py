"""The ``conddsl`` command line in a subprocess, as the command-line tests start it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


# ``python -m conddsl.cli`` with Ctrl-C raising KeyboardInterrupt, as from a terminal. A
# test run started as a script's background job (``pytest ... &``, nohup) has SIGINT
# ignored, every child inherits that, and Python then leaves it ignored: a
# ``history --follow`` child sent SIGINT would run on until killed.
_AS_FROM_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler);"
    " runpy.run_module('conddsl.cli', run_name='__main__', alter_sys=True)"
)


def start_cli(
    cwd: Path, *argv: str, env: dict[str, str] = ENV, **popen: Any
) -> subprocess.Popen[str]:
    """Start ``conddsl ARGV...`` in ``cwd`` (SIGINT at Python's default), its output read as
    text through pipes."""
    return subprocess.Popen(
        [sys.executable, "-c", _AS_FROM_A_TERMINAL, *argv],
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
