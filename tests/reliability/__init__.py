"""Helpers of the reliability suite (``tests/test_reliability_*.py``; docs/reliability.md).

Every reliability test has a smoke size that runs in the normal suite and a long size
behind ``@pytest.mark.long``. The long sizes run only when ``long`` is selected
(``pytest -m long``); :func:`long_run` also skips them when the marker is not deselected
by ``addopts``, so the normal suite stays fast either way.

Results worth keeping (inputs fuzzed, tasks terminated, longest loop stall …) are added
to the JSON file named by ``CONDDSL_RELIABILITY_REPORT`` when it is set: the figures in
docs/reliability.md come from there.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
CORPUS = HERE / "corpus"

# Subprocesses import conddsl from this checkout and the helpers as ``reliability.*``.
SUBPROCESS_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
    "PYTHONDONTWRITEBYTECODE": "1",
}


def long_selected(config: pytest.Config) -> bool:
    """Whether the run asked for the long tests (``-m long`` or an expression naming it)."""
    expression = config.getoption("markexpr", "") or ""
    return "long" in expression and "not long" not in expression


def long_run(request: pytest.FixtureRequest) -> None:
    """Skip a long test unless ``-m long`` selected it (see the module docstring)."""
    if not long_selected(request.config):
        pytest.skip("long reliability run: select it with `pytest -m long`")


def env_int(name: str, default: int) -> int:
    """An integer from the environment (``1_000_000`` and ``1e6`` are accepted)."""
    raw = os.environ.get(name)
    if not raw:
        return default
    return int(float(raw.replace("_", "")))


def report(section: str, **figures: object) -> None:
    """Merge ``figures`` into ``section`` of the JSON report file, if one is asked for."""
    path = os.environ.get("CONDDSL_RELIABILITY_REPORT")
    if not path:
        return
    with open(path, "a+", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        data = {}
        with contextlib.suppress(ValueError):
            data = json.loads(file.read() or "{}")
        data.setdefault(section, {}).update(figures)
        file.seek(0)
        file.truncate()
        file.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
