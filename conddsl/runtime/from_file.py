"""The scheduler a task file describes: what ``conddsl run`` runs, for tests and embedding."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conddsl.runtime.scheduler import Scheduler
from conddsl.settings import SchedulerSettings
from conddsl.trust import add_import_folder, import_module

if TYPE_CHECKING:
    from conddsl.history import History
    from conddsl.rules.models import TaskFile


def scheduler_from_task_file(
    tasks: TaskFile, *, history: History | None = None, clock=None, **overrides: Any
) -> Scheduler:
    """A scheduler with the tasks and ``[scheduler]`` settings of a loaded task file.

    ``history`` defaults to an in-memory one (``conddsl run`` passes the file's SQLite
    history); ``overrides`` replace configuration keys (``kill_grace=0.1``, say). The
    task file's folder is put on ``sys.path`` (last, and only if a task names a ``func``)
    so that its ``func`` modules import, and command tasks run in that folder (or their
    ``cwd``, relative to it). A task's ``params`` are bound to its ``func``; its ``env``
    is added to the environment the scheduler runs in. Raises
    ``ImportError`` or ``AttributeError`` when a ``func`` cannot be found (or is not
    trusted: :mod:`conddsl.trust`), and ``ConfigError`` for a setting the scheduler refuses.
    """
    from conddsl.history import MemoryHistory

    settings = tasks.scheduler
    base = tasks.path.resolve().parent if tasks.path is not None else None

    def condition(text: str | None):
        return None if text is None else tasks.condition(text)

    # The settings declared once for both pass as they are; of the others, an unset
    # one (None) leaves the scheduler's default.
    config: dict[str, Any] = {key: getattr(settings, key) for key in SchedulerSettings.model_fields}
    config["history"] = history if history is not None else MemoryHistory()
    if settings.timeout is not None:
        config["timeout"] = settings.timeout
    if settings.shut_cond is not None:
        config["shut_cond"] = condition(settings.shut_cond)
    config.update(overrides)
    app = Scheduler(config, clock=clock)
    if base is not None and any(task.func is not None for task in tasks.tasks.values()):
        add_import_folder(base)
    for name, task in tasks.tasks.items():
        options: dict[str, Any] = {
            "name": name,
            "end_cond": condition(task.end_cond),
            "timeout": task.timeout,
            "multilaunch": task.multilaunch,
            "on_node_lost": task.on_node_lost,
            "disabled": task.disabled,
        }
        if task.role is not None:  # started by the scheduler itself, never by a condition
            options[task.role] = True
            start = None
        else:
            # A task without a start condition only runs when asked (run_task).
            start = condition(task.start_cond or "false")
        if task.command is not None:
            cwd = _folder(base, task.cwd)
            # The file's env adds to the environment conddsl runs in (the API's replaces it).
            env = {**os.environ, **task.env} if task.env else None
            app.command_task(
                start, argv=task.command, shell=task.shell, cwd=cwd, env=env, **options
            )
        else:
            func = import_func(task.func)
            if task.params:
                # A partial of a module-level function still goes to a process by reference.
                func = functools.partial(func, **task.params)
            app.task(start, execution=task.execution, **options)(func)
    return app


def _folder(base: Path | None, cwd: str | None) -> str | None:
    """A command's folder: ``cwd`` relative to the task file's folder (default: that folder)."""
    if cwd is None:
        return str(base) if base is not None else None
    folder = Path(cwd).expanduser()
    if base is not None and not folder.is_absolute():
        folder = base / folder
    return str(folder)


def import_func(reference: str):
    """The object a ``module:attribute.path`` reference names (imported, if trusted)."""
    module_name, _, attribute = reference.partition(":")
    target: Any = import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target
