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
import gc
import json
import os
import sys
from collections.abc import Callable
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


def count_steps(function: Callable[[], object]) -> int:
    """The Python lines and calls ``function()`` executes: a cost that no load can change.

    Growth checks count steps instead of timing them: the machine is shared, and a
    wall-clock ratio fails whenever another process takes the CPU at the wrong moment.
    Lines count every turn of a loop, comprehensions included; calls count C functions.

    The garbage collector is kept off during the count: a collection that came due inside
    ``function`` would run the finalizers (``__del__``, weakref callbacks) of whatever
    earlier tests left behind, and count their steps too (15 steps more, once, in a full
    run, made a parse that costs 1,400 steps at every size look non-linear).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    steps = 0

    def tracer(frame: object, event: str, arg: object) -> Callable[..., object]:
        nonlocal steps
        steps += 1  # a call (as the global tracer), or a line or return (as the local one)
        return tracer

    def profiler(frame: object, event: str, arg: object) -> None:
        nonlocal steps
        if event == "c_call":
            steps += 1

    previous_trace, previous_profile = sys.gettrace(), sys.getprofile()
    sys.settrace(tracer)
    sys.setprofile(profiler)
    try:
        function()
    finally:
        sys.settrace(previous_trace)
        sys.setprofile(previous_profile)
        if was_enabled:
            gc.enable()
    return steps


def grows_linearly(cost: Callable[[int], int], size: int, slack: float = 2.15) -> tuple[bool, str]:
    """Whether ``cost(n)`` grows linearly from ``size`` to ``4 * size``.

    A linear cost adds as much from 2n to 4n as twice from n to 2n (increment ratio 2.00
    exactly, in counted steps); a quadratic term makes it larger at every size (the check
    that rebuilt the task table per lookup: 2.26 at 150 tasks). A first call warms lazy
    imports and caches up.

    A cost that does not grow at all (the work is in C: a regular expression over a long
    name) has increments of 0, where a single stray step would make the ratio huge: the
    first increment is taken as at least a hundredth of ``cost(size)``.
    """
    cost(size)
    one, two, four = cost(size), cost(2 * size), cost(4 * size)
    ratio = (four - two) / max(1, two - one, one // 100)
    return ratio <= slack, f"{one} -> {two} -> {four} steps (increment ratio {ratio:.2f})"
