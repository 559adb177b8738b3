"""AST -> Condition: evaluators that answer is_true, windows and next_change.

Each node is compiled once into a small evaluator; dispatch happens here, not per
evaluation. Clock evaluators work in the wall-clock time of their timezone and
map their windows to real instants with the DST policy of ``timeline.zones``;
``&``, ``|`` and ``~`` combine those real-time windows by interval algebra.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone, tzinfo

from conddsl import ast, taskstate
from conddsl.bounds import BoundsAnalysis, CustomCases
from conddsl.context import Context
from conddsl.custom import default_registry
from conddsl.errors import ConditionError
from conddsl.parse import parse
from conddsl.reads import NOTHING, Reads, reads_of
from conddsl.resolve import Resolver
from conddsl.timeline import intervals
from conddsl.timeline.clock import ClockWindow, cron_runs, later
from conddsl.timeline.cron import parse_cron
from conddsl.timeline.tables import table_predicate
from conddsl.timeline.zones import local_zone, resolve_zone, to_wall, wall_span, wall_to_real
from conddsl.visitor import ConditionVisitor
from conddsl.windows import clock_window, plain_ends, plain_window

Interval = tuple[datetime, datetime]

# How far next_change looks for a change before answering "never": two cycles of
# the longest regular cycle involved, or 29 years (every weekday/month-day/leap-day
# pattern of the calendar repeats within 28 years) for month and cron patterns.
IRREGULAR_HORIZON = timedelta(days=366 * 29)
_MARGIN = timedelta(days=2)
_MINUTE = timedelta(minutes=1)
_NO_RULES: dict[str, ast.Node] = {}
# ``Condition._names`` of a condition without rules or a registry of its own.
_DEFAULT_NAMES = (_NO_RULES, default_registry)
# A pure clock condition builds its lookup table at this many-th is_true (see below).
_TABLE_AFTER = 8
# ``Condition._fast`` while a pure clock condition warms up (see _first_predicate).
_WARMING = object()


class _Evaluator:
    """Base of compiled nodes."""

    __slots__ = ("zone",)
    horizon: timedelta = timedelta(0)
    # A plain wall-time predicate when the node needs nothing but the wall clock.
    fast = None

    def value(self, wall: datetime, ctx: Context) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def real_intervals(self, start: datetime, end: datetime, ctx: Context) -> Iterator[Interval]:
        """Maximal aware intervals inside [start, end) where the node is true."""
        raise NotImplementedError  # pragma: no cover - abstract


class _Constant(_Evaluator):
    __slots__ = ("constant", "fast")

    def __init__(self, constant: bool, zone: tzinfo) -> None:
        self.zone = zone
        self.constant = constant
        self.fast = (lambda wall: True) if constant else (lambda wall: False)

    def value(self, wall, ctx):
        return self.constant

    def real_intervals(self, start, end, ctx):
        if self.constant and start < end:
            yield start, end


class _Clock(_Evaluator):
    """``time of day between …`` and the clock part of ``daily between …``."""

    __slots__ = ("_clock", "horizon")

    def __init__(self, clock: ClockWindow | ast.TimeOf, zone: tzinfo) -> None:
        # A TimeOf node is made a (shared) ClockWindow on first use: looking a fresh
        # window up among the shared ones (hashing and comparing its AST) is a third of
        # a cold compile, and a condition that is only checked or listed never needs it.
        # The node is the condition's own AST: holding it costs nothing.
        self.zone = zone
        self._clock = clock
        self.horizon = _CLOCK_HORIZON[clock.unit]

    @property
    def clock(self) -> ClockWindow:
        """The window, found among the shared ones on first use."""
        clock = self._clock
        if clock.__class__ is ast.TimeOf:
            clock = self._clock = clock_window(clock.unit, clock.window)
        return clock

    @property
    def fast(self):
        """The window's predicate, made when asked: a waiting condition answers from its
        lookup table (built at the ``_TABLE_AFTER``-th is_true), so keeping the closures of
        every one of 10,000 windows would cost ~300 bytes each for a handful of calls."""
        return self.clock.predicate()

    def value(self, wall, ctx):
        return self.clock.contains(wall)

    def real_intervals(self, start, end, ctx):
        if not start < end:
            return iter(())
        low, high = wall_span(start, end, self.zone)
        walls = self.clock.intervals(low, _later(high, timedelta(microseconds=1)))
        return intervals.clip(wall_to_real(walls, self.zone, tz=timezone.utc), start, end)


class _PlainClock(_Evaluator):
    """``time of day between 08:00 and 18:00``: a ``_Clock`` that keeps the two ends alone.

    A waiting task's condition is asked once per change: its window (~280 bytes with its
    pieces) is found again among the recent ones when asked, not kept, nor is the AST
    it came from (issue 21: the memory of 10,000 waiting tasks). ``ends``: both ends in
    one int (``windows.plain_ends``).
    """

    __slots__ = ("unit", "ends")

    def __init__(self, unit: str, ends: int, zone: tzinfo) -> None:
        self.zone = zone
        self.unit = unit
        self.ends = ends

    @property
    def horizon(self) -> timedelta:
        return _CLOCK_HORIZON[self.unit]

    @property
    def clock(self) -> ClockWindow:
        """The window, found (or made again) among the recent plain windows."""
        return plain_window(self.unit, self.ends)

    fast = _Clock.fast
    value = _Clock.value
    real_intervals = _Clock.real_intervals


class _CronClock(_Evaluator):
    """The matching minutes of a cron expression."""

    __slots__ = ("spec", "horizon", "fast")

    def __init__(self, expression: str, zone: tzinfo) -> None:
        self.zone = zone
        self.spec = parse_cron(expression)
        self.fast = self.spec.matches
        self.horizon = _cron_horizon(self.spec)

    def value(self, wall, ctx):
        return self.spec.matches(wall)

    def wall_next_change(self, wall: datetime, horizon: timedelta) -> datetime | None:
        """``next_change`` read on the wall clock of a fixed-offset zone (no gaps or folds).

        The same answer as the interval path (the first edge of ``cron_runs`` within the
        horizon), without building intervals: the usual case is one ``next_fire``.
        """
        limit = wall + max(horizon, _MARGIN)  # OverflowError: the caller's full path
        spec = self.spec
        if not spec.matches(wall):
            fire = spec.next_fire(wall)
            return fire if fire is not None and fire < limit else None
        for _start, end in cron_runs(spec, wall, limit):
            return end if end < limit else None
        return None  # pragma: no cover - a matching minute always gives a run

    def real_intervals(self, start, end, ctx):
        if not start < end:
            return iter(())
        low, high = wall_span(start, end, self.zone)
        walls = cron_runs(self.spec, low, _later(high, timedelta(microseconds=1)))
        return intervals.clip(wall_to_real(walls, self.zone, tz=timezone.utc), start, end)


class _All(_Evaluator):
    __slots__ = ("items", "horizon")

    def __init__(self, items: list[_Evaluator], zone: tzinfo) -> None:
        self.zone = zone
        self.items = tuple(items)
        self.horizon = max([item.horizon for item in items])

    @property
    def fast(self):
        """The parts' predicates combined, made when asked (as ``_Clock.fast``): a condition
        asks once, and compiling one does not pay for closures it may never call."""
        return self._combine([item.fast for item in self.items])

    @staticmethod
    def _combine(parts):
        if any(part is None for part in parts):
            return None
        if len(parts) == 2:  # the common shapes, without a loop
            first, second = parts
            return lambda wall: first(wall) and second(wall)
        if len(parts) == 3:
            first, second, third = parts
            return lambda wall: first(wall) and second(wall) and third(wall)
        parts = tuple(parts)

        def every(wall):
            for part in parts:
                if not part(wall):
                    return False
            return True

        return every

    def value(self, wall, ctx):
        for item in self.items:
            if not item.value(wall, ctx):
                return False
        return True

    def real_intervals(self, start, end, ctx):
        return intervals.intersect(*(item.real_intervals(start, end, ctx) for item in self.items))


class _Any(_All):
    __slots__ = ()

    @staticmethod
    def _combine(parts):
        if any(part is None for part in parts):
            return None
        if len(parts) == 2:
            first, second = parts
            return lambda wall: first(wall) or second(wall)
        if len(parts) == 3:
            first, second, third = parts
            return lambda wall: first(wall) or second(wall) or third(wall)
        parts = tuple(parts)

        def some(wall):
            for part in parts:
                if part(wall):
                    return True
            return False

        return some

    def value(self, wall, ctx):
        for item in self.items:
            if item.value(wall, ctx):
                return True
        return False

    def real_intervals(self, start, end, ctx):
        return intervals.union(*(item.real_intervals(start, end, ctx) for item in self.items))


class _Not(_Evaluator):
    __slots__ = ("item", "horizon")

    def __init__(self, item: _Evaluator, zone: tzinfo) -> None:
        self.zone = zone
        self.item = item
        self.horizon = item.horizon

    @property
    def fast(self):
        """The part's predicate negated, made when asked (see ``_All.fast``)."""
        inner = self.item.fast
        return None if inner is None else (lambda wall: not inner(wall))

    def value(self, wall, ctx):
        return not self.item.value(wall, ctx)

    def real_intervals(self, start, end, ctx):
        return intervals.complement(self.item.real_intervals(start, end, ctx), start, end)


