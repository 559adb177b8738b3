"""The condition AST: immutable nodes with source spans, and the canonical printer.

``str(node)`` is the normalized text of a node; parsing it gives an equal node
(spans are not part of equality, so text that moved still compares equal).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import timedelta

from conddsl.errors import Span

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CLOCK_UNITS = ("minute", "hour", "day", "week", "month")
PERIODS = ("secondly", "minutely", "hourly", "daily", "weekly", "monthly")
CYCLE_SPANS = ("this minute", "this hour", "today", "this week", "this month")
ACTIONS = ("succeeded", "failed", "finished", "terminated", "inacted", "started")
DEPENDENCIES = ("succeeded", "failed", "finished", "terminated")
# The cycle each once-per-cycle word and each "has … <span>" scope counts in.
PERIOD_UNIT = {
    "secondly": "second",
    "minutely": "minute",
    "hourly": "hour",
    "daily": "day",
    "weekly": "week",
    "monthly": "month",
}
CYCLE_UNIT = {
    "this minute": "minute",
    "this hour": "hour",
    "today": "day",
    "this week": "week",
    "this month": "month",
}


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Node:
    """Base of every node."""


# ---------------------------------------------------------------- points in a cycle


@dataclass(frozen=True, slots=True)
class TimeOfDay(Node):
    """A wall-clock time within a day, exact to the microsecond; 24:00 is the end of the day."""

    hour: int
    minute: int = 0
    second: int = 0
    microsecond: int = 0
    span: Span | None = _span()

    @property
    def micros(self) -> int:
        return ((self.hour * 60 + self.minute) * 60 + self.second) * 1_000_000 + self.microsecond

    def __str__(self) -> str:
        text = f"{self.hour:02d}:{self.minute:02d}"
        if self.second or self.microsecond:
            text += f":{self.second:02d}"
        if self.microsecond:
            text += f".{self.microsecond:06d}".rstrip("0")
        return text


@dataclass(frozen=True, slots=True)
class SecondOfMinute(Node):
    """A point within a minute: seconds and microseconds (``15``, ``15.5``); 60 is the end."""

    micros: int
    span: Span | None = _span()

    def __str__(self) -> str:
        seconds, micro = divmod(self.micros, 1_000_000)
        return f"{seconds}" + (f".{micro:06d}".rstrip("0") if micro else "")


@dataclass(frozen=True, slots=True)
class MillisecondOfSecond(Node):
    """A point within a second, in milliseconds as Rocketry writes it (``500``); 1000 is the end."""

    micros: int
    span: Span | None = _span()

    def __str__(self) -> str:
        millis, micro = divmod(self.micros, 1_000)
        return f"{millis}" + (f".{micro:03d}".rstrip("0") if micro else "")


@dataclass(frozen=True, slots=True)
class MinuteOfHour(Node):
    """A point within an hour, written ``MM:SS`` (``45:00`` is minute 45); 60:00 is the end."""

    micros: int
    span: Span | None = _span()

    def __str__(self) -> str:
        seconds, micro = divmod(self.micros, 1_000_000)
        minutes, seconds = divmod(seconds, 60)
        return f"{minutes:02d}:{seconds:02d}" + (f".{micro:06d}".rstrip("0") if micro else "")


@dataclass(frozen=True, slots=True)
class Weekday(Node):
    """A day of the week (0 = Monday), optionally with a time of day."""

    weekday: int
    time: TimeOfDay | None = None
    span: Span | None = _span()

    def __str__(self) -> str:
        name = WEEKDAY_NAMES[self.weekday]
        return name if self.time is None else f"{name} {self.time}"


@dataclass(frozen=True, slots=True)
class MonthDay(Node):
    """A day of the month, optionally with a time of day.

    ``day`` is 1..31, or -1 for the last day. With ``weekday`` set, the day is the
    ``day``-th such weekday of the month (1..5), or the last one when ``day`` is -1.
    """

    day: int
    weekday: int | None = None
    time: TimeOfDay | None = None
    span: Span | None = _span()

    def __str__(self) -> str:
        if self.day == -1:
            text = "last"
        else:
            text = ordinal(self.day)
        if self.weekday is not None:
            text += f" {WEEKDAY_NAMES[self.weekday]}"
        return text if self.time is None else f"{text} {self.time}"


Point = TimeOfDay | MillisecondOfSecond | SecondOfMinute | MinuteOfHour | Weekday | MonthDay


def ordinal(n: int) -> str:
    """``1`` -> ``1st``, ``12`` -> ``12th``, ``23`` -> ``23rd``."""
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# ---------------------------------------------------------------- windows in a cycle


@dataclass(frozen=True, slots=True)
class Between(Node):
    """From ``start`` (inclusive) to ``end`` (exclusive, or the whole named day)."""

    start: Point
    end: Point
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"between {self.start} and {self.end}"


@dataclass(frozen=True, slots=True)
class After(Node):
    """From ``start`` to the end of the cycle."""

    start: Point
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"after {self.start}"


@dataclass(frozen=True, slots=True)
class Before(Node):
    """From the start of the cycle to ``end``."""

    end: Point
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"before {self.end}"


@dataclass(frozen=True, slots=True)
class On(Node):
    """One sub-unit of the cycle starting at ``point`` (an hour of a day, a day of a week)."""

    point: Point
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"on {self.point}"


@dataclass(frozen=True, slots=True)
class Starting(Node):
    """A whole cycle anchored at ``point`` (a "day" from 10:00 to 10:00)."""

    point: Point
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"starting {self.point}"


Window = Between | After | Before | On | Starting


# ---------------------------------------------------------------- durations


@dataclass(frozen=True, slots=True)
class Duration(Node):
    """A length of time."""

    value: timedelta
    span: Span | None = _span()

    def __str__(self) -> str:
        return format_duration(self.value)


_DURATION_UNITS = (
    ("week", timedelta(weeks=1)),
    ("day", timedelta(days=1)),
    ("hour", timedelta(hours=1)),
    ("minute", timedelta(minutes=1)),
)


def format_duration(value: timedelta) -> str:
    """Canonical duration text: ``1 hour 30 minutes``, ``2 weeks``, ``1.5 seconds``."""
    rest = value
    parts = []
    for name, unit in _DURATION_UNITS:
        count, rest = divmod(rest, unit)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    micros = rest // timedelta(microseconds=1)
    if micros or not parts:
        seconds, micro = divmod(micros, 1_000_000)
        number = f"{seconds}" + (f".{micro:06d}".rstrip("0") if micro else "")
        parts.append(f"{number} second{'s' if micros != 1_000_000 else ''}")
    return " ".join(parts)


# ---------------------------------------------------------------- conditions


@dataclass(frozen=True, slots=True)
class Constant(Node):
    """``true`` or ``false``."""

    value: bool
    span: Span | None = _span()

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(frozen=True, slots=True)
class All(Node):
    """True when every item is true (``&``, ``and``)."""

    items: tuple[Node, ...]
    span: Span | None = _span()

    def __str__(self) -> str:
        return " & ".join(_wrap(item, _PRECEDENCE_AND) for item in self.items)


@dataclass(frozen=True, slots=True)
class Any(Node):
    """True when at least one item is true (``|``, ``or``)."""

    items: tuple[Node, ...]
    span: Span | None = _span()

    def __str__(self) -> str:
        return " | ".join(_wrap(item, _PRECEDENCE_OR) for item in self.items)


@dataclass(frozen=True, slots=True)
class Not(Node):
    """True when the item is false (``~``, ``not``)."""

    item: Node
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"~{_wrap(self.item, _PRECEDENCE_NOT)}"


@dataclass(frozen=True, slots=True)
class Zoned(Node):
    """An expression evaluated in a named timezone: ``… in Europe/Helsinki``."""

    item: Node
    zone: str
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"{_wrap(self.item, _PRECEDENCE_ZONED)} in {self.zone}"


@dataclass(frozen=True, slots=True)
class TimeOf(Node):
    """A pure clock check: ``time of day between 08:00 and 18:00``."""

    unit: str
    window: Window
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"time of {self.unit} {self.window}"


@dataclass(frozen=True, slots=True)
class Periodic(Node):
    """Once per cycle: ``daily``, ``daily between 22:00 and 04:00``, ``weekly on Mon``."""

    period: str
    window: Window | None = None
    span: Span | None = _span()

    def __str__(self) -> str:
        return self.period if self.window is None else f"{self.period} {self.window}"


@dataclass(frozen=True, slots=True)
class Every(Node):
    """The task has not started within the last ``duration``."""

    duration: Duration
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"every {self.duration}"


@dataclass(frozen=True, slots=True)
class Cron(Node):
    """Inside a matching cron minute, and the task has not started in it."""

    expression: str
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"cron {self.expression}"


@dataclass(frozen=True, slots=True)
class CycleScope(Node):
    """``today``, ``this week between Mon and Fri``: the current cycle, or a window in it."""

    cycle: str
    window: Window | None = None
    span: Span | None = _span()

    def __str__(self) -> str:
        return self.cycle if self.window is None else f"{self.cycle} {self.window}"


@dataclass(frozen=True, slots=True)
class PastScope(Node):
    """``in past 2 hours``: the last ``duration`` up to now."""

    duration: Duration
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"in past {self.duration}"


@dataclass(frozen=True, slots=True)
class TaskHas(Node):
    """``[task 'x'] has succeeded [today | in past 1 hour | …]``."""

    action: str
    task: str | None = None
    scope: CycleScope | PastScope | None = None
    span: Span | None = _span()

    def __str__(self) -> str:
        text = f"has {self.action}"
        if self.task is not None:
            text = f"task {quote(self.task)} {text}"
        return text if self.scope is None else f"{text} {self.scope}"


@dataclass(frozen=True, slots=True)
class AfterTask(Node):
    """``after task 'a' [succeeded|failed|finished|terminated]``; ``mode`` all/any for lists."""

    tasks: tuple[str, ...]
    mode: str = "one"
    dependency: str | None = None
    span: Span | None = _span()

    def __str__(self) -> str:
        names = ", ".join(quote(name) for name in self.tasks)
        head = {"one": "after task", "all": "after tasks", "any": "after any tasks"}[self.mode]
        text = f"{head} {names}"
        return text if self.dependency is None else f"{text} {self.dependency}"


@dataclass(frozen=True, slots=True)
class TaskRunning(Node):
    """``task 'x' is running``."""

    task: str
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"task {quote(self.task)} is running"


@dataclass(frozen=True, slots=True)
class RunningFor(Node):
    """``running for more|less than <d>``: about the current run of the task itself."""

    comparison: str
    duration: Duration
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"running for {self.comparison} than {self.duration}"


@dataclass(frozen=True, slots=True)
class SchedulerCycles(Node):
    """``scheduler has more than|less than|exactly N cycles``."""

    comparison: str  # "more", "less" or "equal"
    count: int
    span: Span | None = _span()

    def __str__(self) -> str:
        if self.comparison == "equal":
            return f"scheduler has {self.count} cycles"
        return f"scheduler has {self.comparison} than {self.count} cycles"


@dataclass(frozen=True, slots=True)
class SchedulerUptime(Node):
    """``scheduler started <d> ago`` (uptime below) / ``scheduler has run over <d>`` (above)."""

    comparison: str  # "less": started <d> ago; "more": has run over <d>
    duration: Duration
    span: Span | None = _span()

    def __str__(self) -> str:
        if self.comparison == "less":
            return f"scheduler started {self.duration} ago"
        return f"scheduler has run over {self.duration}"


@dataclass(frozen=True, slots=True)
class Env(Node):
    """``env 'prod'``: the session's environment name."""

    name: str
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"env {quote(self.name)}"


