"""The conddsl side of the benchmarks, run in the project's own interpreter by ``run.py``.

Each ``case_*`` function takes the workload (the same dict that ``peer.py`` reads)
and returns ``{row key: result}`` with min/median/max seconds per operation (or
bytes, for memory), measured by ``common.measure``.
"""

from __future__ import annotations

import gc
import tracemalloc
from datetime import datetime, timezone

# run.py puts benchmarks/ and the repository root on sys.path.
from common import history_events, measure, memory_runs, task_state_instants

UTC = timezone.utc


def case_parse(work: dict) -> dict:
    from conddsl.parse import parse

    exprs = work["parse_exprs"]
    uncached = parse.__wrapped__  # the function under the lru_cache
    parse("true")  # build the Lark parser before timing

    def cold():
        for expr in exprs:
            uncached(expr)

    def repeated():
        for expr in exprs:
            parse(expr)

    parse.cache_clear()
    n = len(exprs)
    return {
        "parse-cold": measure(cold, n, **work["timing"]),
        # measure's warm-up pass fills the cache; the timed passes hit it.
        "parse-repeated": measure(repeated, n, **work["timing"]),
    }


def case_clock(work: dict) -> dict:
    from conddsl import compile_condition

    conds = {expr: compile_condition(expr, timezone="UTC") for expr, _ in work["clock_pairs"]}
    # Naive instants are wall-clock times in the condition's zone (UTC), as Rocketry's
    # naive local times are under TZ=UTC on the peer side.
    pairs = [(conds[expr], datetime.fromisoformat(at)) for expr, at in work["clock_pairs"]]

    def one_pass():
        trues = 0
        for cond, at in pairs:
            if cond.is_true(at):
                trues += 1
        return trues

    result = measure(one_pass, len(pairs), **work["timing"])
    result["trues"] = one_pass()
    result["answers"] = [bool(cond.is_true(at)) for cond, at in pairs]
    return {"clock": result}


def fill_history(records: int):
    from conddsl.history import MemoryHistory

    history = MemoryHistory()
    record = history.record
    for task, action, at in history_events(records):
        record(task, action, at=at.replace(tzinfo=UTC))
    return history


def case_task_state(work: dict) -> dict:
    from conddsl import compile_condition

    instants = [at.replace(tzinfo=UTC) for at in task_state_instants(work["task_instants"])]
    rows = {}
    for records in work["task_records"]:
        history = fill_history(records)
        for expr in work["task_exprs"]:
            key = f"task-state {expr} @{records}"
            cond = compile_condition(expr, timezone="UTC")
            try:
                cond.is_true(instants[0], task="t", history=history)
            except NotImplementedError as exc:
                rows[key] = {"unavailable": f"NotImplementedError: {exc}"}
                continue

            def one_pass(cond=cond, history=history):
                trues = 0
                for at in instants:
                    if cond.is_true(at, task="t", history=history):
                        trues += 1
                return trues

            result = measure(one_pass, len(instants), **work["timing"])
            result["trues"] = one_pass()
            result["answers"] = [
                bool(cond.is_true(at, task="t", history=history)) for at in instants
            ]
            rows[key] = result
        del history
        gc.collect()
    return rows


def case_cron(work: dict) -> dict:
    from conddsl.timeline.cron import parse_cron

    instants = [datetime.fromisoformat(at) for at in work["cron_instants"]]
    rows = {}
    for expr in work["cron_exprs"]:
        spec = parse_cron(expr)

        def with_reused(spec=spec):
            out = []
            for at in instants:
                out.append(spec.next_fire(at))
            return out

        def parse_and_next(expr=expr):
            out = []
            for at in instants:
                out.append(parse_cron(expr).next_fire(at))
            return out

        for variant, func in (("reused", with_reused), ("parse+next", parse_and_next)):
            result = measure(func, len(instants), **work["timing"])
            result["answers"] = [d.isoformat() if d else None for d in func()]
            rows[f"cron {variant} {expr}"] = result
    return rows


def case_memory(work: dict) -> dict:
    from conddsl.history import MemoryHistory

    runs = work["memory_runs"]
    rows = {}
    for label, with_id in (("no run_id", False), ("run_id", True)):
        history = MemoryHistory()
        record = history.record
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i, (task, start, finish, ok) in enumerate(memory_runs(runs)):
            run_id = str(i) if with_id else None
            record(task, "run", at=start.replace(tzinfo=UTC), run_id=run_id)
            record(task, "success" if ok else "fail", at=finish.replace(tzinfo=UTC), run_id=run_id)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        rows[f"memory {label}"] = {"bytes_per_run": (after - before) / runs, "runs": runs}
        del history, record
        gc.collect()
    return rows


CASES = {
    "parse": case_parse,
    "clock": case_clock,
    "task-state": case_task_state,
    "cron": case_cron,
    "memory": case_memory,
}