class _Zoned(_Evaluator):
    """A sub-expression in its own timezone: its wall time is read from the real instant."""

    __slots__ = ("item", "horizon")

    def __init__(self, item: _Evaluator, zone: tzinfo) -> None:
        self.zone = zone
        self.item = item
        self.horizon = item.horizon

    def value(self, wall, ctx):
        return self.item.value(to_wall(ctx.real, self.zone), ctx)

    def real_intervals(self, start, end, ctx):
        return self.item.real_intervals(start, end, ctx)


class _Custom(_Evaluator):
    """A registered Python callable: opaque to the time engine."""

    __slots__ = ("entry", "args", "horizon")

    def __init__(self, entry, args: tuple[str, ...], zone: tzinfo) -> None:
        self.zone = zone
        self.entry = entry
        self.args = args
        self.horizon = entry.recheck

    def value(self, wall, ctx):
        return self.entry(self.args, ctx.real)

    def real_intervals(self, start, end, ctx):
        # Its future is unknown: the value now is held (next_change does not come here:
        # it reads the condition under each value of its custom parts, see bounds.CustomCases).
        if self.entry(self.args, start) and start < end:
            yield start, end


class _Unresolved(_Evaluator):
    """A name not known yet (a built condition before a scheduler or rules resolve it)."""

    __slots__ = ("node",)

    def __init__(self, node: ast.Reference, zone: tzinfo) -> None:
        self.zone = zone
        self.node = node

    def _fail(self):
        raise _unknown_name(self.node.name)

    def value(self, wall, ctx):
        self._fail()

    def real_intervals(self, start, end, ctx):
        self._fail()


