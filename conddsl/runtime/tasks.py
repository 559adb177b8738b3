"""Task definitions: what to run, when to start and stop it, checked when registered."""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from conddsl.runtime.conditions import ConditionLike, Reads, compile_setting, reads
from conddsl.runtime.config import ConfigError, SchedulerConfig, parse_timeout
from conddsl.runtime.flags import TerminationFlag

EXECUTIONS = ("main", "async", "thread", "process")


class TerminationWarning(UserWarning):
    """A termination setting that can have no effect (on a ``main`` task)."""


@dataclass(eq=False)
class Task:
    """One registered task; ``func`` for Python tasks, ``argv`` for command tasks."""

    name: str
    start: ConditionLike
    execution: str  # one of EXECUTIONS, or "command"
    end: ConditionLike | None = None
    timeout: timedelta | None = None  # the effective limit (task's own, else the session's)
    multilaunch: bool = False
    disabled: bool = False
    func: Callable[..., Any] | None = None
    argv: tuple[str, ...] = ()
    cwd: str | None = None
    env: Mapping[str, str] | None = None
    flag_params: tuple[str, ...] = ()
    reads: Reads = field(default_factory=Reads)

    @property
    def terminable(self) -> bool:
        """Whether runs of this task can be terminated (everything but ``main``)."""
        return self.execution != "main"

    @property
    def uses_process(self) -> bool:
        """Whether a run takes a process slot (``max_process_count``)."""
        return self.execution in ("process", "command")

    def kwargs(self, flag: TerminationFlag) -> dict[str, TerminationFlag]:
        """The arguments a run is called with: the flag for each parameter asking for one."""
        return dict.fromkeys(self.flag_params, flag)


def func_task(
    func: Callable[..., Any],
    start_cond: object,
    *,
    config: SchedulerConfig,
    name: str | None = None,
    end_cond: object = None,
    timeout: object = None,
    execution: str | None = None,
    multilaunch: bool = False,
    disabled: bool = False,
) -> Task:
    """Check the settings of a Python task and build it."""
    if not callable(func):
        raise TypeError(f"a task runs a callable, not {type(func).__name__}")
    if name is None:
        name = getattr(func, "__name__", None)
        if not name or name == "<lambda>":
            raise ConfigError("this callable has no usable name: give the task a name=")
    is_coroutine = inspect.iscoroutinefunction(func)
    if execution is None:
        execution = "async" if is_coroutine else config.execution
    if execution not in EXECUTIONS:
        raise ConfigError(f"task {name!r}: execution must be one of {', '.join(EXECUTIONS)}")
    if execution == "async" and not is_coroutine:
        raise ConfigError(
            f"task {name!r}: async execution needs an 'async def' function;"
            " use execution='thread' or 'process' for a plain function"
        )
    if execution == "main" and (timeout is not None or end_cond is not None):
        warnings.warn(
            f"task {name!r} runs in the main execution, which cannot be terminated:"
            " its timeout and end_cond are ignored",
            TerminationWarning,
            stacklevel=3,
        )
        timeout = end_cond = None
    task = _task(name, start_cond, end_cond, timeout, execution, multilaunch, disabled, config)
    task.func = func
    task.flag_params = _flag_params(func)
    return task


def command_task(
    argv: Sequence[str] | str,
    start_cond: object,
    *,
    config: SchedulerConfig,
    name: str | None = None,
    end_cond: object = None,
    timeout: object = None,
    multilaunch: bool = False,
    disabled: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    shell: bool = False,
) -> Task:
    """Check the settings of a command task (argv run without a shell, unless ``shell``)."""
    if shell:
        if not isinstance(argv, str) or not argv.strip():
            raise ConfigError("with shell=True the command is one non-empty string")
        if name is None:
            name = argv.split()[0]
        argv = ("/bin/sh", "-c", argv)
    elif isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
        raise ConfigError(
            "argv must be a non-empty list of strings (the program and its arguments;"
            " no shell is involved unless shell=True)"
        )
    if name is None:
        name = os.path.basename(argv[0])
    task = _task(name, start_cond, end_cond, timeout, "command", multilaunch, disabled, config)
    task.argv = tuple(argv)
    task.cwd = None if cwd is None else os.fspath(cwd)
    task.env = None if env is None else dict(env)
    return task


def _task(
    name: str,
    start_cond: object,
    end_cond: object,
    timeout: object,
    execution: str,
    multilaunch: bool,
    disabled: bool,
    config: SchedulerConfig,
) -> Task:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a task name must be a non-empty string, not {name!r}")
    zone = config.timezone
    start = compile_setting(start_cond, f"start condition of {name!r}", zone)
    end = None if end_cond is None else compile_setting(end_cond, f"end_cond of {name!r}", zone)
    if execution == "main":
        limit = None
    elif timeout is None:
        limit = config.timeout
    else:
        limit = parse_timeout(timeout, f"timeout of task {name!r}")
    found = reads(start) if end is None else reads(start) | reads(end)
    return Task(
        name=name,
        start=start,
        execution=execution,
        end=end,
        timeout=limit,
        multilaunch=bool(multilaunch),
        disabled=bool(disabled),
        reads=found,
    )


def _flag_params(func: Callable[..., Any]) -> tuple[str, ...]:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return ()
    return tuple(p.name for p in parameters if isinstance(p.default, TerminationFlag))
