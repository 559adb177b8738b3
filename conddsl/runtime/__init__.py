"""The runtime: a scheduler that starts, times out and terminates tasks by their conditions.

```python
from conddsl.runtime import Scheduler, TerminationFlag, TaskTerminationException

app = Scheduler(config={"timeout": "30 minutes", "instant_shutdown": False})

@app.task("daily after 22:00", end_cond="time of day between 08:00 and 18:00",
          timeout="2 hours", execution="process")
def backup(): ...

app.command_task("every 1 hour", argv=["tar", "czf", "/tmp/x.tgz", "/data"],
                 name="archive", timeout=60)
app.run()         # blocking; or `await app.serve()` in a running event loop
```

A task starts when its start condition is true and it is not running (unless
``multilaunch``), and not while its end condition is true (it would be ended at
once). A run of an async, thread, process or command task is terminated when it
runs past its timeout (the task's, else the session's), when its end condition
becomes true, or when the scheduler shuts down with force. ``main`` tasks run in
the scheduler's thread and cannot be terminated (a timeout or end_cond given to one
is a ``TerminationWarning``).

Every run leaves one ``run`` record and exactly one finishing record, same run_id
(a process's message says how it died: ``exit code 3``, ``killed by signal SIGKILL``):

| how the run ended                                              | action    | reason   |
|----------------------------------------------------------------|-----------|----------|
| returned                                                       | success   |          |
| raised (message: the exception's text)                         | fail      |          |
| exited non-zero, or by a signal nobody in the scheduler sent   | fail      |          |
| raised ``Inaction``                                            | inaction  |          |
| raised ``TaskTerminationException`` without being asked        | terminate | task     |
| ran past its timeout                                           | terminate | timeout  |
| its end condition became true                                  | terminate | end_cond |
| shutdown with ``instant_shutdown``, or a fatal error           | terminate | shutdown |
| a permanent task, once a graceful shutdown has let the rest end | terminate | shutdown |
| ``shut_down(force=True)``, a second ``shut_down()`` or signal  | terminate | forced   |
| ``terminate(name)``, or ``remove_task(name)`` while it runs    | terminate | forced   |
| left open by a scheduler that died (marked at the next start)  | crash     |          |

A run started by ``run_task(name)`` has reason ``manual`` on its ``run`` record.

Shutdown is graceful when ``shut_cond`` becomes true or ``shut_down()`` is called
once: nothing new starts, running tasks finish or meet their timeout or end
condition. It is immediate (every run terminated at once) with ``instant_shutdown``,
on a fatal error (a condition or the history raised, unless ``silence_cond_check``;
``serve()`` then raises ``SchedulerError``), on ``shut_down(force=True)`` and on a
second ``shut_down()``. ``install_signal_handlers(app)`` maps SIGINT/SIGTERM to
``shut_down()``: the first is graceful, the second forces.

How each execution is terminated:

- async: cancelled at its next ``await``; the scheduler knows its own cancellation
  (any other is a ``fail``). One that swallows the cancellation is abandoned after
  ``kill_grace``.
- thread: its ``TerminationFlag`` (a parameter defaulting to ``TerminationFlag()``,
  replaced by a fresh flag for each run) is set and the run is recorded as
  terminated at once; the thread should raise ``TaskTerminationException``. A thread
  that ignores the flag is abandoned (daemon), never recorded as a success; at exit
  the scheduler waits at most ``kill_grace`` for such threads.
- process (a child forked by the fork server, Linux: :mod:`conddsl.runtime.forkserver`)
  and command (argv, no shell unless ``shell=True``): each runs in a session of its
  own; its whole tree (the process group, and descendants that left it, found in
  /proc) gets SIGTERM, then SIGKILL after ``kill_grace``. The run is recorded once
  no process of the tree is left.

Task roles (no start condition): ``on_startup`` tasks run one after the other before
anything else starts; ``permanent`` tasks start once after them, are never timed out,
are not restarted when they end by themselves, and are terminated at shutdown;
``on_shutdown`` tasks run one after the other once the last run of a shutdown ended.
A failing startup or shutdown task is recorded and does not stop the others or the
scheduler (``shut_cond = "task 'x' has failed"`` stops it).

Control while it runs, safe from any thread: ``run_task``, ``terminate``, ``disable``,
``enable``, ``task``/``command_task``, ``remove_task``; an unknown name is an
``UnknownTaskError`` (a ``KeyError`` with a did-you-mean), a request that cannot be
applied now a ``ControlError``. ``@app.cond(phrase)`` registers a custom condition for
the scheduler's conditions; custom functions are called only while they can decide the
value (``conddsl.runtime.customs``).

Costs (measured against Rocketry in docs/performance.md): an idle scheduler does
no work at all, whatever the number of tasks; it wakes at the next instant a
condition can change or a run times out. Runs timing out at one instant are ended
together; each finishing record is stamped when its run ends and written to the
history right after that turn of the event loop, before any condition is evaluated.
Long evaluation passes (thousands of tasks at once) yield every few milliseconds.
Dying process trees are watched with pidfds (Linux 5.3+; else /proc is polled).

Decisions: a timeout of 0 is refused (Rocketry silently uses the session's
instead); ``"never"`` means no timeout. Plain functions default to the ``thread``
execution (``execution`` in the config), coroutine functions to ``async``. A
``VirtualClock`` runs schedules in tests without sleeping; grace periods are real
time on any clock.
"""