class _HistoryNode(_Evaluator):
    """A task-state form: read from the history, or its clock part when there is none."""

    __slots__ = ("form", "empty", "horizon")

    def __init__(self, form: taskstate.HistoryForm, empty: _Evaluator, zone: tzinfo) -> None:
        self.zone = zone
        self.form = form
        self.empty = empty
        self.horizon = max(form.horizon, empty.horizon)

    def value(self, wall, ctx):
        return self.form.value(wall, ctx)

    def real_intervals(self, start, end, ctx):
        if ctx.history is None:
            return self.empty.real_intervals(start, end, ctx)
        return self.form.real_intervals(start, end, ctx)


def _horizon_of_scope(node: ast.TaskHas) -> timedelta:
    scope = node.scope
    if isinstance(scope, ast.CycleScope):
        unit = ast.CYCLE_UNIT[scope.cycle]
        return IRREGULAR_HORIZON if unit == "month" else 2 * _cycle_of(unit) + _MARGIN
    return _MARGIN


# Where a search as long as a duration past the calendar ("in past 3000000 days") stops:
# a day before the end of the datetime range, where every timezone has a wall time.
_CALENDAR_END = datetime.max - timedelta(days=1)


def _later(at: datetime, delta: timedelta) -> datetime:
    """``at + delta``, saturating at the end of the datetime range instead of overflowing.

    A delta longer than any clock cycle saturates a day earlier (``_CALENDAR_END``): a
    change after it is never reached, so next_change answers None.
    """
    found = later(at, delta)
    if delta > IRREGULAR_HORIZON:
        end = _CALENDAR_END.replace(tzinfo=at.tzinfo)
        if found > end:
            return max(at, end)
    return found


_ALL_DAYS = (1 << 31) - 1
_ALL_MONTHS = ((1 << 13) - 1) & ~1


