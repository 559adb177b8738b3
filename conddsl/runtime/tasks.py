"""Task definitions: what to run, when to start and stop it, checked when registered."""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from conddsl.runtime.conditions import ConditionLike, Reads, compile_setting, reads
from conddsl.runtime.config import ConfigError, SchedulerConfig
from conddsl.runtime.flags import TerminationFlag
from conddsl.setting_values import EXECUTIONS, NODE_LOST, ROLES, read_timeout

# How a task is compiled: the setting, and what it is (for messages).
Compile = Callable[[object, str], ConditionLike]


class TerminationWarning(UserWarning):
    """A termination setting that can have no effect (on a ``main`` task)."""


# Slots: no per-task __dict__ (10,000 waiting tasks, issue 21).
@dataclass(eq=False, slots=True)
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
    role: str | None = None  # one of ROLES, or None for a task started by its condition
    # On a shared history, what a run lost with its node becomes: "fail" or "retry".
    on_node_lost: str = "fail"

    @property
    def reads(self) -> Reads:
        """Whose records (and whether the cycle counter) its conditions read: found from
        the conditions when asked (at registering and unregistering), not kept per task."""
        found = reads(self.start)
        return found if self.end is None else found | reads(self.end)

    @property
    def permanent(self) -> bool:
        """Started once when the scheduler starts, never timed out, ended at shutdown."""
        return self.role == "permanent"

    @property
    def on_startup(self) -> bool:
        """Run once before anything else starts, in registration order."""
        return self.role == "on_startup"

    @property
    def on_shutdown(self) -> bool:
        """Run once after the last run ended at shutdown, in registration order."""
        return self.role == "on_shutdown"

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
    role: str | None = None,
    compile_cond: Compile | None = None,
    on_node_lost: str = "fail",
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
    if execution == "main" and role == "permanent":
        raise ConfigError(
            f"task {name!r}: a permanent task cannot run in the main execution"
            " (it would hold the scheduler for ever); use async, thread or process"
        )
    if execution == "main" and (timeout is not None or end_cond is not None):
        warnings.warn(
            f"task {name!r} runs in the main execution, which cannot be terminated:"
            " its timeout and end_cond are ignored",
            TerminationWarning,
            stacklevel=3,
        )
        timeout = end_cond = None
    task = _task(
        name,
        start_cond,
        end_cond,
        timeout,
        execution,
        multilaunch,
        disabled,
        config,
        role=role,
        compile_cond=compile_cond,
    )
    task.func = func
    task.flag_params = flag_params(func)
    task.on_node_lost = node_lost_setting(name, on_node_lost)
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
    role: str | None = None,
    compile_cond: Compile | None = None,
    on_node_lost: str = "fail",
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
    task = _task(
        name,
        start_cond,
        end_cond,
        timeout,
        "command",
        multilaunch,
        disabled,
        config,
        role=role,
        compile_cond=compile_cond,
    )
    task.argv = tuple(argv)
    task.cwd = None if cwd is None else os.fspath(cwd)
    task.env = None if env is None else dict(env)
    task.on_node_lost = node_lost_setting(name, on_node_lost)
    return task


def node_lost_setting(name: str, value: object) -> str:
    """``on_node_lost``: "fail" or "retry" (see docs/deployment.md)."""
    if value not in NODE_LOST:
        raise ConfigError(
            f"task {name!r}: on_node_lost must be 'fail' (at most once) or 'retry'"
            f" (at least once), not {value!r}"
        )
    return str(value)


def _task(
    name: str,
    start_cond: object,
    end_cond: object,
    timeout: object,
    execution: str,
    multilaunch: bool,
    disabled: bool,
    config: SchedulerConfig,
    *,
    role: str | None = None,
    compile_cond: Compile | None = None,
) -> Task:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a task name must be a non-empty string, not {name!r}")
    _check_role(name, role, start_cond, end_cond, timeout, multilaunch)
    if compile_cond is None:
        zone = config.timezone

        def compile_cond(value: object, what: str) -> ConditionLike:
            return compile_setting(value, what, zone)

    if role is not None:
        start_cond = "false"  # never started by a condition: the scheduler starts it
    start = compile_cond(start_cond, f"start condition of {name!r}")
    end = None if end_cond is None else compile_cond(end_cond, f"end_cond of {name!r}")
    if execution == "main" or role == "permanent":
        limit = None
    elif timeout is None:
        limit = config.timeout
    else:
        limit = read_timeout(timeout, f"timeout of task {name!r}")
    return Task(
        name=name,
        start=start,
        execution=execution,
        end=end,
        timeout=limit,
        multilaunch=bool(multilaunch),
        disabled=bool(disabled),
        role=role,
    )


def role_of(permanent: bool, on_startup: bool, on_shutdown: bool) -> str | None:
    """The one role the flags name (None: a task started by its condition)."""
    flags = {"permanent": permanent, "on_startup": on_startup, "on_shutdown": on_shutdown}
    chosen = [role for role in ROLES if flags[role]]
    if len(chosen) > 1:
        raise ConfigError(f"a task has one role at most, not {' and '.join(chosen)}")
    return chosen[0] if chosen else None


def _check_role(
    name: str,
    role: str | None,
    start_cond: object,
    end_cond: object,
    timeout: object,
    multilaunch: bool,
) -> None:
    if role is None:
        if start_cond is None:
            raise ConfigError(
                f"task {name!r} needs a start condition"
                " (or permanent=True, on_startup=True or on_shutdown=True)"
            )
        return
    what = f"task {name!r} ({role})"
    if start_cond is not None:
        raise ConfigError(f"{what} is started by the scheduler: give it no start condition")
    if end_cond is not None:
        raise ConfigError(f"{what} takes no end_cond")
    if multilaunch:
        raise ConfigError(f"{what} runs once at a time: multilaunch does not apply")
    never = isinstance(timeout, str) and timeout.strip().lower() == "never"
    if role == "permanent" and timeout is not None and not never:
        raise ConfigError(f"{what} is never timed out: give it no timeout (it ends at shutdown)")


def flag_params(func: Callable[..., Any]) -> tuple[str, ...]:
    """The parameters of ``func`` whose default is a TerminationFlag (they receive the run's)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return ()
    return tuple(p.name for p in parameters if isinstance(p.default, TerminationFlag))
