"""Settings of the whole test run."""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """One worker more than there are cores (``-n auto`` in addopts): many tests wait on
    subprocesses and real seconds, and the extra worker runs meanwhile (2 cores: 101 s with
    two workers, 79 s with three)."""
    return (os.cpu_count() or 1) + 1