def _cron_horizon(spec) -> timedelta:
    """How far a cron pattern must be searched: a day or a week when it repeats so."""
    calendar_free = (
        spec.days == _ALL_DAYS
        and not spec.last_day
        and spec.months == _ALL_MONTHS
        and not spec.nth_weekdays
        and not spec.last_weekdays
    )
    if calendar_free and spec.weekdays & 0x7F == 0x7F:
        return 2 * _cycle_of("day") + _MARGIN
    if calendar_free and not spec.day_or:
        return 2 * _cycle_of("week") + _MARGIN
    return IRREGULAR_HORIZON


_CYCLES = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}
# The horizon of a window of each unit, made once (compiling reads it for every window).
_CLOCK_HORIZON = {unit: 2 * cycle + _MARGIN for unit, cycle in _CYCLES.items()}
_CLOCK_HORIZON["month"] = IRREGULAR_HORIZON


def _cycle_of(unit: str) -> timedelta:
    return _CYCLES[unit]


class _Compiler(ConditionVisitor["_Evaluator"]):
    """Builds evaluators for one condition, resolving named conditions from ``rules``."""

    def __init__(
        self,
        text: str | None,
        node: ast.Node,
        rules: Mapping[str, ast.Node] | None,
        registry=None,
        lenient=False,
    ) -> None:
        # text: the condition's source (None: it is printed from ``node`` if a name needs it).
        # lenient: names not known yet compile to an evaluator that raises when used.
        self.lenient = lenient
        self.text = text
        self.node = node
        self.rules = rules or {}
        self.registry = registry
        self._resolver: Resolver | None = None  # made at the first name (most have none)
        self.customs: list[_Custom] = []

    @property
    def resolver(self) -> Resolver:
        """The resolver of names for this condition, made on first use."""
        if self._resolver is None:
            text = self.text if self.text is not None else str(self.node)
            self._resolver = Resolver(self.rules, text=text)
        return self._resolver

    def visit(self, node: ast.Node, zone: tzinfo) -> _Evaluator:
        """The evaluator of ``node`` in ``zone``: ConditionVisitor's, without its ``*args``."""
        handler = self._handlers.get(node.__class__)
        if handler is None:
            return super().visit(node, zone)  # which says what it cannot visit
        return handler(self, node, zone)

    def visit_Constant(self, node: ast.Constant, zone: tzinfo) -> _Evaluator:
        return _Constant(node.value, zone)

    def visit_All(self, node: ast.All, zone: tzinfo) -> _Evaluator:
        return _All([self.visit(item, zone) for item in node.items], zone)

    def visit_Any(self, node: ast.Any, zone: tzinfo) -> _Evaluator:
        return _Any([self.visit(item, zone) for item in node.items], zone)

    def visit_Not(self, node: ast.Not, zone: tzinfo) -> _Evaluator:
        return _Not(self.visit(node.item, zone), zone)

    def visit_Zoned(self, node: ast.Zoned, zone: tzinfo) -> _Evaluator:
        inner_zone = resolve_zone(node.zone)
        assert inner_zone is not None  # the parser checked the name
        return _Zoned(self.visit(node.item, inner_zone), inner_zone)

    def visit_TimeOf(self, node: ast.TimeOf, zone: tzinfo) -> _Evaluator:
        ends = plain_ends(node.unit, node.window)
        if ends is not None:
            return _PlainClock(node.unit, ends, zone)
        return _Clock(node, zone)

    def visit_Periodic(self, node: ast.Periodic, zone: tzinfo) -> _Evaluator:
        clock = clock_window(ast.PERIOD_UNIT[node.period], node.window)
        empty = _Clock(clock, zone)
        form = taskstate.PeriodicForm(node, clock, zone, empty.horizon)
        return _HistoryNode(form, empty, zone)

    def visit_Cron(self, node: ast.Cron, zone: tzinfo) -> _Evaluator:
        empty = _CronClock(node.expression, zone)
        return _HistoryNode(taskstate.CronForm(node, empty.spec, zone, empty.horizon), empty, zone)

    def visit_Every(self, node: ast.Every, zone: tzinfo) -> _Evaluator:
        return _HistoryNode(taskstate.EveryForm(node, zone), _Constant(True, zone), zone)

    def visit_TaskHas(self, node: ast.TaskHas, zone: tzinfo) -> _Evaluator:
        form = taskstate.TaskHasForm(node, zone, _horizon_of_scope(node))
        return _HistoryNode(form, _Constant(False, zone), zone)

    def visit_AfterTask(self, node: ast.AfterTask, zone: tzinfo) -> _Evaluator:
        form = taskstate.AfterTaskForm(node, zone, _MARGIN)
        return _HistoryNode(form, _Constant(False, zone), zone)

    def visit_TaskRunning(self, node: ast.TaskRunning, zone: tzinfo) -> _Evaluator:
        form = taskstate.TaskRunningForm(node, zone, _MARGIN)
        return _HistoryNode(form, _Constant(False, zone), zone)

    def visit_RunningFor(self, node: ast.RunningFor, zone: tzinfo) -> _Evaluator:
        return _HistoryNode(taskstate.RunningForForm(node, zone), _Constant(False, zone), zone)

    def visit_session(self, node: ast.Node, zone: tzinfo) -> _Evaluator:
        """The scheduler's and the session's forms: answered from ``session=``."""
        return taskstate.SessionForm(node, zone)

    visit_SchedulerCycles = visit_SchedulerUptime = visit_session
    visit_Env = visit_ParamExists = visit_ParamIs = visit_session

    def visit_Reference(self, node: ast.Reference, zone: tzinfo) -> _Evaluator:
        if self.resolver.target(node) is not None:
            with self.resolver.expanding(node) as target:  # E121, E123
                return self.visit(target, zone)
        entry = self.registry.get(node.name) if self.registry is not None else None
        if entry is None and self.lenient:
            return _Unresolved(node, zone)
        self.resolver.check(node, self.registry, hint=_DEFINE_HINT)  # E120, E122
        custom = _Custom(entry, node.args, zone)
        self.customs.append(custom)
        return custom


