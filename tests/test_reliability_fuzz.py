"""Reliability, part 1: fuzzing the condition parser (docs/reliability.md).

tests/test_language.py already fuzzes the AST printer and short random or lightly edited
text. This adds:

(a) grammar-shaped text written from the grammar's forms (keyword case, spacing,
    comments, every literal spelling, a few wrong choices deep inside valid structure),
    under hypothesis and in a seeded bulk loop;
(b) byte-level mutations of valid conditions, decoded as UTF-8 (replace and
    surrogateescape) and Latin-1;
(c) the property for both: only ``ConditionSyntaxError`` escapes ``parse`` and
    ``compile_condition``, with a readable message and a span inside the text; what
    parses prints back to an equal tree; ``is_true`` of a sample raises nothing else;
(d) parse work is linear in the input: counted in steps (lines and calls) in the
    normal suite; timed in the long run, where doubling a 1 MB input, 10,000 nested
    parentheses or 10,000 ``&`` at most quadruples the time;
(e) regression tests of the product bugs the fuzzers found.

The long run (``pytest -m long``) fuzzes ``CONDDSL_FUZZ_INPUTS`` inputs (default
1,000,000) in two worker processes and runs the hypothesis tests with
``CONDDSL_FUZZ_EXAMPLES`` examples (default 20,000) each.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability import count_steps, env_int, grows_linearly, long_run, report
from reliability.grammar import (
    DECODINGS,
    Grammar,
    check_text,
    decode,
    durations,
    fuzz_bulk,
    mutate,
    seed_texts,
)

from conddsl import ast
from conddsl.compile import compile_condition
from conddsl.errors import ConditionSyntaxError
from conddsl.parse import parse

SMOKE_EXAMPLES = 150
LONG_EXAMPLES = env_int("CONDDSL_FUZZ_EXAMPLES", 20_000)
SMOKE_INPUTS = 3_000
LONG_INPUTS = env_int("CONDDSL_FUZZ_INPUTS", 1_000_000)


def fuzz_settings(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


MUTATION_SEEDS = [text.encode("utf-8", "surrogatepass") for text in seed_texts()]

# ---------------------------------------------------------------- (a), (b) hypothesis


def _grammar_property(rng) -> None:
    check_text(Grammar(rng).condition(), evaluate=True)


def _mutation_property(seed: bytes, rng, how: str) -> None:
    check_text(decode(mutate(rng, seed, MUTATION_SEEDS), how))


@fuzz_settings(SMOKE_EXAMPLES)
@given(st.randoms(use_true_random=False))
def test_grammar_shaped_text_raises_only_syntax_errors(rng):
    _grammar_property(rng)


@fuzz_settings(SMOKE_EXAMPLES)
@given(
    st.sampled_from(MUTATION_SEEDS), st.randoms(use_true_random=False), st.sampled_from(DECODINGS)
)
def test_mutated_bytes_raise_only_syntax_errors(seed, rng, how):
    _mutation_property(seed, rng, how)


@pytest.mark.long
def test_long_hypothesis_runs(request):
    long_run(request)
    started = time.monotonic()
    grammar = given(st.randoms(use_true_random=False))(_grammar_property)
    fuzz_settings(LONG_EXAMPLES)(grammar)()
    strategy = (
        st.sampled_from(MUTATION_SEEDS),
        st.randoms(use_true_random=False),
        st.sampled_from(DECODINGS),
    )
    fuzz_settings(LONG_EXAMPLES)(given(*strategy)(_mutation_property))()
    report(
        "fuzz",
        hypothesis_examples=2 * LONG_EXAMPLES,
        hypothesis_seconds=round(time.monotonic() - started, 1),
    )


# ---------------------------------------------------------------- the generator itself


def _node_types(node: object, found: set[str]) -> None:
    if isinstance(node, tuple):
        for item in node:
            _node_types(item, found)
    elif isinstance(node, ast.Node):
        found.add(type(node).__name__)
        for name in node.__dataclass_fields__:
            _node_types(getattr(node, name), found)


def test_the_grammar_generator_reaches_every_form():
    """A fuzzer that only writes garbage tests nothing: most of its text must parse, into
    every kind of node, and its mistakes must reach the parser's error paths."""
    import random

    rng = random.Random(20241128)
    kinds: set[str] = set()
    outcome: Counter = Counter()
    for _ in range(3_000):
        text = Grammar(rng).condition()
        result = check_text(text, outcome)
        if not result.startswith("E"):
            _node_types(parse(text), kinds)
    node_classes = {
        name
        for name, value in vars(ast).items()
        if isinstance(value, type) and issubclass(value, ast.Node) and value is not ast.Node
    }
    assert node_classes - kinds == set()
    parsed = sum(count for result, count in outcome.items() if result.startswith(("parsed", "c")))
    assert parsed >= 0.6 * 3_000, outcome
    errors = {result for result in outcome if result.startswith("E")}
    assert errors >= {"E100", "E101", "E102", "E110", "E111", "E112", "E113"}, outcome