@dataclass(frozen=True, slots=True)
class ParamExists(Node):
    """``param 'x' exists`` (every listed parameter is set)."""

    names: tuple[str, ...]
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"param {', '.join(quote(n) for n in self.names)} exists"


@dataclass(frozen=True, slots=True)
class ParamIs(Node):
    """``param 'x' is 'v'``."""

    name: str
    value: str
    span: Span | None = _span()

    def __str__(self) -> str:
        return f"param {quote(self.name)} is {quote(self.value)}"


@dataclass(frozen=True, slots=True)
class Reference(Node):
    """A condition defined elsewhere: a named rule or a registered custom condition."""

    words: tuple[str, ...]
    args: tuple[str, ...] = ()
    span: Span | None = _span()

    @property
    def name(self) -> str:
        return " ".join(self.words)

    def __str__(self) -> str:
        return " ".join([*self.words, *(quote(arg) for arg in self.args)])


# ---------------------------------------------------------------- kinds of node

# The nodes that are conditions themselves (what a visitor of conditions must handle);
# the rest are their parts: points, windows, durations and scopes.
CONDITIONS: tuple[type[Node], ...] = (
    Constant,
    All,
    Any,
    Not,
    Zoned,
    TimeOf,
    Periodic,
    Every,
    Cron,
    TaskHas,
    AfterTask,
    TaskRunning,
    RunningFor,
    SchedulerCycles,
    SchedulerUptime,
    Env,
    ParamExists,
    ParamIs,
    Reference,
)
PARTS: tuple[type[Node], ...] = (
    TimeOfDay,
    SecondOfMinute,
    MillisecondOfSecond,
    MinuteOfHour,
    Weekday,
    MonthDay,
    Between,
    After,
    Before,
    On,
    Starting,
    Duration,
    CycleScope,
    PastScope,
)