_DEFINE_HINT = "define it in a .cond file and pass rules=, or check the spelling of a keyword"


class Condition:
    """A compiled condition: ``is_true``, ``windows`` and ``next_change``."""

    __slots__ = (
        "_ast",
        "zone",
        "_names",
        "lenient",
        "_evaluator",
        "_fast",
        "_calls",
        "_customs",
        "_custom_cases",
        "_wall_next",
        "_reads",
        "__weakref__",
    )

    def __init__(
        self,
        node: ast.Node,
        *,
        timezone: str | tzinfo | None = None,
        rules: Mapping[str, ast.Node] | None = None,
        registry=None,
        text: str | None = None,
        lenient: bool = False,
    ) -> None:
        self._ast: ast.Node | str = node
        self.lenient = lenient
        self.zone = _zone(timezone)
        # One pair for every condition without rules or a registry of its own (nothing
        # writes to ``rules``): one slot, not two, for 10,000 waiting tasks (issue 21).
        if rules or registry is not None:
            registry = registry if registry is not None else default_registry
            self._names = (dict(rules) if rules else _NO_RULES, registry)
        else:
            self._names = _DEFAULT_NAMES
        rules, registry = self._names
        compiler = _Compiler(text, node, rules, registry, lenient)
        self._evaluator = compiler.visit(node, self.zone)
        self._calls = 0
        self._fast = _first_predicate(self, self._evaluator)
        self._customs = tuple(compiler.customs)
        self._custom_cases: CustomCases | None = None
        self._wall_next = _wall_next_of(self._evaluator, self.zone)
        self._reads: Reads | None = None
        if text is not None and self._fast is _WARMING:
            # A pure clock condition compiled from text keeps the text, not its AST (~250
            # bytes of nodes for a plain window; issue 21): ``ast`` parses it again when
            # asked. Its evaluators hold no node, and it reads no record.
            self._ast = text
            self._reads = NOTHING

    @property
    def rules(self) -> Mapping[str, ast.Node]:
        """The named conditions it was compiled with (by name)."""
        return self._names[0]

    @property
    def registry(self):
        """The custom conditions it was compiled with."""
        return self._names[1]

    @property
    def ast(self) -> ast.Node:
        """The condition's syntax tree (parsed again from its text when not kept)."""
        node = self._ast
        if node.__class__ is str:
            return parse(node)
        return node

    @property
    def custom_cases(self) -> CustomCases:
        """The condition under each value of its custom parts (:mod:`conddsl.bounds`),
        compiled on first use, once."""
        found = self._custom_cases
        if found is None:
            readings = BoundsAnalysis(self.rules).readings(self.ast)
            unregistered = [name for name in readings.customs if self.registry.get(name) is None]
            if unregistered:  # a lenient condition's name not defined yet
                raise _unknown_name(unregistered[0])
            recheck = min((custom.entry.recheck for custom in self._customs), default=None)
            zone = self.zone
            found = CustomCases(readings, lambda node: Condition(node, timezone=zone), recheck)
            self._custom_cases = found
        return found

    @property
    def reads(self) -> Reads:
        """What besides the clock can change the value (whose records, the cycles); found
        on first use, once: the scheduler asks it of every condition it registers."""
        found = self._reads
        if found is None:
            found = self._reads = reads_of(self.ast, self.rules, self.registry)
        return found

    @property
    def horizon(self) -> timedelta:
        """How far ahead ``next_change`` looks before it answers "no change" (set at compile)."""
        return self._evaluator.horizon

    # -------- combining, as with the operators of the language

    def _combine(self, other: object, node_type) -> Condition:
        if not isinstance(other, Condition):
            return NotImplemented
        left, right = self.ast, other.ast
        if self.zone != other.zone:
            left, right = _zoned(left, self.zone), _zoned(right, other.zone)
        items = []
        for item in (left, right):
            items.extend(item.items if isinstance(item, node_type) else (item,))
        rules = {**self.rules, **other.rules}
        return Condition(
            node_type(tuple(items)),
            timezone=self.zone,
            rules=rules,
            registry=self.registry,
            lenient=self.lenient or other.lenient,
        )

    def __and__(self, other: object) -> Condition:
        return self._combine(other, ast.All)

    def __or__(self, other: object) -> Condition:
        return self._combine(other, ast.Any)

    def __invert__(self) -> Condition:
        return Condition(
            ast.Not(self.ast),
            timezone=self.zone,
            rules=self.rules,
            registry=self.registry,
            lenient=self.lenient,
        )

    def __str__(self) -> str:
        return str(self.ast)

    def __repr__(self) -> str:
        return f"Condition({str(self.ast)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Condition) and (self.ast, self.zone) == (other.ast, other.zone)

    def __hash__(self) -> int:
        return hash(self.ast)

    # -------- evaluation

    def is_true(self, at: datetime, *, task: str | None = None, history=None, session=None) -> bool:
        """The value at ``at`` (naive = wall-clock time in the condition's timezone)."""
        fast = self._fast
        if fast is not None:  # a pure clock condition: only the wall time matters
            wall = at if at.tzinfo is None else to_wall(at, self.zone)
            if fast is _WARMING:
                return self._warm_up(wall)
            return fast(wall)
        if at.tzinfo is None:
            wall = at
            real = at.replace(tzinfo=self.zone)
        else:
            wall = to_wall(at, self.zone)
            real = at
        return self._evaluator.value(wall, Context(real, task, history, session))

    def _warm_up(self, wall: datetime) -> bool:
        """``_fast`` until the table is built: the tree's own value for the first calls."""
        calls = self._calls = self._calls + 1
        if calls < _TABLE_AFTER:
            # A waiting task's condition is asked once or twice: the tree's own value (a
            # pure clock tree reads no context), no closures kept for 10,000 conditions.
            return self._evaluator.value(wall, None)
        found = table_predicate(_clock_tree(self._evaluator)) or self._evaluator.fast
        self._fast = found
        return found(wall)

    def windows(
        self,
        start: datetime,
        end: datetime,
        *,
        task: str | None = None,
        history=None,
        session=None,
    ) -> Iterator[Interval]:
        """The maximal half-open intervals inside [start, end) where the condition is true."""
        naive = _same_kind(start, end)
        real_start, real_end = self._utc(start), self._utc(end)
        ctx = Context(real_start, task, history, session)
        # History-based parts may hand out a long stretch in adjacent pieces: merge them.
        found = intervals.normalize(self._evaluator.real_intervals(real_start, real_end, ctx))
        if naive:
            return ((to_wall(s, self.zone), to_wall(e, self.zone)) for s, e in found)
        zone = start.tzinfo
        return ((s.astimezone(zone), e.astimezone(zone)) for s, e in found)

    def next_change(
        self, after: datetime, *, task: str | None = None, history=None, session=None
    ) -> datetime | None:
        """The first instant later than ``after`` at which the value can change; None if never."""
        naive = after.tzinfo is None
        wall_next = self._wall_next
        if wall_next is not None and (history is None or self._clock_alone(after, task, history)):
            try:
                wall = after if naive else to_wall(after, self.zone)
                change = wall_next(wall, self._evaluator.horizon)
            except OverflowError:  # the calendar's last days: the interval path copes
                pass
            else:
                if change is None or naive:
                    return change
                return change.replace(tzinfo=self.zone).astimezone(after.tzinfo)
        real_after = self._utc(after)
        if self._customs:
            change = self.custom_cases.next_change(real_after, task, history, session)
        else:
            change = self._first_change(real_after, Context(real_after, task, history, session))
        if change is None:
            return None
        return to_wall(change, self.zone) if naive else change.astimezone(after.tzinfo)

    def _clock_alone(self, after: datetime, task: str | None, history) -> bool:
        """Whether a cron condition's value from ``after`` on is its clock alone.

        It is false in a matching minute once the task started in it: with no start
        from the wall minute of ``after`` to the horizon, no record can change it (the
        scheduler's case: a history holds no future starts).
        """
        if task is None:
            return False  # the full path says what is missing
        try:
            wall = after if after.tzinfo is None else to_wall(after, self.zone)
            minute = wall.replace(second=0, microsecond=0, tzinfo=self.zone)
            since = minute.astimezone(timezone.utc)
            until = since + max(self._evaluator.horizon, _MARGIN) + _MINUTE
        except OverflowError:
            return False
        return history.first_in(task, "run", since, until) is None

    def _first_change(self, real_after: datetime, ctx: Context) -> datetime | None:
        horizon_end = _later(real_after, max(self._evaluator.horizon, _MARGIN))
        found = intervals.normalize(self._evaluator.real_intervals(real_after, horizon_end, ctx))
        for start, end in found:
            if start > real_after:
                return start
            if end < horizon_end:
                return end
            return None
        return None

    def _utc(self, at: datetime) -> datetime:
        # The interval algebra runs in UTC: datetimes sharing a zone compare by wall
        # reading and ignore fold, which would merge the two passes of a repeated hour.
        aware = at.replace(tzinfo=self.zone) if at.tzinfo is None else at
        try:
            return aware.astimezone(timezone.utc)
        except OverflowError:  # a wall time of the calendar's first or last hours
            edge = datetime.max if aware.year == datetime.max.year else datetime.min
            return edge.replace(tzinfo=timezone.utc)


