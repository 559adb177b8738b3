"""Build conditions in Python: the same AST as the strings, so ``str()`` parses back.

>>> from conddsl.conds import daily, time_of_day, after_success
>>> str(daily.after("22:00") & ~time_of_day.between("08:00", "18:00"))
'daily after 22:00 & ~time of day between 08:00 and 18:00'

Every builder writes the condition's text and parses it, so a built condition is
exactly what the same string gives; a value that is not a single value (for example
``"08:00 | true"``) is refused with a ValueError.
"""

from __future__ import annotations

from datetime import timedelta

from conddsl import ast
from conddsl.compile import Condition
from conddsl.parse import parse

__all__ = [
    "true",
    "false",
    "time_of_minute",
    "time_of_hour",
    "time_of_day",
    "time_of_week",
    "time_of_month",
    "secondly",
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "every",
    "cron",
    "after_success",
    "after_fail",
    "after_finish",
    "after_terminate",
    "after_all_success",
    "after_any_success",
    "running",
    "running_for_more_than",
    "running_for_less_than",
    "started",
    "succeeded",
    "failed",
    "finished",
    "terminated",
    "inacted",
    "env",
    "param_exists",
    "param_is",
    "named",
]


def _build(text: str, expected: type | tuple[type, ...]) -> Condition:
    node = parse(text)
    if not isinstance(node, expected):
        raise ValueError(f"{text!r} is not a single value where one was expected")
    return Condition(node)


def _value(value: object) -> str:
    text = str(value).strip()
    if not text or any(char in text for char in "&|~()'\"#\n"):
        raise ValueError(f"not a single value: {value!r}")
    return text


def _duration(value: timedelta | float | str) -> str:
    if isinstance(value, timedelta):
        return ast.format_duration(value)
    if isinstance(value, int | float):
        return ast.format_duration(timedelta(seconds=value))
    return _value(value)


class _Windowed:
    """Builds ``<head> between/after/before/on …`` for one kind of head."""

    def __init__(self, head: str, expected: type) -> None:
        self._head = head
        self._expected = expected

    def between(self, start: object, end: object) -> Condition:
        """True from ``start`` to ``end`` (wrapping around when start is later)."""
        return _build(f"{self._head} between {_value(start)} and {_value(end)}", self._expected)

    def after(self, start: object) -> Condition:
        """From ``start`` to the end of the cycle."""
        return _build(f"{self._head} after {_value(start)}", self._expected)

    def before(self, end: object) -> Condition:
        """From the start of the cycle to ``end``."""
        return _build(f"{self._head} before {_value(end)}", self._expected)

    def on(self, point: object) -> Condition:
        """One sub-unit of the cycle starting at ``point``."""
        return _build(f"{self._head} on {_value(point)}", self._expected)


class _Periodic(Condition, _Windowed):
    """``daily`` and friends: a condition that also builds its windowed forms."""

    __slots__ = ("_head", "_expected")

    def __init__(self, period: str) -> None:
        Condition.__init__(self, parse(period))
        _Windowed.__init__(self, period, ast.Periodic)

    def starting(self, point: object) -> Condition:
        """A whole cycle anchored at ``point`` (``daily.starting("10:00")``)."""
        return _build(f"{self._head} starting {_value(point)}", ast.Periodic)


class _Has(Condition):
    """``[task 'x'] has <action>``, with its scopes as methods."""

    __slots__ = ("_head",)

    def __init__(self, action: str, task: str | None) -> None:
        head = f"has {action}" if task is None else f"task {ast.quote(task)} has {action}"
        Condition.__init__(self, parse(head))
        self._head = head

    def __call__(self, task: str) -> _Has:
        """The same, about another task: ``succeeded("extract")``."""
        return _Has(self.ast.action, task)

    def _cycle(self, cycle: str) -> _HasCycle:
        return _HasCycle(f"{self._head} {cycle}")

    def today(self) -> _HasCycle:
        """Within today (or a window of today: ``.today().between(…)``)."""
        return self._cycle("today")

    def this_minute(self) -> _HasCycle:
        return self._cycle("this minute")

    def this_hour(self) -> _HasCycle:
        return self._cycle("this hour")

    def this_week(self) -> _HasCycle:
        return self._cycle("this week")

    def this_month(self) -> _HasCycle:
        return self._cycle("this month")

    def in_past(self, duration: timedelta | float | str) -> Condition:
        """Within the last ``duration``."""
        return _build(f"{self._head} in past {_duration(duration)}", ast.TaskHas)