# ---------------------------------------------------------------- the bulk loop


def test_bulk_fuzz_smoke():
    result = fuzz_bulk(1, SMOKE_INPUTS, evaluate_every=10)
    assert result["failures"] == []
    assert sum(result["outcome"].values()) == SMOKE_INPUTS


def _worker(args: tuple[int, int]) -> dict:
    seed, count = args
    return fuzz_bulk(seed, count)


@pytest.mark.long
def test_bulk_fuzz_long(request):
    """``CONDDSL_FUZZ_INPUTS`` inputs (default 1,000,000), half grammar-shaped, half mutated."""
    long_run(request)
    chunk = 25_000
    jobs = [
        (1000 + i, min(chunk, LONG_INPUTS - i * chunk)) for i in range(-(-LONG_INPUTS // chunk))
    ]
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_worker, jobs, chunksize=1)
    elapsed = time.monotonic() - started
    outcome: Counter = Counter()
    failures = []
    for result in results:
        outcome.update(result["outcome"])
        failures.extend(result["failures"])
    slowest = max(result["slowest"] for result in results)
    total = sum(outcome.values())
    report(
        "fuzz",
        bulk_inputs=total,
        bulk_seconds=round(elapsed, 1),
        bulk_failures=len(failures),
        bulk_parsed=sum(count for key, count in outcome.items() if "parsed" in key),
        bulk_by_outcome=dict(sorted(outcome.items())),
        bulk_slowest_input_seconds=round(slowest[0], 3),
    )
    assert total == LONG_INPUTS
    assert failures == []


# ---------------------------------------------------------------- (d) linear time


def _seconds_per_parse(text: str) -> float:
    """The best of two timings of the uncached parser, each at least 20 ms long."""
    raw = parse.__wrapped__

    def timed(calls: int) -> float:
        gc.disable()  # a collection of the test process's heap is not the parser's cost
        try:
            started = time.perf_counter()
            for _ in range(calls):
                with contextlib.suppress(ConditionSyntaxError):
                    raw(text)
            return time.perf_counter() - started
        finally:
            gc.enable()

    calls = 1
    first = timed(calls)
    while first < 0.02:
        calls *= 4
        first = timed(calls)
    return min(first, timed(calls)) / calls


def _counted_parse(text: str) -> int:
    """The steps of one uncached parse (a syntax error is an outcome too)."""

    def attempt() -> None:
        with contextlib.suppress(ConditionSyntaxError):
            parse.__wrapped__(text)

    return count_steps(attempt)


def _outcome(text: str) -> str:
    try:
        parse.__wrapped__(text)
    except ConditionSyntaxError as error:
        return error.code
    return "parsed"


MB = 1_000_000
# name: (size, the text of that size). The smoke shapes take about a second together.
SHAPES = {
    "1 MB quoted task name": (MB, lambda n: "task '" + "x" * (n - 20) + "' is running"),
    "1 MB one name": (MB, lambda n: "a" * n),
    "1 MB comment": (MB, lambda n: "daily # " + "x" * (n - 8)),
    "10,000 nested parentheses": (10_000, lambda n: "(" * n + "true" + ")" * n),
    "10,000 unclosed parentheses": (10_000, lambda n: "(" * n + "true"),
    "10,000 & operators": (10_000, lambda n: "true & " * n + "true"),
    "10,000 & in a row": (10_000, lambda n: "true " + "&" * n + " true"),
    "10,000 negations": (10_000, lambda n: "not " * n + "true"),
}
LONG_SHAPES = {
    "1 MB of words": (MB, lambda n: ("holiday " * (n // 8 + 1))[:n]),
    "1 MB unclosed quote": (MB, lambda n: "task '" + "x" * (n - 6)),
    "1 MB of & operators": (MB, lambda n: ("true & " * (n // 7))[:-3]),
    "1 MB of | operators": (MB, lambda n: ("true | " * (n // 7))[:-3]),
    "1 MB between values": (MB, lambda n: "time of day between " + "10:00 " * (n // 6 - 4)),
    "10,000 dangling &": (10_000, lambda n: "true & " * n),
    "10,000 'and' words": (10_000, lambda n: "true and " * n + "true"),
    "10,000 lines": (10_000, lambda n: "true &\n" * n + ")"),
    "100,000 nested parentheses": (100_000, lambda n: "(" * n + "true" + ")" * n),
}
RATIO = 4.0  # doubling the input may at most quadruple the time: linear with slack


def _check_linear(name: str, size: int, make) -> None:
    half, full = make(size // 2), make(size)
    assert _outcome(half) == _outcome(full), "compare like with like"
    small, big = _seconds_per_parse(half), _seconds_per_parse(full)
    ratio = big / small
    if ratio > RATIO:  # the machine is shared: a timing bound must fail twice in a row
        small, big = _seconds_per_parse(half), _seconds_per_parse(full)
        ratio = big / small
    report("linear", **{name: {"half_s": round(small, 5), "full_s": round(big, 5), "x": ratio}})
    assert ratio <= RATIO, f"{name}: {small * 1000:.1f} ms -> {big * 1000:.1f} ms ({ratio:.1f}x)"


@pytest.mark.parametrize("name", SHAPES)
def test_parse_work_is_linear(name):
    """Counted in steps at a tenth of the size: the same answer on a busy machine."""
    size, make = SHAPES[name]
    step = size // 40  # counts 1/40, 1/20 and 1/10 of the timed size
    assert _outcome(make(step)) == _outcome(make(4 * step)), "compare like with like"
    linear, figures = grows_linearly(lambda n: _counted_parse(make(n)), step)
    assert linear, f"{name}: {figures}"


@pytest.mark.long
@pytest.mark.parametrize("name", SHAPES)
def test_parse_time_is_linear(name, request):
    long_run(request)
    size, make = SHAPES[name]
    _check_linear(name, size, make)


@pytest.mark.long
@pytest.mark.parametrize("name", LONG_SHAPES)
def test_parse_time_is_linear_long(name, request):
    long_run(request)
    size, make = LONG_SHAPES[name]
    _check_linear(name, size, make)


# ---------------------------------------------------------------- (e) bugs found


@pytest.mark.parametrize(
    "text",
    [
        "every 24000000000:00:00",
        "every 99999999999:00:00",
        "scheduler started 0101010101010101010101:30:00 ago",
        "running for more than 100000000000:00:00",
    ],
)
def test_huge_clock_durations_are_syntax_errors(text):
    """Found by the 1,000,000-input long run (lark's VisitError escaped parse); fixed."""
    with pytest.raises(ConditionSyntaxError) as info:
        parse.__wrapped__(text)
    assert info.value.code == "E110"


@pytest.mark.parametrize(
    "text",
    [
        "every 999999999 days",
        "running for more than 999999999 days",
        "has succeeded in past 999999998 days",
        "scheduler has run over 999999999 days",
    ],
)
def test_the_longest_durations_compile(text):
    node = parse(text)
    assert max(durations(node)).days >= 999_999_998
    with contextlib.suppress(ConditionSyntaxError):  # refusing it with a position is fine too
        compile_condition(text, timezone="UTC")


@pytest.mark.parametrize(
    "text",
    [
        "every 800000 days",
        "has succeeded in past 800000 days",
        "running for more than 800000 days",
        "every 3000000 days",
        "has succeeded in past 3000000 days",
        "scheduler has run over 3000000 days",
    ],
)
def test_durations_past_the_calendar_evaluate(text):
    from reliability.grammar import AT, _history, _session

    try:
        condition = compile_condition(text, timezone="UTC")
    except ConditionSyntaxError:
        return  # refusing it is fine
    context = {"task": "t", "history": _history(), "session": _session()}
    condition.is_true(AT, **context)
    condition.next_change(AT, **context)


def _chain(depth: int) -> dict[str, ast.Node]:
    rules = {f"r{i}": parse(f"r{i + 1}") for i in range(depth)}
    rules[f"r{depth}"] = parse("daily")
    return rules


def test_a_chain_of_200_named_conditions_compiles():
    condition = compile_condition("r0", rules=_chain(200), timezone="UTC")
    assert str(condition) == "r0"


def test_a_chain_of_500_named_conditions_is_a_syntax_error_or_compiles():
    with contextlib.suppress(ConditionSyntaxError):
        compile_condition("r0", rules=_chain(500), timezone="UTC")