def _unknown_name(name: str) -> ConditionError:
    return ConditionError(f"unknown condition {name!r}: define it in rules= or register it")


def _wall_next_of(evaluator: _Evaluator, zone: tzinfo):
    """``next_change`` on the wall clock, for a cron condition in a fixed-offset zone.

    Without a history its value is the cron clock alone, and a fixed offset has no gaps
    or folds, so the answer is read from the cron spec at once (no intervals, no
    conversions between wall and real time). None: every other condition.
    """
    if not isinstance(zone, timezone):
        return None
    if isinstance(evaluator, _HistoryNode) and isinstance(evaluator.empty, _CronClock):
        return evaluator.empty.wall_next_change
    if isinstance(evaluator, _CronClock):  # pragma: no cover - cron is compiled with its form
        return evaluator.wall_next_change
    return None


def _first_predicate(condition: Condition, evaluator: _Evaluator):
    """The wall-time predicate of a pure clock condition: a lookup table (see below).

    The table (see ``timeline.tables``) is built at the ``_TABLE_AFTER``-th ``is_true``,
    not here: compiling stays cheap for conditions that are only listed or checked, and
    a condition asked a few times (a 100 µs table for one answer) asks its tree.
    Until then the predicate is ``_WARMING``: ``is_true`` calls the condition's own
    ``_warm_up`` (a counter slot, not a closure with four cells: the memory of 10,000
    waiting tasks; nor a bound method, which would make every condition a cycle that
    only the garbage collector frees).
    """
    if not _pure_clock(evaluator):
        return evaluator.fast
    return _WARMING