class _HasCycle(Condition, _Windowed):
    __slots__ = ("_head", "_expected")

    def __init__(self, head: str) -> None:
        Condition.__init__(self, parse(head))
        _Windowed.__init__(self, head, ast.TaskHas)

    def starting(self, point: object) -> Condition:
        return _build(f"{self._head} starting {_value(point)}", ast.TaskHas)


true = Condition(ast.Constant(True))
false = Condition(ast.Constant(False))

time_of_minute = _Windowed("time of minute", ast.TimeOf)
time_of_hour = _Windowed("time of hour", ast.TimeOf)
time_of_day = _Windowed("time of day", ast.TimeOf)
time_of_week = _Windowed("time of week", ast.TimeOf)
time_of_month = _Windowed("time of month", ast.TimeOf)

secondly = _Periodic("secondly")
minutely = _Periodic("minutely")
hourly = _Periodic("hourly")
daily = _Periodic("daily")
weekly = _Periodic("weekly")
monthly = _Periodic("monthly")

started = _Has("started", None)
succeeded = _Has("succeeded", None)
failed = _Has("failed", None)
finished = _Has("finished", None)
terminated = _Has("terminated", None)
inacted = _Has("inacted", None)


def every(duration: timedelta | float | str) -> Condition:
    """The task has not started within the last ``duration``."""
    return _build(f"every {_duration(duration)}", ast.Every)


def cron(expression: str) -> Condition:
    """Inside a matching cron minute, and the task has not started in it."""
    return _build(f"cron {_value(expression)}", ast.Cron)


def _after(tasks: tuple[str, ...], mode: str, outcome: str | None) -> Condition:
    if not tasks:
        raise ValueError("name at least one task")
    head = {"one": "after task", "all": "after tasks", "any": "after any tasks"}[mode]
    text = f"{head} {', '.join(ast.quote(task) for task in tasks)}"
    return _build(text if outcome is None else f"{text} {outcome}", ast.AfterTask)


def after_success(task: str) -> Condition:
    """``task`` succeeded after this task last started."""
    return _after((task,), "one", None)


def after_fail(task: str) -> Condition:
    return _after((task,), "one", "failed")


def after_finish(task: str) -> Condition:
    return _after((task,), "one", "finished")


def after_terminate(task: str) -> Condition:
    return _after((task,), "one", "terminated")


def after_all_success(*tasks: str) -> Condition:
    """Every one of ``tasks`` succeeded after this task last started."""
    return _after(tasks, "all", None)


def after_any_success(*tasks: str) -> Condition:
    """At least one of ``tasks`` succeeded after this task last started."""
    return _after(tasks, "any", None)


def running(task: str) -> Condition:
    """A run of ``task`` is alive."""
    return _build(f"task {ast.quote(task)} is running", ast.TaskRunning)


def running_for_more_than(duration: timedelta | float | str) -> Condition:
    """The current run of this task has lasted longer than ``duration``."""
    return _build(f"running for more than {_duration(duration)}", ast.RunningFor)


def running_for_less_than(duration: timedelta | float | str) -> Condition:
    return _build(f"running for less than {_duration(duration)}", ast.RunningFor)


def env(name: str) -> Condition:
    """The session's environment is ``name``."""
    return _build(f"env {ast.quote(name)}", ast.Env)


def param_exists(*names: str) -> Condition:
    return _build(f"param {', '.join(ast.quote(n) for n in names)} exists", ast.ParamExists)


def param_is(name: str, value: str) -> Condition:
    return _build(f"param {ast.quote(name)} is {ast.quote(value)}", ast.ParamIs)


def named(phrase: str, *args: str) -> Condition:
    """A named or custom condition, resolved when evaluated (by rules, a registry or a
    scheduler); evaluating it before then raises a clear error."""
    text = " ".join([phrase, *(ast.quote(arg) for arg in args)])
    node = parse(text)
    if not isinstance(node, ast.Reference):
        raise ValueError(f"{phrase!r} is not a name")
    return Condition(node, lenient=True)
