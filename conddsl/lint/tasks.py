"""Checks across the tasks of one task file: waiting cycles, clock sense, timeouts."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta

from conddsl import ast
from conddsl.bounds import conjunction, negation
from conddsl.errors import Span
from conddsl.lint.clock import ClockAnalysis, whole_cycle_reason
from conddsl.lint.period import Period, start_period
from conddsl.nesting import ExpandedDepth, expansion_problem
from conddsl.reads import OWN_TASK_HINT, own_task_problem
from conddsl.resolve import Resolver
from conddsl.rules.codes import severity_of
from conddsl.rules.diagnostics import Diagnostic
from conddsl.rules.graph import find_cycles
from conddsl.rules.models import NEVER
from conddsl.rules.taskfile import FileCondition, TaskFileReport
from conddsl.settings import ROLES
from conddsl.visitor import ConditionVisitor

__all__ = ["check_tasks"]

_LONG_HORIZON = timedelta(days=16)


def check_tasks(report: TaskFileReport) -> list[Diagnostic]:
    """Every task-level finding of a task file that was read (E123, C302, C303, C401-C407)."""
    # First the depth: the checks below walk a condition with its names written out,
    # level by level, so a condition nested too deep is reported and left out of them.
    found, usable = _depth_checks(report)
    if report.model is None:
        return found
    memo = _Memo(report.rules)
    found.extend(_waiting_cycles(report, usable, memo))
    analysis = ClockAnalysis(report.rules, report.model.scheduler.timezone or "UTC")
    conditions = {(c.task, c.key): c for c in usable}
    shut = conditions.get((None, "shut_cond"))
    if shut is not None:
        found.extend(_shut_checks(report, shut))
    for name in report.task_tables:
        start = conditions.get((name, "start_cond"))
        end = conditions.get((name, "end_cond"))
        found.extend(_clock_checks(report, analysis, start, end, memo))
        if start is not None:
            found.extend(memo.findings(report, start, _START_CHECKS))
        if end is not None:
            found.extend(memo.findings(report, end, _END_CHECKS))
        found.extend(_timeout_checks(report, name, start, memo))
    found.extend(_never_starts(report, conditions, memo))
    return found


# What a check finds in a condition text, before it is placed in the file: the span in
# the text (None for all of it), the message and the hint.
_Said = tuple[Span | None, str, str | None]
# Checks of one condition on its own: (code, what it finds in the condition's tree).
_Checks = tuple[tuple[str, Callable[[ast.Node], Iterator[_Said]]], ...]


class _Memo:
    """What the checks learn of each distinct condition text, learnt once per file.

    Thousands of tasks share a few hundred texts ("daily after 08:00", "office"): a
    text's findings depend on the text and the file's rules only, so each is worked
    out once and then placed at every condition written with it. Keyed by the text
    (equal texts parse to equal trees, spans included).
    """

    def __init__(self, rules: Mapping[str, ast.Node]) -> None:
        self.rules = rules
        self.waits: dict[str, Waits] = {}
        self.periods: dict[str, Period | None] = {}
        self.said: dict[tuple[_Checks, str], tuple[tuple[str, _Said], ...]] = {}
        self.clock: dict[tuple, tuple] = {}
        self._waits = _MandatoryWaits(rules)

    def waits_of(self, condition: FileCondition) -> Waits:
        """:class:`_MandatoryWaits` of the condition."""
        text = condition.source.text
        found = self.waits.get(text)
        if found is None:
            found = self.waits[text] = self._waits.visit(condition.node, None)
        return found

    def period_of(self, condition: FileCondition) -> Period | None:
        """:func:`start_period` of the condition."""
        text = condition.source.text
        if text not in self.periods:
            self.periods[text] = start_period(condition.node, self.rules)
        return self.periods[text]

    def findings(
        self, report: TaskFileReport, condition: FileCondition, checks: _Checks
    ) -> list[Diagnostic]:
        """The findings of ``checks`` on the condition, placed in the file."""
        key = (checks, condition.source.text)
        said = self.said.get(key)
        if said is None:
            said = self.said[key] = tuple(
                (code, item) for code, check in checks for item in check(condition.node)
            )
        return [
            _finding(report, code, message, condition.source.file_range(span), hint)
            for code, (span, message, hint) in said
        ]


def _finding(
    report: TaskFileReport,
    code: str,
    message: str,
    where: tuple[int, int],
    hint: str | None = None,
) -> Diagnostic:
    return Diagnostic(
        code, message, report.display, report.index.span(*where), severity_of(code), hint
    )


# ---------------------------------------------------------------- E123


def _depth_checks(report: TaskFileReport) -> tuple[list[Diagnostic], list[FileCondition]]:
    """E123 for conditions whose names written out nest too deep or expand too far, and
    the other conditions."""
    depths = ExpandedDepth(report.rules)
    measured: dict[str, tuple[int, int, ast.Reference | None]] = {}  # by text
    found, usable = [], []
    for condition in report.conditions:
        text = condition.source.text
        if text not in measured:
            measured[text] = depths.measure(condition.node)
        depth, size, pointer = measured[text]
        problem = expansion_problem(depth, size)
        if problem is None:
            usable.append(condition)
            continue
        where = condition.source.file_range(pointer.span if pointer is not None else None)
        found.append(_finding(report, "E123", problem[0], where, problem[1]))
    return found, usable


# ---------------------------------------------------------------- C302


Waits = tuple[tuple[str, ast.Node], ...]


class _MandatoryWaits(ConditionVisitor[Waits]):
    """Tasks a condition can never do without: ``after task`` reached through ``&`` only.

    Answers ``(task, node to point at)`` pairs; inside a named condition the pointer is
    the reference in the task file (``anchor``). A cycle of names answers nothing here:
    it is E121's.
    """

    def __init__(self, rules: Mapping[str, ast.Node]) -> None:
        self.resolver = Resolver(rules)

    def visit_AfterTask(self, node: ast.AfterTask, anchor: ast.Node | None) -> Waits:
        if node.mode == "any" and len(node.tasks) > 1:
            return ()  # any one of them will do: none is a must
        return tuple((task, anchor or node) for task in node.tasks)

    def visit_All(self, node: ast.All, anchor: ast.Node | None) -> Waits:
        return tuple(wait for item in node.items for wait in self.visit(item, anchor))

    def visit_Zoned(self, node: ast.Zoned, anchor: ast.Node | None) -> Waits:
        return self.visit(node.item, anchor)

    def visit_Reference(self, node: ast.Reference, anchor: ast.Node | None) -> Waits:
        if self.resolver.target(node) is None or self.resolver.is_expanding(node.name):
            return ()
        # Not remembered (the pointer differs by place), and two frames a level: names
        # may nest up to E123's limit.
        with self.resolver.expanding(node) as target:
            return self.visit(target, anchor or node)

    def visit_optional(self, node: ast.Node, anchor: ast.Node | None) -> Waits:
        """Forms that wait for no task, or (``|``, ``~``) make no wait a must."""
        return ()

    visit_Constant = visit_Any = visit_Not = visit_TimeOf = visit_Periodic = visit_optional
    visit_Every = visit_Cron = visit_TaskHas = visit_TaskRunning = visit_optional
    visit_RunningFor = visit_SchedulerCycles = visit_SchedulerUptime = visit_optional
    visit_Env = visit_ParamExists = visit_ParamIs = visit_optional


def _waiting_cycles(
    report: TaskFileReport, conditions: list[FileCondition], memo: _Memo
) -> Iterator[Diagnostic]:
    tasks = report.task_tables
    edges: dict[str, list[str]] = {name: [] for name in tasks}
    pointers: dict[tuple[str, str], tuple[FileCondition, ast.Node]] = {}
    for condition in conditions:
        if condition.task is None or condition.key != "start_cond":
            continue
        for task, node in memo.waits_of(condition):
            if task in tasks:
                edges[condition.task].append(task)
                pointers.setdefault((condition.task, task), (condition, node))
    for cycle in find_cycles(edges, list(tasks)):
        condition, node = pointers[(cycle[0], cycle[1])]
        if len(cycle) == 2:
            message = f"task {cycle[0]!r} waits for itself: it can never start"
            hint = "'after task' names another task: the one this task runs after"
        else:
            path = " -> ".join(repr(name) for name in cycle)
            message = (
                f"tasks wait on each other ({path}): "
                "until one of them has run, none of them can start"
            )
            hint = f"let one of them also start another way: after task {cycle[1]!r} | daily"
        yield _finding(report, "C302", message, condition.source.file_range(node.span), hint)


# ---------------------------------------------------------------- C409

# Keys that start a task without a start condition (a task-file model may not have them yet).


def _never_starts(
    report: TaskFileReport,
    conditions: Mapping[tuple[str | None, str], FileCondition],
    memo: _Memo,
) -> Iterator[Diagnostic]:
    """C409: a task with nothing that starts it but `conddsl run-task` or the API.

    Only tasks whose table is valid are looked at: a broken one has its own finding.
    """
    assert report.model is not None
    tasks = report.model.tasks
    for name, task in tasks.items():
        if task.disabled or any(getattr(task, role, False) is True for role in ROLES):
            continue
        if task.start_cond is None:
            yield _finding(
                report,
                "C409",
                f"task {name!r} has no start_cond: it never starts by itself",
                _table_range(report, name),
                'say so with start_cond = "false" if it runs only when asked'
                " (conddsl run-task), or give it a start condition",
            )
            continue
        start = conditions.get((name, "start_cond"))
        if start is None:
            continue
        for other, node in memo.waits_of(start):
            if other in tasks and tasks[other].disabled:
                yield _finding(
                    report,
                    "C409",
                    f"task {name!r} waits for task {other!r}, which is disabled: it never starts",
                    start.source.file_range(node.span),
                    f"enable {other!r}, or let {name!r} also start another way:"
                    f" after task {other!r} | daily",
                )
                break


def _table_range(report: TaskFileReport, name: str) -> tuple[int, int]:
    located = report.locations.get(("tasks", name)) if report.locations else None
    return located.key if located is not None else (0, 0)


# ---------------------------------------------------------------- C401-C403


def _clock_checks(
    report: TaskFileReport,
    analysis: ClockAnalysis,
    start: FileCondition | None,
    end: FileCondition | None,
    memo: _Memo,
) -> list[Diagnostic]:
    key = (start and start.source.text, end and end.source.text)
    said = memo.clock.get(key)
    if said is None:
        said = memo.clock[key] = tuple(
            _clock_said(analysis, start and start.node, end and end.node)
        )
    found = []
    for code, on_start, message, hint in said:
        condition = start if on_start else end
        assert condition is not None
        found.append(_finding(report, code, message, condition.source.file_range(None), hint))
    return found


def _clock_said(
    analysis: ClockAnalysis, start: ast.Node | None, end: ast.Node | None
) -> Iterator[tuple[str, bool, str, str]]:
    """C401-C403 of a start and an end condition: code, whether on the start, message, hint."""
    never_starts = always_ends = False
    start_over = end_under = None
    if start is not None:
        start_over, _ = analysis.bounds(start)
        # "false" written out is a task started by hand or by the API: not a mistake.
        if not isinstance(start, ast.Constant) and analysis.first_window(start_over) is None:
            never_starts = True
            yield (
                "C401",
                True,
                f"the start condition is never true: its clock part {_quoted(start_over)} "
                "has no window",
                "check the windows: do two of them exclude each other?",
            )
    if end is not None:
        _, end_under = analysis.bounds(end)
        if analysis.first_window(negation(end_under)) is None:
            always_ends = True
            why = "" if isinstance(end, ast.Constant) else f" ({_quoted(end_under)})"
            yield (
                "C402",
                False,
                f"the end condition is always true{why}: every run would be terminated at once",
                "an end condition says when a run must stop: give it a window",
            )
    if start_over is None or end_under is None or never_starts or always_ends:
        return
    if analysis.first_window(conjunction([start_over, negation(end_under)])) is None:
        yield (
            "C403",
            False,
            "the end condition is already true whenever the task can start, so every run "
            f"would be terminated at once ({_overlap(analysis, start_over, end_under)})",
            "the end condition should become true after the start window, not during it",
        )


def _overlap(analysis: ClockAnalysis, start_over: ast.Node, end_under: ast.Node) -> str:
    first = analysis.first_window(start_over)
    assert first is not None
    long = analysis.horizon(conjunction([start_over, end_under])) > _LONG_HORIZON
    when = _when(first[0], long)
    window = analysis.window_at(end_under, first[0])
    if window is None:  # pragma: no cover - the intersection above says it is inside
        return f"it can start at {when}"
    return (
        f"it can start at {when}; the end condition is true from "
        f"{_when(window[0], long)} to {_when(window[1], long)}"
    )


def _when(at: datetime, long: bool) -> str:
    clock = at.strftime("%H:%M:%S" if at.second or at.microsecond else "%H:%M")
    return f"{at:%a %Y-%m-%d} {clock}" if long else f"{at:%a} {clock}"


def _quoted(node: ast.Node) -> str:
    text = str(node)
    return repr(text if len(text) <= 80 else text[:77] + "...")


# ---------------------------------------------------------------- C406


def _whole_cycle_said(root: ast.Node) -> Iterator[_Said]:
    """C406 for each window of a start condition that is silently the whole cycle."""
    for node in ast.walk(root):
        window = getattr(node, "window", None)
        if not isinstance(node, ast.TimeOf | ast.Periodic) or window is None:
            continue
        why = whole_cycle_reason(node)
        if why is None:
            continue
        unit = node.unit if isinstance(node, ast.TimeOf) else ast.PERIOD_UNIT[node.period]
        yield (
            node.span,
            f"the window {_quoted(node)} is the whole {unit}: {why}",
            _WHOLE_CYCLE_HINT[type(node)].format(
                unit=unit, period=_period_word(node), article="an" if unit == "hour" else "a"
            ),
        )


_WHOLE_CYCLE_HINT = {
    ast.TimeOf: "for any time drop this window (or write 'true'); "
    "otherwise give the window two different ends",
    ast.Periodic: "for once {article} {unit} write '{period}' (or '{period} starting X'); "
    "otherwise give the window two different ends",
}


def _period_word(node: ast.Node) -> str:
    return node.period if isinstance(node, ast.Periodic) else ""


# ---------------------------------------------------------------- C407

# The whole range of a day field, to write a starred field without its star.
_FIELD_RANGE = {2: "1-31", 4: "0-6"}


def _day_field_said(root: ast.Node) -> Iterator[_Said]:
    """C407 for cron lines whose day fields AND only because one text starts with '*'."""
    for node in ast.walk(root):
        if not isinstance(node, ast.Cron):
            continue
        fields = node.expression.split()
        if len(fields) != 5 or "*" in (fields[2], fields[4]):
            continue
        starred = [i for i in (2, 4) if fields[i].startswith("*")]
        if not starred:
            continue
        either = list(fields)
        for index in starred:
            either[index] = _FIELD_RANGE[index] + fields[index][1:]
        yield (
            node.span,
            f"in {_quoted(node)} a day must match both day fields, because "
            f"{fields[starred[0]]!r} starts with '*' (Vixie cron); Rocketry and croniter "
            "fire on a day that matches either",
            f"for either day write 'cron {' '.join(either)}'; to keep both, silence C407 here",
        )


# The checks of one condition: C406 and C407 of a start condition, C407 of an end one.
_START_CHECKS: _Checks = (("C406", _whole_cycle_said), ("C407", _day_field_said))
_END_CHECKS: _Checks = (("C407", _day_field_said),)


# ---------------------------------------------------------------- C303


def _shut_checks(report: TaskFileReport, shut: FileCondition) -> Iterator[Diagnostic]:
    """C303: the scheduler's shut_cond belongs to no task, so one about its own task's runs
    is refused by `conddsl run`; reported where the condition is written."""
    why = own_task_problem(shut.node, report.rules)
    if why is not None:
        where = shut.source.file_range(shut.node.span)
        yield _finding(report, "C303", f"shut_cond {why}", where, OWN_TASK_HINT)


# ---------------------------------------------------------------- C404, C405


def _timeout_checks(
    report: TaskFileReport, name: str, start: FileCondition | None, memo: _Memo
) -> list[Diagnostic]:
    model = report.model
    task = model.tasks.get(name) if model is not None else None
    if task is None:
        return []
    found = []
    execution = task.execution or model.scheduler.execution
    if execution == "main":
        for key in ("timeout", "end_cond"):
            if getattr(task, key) not in (None, NEVER):
                found.append(
                    _finding(
                        report,
                        "C405",
                        f"a task run in the main thread cannot be terminated: its {key} "
                        "is never enforced",
                        _value_range(report, ("tasks", name, key)),
                        'use execution = "thread", "process" or "async" to enforce it',
                    )
                )
    # Only timeouts written in the file: the scheduler's built-in default is not checked.
    timeout = task.timeout or model.scheduler.timeout
    if not isinstance(timeout, timedelta) or start is None:
        return found
    period = memo.period_of(start)
    if period is None or timeout <= period[0]:
        return found
    from conddsl.ast import format_duration

    if task.timeout is not None:
        owner, where = "timeout", _value_range(report, ("tasks", name, "timeout"))
    else:
        owner, where = "the [scheduler] timeout", start.source.file_range(None)
    found.append(
        _finding(
            report,
            "C404",
            f"{owner} {format_duration(timeout)} is longer than the task's period "
            f"({period[1]}): the next run is due before a slow run times out",
            where,
            f"a timeout of at most {format_duration(period[0])}, or a longer period",
        )
    )
    return found


def _value_range(report: TaskFileReport, path: tuple) -> tuple[int, int]:
    located = report.locations.get(path) if report.locations else None
    return located.value if located is not None else (0, 0)
