"""``conddsl next FILE.toml``: the upcoming start windows of a task file's tasks.

Each task's start condition is compiled with the file's rules and zone and asked for
its windows with the history the file's runs left (``every 1 hour`` after a run an
hour ago is true again from then). Parts that wait on other tasks cannot be foreseen
from the clock: they are named instead (``after extract succeeds``).
"""

from __future__ import annotations

from datetime import datetime

from conddsl.errors import UsageError, printable
from conddsl.history import History
from conddsl.ops.common import Setup, show_span, show_time
from conddsl.ops.status import LOOK_AHEAD, ROLE_WORDS, session_at, waiting_on

__all__ = ["upcoming_lines"]


def upcoming_lines(
    setup: Setup, history: History, now: datetime, *, task: str | None = None, count: int = 3
) -> list[str]:
    """For each task (or only ``task``): its start condition and next ``count`` windows."""
    tasks = setup.model.tasks
    if task is not None and task not in tasks:
        from conddsl.errors import suggest

        hint = suggest(task, tasks)
        known = ", ".join(tasks) or "none"
        raise UsageError(
            f"{setup.path}: no task {task!r}"
            + (f"; did you mean {hint!r}?" if hint else "")
            + f" (tasks: {known})"
        )
    session = session_at(now)
    lines = []
    for name, spec in tasks.items():
        if task is not None and name != task:
            continue
        text = spec.start_cond
        shown = printable(text) if text else (spec.role or "(no start_cond)")
        lines.append(f"{printable(name)}: {shown}")
        if spec.disabled:
            lines.append("  disabled in the task file")
            continue
        if spec.role is not None:
            lines.append(f"  {ROLE_WORDS[spec.role]}")
            continue
        if text is None or text.strip() == "false":
            lines.append("  runs only when asked (conddsl run-task)")
            continue
        context = {"task": name, "history": history, "session": session}
        try:
            condition = setup.condition(text)
            horizon = max(condition.horizon, LOOK_AHEAD)
            until = now + horizon
            found = []
            for window in condition.windows(now, until, **context):
                found.append(window)
                if len(found) >= count:
                    break
            reasons = [] if found else waiting_on(condition.ast, setup, now, context)
        except Exception as error:  # a custom condition without its module, say
            lines.append(f"  cannot be foreseen here: {printable(str(error))}")
            continue
        for start, end in found:
            lines.append(f"  {_window(start, end, now, until, setup)}")
        if not found:
            lines.append(
                "  waits on: " + "; ".join(reasons)
                if reasons
                else f"  no start in the next {show_span(horizon)}"
            )
    return lines


def _window(start: datetime, end: datetime, now: datetime, until: datetime, setup: Setup) -> str:
    """One window; one reaching the end of the look-ahead stays open until the task runs."""
    shown_start = "from now" if start <= now else f"from {show_time(start, setup.zone)}"
    if end >= until:
        return f"{shown_start}  (until it runs)"
    return f"{shown_start}  until {show_time(end, setup.zone)}"