from typing import TYPE_CHECKING

from conddsl.lazy import lazy_names

if TYPE_CHECKING:
    from conddsl.runtime.clock import Clock, RealClock, VirtualClock
    from conddsl.runtime.config import ConfigError, SchedulerConfig
    from conddsl.runtime.flags import Inaction, TaskTerminationException, TerminationFlag
    from conddsl.runtime.from_file import scheduler_from_task_file
    from conddsl.runtime.phases import Phase, State
    from conddsl.runtime.records import Recorded
    from conddsl.runtime.runs import Executor, Run
    from conddsl.runtime.scheduler import (
        ControlError,
        Scheduler,
        SchedulerError,
        UnknownTaskError,
    )
    from conddsl.runtime.session import Session
    from conddsl.runtime.signals import install_signal_handlers
    from conddsl.runtime.tasks import Task, TerminationWarning

__all__ = [
    "Clock",
    "ConfigError",
    "ControlError",
    "Executor",
    "Inaction",
    "Phase",
    "RealClock",
    "Recorded",
    "Run",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerError",
    "Session",
    "State",
    "Task",
    "TaskTerminationException",
    "TerminationFlag",
    "TerminationWarning",
    "UnknownTaskError",
    "VirtualClock",
    "install_signal_handlers",
    "scheduler_from_task_file",
]

# Each name is imported from its module on first use: `conddsl check` and the rule
# readers need a constant or two of the runtime (the process registry's suffix), not
# the scheduler and asyncio behind it (60 ms of a 5,000-task check).
_WHERE = {
    "Clock": "clock",
    "RealClock": "clock",
    "VirtualClock": "clock",
    "ConfigError": "config",
    "SchedulerConfig": "config",
    "Inaction": "flags",
    "TaskTerminationException": "flags",
    "TerminationFlag": "flags",
    "scheduler_from_task_file": "from_file",
    "Phase": "phases",
    "State": "phases",
    "Recorded": "records",
    "Executor": "runs",
    "Run": "runs",
    "ControlError": "scheduler",
    "Scheduler": "scheduler",
    "SchedulerError": "scheduler",
    "Session": "session",
    "UnknownTaskError": "scheduler",
    "install_signal_handlers": "signals",
    "Task": "tasks",
    "TerminationWarning": "tasks",
}


__getattr__ = lazy_names(
    globals(), {name: f"conddsl.runtime.{module}" for name, module in _WHERE.items()}
)


def __dir__() -> list[str]:
    return sorted(__all__)
