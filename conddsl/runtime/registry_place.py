"""Where a scheduler keeps its process registry (:mod:`conddsl.runtime.leftovers`): the
``process_registry`` setting, and the file beside a history kept in a file of its own.

Apart from the registry itself: a scheduler with no registry to keep (an in-memory
history, the common case) never loads the registry's reader, the process-tree killer
and their trust checks (~0.25 MiB of a process's RSS, issue 21).
"""

from __future__ import annotations

import os
import sys
from typing import Literal

from conddsl.errors import ConfigError
from conddsl.trust import REGISTRY_SUFFIX


def registry_path(history: object) -> str | None:
    """The registry file beside a history kept in a file of its own, or None."""
    # Until the SQLite store is loaded no history can be one (loading it to ask costs
    # every scheduler with an in-memory history ~2 MiB of RSS).
    store = sys.modules.get("conddsl.history.sqlite")
    if store is None or not isinstance(history, store.SQLiteHistory):
        return None
    path = history.path
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return os.path.abspath(path) + REGISTRY_SUFFIX


def registry_setting(setting: object) -> str | os.PathLike[str] | Literal[False] | None:
    """``setting`` if it is a ``process_registry`` value, else a ConfigError."""
    if setting is None or setting is False or isinstance(setting, str | os.PathLike):
        return setting  # type: ignore[return-value]
    raise ConfigError(
        f"process_registry is a file's path, None (beside a history file) or False (none);"
        f" not {setting!r}"
    )


def registry_file(setting: object, history: object) -> str | None:
    """The process registry's file for a ``process_registry`` setting (None: beside
    ``history`` if it is a file, False: none), or None."""
    setting = registry_setting(setting)
    if setting is None:
        return registry_path(history)
    if setting is False:
        return None
    return os.path.abspath(os.fspath(setting))