def _store_through_slots(cls: type[Node]) -> None:
    """Give a frozen slotted dataclass an ``__init__`` that stores through its slots.

    The ``__init__`` that dataclasses writes for a frozen class stores each field with
    ``object.__setattr__`` (a global, an attribute and a call: ~100 ns a field); the
    slot's own descriptor stores it in half that. The parser makes several nodes per
    condition, a fifth of a cold compile before this (issue 21). Same parameters,
    defaults and result; the class stays frozen to everyone else.
    """
    params: list[str] = []
    stores: list[str] = []
    namespace: dict[str, object] = {}
    for item in fields(cls):
        if item.default_factory is not MISSING or not item.init or item.kw_only:
            raise TypeError(f"{cls.__name__}.{item.name}: a field _store_through_slots can't copy")
        if item.default is MISSING:
            params.append(item.name)
        else:
            namespace[f"_default_{item.name}"] = item.default
            params.append(f"{item.name}=_default_{item.name}")
        namespace[f"_store_{item.name}"] = cls.__dict__[item.name].__set__
        stores.append(f"    _store_{item.name}(self, {item.name})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(stores) + "\n"
    exec(source, namespace)  # as dataclasses itself writes __init__
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init


for _node_type in (*CONDITIONS, *PARTS):
    _store_through_slots(_node_type)
del _node_type  # not a kind of node of the module

# ---------------------------------------------------------------- walking a tree


def children(node: Node) -> tuple[Node, ...]:
    """The operands of ``&``, ``|``, ``~`` and a zoned part; none for any other node."""
    if isinstance(node, All | Any):
        return node.items
    if isinstance(node, Not | Zoned):
        return (node.item,)
    return ()


def walk(node: Node) -> Iterator[Node]:
    """Every node of a condition tree, parents before children (no recursion)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(current)))


def with_children(node: Node, items: tuple[Node, ...]) -> Node:
    """``node`` with its operands (see :func:`children`) replaced by ``items``."""
    if isinstance(node, All | Any):
        return replace(node, items=tuple(items))
    if isinstance(node, Not | Zoned):
        (item,) = items
        return replace(node, item=item)
    return node


def transform(node: Node, change: Callable[[Node], Node]) -> Node:
    """The tree rebuilt bottom-up: ``change`` gets each node with its operands already
    changed (no recursion, so any depth the parser allows is fine)."""
    done: dict[int, Node] = {}
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        current, ready = stack.pop()
        items = children(current)
        if not ready and items:
            stack.append((current, True))
            stack.extend((item, False) for item in items)
            continue
        if items:
            new = tuple(done[id(item)] for item in items)
            if any(a is not b for a, b in zip(new, items, strict=True)):
                current_changed = with_children(current, new)
            else:
                current_changed = current
        else:
            current_changed = current
        done[id(current)] = change(current_changed)
    return done[id(node)]


# ---------------------------------------------------------------- printing helpers

_PRECEDENCE_ZONED = 0
_PRECEDENCE_OR = 1
_PRECEDENCE_AND = 2
_PRECEDENCE_NOT = 3


def _precedence(node: Node) -> int:
    if isinstance(node, Zoned):
        return _PRECEDENCE_ZONED
    if isinstance(node, Any):
        return _PRECEDENCE_OR
    if isinstance(node, All):
        return _PRECEDENCE_AND
    return _PRECEDENCE_NOT + 1


def _wrap(node: Node, parent: int) -> str:
    # An n-ary node directly inside one of its own kind needs parentheses to stay
    # a separate node when parsed back; so does anything that binds looser.
    if _precedence(node) <= parent:
        return f"({node})"
    return str(node)


_NEEDS_ESCAPE = re.compile(r"['\\]")


def quote(text: str) -> str:
    """Quote a task name or argument: single quotes, backslash before ``'`` and ``\\``."""
    return "'" + _NEEDS_ESCAPE.sub(lambda m: "\\" + m.group(0), text) + "'"