def _pure_clock(evaluator: _Evaluator) -> bool:
    """Whether ``_clock_tree`` has a tree for ``evaluator`` (its windows left unresolved)."""
    # By exact class (none of these has a subclass but _Any): every compile asks this.
    kind = evaluator.__class__
    if kind in _CLOCK_LEAVES:
        return True
    if kind is _Not:
        return _pure_clock(evaluator.item)
    if kind is _All or kind is _Any:
        for item in evaluator.items:
            if not _pure_clock(item):
                return False
        return True
    return False


_CLOCK_LEAVES = frozenset({_Clock, _PlainClock, _Constant})


def _clock_tree(evaluator: _Evaluator):
    """The tree of clock windows for ``timeline.tables``; None if it has other parts."""
    if isinstance(evaluator, (_Clock, _PlainClock)):
        return evaluator.clock
    if isinstance(evaluator, _Constant):
        return evaluator.constant
    if isinstance(evaluator, _Not):
        inner = _clock_tree(evaluator.item)
        return None if inner is None else ("not", (inner,))
    if isinstance(evaluator, _All):  # _Any is an _All too
        children = [_clock_tree(item) for item in evaluator.items]
        if any(child is None for child in children):
            return None
        return ("any" if isinstance(evaluator, _Any) else "all", tuple(children))
    return None  # cron, zoned, history and custom parts keep the tree of closures


