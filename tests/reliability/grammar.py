"""Fuzz inputs for the condition parser: grammar-shaped text and byte-level mutations.

Both generators take any ``random.Random``-like object (``random()``, ``randrange()``,
``choice()``), so the same code runs under hypothesis (``st.randoms()``: shrinkable) and
in the long run's plain seeded loop (a million inputs in minutes).

- :class:`Grammar` writes text from the forms of ``grammar/conddsl.lark`` directly, not
  through the AST printer: keyword case, spacing, comments, ``&``/``and``, quoting and
  escapes, every literal spelling vary; a small share of choices are deliberately wrong
  (``wild``) so the error paths are reached from deep inside valid structure.
- :func:`mutate` edits the UTF-8 bytes of a valid condition (bit flips, interesting
  bytes, deletions, repeats, splices, truncation) and decodes them three ways.

:func:`check_text` is the property: only :class:`ConditionSyntaxError` escapes ``parse``
and ``compile_condition``; a parsed text prints back to an equal tree; evaluation (when
asked) raises nothing but what a caller is told to expect.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from functools import cache

from conddsl import ast
from conddsl.compile import compile_condition
from conddsl.errors import ConditionError, ConditionSyntaxError
from conddsl.parse import parse

from . import TESTS

# The codes parse() raises, and the name errors compile_condition adds.
PARSE_CODES = frozenset(
    {"E100", "E101", "E102", "E103", "E104", "E105", "E106", "E110", "E111", "E112", "E113"}
)
COMPILE_CODES = PARSE_CODES | {"E120", "E121", "E122", "E123"}
# Lark's internal names must never reach a person (as in tests/test_language.py).
LARK_NAMES = re.compile(
    r"__ANON|\$END|\b(?:VALUE|NAME|STRING|CRON_TEXT|DURATION|ZONE|INT|LPAR|RPAR|CYCLE_SPAN"
    r"|IN_PAST|WHILE|COMMENT|_OR|_NOT|AND)\b"
)
CARET_LINE = re.compile(r"^ *\^+$", re.M)

# ---------------------------------------------------------------- vocabulary

UNITS = ("minute", "hour", "day", "week", "month")
PERIOD_UNIT = {"minutely": "minute", "hourly": "hour", "daily": "day"}
PERIOD_UNIT |= {"weekly": "week", "monthly": "month"}
CYCLES = {"today": "day", "this minute": "minute", "this hour": "hour"}
CYCLES |= {"this week": "week", "this month": "month"}
POINTS = {
    "minute": ["0", "15", "15.5", "30", "59", "59.999999", "60", "0.25", "45"],
    "hour": ["00:00", "15:00", "30:38", "45:00.5", "59:59", "60:00", "1 quarter", "2q"]
    + ["3 quarters", "4 quarter", "0 q", "10:30"],
    "day": ["08:00", "8am", "8 pm", "12:30:15", "23:59:59.999999", "24:00", "10:00 am"]
    + ["00:00", "7:05", "11 a.m.", "12pm", "18:00", "22:00", "02:00"],
    "week": ["Mon", "Friday", "Tue 10:00", "sun 23:59", "Thursday 8am", "Wed", "Sat"]
    + ["SUNDAY", "thurs 12:00:01", "Fri 24:00"],
    "month": ["1st", "15th", "last", "2nd Monday", "last Friday", "31st", "5.", "1st 08:00"]
    + ["last 23:00", "3rd", "22nd", "5th fri", "1", "last Sun 10:00"],
}
BAD_POINTS = ["25:00", "Mon", "13", "32nd", "6th Monday", "xx", "10:61", "8 am pm"]
BAD_POINTS += ["1.5.5", "last Fridya", "99999999999", "quarter", "5 quarters", "0", "24:01"]
DURATIONS = ["10 minutes", "1h30m", "1 hour, 30 minutes", "0.5 hours", "01:30:00", ".5s"]
DURATIONS += ["250 ms", "2 days", "3 weeks", "90 seconds", "1 min", "2hrs", "1d 2h 3m 4s"]
DURATIONS += ["1 week", "45 secs", "00:00:01.5", "7 d", "100 msecs", "1 millis", "12 h"]
BAD_DURATIONS = ["0 minutes", "10", "ten minutes", "1:61:00", "5 fortnights", "-1 hour"]
BAD_DURATIONS += ["999999999 days", "1000000000 days", "9" * 30 + " seconds", "3000000 days"]
BAD_DURATIONS += ["99999999999:00:00", "24000000000:00:00"]
CRONS = ["*/5 * * * *", "0 10 * * *", "0 9-17 * * mon-fri", "0,30 * 1 jan *", "@daily"]
CRONS += ["23 0-20/2 * * *", "@hourly", "0 0 L * *", "0 12 * * mon#2", "@weekly", "@yearly"]
CRONS += ["@annually", "@midnight", "@monthly", "0 0 29 2 *", "59 23 31 12 sun", "* * * * 7"]
BAD_CRONS = ["* * * *", "60 * * * *", "@sometimes", "*/0 * * * *", "0 0 32 * *", "a b c d e"]
BAD_CRONS += ["0 0 * * mon#6", "1-2-3 * * * *", "* * * * * *"]
CRON_FIELDS = [
    ["*", "*/5", "0", "59", "0-30", "10,20,30", "5-55/10", "*/15"],
    ["*", "*/2", "0", "23", "9-17", "0,12", "1-23/3"],
    ["*", "1", "15", "31", "L", "1-7", "*/10", "1,15"],
    ["*", "1", "12", "jan", "dec", "jan-jun", "*/3", "2,4,6"],
    ["*", "0", "7", "mon", "mon-fri", "sat,sun", "1-5", "fri#3", "5L"],
]
ZONES = ["UTC", "Europe/Helsinki", "America/New_York", "Asia/Kolkata", "Etc/GMT+5"]
ZONES += ["'Europe/Helsinki'", '"Australia/Lord_Howe"', "Pacific/Kiritimati", "America/St_Johns"]
BAD_ZONES = ["Mars/Olympus", "Europe/Helsinky", "'not a zone'", "+05:00", "utc/x"]
TASK_NAMES = ["a", "b", "extract", "load & merge (v2)", "it's", "🎉 party", 'say "hi"']
TASK_NAMES += ["x; rm -rf /", "$(touch pwned)", "`id`", "back\\slash", "tab\there", "新しい"]
TASK_NAMES += ["", "  ", "a\nb", "\x00", "or", "and", "daily", "t"]
REFERENCE_WORDS = ["holiday", "queue", "empty", "file", "exists", "db_ready", "x1", "_private"]
REFERENCE_WORDS += ["office_hours", "Maintenance", "backup_window", "ÿ"]
JUNK = ["(", ")", "&", "|", "~", "'", '"', "\\", ",", "#", "::", "..", "@", "*", "/", "-"]
JUNK += ["and", "or", "not", "in", "between", "time", "of", "every", "has", "task", "12:00"]
JUNK += ["\x00", "\u202e", "🎉", "\t", "\n", "İ", "\u0301", "\ufeff", "\r"]
ACTIONS = ["succeeded", "failed", "finished", "terminated", "inacted", "started"]
DEPENDENCIES = ["succeeded", "failed", "finished", "terminated"]
COMMENTS = ["# nightly", "#", "# and | ( ' \"", "# 🎉"]


class Grammar:
    """Writes one condition in the language, from the grammar's forms (see the module doc)."""

    def __init__(self, rng, *, wild: float = 0.04, max_depth: int = 3) -> None:
        self.rng = rng
        self.wild = wild
        self.max_depth = max_depth

    # -------- small choices

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, items):
        return items[self.rng.randrange(len(items))]

    def kw(self, word: str) -> str:
        """A keyword (or several words) in a random case, with free whitespace inside."""
        r = self.rng.random()
        if r < 0.75:
            text = word
        elif r < 0.85:
            text = word.upper()
        elif r < 0.95:
            text = word.title()
        else:
            text = "".join(c.upper() if self.chance(0.5) else c for c in word)
        if " " in text and self.chance(0.2):
            text = re.sub(" ", lambda _: self.space(), text)
        if self.chance(self.wild / 4):  # a misspelt keyword
            i = self.rng.randrange(len(text))
            text = text[:i] + text[i + 1 :] if self.chance(0.5) else text[:i] + "x" + text[i:]
        return text

    def space(self) -> str:
        r = self.rng.random()
        if r < 0.85:
            return " "
        if r < 0.9:
            return "  "
        if r < 0.94:
            return "\t"
        if r < 0.97:
            return "\n"
        return f" {self.pick(COMMENTS)}\n"

    def join(self, *parts: str) -> str:
        return self.space().join(part for part in parts if part)

    def quote(self, name: str) -> str:
        q = "'" if self.chance(0.7) else '"'
        body = name.replace("\\", "\\\\").replace(q, "\\" + q)
        if self.chance(self.wild / 4):
            return q + body  # never closed
        return q + body + q

    def maybe_wrong(self, good: list[str], bad: list[str]) -> str:
        return self.pick(bad) if self.chance(self.wild) else self.pick(good)

    def number(self) -> str:
        r = self.rng.random()
        if r < 0.6:
            return str(self.rng.randrange(0, 100))
        if r < 0.9:
            return str(self.rng.randrange(0, 10**6))
        return str(self.rng.randrange(0, 10**25))

    # -------- structure

    def condition(self) -> str:
        text = self.expr(self.max_depth)
        if self.chance(0.05):
            text = self.space() + text + self.space()
        if self.chance(0.03):
            text += f" {self.pick(COMMENTS)}"
        if self.chance(self.wild):
            text = self.vandalise(text)
        return text

    def vandalise(self, text: str) -> str:
        """Insert, drop or swap one token: valid structure with one thing wrong."""
        words = text.split(" ")
        i = self.rng.randrange(len(words))
        r = self.rng.random()
        if r < 0.4:
            words.insert(i, self.pick(JUNK))
        elif r < 0.7 and len(words) > 1:
            del words[i]
        else:
            j = self.rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        return " ".join(words)

    def expr(self, depth: int) -> str:
        text = self.or_expr(depth)
        if self.chance(0.06):
            text = self.join(text, self.kw("in"), self.maybe_wrong(ZONES, BAD_ZONES))
        return text

    def or_expr(self, depth: int) -> str:
        count = 1 if self.chance(0.7) or depth <= 0 else self.rng.randrange(2, 4)
        parts = [self.and_expr(depth) for _ in range(count)]
        return self.operators(parts, "|", "or")

    def and_expr(self, depth: int) -> str:
        count = 1 if self.chance(0.6) or depth <= 0 else self.rng.randrange(2, 4)
        parts = [self.not_expr(depth) for _ in range(count)]
        return self.operators(parts, "&", "and")

    def operators(self, parts: list[str], symbol: str, word: str) -> str:
        text = parts[0]
        for part in parts[1:]:
            if self.chance(0.6):  # the symbol, spaced or tight
                text = text + (self.space() if self.chance(0.8) else "") + symbol
                text += (self.space() if self.chance(0.8) else "") + part
            else:
                text = self.join(text, self.kw(word), part)
        return text

    def not_expr(self, depth: int) -> str:
        text = self.atom(depth)
        for _ in range(self.rng.randrange(0, 3) if self.chance(0.2) else 0):
            if self.chance(0.5):
                text = "~" + (self.space() if self.chance(0.3) else "") + text
            else:
                text = self.join(self.kw("not"), text)
        return text

    def atom(self, depth: int) -> str:
        if depth > 0 and self.chance(0.25):
            inner = self.expr(depth - 1)
            if self.chance(0.1):
                inner = "(" + inner + ")"  # redundant parentheses
            return "(" + inner + ")"
        return self.leaf()

    def leaf(self) -> str:
        forms = (
            self.constant,
            self.time_of,
            self.periodic,
            self.every,
            self.cron,
            self.task_has,
            self.after_task,
            self.task_running,
            self.running_for,
            self.scheduler,
            self.env,
            self.param,
            self.reference,
        )
        return self.pick(forms)()

    # -------- the atoms, one per grammar rule

    def constant(self) -> str:
        value = self.kw(self.pick(["true", "false"]))
        return self.join(self.kw("always"), value) if self.chance(0.3) else value

    def point(self, unit: str) -> str:
        return self.maybe_wrong(POINTS[unit], BAD_POINTS)

    def window(self, unit: str, *, starting: bool = False) -> str:
        r = self.rng.random()
        if starting and r < 0.15:
            return self.join(self.kw("starting"), self.point(unit))
        if r < 0.45:
            joiner = self.kw("and") if not self.chance(self.wild) else "&"
            return self.join(self.kw("between"), self.point(unit), joiner, self.point(unit))
        word = self.pick(["after", "before", "on"])
        return self.join(self.kw(word), self.point(unit))

    def time_of(self) -> str:
        unit = self.pick(UNITS)
        return self.join(self.kw("time of"), self.kw(unit), self.window(unit))

    def periodic(self) -> str:
        period = self.pick([*PERIOD_UNIT, "secondly"])
        if period == "secondly" or self.chance(0.5):
            if period == "secondly" and self.chance(self.wild):
                return self.join(self.kw(period), self.window("minute"))
            return self.kw(period)
        return self.join(self.kw(period), self.window(PERIOD_UNIT[period], starting=True))

    def duration(self) -> str:
        if self.chance(0.2):
            unit = self.pick(["ms", "s", "seconds", "minutes", "m", "hours", "h", "days", "w"])
            number = self.number()
            if self.chance(0.3):
                number += "." + str(self.rng.randrange(0, 1000))
            return number + (" " if self.chance(0.5) else "") + unit
        return self.maybe_wrong(DURATIONS, BAD_DURATIONS)

    def every(self) -> str:
        return self.join(self.kw("every"), self.duration())

    def cron(self) -> str:
        if self.chance(0.5):
            text = self.maybe_wrong(CRONS, BAD_CRONS)
        else:
            text = " ".join(self.pick(field) for field in CRON_FIELDS)
        return self.join(self.kw("cron"), text)

    def task(self) -> str:
        return self.quote(self.pick(TASK_NAMES))

    def task_has(self) -> str:
        parts = []
        if self.chance(0.5):
            parts += [self.kw("task"), self.task()]
        parts += [self.kw("has"), self.kw(self.pick(ACTIONS))]
        r = self.rng.random()
        if r < 0.4:
            cycle = self.pick(list(CYCLES))
            parts.append(self.kw(cycle))
            if self.chance(0.4):
                parts.append(self.window(CYCLES[cycle], starting=True))
        elif r < 0.6:
            parts += [self.kw("in past"), self.duration()]
        elif r < 0.7:
            parts += [self.kw("past"), self.duration()]
        return self.join(*parts)

    def task_list(self) -> str:
        names = [self.task() for _ in range(self.rng.randrange(1, 4))]
        return ("," + self.space()).join(names) if self.chance(0.7) else ",".join(names)

    def after_task(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            parts = [self.kw("after task"), self.task()]
        elif r < 0.8:
            parts = [self.kw("after tasks"), self.task_list()]
        else:
            parts = [self.kw("after any tasks"), self.task_list()]
        if self.chance(0.6):
            parts.append(self.kw(self.pick(DEPENDENCIES)))
        return self.join(*parts)

    def task_running(self) -> str:
        parts = [self.kw("while")] if self.chance(0.3) else []
        return self.join(*parts, self.kw("task"), self.task(), self.kw("is running"))

    def running_for(self) -> str:
        return self.join(
            self.kw("running for"),
            self.kw(self.pick(["more", "less"])),
            self.kw("than"),
            self.duration(),
        )

    def scheduler(self) -> str:
        r = self.rng.random()
        if r < 0.3:
            more = self.kw(self.pick(["more", "less"]))
            return self.join(
                self.kw("scheduler has"), more, self.kw("than"), self.number(), "cycles"
            )
        if r < 0.5:
            return self.join(self.kw("scheduler has"), self.number(), self.kw("cycles"))
        if r < 0.75:
            return self.join(self.kw("scheduler started"), self.duration(), self.kw("ago"))
        return self.join(self.kw("scheduler has run over"), self.duration())

    def env(self) -> str:
        return self.join(self.kw("env"), self.quote(self.pick(["prod", "dev", "", "x y"])))

    def param(self) -> str:
        if self.chance(0.5):
            return self.join(self.kw("param"), self.task_list(), self.kw("exists"))
        return self.join(self.kw("param"), self.task(), self.kw("is"), self.task())

    def reference(self) -> str:
        words = [self.pick(REFERENCE_WORDS) for _ in range(self.rng.randrange(1, 4))]
        args = [self.task() for _ in range(self.rng.randrange(0, 3) if self.chance(0.3) else 0)]
        return self.join(*words, *args)


# ---------------------------------------------------------------- byte mutations

INTERESTING = b"\x00\xff\x7f\x80\xc0\xe2\xf0\xed()&|~'\"\\#\n\r\t :,.-*/@"
CHUNKS = [b"and", b"or", b"not", b" in ", b"between", b"today", b"cron ", b"every ", b"'"]
CHUNKS += [b"((((", b"))))", b"\xf0\x9f\x8e\x89", b"\xed\xa0\x80", b"in past", b"10:00"]


def mutate(rng, data: bytes, others: list[bytes]) -> bytes:
    """Apply 1-8 random byte edits to ``data`` (``others`` are splice material)."""
    buf = bytearray(data)
    for _ in range(1 + rng.randrange(8)):
        op = rng.randrange(9)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip one bit
            i = min(pos, len(buf) - 1)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # an interesting byte in place
            buf[min(pos, len(buf) - 1)] = INTERESTING[rng.randrange(len(INTERESTING))]
        elif op == 2:  # insert a byte
            buf[pos:pos] = bytes([rng.randrange(256)])
        elif op == 3 and buf:  # delete a range
            end = min(len(buf), pos + 1 + rng.randrange(8))
            del buf[pos:end]
        elif op == 4 and buf:  # repeat a range
            end = min(len(buf), pos + 1 + rng.randrange(8))
            buf[pos:pos] = bytes(buf[pos:end]) * (1 + rng.randrange(64))
        elif op == 5 and others:  # splice from another input
            other = others[rng.randrange(len(others))]
            start = rng.randrange(len(other) + 1)
            chunk = other[start : start + 1 + rng.randrange(24)]
            end = min(len(buf), pos + rng.randrange(8))
            buf[pos:end] = chunk
        elif op == 6:  # a keyword-ish chunk
            buf[pos:pos] = CHUNKS[rng.randrange(len(CHUNKS))]
        elif op == 7 and buf:  # truncate
            del buf[pos:]
        elif buf:  # swap two ranges
            a, b = sorted((pos, rng.randrange(len(buf) + 1)))
            size = min(4, b - a)
            if size:
                buf[a : a + size], buf[b - size : b] = buf[b - size : b], buf[a : a + size]
    return bytes(buf)


DECODINGS = ("utf-8-replace", "utf-8-surrogateescape", "latin-1")


def decode(data: bytes, how: str) -> str:
    """Bytes as the parser would get them from a caller: three ways to decode."""
    if how == "latin-1":
        return data.decode("latin-1")
    return data.decode("utf-8", how.removeprefix("utf-8-"))


@cache
def seed_texts() -> tuple[str, ...]:
    """Valid and invalid examples from the language tables, the mutation seeds."""
    cases = json.loads((TESTS / "cases" / "language.json").read_text(encoding="utf-8"))
    found = {row[1] for row in cases["canonical"]} | {row[0] for row in cases["canonical"]}
    found |= {row[0] for row in cases["errors"]}
    return tuple(sorted(found))


# ---------------------------------------------------------------- the property


def durations(node: object):
    """Every Duration in a tree."""
    if isinstance(node, ast.Duration):
        yield node.value
    if isinstance(node, tuple):
        for item in node:
            yield from durations(item)
    elif dataclasses.is_dataclass(node):
        for field in dataclasses.fields(node):
            yield from durations(getattr(node, field.name))


def check_clean_error(error: ConditionSyntaxError, text: str, codes=PARSE_CODES) -> None:
    """A syntax error a person can read: a known code, a span inside the text, a caret."""
    assert error.code in codes, (error.code, text)
    lines = text.count("\n") + text.count("\r") + 1
    assert 1 <= error.line <= error.end_line <= lines + 1, (error.span, text)
    assert error.column >= 1 and error.end_column >= 1, (error.span, text)
    rendered = str(error)
    assert CARET_LINE.search(rendered), rendered
    _, _, expected = error.message.partition("; expected ")
    assert not LARK_NAMES.search(expected), error.message
    assert not LARK_NAMES.search(error.hint or ""), error.hint


AT = datetime(2024, 3, 31, 1, 30, tzinfo=timezone.utc)  # a DST change in Europe


def _history():
    from conddsl.history import MemoryHistory

    history = MemoryHistory()
    for name in ("a", "t", "extract"):
        history.record(name, "run", at=AT - timedelta(hours=3), run_id=name + "1")
        history.record(name, "success", at=AT - timedelta(hours=2), run_id=name + "1")
        history.record(name, "run", at=AT - timedelta(minutes=5), run_id=name + "2")
    return history


def _session():
    from conddsl.runtime.session import Session

    return Session(started_at=AT - timedelta(hours=1), cycles=7, env="prod", params={"a": "b"})


def check_text(text: str, outcome: Counter | None = None, *, evaluate: bool = False) -> str:
    """Run the property on one input; returns what happened (``parsed`` or an error code)."""
    try:
        node = parse.__wrapped__(text)
    except ConditionSyntaxError as error:
        check_clean_error(error, text)
        result = error.code
    else:
        printed = str(node)
        again = parse(printed)
        assert again == node, (text, printed)
        assert str(again) == printed, (text, printed)
        result = "parsed"
        try:
            condition = compile_condition(text, timezone="UTC")
        except ConditionSyntaxError as error:
            check_clean_error(error, text, COMPILE_CODES)
            result = "compile " + error.code
        else:
            if evaluate:
                result = _evaluate(condition, node, result)
    if outcome is not None:
        outcome[result] += 1
    return result


def _evaluate(condition, node: ast.Node, result: str) -> str:
    # is_true only: next_change of a long duration joined to a frequent clock form walks
    # its whole horizon (seconds, not an error), too slow for a fuzz loop.
    context = {"task": "t", "history": _history(), "session": _session()}
    try:
        condition.is_true(AT, **context)
    except ConditionError:
        return "evaluated: ConditionError"
    return result


# ---------------------------------------------------------------- the bulk loop (long run)


def fuzz_bulk(seed: int, count: int, *, evaluate_every: int = 100) -> dict:
    """Fuzz ``count`` inputs from ``random.Random(seed)``: half grammar-shaped, half mutated.

    Returns counts by outcome, the failures (input and error, at most 20) and the
    slowest input's time per character; nothing is raised, so a worker reports all.
    """
    import random
    import time

    rng = random.Random(seed)
    seeds = [text.encode("utf-8", "surrogatepass") for text in seed_texts()]
    outcome: Counter = Counter()
    failures: list[tuple[str, str]] = []
    slowest = (0.0, "")
    for i in range(count):
        if i % 2 == 0:
            kind = "grammar"
            text = Grammar(rng).condition()
        else:
            kind = "mutation"
            base = seeds[rng.randrange(len(seeds))]
            if rng.random() < 0.3:  # mutate a grammar-shaped input too
                base = Grammar(rng).condition().encode("utf-8", "surrogatepass")
            text = decode(mutate(rng, base, seeds), DECODINGS[i % len(DECODINGS)])
        started = time.perf_counter()
        try:
            result = check_text(text, evaluate=i % evaluate_every == 1)
        except Exception as error:  # noqa: BLE001 - every failure is reported
            result = "FAILED"
            if len(failures) < 20:
                failures.append((text, f"{type(error).__name__}: {error}"[:2000]))
        elapsed = time.perf_counter() - started
        outcome[f"{kind} {result}"] += 1
        if elapsed > slowest[0]:
            slowest = (elapsed, text[:200])
    return {"outcome": dict(outcome), "failures": failures, "slowest": slowest, "count": count}
