"""The language side's paths measured apart, the new path beside the one it replaced.

    python benchmarks/language_bench.py [--repeats 15]

conddsl only, no peer (the side-by-side rows are in ``run.py``): on the distinct
expressions of ``tests/fixtures/rocketry_clock_verdicts.json`` it times the uncached
parse through the LALR driver (``conddsl/lalr.py``) and through Lark's parse tree (the
path every error still takes), the driver again with its trie of shapes emptied before
each pass (a text of a shape not seen before is studied on the parse table first), the
compile, both through ``compile_condition`` (its caches emptied), and a cron
condition's ``next_change`` from the cron spec and through the interval path, without
and with a history (the scheduler's case). Times are CPU time of this process
(``time.process_time``), the best of ``--repeats`` passes, so that other work on a
shared machine moves them less.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conddsl import windows  # noqa: E402
from conddsl.compile import Condition, _compile_cached, compile_condition  # noqa: E402
from conddsl.history import MemoryHistory  # noqa: E402
from conddsl.parse import AstBuilder, _fast_parser, _parse_with_tree, parse  # noqa: E402

CRON = "cron */5 9-17 * * 1-5"


def best(one_pass, ops: int, repeats: int) -> float:
    """Microseconds per operation: the best of ``repeats`` passes, collector off."""
    one_pass()
    gc.collect()
    gc.disable()
    try:
        times = []
        for _ in range(repeats):
            started = time.process_time()
            one_pass()
            times.append(time.process_time() - started)
    finally:
        gc.enable()
    return min(times) / ops * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    repeats = parser.parse_args().repeats
    fixture = ROOT / "tests" / "fixtures" / "rocketry_clock_verdicts.json"
    rows = json.loads(fixture.read_text(encoding="utf-8"))
    exprs = list(dict.fromkeys(row["expr"] for row in rows))
    fast = _fast_parser()
    nodes = [_parse_with_tree(expr) for expr in exprs]

    def compile_all() -> None:
        windows._SHARED.clear()  # cold: no window seen before
        for node, expr in zip(nodes, exprs, strict=True):
            Condition(node, timezone="UTC", text=expr)

    def public_path() -> None:
        # compile_condition as run.py's parse + compile row times it: both caches emptied.
        parse.cache_clear()
        _compile_cached.cache_clear()
        for expr in exprs:
            compile_condition(expr, timezone="UTC")

    n = len(exprs)
    print(f"{n} distinct expressions, µs each (CPU time, best of {repeats}):")
    tree = best(lambda: [_parse_with_tree(e) for e in exprs], n, repeats)
    driver = best(lambda: [fast(e, AstBuilder(e)) for e in exprs], n, repeats)
    shapes = fast.__self__

    def first_sight() -> None:
        shapes.forget()  # every shape unknown: each is studied on the parse table first
        for expr in exprs:
            fast(expr, AstBuilder(expr))

    unseen = best(first_sight, n, repeats)
    print(f"  parse, Lark parse tree + AstBuilder:  {tree:7.1f}")
    print(f"  parse, LALR driver (conddsl/lalr.py): {driver:7.1f}")
    print(f"  the same, no shape seen before:       {unseen:7.1f}  ({shapes.shapes} shapes)")
    print(f"  compile (windows made on first use):  {best(compile_all, n, repeats):7.1f}")
    print(f"  parse + compile, compile_condition:   {best(public_path, n, repeats):7.1f}")

    history = MemoryHistory()
    at = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
    for i in range(200):  # runs at 5-minute fires on the first day
        history.record("t", "run", at=at + timedelta(minutes=5 * i, seconds=1))
        history.record("t", "success", at=at + timedelta(minutes=5 * i, seconds=20))
    instants = [datetime(2024, 3, 4) + timedelta(minutes=37 * i, seconds=13) for i in range(200)]
    spec_path = compile_condition(CRON, timezone="UTC")
    interval_path = Condition(spec_path.ast, timezone="UTC")
    interval_path._wall_next = None  # the interval path, as every other condition takes
    print(f"`{CRON}`.next_change, µs each ({len(instants)} instants):")
    for label, context in (("no history", {}), ("a history", {"task": "t", "history": history})):
        for path, cond in (("cron spec", spec_path), ("intervals", interval_path)):
            answers = [cond.next_change(at, **context) for at in instants]
            assert answers == [interval_path.next_change(at, **context) for at in instants]

            def one_pass(cond=cond, context=context) -> None:
                for at in instants:
                    cond.next_change(at, **context)

            figure = best(one_pass, len(instants), max(3, repeats // 5))
            print(f"  {label:10s} {path:10s} {figure:9.1f}")


if __name__ == "__main__":
    main()
