"""``conddsl check``: checks across rule files and task files, and their output formats.

:func:`check_paths` runs every check on files and folders and returns the findings;
the checks themselves live in ``tasks`` (waiting cycles, clock sense, timeouts),
``clock`` (what the clock alone says about a condition) and ``imports``. Importing this
package is cheap (the command line imports it for every command).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conddsl.lint.runner import CheckResult, check_paths

__all__ = ["CheckResult", "check_paths"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'conddsl.lint' has no attribute {name!r}")
    from conddsl.lint import runner

    return getattr(runner, name)