def _same_kind(start: datetime, end: datetime) -> bool:
    if (start.tzinfo is None) != (end.tzinfo is None):
        raise ValueError("start and end must both be naive or both be aware")
    return start.tzinfo is None


def _zone(timezone: str | tzinfo | None) -> tzinfo:
    if timezone is None:
        return local_zone()
    if isinstance(timezone, str):
        found = resolve_zone(timezone)
        if found is None:
            raise ValueError(f"unknown timezone {timezone!r}")
        return found
    return timezone


class _TextCache:
    """Conditions compiled from text without rules, by timezone (its name) and text.

    A plain dict per zone, emptied when it holds ``MAX`` texts: an entry costs the dict
    slot alone (the text is the condition's own), where ``lru_cache`` kept a link and a
    key tuple besides (10,000 waiting tasks of distinct texts, issue 21). Texts naming
    custom conditions are not kept: custom conditions may be registered later.
    """

    MAX = 4096

    def __init__(self) -> None:
        self._zones: dict[str | None, dict[str, Condition]] = {}
        self._size = 0

    def get(self, text: str, timezone: str | None) -> Condition | None:
        """The condition compiled from ``text`` in ``timezone`` before, if still kept."""
        texts = self._zones.get(timezone)
        return None if texts is None else texts.get(text)

    def compile(self, text: str, timezone: str | None, node: ast.Node | None = None) -> Condition:
        """``text`` (parsed as ``node`` already, if given) compiled, and kept."""
        if node is None:
            # Parsed here, not through parse's own cache: the condition keeps what it
            # needs (its AST, or its text alone), a second cache would keep the AST too.
            node = _parse_fresh(text)
        condition = Condition(node, timezone=timezone, text=text)
        if not condition._customs:
            if self._size >= self.MAX:
                self.cache_clear()
            texts = self._zones.setdefault(timezone, {})
            if text not in texts:  # (compiled again after a miss elsewhere: counted once)
                self._size += 1
            texts[text] = condition
        return condition

    def cache_clear(self) -> None:
        """Forget every condition kept."""
        self._zones = {}
        self._size = 0


#: The conditions ``compile_condition`` compiled from text (the scheduler's too).
text_cache = _compile_cached = _TextCache()
#: ``parse`` without its cache (see _TextCache.compile).
parse_fresh = _parse_fresh = parse.__wrapped__


def compile_condition(
    text: str,
    *,
    rules: Mapping[str, ast.Node] | None = None,
    timezone: str | tzinfo | None = None,
    registry=None,
) -> Condition:
    """Parse and compile condition text (cached on the text when no rules are given).

    ``rules`` maps names to conditions defined elsewhere (see ``load_rules``);
    ``registry`` holds custom conditions (default: ``conddsl.custom.default_registry``).
    """
    if rules is None and registry is None and (timezone is None or isinstance(timezone, str)):
        # The text cache first: a text compiled before is neither parsed nor walked again.
        found = _compile_cached.get(text, timezone)
        return found if found is not None else _compile_cached.compile(text, timezone)
    return Condition(parse(text), timezone=timezone, rules=rules, registry=registry, text=text)


def _zoned(node: ast.Node, zone: tzinfo) -> ast.Node:
    """``node`` pinned to ``zone`` so it keeps its meaning next to another zone."""
    name = getattr(zone, "key", None) or ("UTC" if zone == timezone.utc else None)
    if name is None:
        raise ValueError(f"cannot combine conditions in different zones ({zone!r} has no name)")
    return node if isinstance(node, ast.Zoned) else ast.Zoned(node, name)
