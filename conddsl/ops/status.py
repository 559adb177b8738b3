"""``conddsl status FILE``: one row per task, like ``systemctl list-timers``.

Each row says the task's state (waiting, running, terminating, disabled), when it can
next start and why not sooner (``next_change`` and ``windows`` of its start condition
with the history; for the parts that wait on other tasks, what they wait for), and its
last run. Everything comes from the task file and the ``History`` interface, so a
history written by any store, served or not, answers it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from conddsl import ast
from conddsl.compile import Condition
from conddsl.errors import printable
from conddsl.history import History
from conddsl.ops.common import PastRun, Setup, runs_of, show_span, show_time

__all__ = [
    "ROLE_WORDS",
    "TaskStatus",
    "task_statuses",
    "status_lines",
    "status_json",
    "session_at",
    "waiting_on",
]

# How far ahead a start is looked for: a condition's horizon, at least this much.
LOOK_AHEAD = timedelta(days=8)

# What starts a task with a role (the scheduler itself, at these moments).
ROLE_WORDS = {
    "on_startup": "on_startup: runs once when a scheduler starts",
    "permanent": "permanent: runs while a scheduler serves the file",
    "on_shutdown": "on_shutdown: runs once when a scheduler shuts down",
}

_VERBS = {
    None: ("succeeds", "succeed"),
    "succeeded": ("succeeds", "succeed"),
    "failed": ("fails", "fail"),
    "finished": ("finishes", "finish"),
    "terminated": ("is terminated", "are terminated"),
}


@dataclass
class TaskStatus:
    """What ``status`` knows of one task at one instant."""

    task: str
    state: str  # waiting, running, terminating or disabled
    next_start: datetime | None  # None: not within the look-ahead, or never
    why: str
    last: PastRun | None
    node: str | None = None  # the node that ran it, when the store records one


def session_at(now: datetime, started_at: datetime | None = None):
    """The session conditions read (``scheduler has run over …``): one started ``now``."""
    from conddsl.runtime.session import Session

    return Session(started_at=started_at or now)


def task_statuses(
    setup: Setup,
    history: History,
    now: datetime,
    *,
    terminating: Mapping[str, datetime] | None = None,
) -> list[TaskStatus]:
    """The status of every task of the file at ``now``.

    ``terminating``: when each task was last asked to terminate (``conddsl terminate``);
    a run open since before that is ``terminating``.
    """
    terminating = terminating or {}
    session = session_at(now)
    found = []
    for name, task in setup.model.tasks.items():
        last = _last_run(history, name)
        running = last is not None and last.finish is None
        node = getattr(last.start, "node", None) if last is not None else None
        if task.disabled:
            state, start, why = "disabled", None, "disabled in the task file"
            if running:
                why += f"; a run started {show_time(last.start.at, setup.zone)} is still open"
        elif running and name in terminating and last.start.at <= terminating[name]:
            state, start, why = "terminating", None, "asked to terminate; waiting for it to end"
        elif running and not task.multilaunch:
            state, start = "running", None
            why = f"running since {show_time(last.start.at, setup.zone)}; starts again after it"
        elif task.role is not None:
            state, start, why = ("running" if running else "waiting"), None, ROLE_WORDS[task.role]
        else:
            state = "running" if running else "waiting"
            start, why = _next_start(setup, name, task.start_cond, history, now, session)
        found.append(TaskStatus(name, state, start, why, last, node))
    return found


def _last_run(history: History, task: str) -> PastRun | None:
    started = history.last(task, "run")
    if started is None:
        return None
    runs = runs_of(history.records(task, since=started))
    return runs[-1] if runs else None


def _next_start(
    setup: Setup, name: str, text: str | None, history: History, now: datetime, session
) -> tuple[datetime | None, str]:
    if text is None:
        return None, "no start_cond: runs only when asked (conddsl run-task)"
    try:
        condition = setup.condition(text)
        if condition.ast == ast.Constant(False):
            return None, "runs only when asked (conddsl run-task)"
        context = {"task": name, "history": history, "session": session}
        if condition.is_true(now, **context):
            return now, f"its start condition is true: {printable(text)}"
        start = _first_start(condition, now, context)
        reasons = waiting_on(condition.ast, setup, now, context)
    except Exception as error:  # a custom condition without its module, say
        return None, f"cannot be foreseen here: {printable(str(error))}"
    why = "; ".join(reasons) if reasons else f"until {printable(text)}"
    if start is None and not reasons:
        why = f"{printable(text)} is not true in the next {show_span(LOOK_AHEAD)}"
    return start, why


def _first_start(condition: Condition, now: datetime, context: dict[str, Any]) -> datetime | None:
    end = now + max(condition.horizon, LOOK_AHEAD)
    for start, _ in condition.windows(now, end, **context):
        return start
    return None


def waiting_on(
    node: ast.Node, setup: Setup, now: datetime, context: dict[str, Any], depth: int = 0
) -> list[str]:
    """Words for the parts of a false condition that keep it false (empty: cannot tell)."""
    if depth > 20:  # rules are acyclic; this only bounds the words
        return []
    if isinstance(node, ast.All):
        found = []
        for item in node.items:
            if not _value(item, setup, now, context):
                found.extend(waiting_on(item, setup, now, context, depth + 1))
        return found
    if isinstance(node, ast.Any):
        parts = [
            " and ".join(waiting_on(item, setup, now, context, depth + 1)) for item in node.items
        ]
        return [" or ".join(f"({part})" for part in parts if part)] if all(parts) else []
    if isinstance(node, ast.Reference) and node.name in setup.model.rules:
        inner = waiting_on(setup.model.rules[node.name], setup, now, context, depth + 1)
        return [f"{node.name}: {reason}" for reason in inner] or [node.name]
    if isinstance(node, ast.Constant):
        return ["the start condition is false"]
    if isinstance(node, ast.AfterTask):
        return [_after_words(node)]
    if isinstance(node, ast.TaskRunning):
        return [f"until task {ast.quote(node.task)} is running"]
    if isinstance(node, ast.TaskHas) and node.task is not None:
        return [f"until {node}"]
    start = _first_start(_compiled(node, setup), now, context)
    if start is None:
        return [f"{node} (not in the next {show_span(LOOK_AHEAD)})"]
    return [f"{node} (true from {show_time(start, setup.zone)})"]


def _after_words(node: ast.AfterTask) -> str:
    one, many = _VERBS.get(node.dependency, ("succeeds", "succeed"))
    names = list(node.tasks)
    if len(names) == 1:
        return f"after {names[0]} {one}"
    joined = ", ".join(names[:-1]) + (" and " if node.mode == "all" else " or ") + names[-1]
    return f"after {joined} {many if node.mode == 'all' else one}"


def _compiled(node: ast.Node, setup: Setup) -> Condition:
    return Condition(node, timezone=setup.zone, rules=setup.model.rules)


def _value(node: ast.Node, setup: Setup, now: datetime, context: dict[str, Any]) -> bool:
    return _compiled(node, setup).is_true(now, **context)


# ---------------------------------------------------------------- output


def _left(start: datetime | None, now: datetime) -> str:
    if start is None:
        return "-"
    return "now" if start <= now else show_span(start - now)


# A node whose clock differs from the database's by more than this is pointed out (claims
# and leases use the database's clock, but its own logs and task code do not).
CLOCK_WARN = 1.0


@dataclass(frozen=True)
class LiveNode:
    """A scheduler holding a lease on a shared history now."""

    node: str
    lease_until: datetime
    clock_offset: float | None  # seconds, the node's clock minus the database's
    # The fingerprint of the task definitions it serves (conddsl.runtime.claims); None
    # when it did not say (an older conddsl), and whether another live node's differs.
    tasks: str | None = None
    tasks_differ: bool = False

    @property
    def clock_warning(self) -> bool:
        """Whether its clock is off by more than ``CLOCK_WARN``."""
        return self.clock_offset is not None and abs(self.clock_offset) > CLOCK_WARN


def live_nodes(history: History) -> list[LiveNode]:
    """The live nodes of a shared history (``PostgresHistory.live_nodes``)."""
    found = getattr(history, "live_nodes", None)
    if found is None:
        return []
    fingerprints = getattr(history, "task_fingerprints", dict)()
    served = {tasks for tasks in fingerprints.values() if tasks is not None}
    # The store keeps database minus node; people read how far the node is off.
    return [
        LiveNode(
            node,
            until,
            None if offset is None else -offset,
            fingerprints.get(node),
            len(served) > 1 and fingerprints.get(node) is not None,
        )
        for node, until, offset in found()
    ]


def node_lines(nodes: list[LiveNode], zone: tzinfo) -> list[str]:
    """The live nodes under the table, with their clock offset (a warning past 1 s)."""
    if not nodes:
        return ["No live node serves this history (no lease held)."]
    lines = [f"{len(nodes)} live node{'s' if len(nodes) != 1 else ''}:"]
    for node in nodes:
        offset = "clock offset unknown"
        if node.clock_offset is not None:
            offset = f"clock {node.clock_offset:+.3f} s"
            if node.clock_warning:
                offset += f" (warning: off by more than {CLOCK_WARN:g} s)"
        until = show_time(node.lease_until, zone)
        tasks = "" if node.tasks is None else f"  tasks {node.tasks}"
        lines.append(f"  {printable(node.node)}  lease until {until}  {offset}{tasks}")
    if any(node.tasks_differ for node in nodes):
        lines.append(
            "Warning: the live nodes serve different task definitions (tasks <fingerprint>"
            " above): each claims a task by its own definition, so a task defined"
            " differently may start on several nodes or on none; serve the same task file"
            " on every node."
        )
    return lines


def status_lines(
    statuses: list[TaskStatus],
    now: datetime,
    zone: tzinfo,
    nodes: list[LiveNode] | None = None,
) -> list[str]:
    """The table: NEXT, LEFT, LAST, PASSED, OUTCOME, DURATION, TASK, STATE (NODE), WHY;
    then, for a shared history (``nodes`` not None), its live nodes."""
    with_node = any(status.node for status in statuses)
    head = ["NEXT", "LEFT", "LAST", "PASSED", "OUTCOME", "DURATION", "TASK", "STATE"]
    head += ["NODE"] if with_node else []
    rows = [head + ["WHY"]]
    for status in statuses:
        last = status.last
        row = [
            show_time(status.next_start, zone),
            _left(status.next_start, now),
            show_time(last.start.at if last else None, zone),
            show_span(now - last.start.at) + " ago" if last else "-",
            last.outcome if last else "-",
            show_span(last.duration) if last else "-",
            printable(status.task),
            status.state,
        ]
        row += [printable(status.node or "-")] if with_node else []
        rows.append(row + [status.why])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    lines.append("")
    lines.append(f"{len(statuses)} tasks listed at {show_time(now, zone)}.")
    if nodes is not None:
        lines.extend(node_lines(nodes, zone))
    return lines


def status_json(
    statuses: list[TaskStatus], now: datetime, nodes: list[LiveNode] | None = None
) -> str:
    """The statuses as one JSON document (times ISO 8601 with their offset, in UTC); with
    ``nodes`` (a shared history) also ``nodes``: name, lease end, clock offset, warning."""

    def iso(at: datetime | None) -> str | None:
        return None if at is None else at.isoformat()

    tasks = []
    for status in statuses:
        last = status.last
        tasks.append(
            {
                "task": status.task,
                "state": status.state,
                "next_start": iso(status.next_start),
                "why": status.why,
                "node": status.node,
                "last_run": None
                if last is None
                else {
                    "run_id": last.start.run_id,
                    "started": iso(last.start.at),
                    "finished": iso(last.finish.at if last.finish else None),
                    "outcome": last.outcome,
                    "duration_seconds": None
                    if last.duration is None
                    else last.duration.total_seconds(),
                    "reason": last.finish.reason if last.finish else None,
                },
            }
        )
    document: dict[str, Any] = {"at": iso(now), "tasks": tasks}
    if nodes is not None:
        document["nodes"] = [
            {
                "node": node.node,
                "lease_until": iso(node.lease_until),
                "clock_offset_seconds": node.clock_offset,
                "clock_warning": node.clock_warning,
                "tasks_fingerprint": node.tasks,
                "tasks_differ": node.tasks_differ,
            }
            for node in nodes
        ]
    return json.dumps(document, indent=2)
