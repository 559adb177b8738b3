"""The conddsl side of the benchmarks, run in the project's own interpreter by ``run.py``.

Each ``case_*`` function takes the workload (the same dict that ``peer.py`` reads)
and returns ``{row key: result}`` with min/median/max seconds per operation (or
bytes, for memory), measured by ``common.measure``.

The runtime cases (``RUNTIME_CASES``: the scheduler's idle CPU, start and
termination lateness, memory) run in a fresh process each, as the peer's do::

    python benchmarks/conddsl_side.py CASE WORKLOAD.json [TASKS]

which prints ``{"rows": {key: result}}`` as JSON.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

# No pathlib, tracemalloc or statistics at the top, here, in peer.py and in common.py:
# the total-memory case measures this whole process, and the harness's own modules
# (~2 MiB of RSS) are no part of either scheduler (both sides load them only in the
# cases that use them).
HERE = os.path.dirname(os.path.realpath(__file__))
if __name__ == "__main__":  # run.py puts these on sys.path when it imports this module
    sys.path[:0] = [HERE, os.path.dirname(HERE)]

from common import (  # noqa: E402
    Heartbeat,
    WaitProbe,
    closed_window,
    first_line,
    first_lines,
    history_events,
    idle_cpu,
    latency_rows,
    measure,
    memory_runs,
    opening_at,
    peak_rss,
    percentiles,
    round_ms,
    rss_baseline,
    stall_mix,
    stall_row,
    stall_sleep,
    start_lead,
    start_phases,
    task_state_instants,
    tree_forever,
    wait_plan,
)

UTC = timezone.utc


def case_parse(work: dict) -> dict:
    from conddsl.compile import _compile_cached, compile_condition
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

    def compiled_cold():
        # The public path on texts it has not seen: both caches are emptied first.
        parse.cache_clear()
        _compile_cached.cache_clear()
        for expr in exprs:
            compile_condition(expr, timezone="UTC")

    first_at = datetime.fromisoformat(work["first_value_at"])

    def compiled_first_value():
        parse.cache_clear()
        _compile_cached.cache_clear()
        for expr in exprs:
            compile_condition(expr, timezone="UTC").is_true(first_at)

    parse.cache_clear()
    n = len(exprs)
    return {
        "parse-cold": measure(cold, n, **work["timing"]),
        "parse-compile-cold": measure(compiled_cold, n, **work["timing"]),
        "parse-compile-first-value": measure(compiled_first_value, n, **work["timing"]),
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
    from conddsl import compile_condition
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

        condition = compile_condition(f"cron {expr}", timezone="UTC")

        def next_change(condition=condition):
            out = []
            for at in instants:
                out.append(condition.next_change(at))
            return out

        variants = (
            ("reused", with_reused),
            ("parse+next", parse_and_next),
            ("next_change", next_change),
        )
        for variant, func in variants:
            result = measure(func, len(instants), **work["timing"])
            result["answers"] = [d.isoformat() if d else None for d in func()]
            if variant == "next_change":
                # Inside a matching minute the condition next changes at the minute's
                # end, not at the next fire: such instants are left out of the comparison.
                result["inside"] = [condition.is_true(at) for at in instants]
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
        import tracemalloc

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


# ---------------------------------------------------------------- runtime cases


async def _forever() -> None:
    await asyncio.Event().wait()


def _sleep_forever() -> None:  # a process task: ends by SIGTERM
    time.sleep(3600)


def _ignore_sigterm() -> None:  # a process task that only SIGKILL ends
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(3600)


def _scheduler(**config):
    from conddsl.runtime import Scheduler

    config.setdefault("timezone", "UTC")
    return Scheduler(config)


def case_idle_cpu(work: dict) -> dict:
    """CPU of a scheduler whose tasks all wait for windows that open in hours."""
    rt = work["runtime"]
    rows = {}
    for tasks in rt["idle_tasks"]:
        app = _scheduler(timeout="never")
        now = datetime.now(timezone.utc)
        for i in range(tasks):
            app.task(closed_window(now, i), name=f"t{i}")(_forever)
        rows[f"idle {tasks}"] = idle_cpu(
            app.run,
            app.shut_down,
            warmup=rt["idle_warmup"],
            samples=rt["idle_samples"],
            seconds=rt["idle_seconds"],
        )
        del app
        gc.collect()
    return rows


def _start_once(tasks: int, phase: float) -> list[float]:
    """Seconds from the window opening to the first line of each task's body."""
    app = _scheduler(timeout="never")
    lead = start_lead(tasks) + phase
    opens = round_ms(datetime.now(timezone.utc) + timedelta(seconds=lead))
    cond = opening_at(opens)
    started: dict[str, float] = {}
    all_started = asyncio.Event()

    def body_of(name: str):
        async def body() -> None:
            started.setdefault(name, time.time())
            if len(started) == tasks:
                all_started.set()
            await asyncio.Event().wait()

        return body

    for i in range(tasks):
        app.task(cond, name=f"t{i}")(body_of(f"t{i}"))

    async def main() -> None:
        async def stop() -> None:
            try:
                await asyncio.wait_for(all_started.wait(), lead + 30)
            finally:
                app.shut_down(force=True)

        stopper = asyncio.ensure_future(stop())
        await app.serve()
        await stopper

    asyncio.run(main())
    return [at - opens.timestamp() for at in started.values()]


def _floor_once(tasks: int, phase: float) -> list[float]:
    """The same as :func:`_start_once` without a scheduler: a bare asyncio program whose
    ``tasks`` bodies wait on gates made ahead, all opened at the instant (woken by a timer
    a few ms before it, the rest slept off the loop). No scheduler can start them sooner
    on this machine: the row is the floor the ``start`` rows are read against."""
    lead = start_lead(tasks) + phase
    opens = round_ms(datetime.now(timezone.utc) + timedelta(seconds=lead)).timestamp()
    started: dict[str, float] = {}

    async def body(name: str, gate: asyncio.Future) -> None:
        await gate
        started.setdefault(name, time.time())
        await asyncio.Event().wait()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gates = [loop.create_future() for _ in range(tasks)]
        runs = [loop.create_task(body(f"t{i}", gate)) for i, gate in enumerate(gates)]
        await asyncio.sleep(max(0.0, opens - time.time() - 0.003))
        time.sleep(max(0.0, opens - time.time()))
        for gate in gates:
            gate.set_result(None)
        while len(started) < tasks:
            await asyncio.sleep(0)
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)

    asyncio.run(main())
    return [at - opens for at in started.values()]


def case_start_lateness(work: dict) -> dict:
    rows = {}
    for tasks, repeats in work["runtime"]["start"]:
        samples: list[float] = []
        floor: list[float] = []
        for phase in start_phases(repeats):
            samples += _start_once(tasks, phase)
            gc.collect()
            floor += _floor_once(tasks, phase)
            gc.collect()
        rows[f"start {tasks}"] = percentiles(samples, repeats=repeats)
        rows[f"floor {tasks}"] = percentiles(floor, repeats=repeats)
    return rows


def _terminate_once(kind: str, tasks: int, timeout: float, grace: float) -> list[float]:
    """Seconds past the timeout (past timeout + kill grace for ``stubborn``) at which each
    task's first run is recorded as terminated, by the scheduler's own records."""
    from conddsl.history import MemoryHistory
    from conddsl.runtime import TaskTerminationException, TerminationFlag

    done: set[str] = set()

    class Watching(MemoryHistory):
        """Shuts the scheduler down once every task's first run has ended."""

        def record(self, task, action, **fields):
            rec = super().record(task, action, **fields)
            if action != "run" and task not in done:
                done.add(task)
                if len(done) == tasks:
                    app.shut_down(force=True)
            return rec

    def thread_body(flag=TerminationFlag()):  # noqa: B008
        flag.wait()
        raise TaskTerminationException()

    bodies = {
        "async": (_forever, "async"),
        "thread": (thread_body, "thread"),
        "process": (_sleep_forever, "process"),
        "tree": (tree_forever, "process"),
        "stubborn": (_ignore_sigterm, "process"),
    }
    body, execution = bodies[kind]
    history = Watching()
    app = _scheduler(timeout=timeout, kill_grace=grace, history=history)
    for i in range(tasks):
        app.task("true", name=f"t{i}", execution=execution)(body)
    timer = threading.Timer(60, app.shut_down, kwargs={"force": True})
    timer.start()
    try:
        app.run()
    finally:
        timer.cancel()
    first_run: dict[str, object] = {}
    ended = {}
    for rec in history.records():
        if rec.action == "run":
            first_run.setdefault(rec.task, rec)
        elif rec.task in first_run and rec.run_id == first_run[rec.task].run_id:
            ended[rec.task] = rec
    allowed = timeout + (grace if kind == "stubborn" else 0)
    return [
        (ended[name].at - first_run[name].at).total_seconds() - allowed
        for name in ended
        if ended[name].action == "terminate" and ended[name].reason == "timeout"
    ]


def case_termination(work: dict) -> dict:
    rt = work["runtime"]
    rows = {}
    for kind, tasks, repeats in rt["terminate"]:
        samples: list[float] = []
        for _ in range(repeats):
            samples += _terminate_once(kind, tasks, rt["timeout"], rt["kill_grace"])
            gc.collect()
        key = f"terminate {kind} {tasks}"
        if len(samples) < tasks * repeats:
            rows[key] = {"error": f"{len(samples)} of {tasks * repeats} runs ended by timeout"}
        else:
            rows[key] = percentiles(samples, repeats=repeats)
    return rows


def case_waits(work: dict) -> dict:
    """Start and termination lateness after long waits (1 s, 65 s, 30 min by default): the
    kernel's timer slack grows with the wait (see conddsl.runtime.clock)."""
    from conddsl.history import MemoryHistory

    rt = work["runtime"]
    plan = wait_plan(datetime.now(timezone.utc), rt["waits"], rt["wait_tasks"], rt["wait_lead"])
    probe = WaitProbe(plan, lambda: app.shut_down(force=True))

    class Watching(MemoryHistory):
        def record(self, task, action, **fields):
            rec = super().record(task, action, **fields)
            probe.on_record(task, action, rec.at.timestamp())
            return rec

    app = _scheduler(timeout="never", history=Watching())
    probe.add_tasks(app, _forever)
    timer = threading.Timer(max(rt["waits"]) + 60, app.shut_down, kwargs={"force": True})
    timer.start()
    try:
        app.run()
    finally:
        timer.cancel()
    return probe.rows()


def _process_start_once(tasks: int) -> list[float]:
    """Seconds from each process run's ``run`` record to the first line of its body."""
    import functools
    import tempfile

    from conddsl.history import MemoryHistory

    folder = tempfile.mkdtemp()
    history = MemoryHistory()
    app = _scheduler(timeout=1.0, kill_grace=0.2, history=history)
    lead = start_lead(tasks) + 1.0  # the fork server starts first
    opens = round_ms(datetime.now(timezone.utc) + timedelta(seconds=lead))
    for i in range(tasks):
        body = functools.partial(first_line, folder, f"t{i}")
        app.task(opening_at(opens), name=f"t{i}", execution="process")(body)
    timer = threading.Timer(lead + 0.8, app.shut_down, kwargs={"force": True})
    timer.start()
    try:
        app.run()
    finally:
        timer.cancel()
    runs = {}
    for rec in history.records(actions="run"):
        runs.setdefault(rec.task, rec.at.timestamp())
    lines = first_lines(folder)
    return [lines[name] - runs[name] for name in lines if name in runs]


def case_process_start(work: dict) -> dict:
    return latency_rows(work["runtime"]["process_start"], _process_start_once, "process-start")


def case_scheduler_memory(work: dict) -> dict:
    """Peak RSS growth while a scheduler takes its tasks and settles into waiting."""
    from conddsl import compile_condition
    from conddsl.runtime import Scheduler  # noqa: F401 - imported before the baseline

    rt = work["runtime"]
    tasks = rt["memory_tasks"]
    now = datetime.now(timezone.utc)
    compile_condition(closed_window(now, -1), timezone="UTC")  # the grammar, loaded once
    gc.collect()
    before = rss_baseline()
    started = time.perf_counter()
    app = _scheduler(timeout="never")
    for i in range(tasks):
        app.task(closed_window(now, i), name=f"t{i}")(_forever)
    timer = threading.Timer(rt["memory_seconds"], app.shut_down)
    timer.start()
    app.run()
    grown = peak_rss() - before
    return {
        f"memory {tasks}": {
            "bytes": grown,
            "per_task": grown / tasks,
            "tasks": tasks,
            "wall": time.perf_counter() - started,
        }
    }


def _stall_once(tasks: int, lead: float) -> tuple[list[float], int]:
    """The loop's gaps (a heartbeat beside the scheduler) from the instant one end condition
    ends every run of a mix of async, thread and process tasks to the last finishing
    record; and how many runs were ended by it."""
    from conddsl.history import MemoryHistory
    from conddsl.runtime import TaskTerminationException, TerminationFlag

    def thread_body(flag=TerminationFlag()):  # noqa: B008
        flag.wait()
        raise TaskTerminationException()

    bodies = {"async": _forever, "thread": thread_body, "process": stall_sleep}
    heart = Heartbeat()
    finished: set[str] = set()
    last: list[float] = []

    class Watching(MemoryHistory):
        """Stops the heartbeat and the scheduler once every run has its finishing record."""

        def record(self, task, action, **fields):
            rec = super().record(task, action, **fields)
            if action != "run" and task not in finished:
                finished.add(task)
                if len(finished) == tasks:
                    last.append(time.time())
                    heart.stop()
                    app.shut_down(force=True)
            return rec

    history = Watching()
    app = _scheduler(timeout="never", kill_grace=1.0, history=history)
    ends = round_ms(datetime.now(timezone.utc) + timedelta(seconds=lead))
    end_cond = opening_at(ends)
    for i, execution in enumerate(stall_mix(tasks)):
        app.task("true", name=f"t{i}", execution=execution, end_cond=end_cond)(bodies[execution])

    async def main() -> None:
        beat = asyncio.ensure_future(heart.run())
        try:
            await asyncio.wait_for(app.serve(), lead + 60)
        finally:
            heart.stop()
            await beat

    asyncio.run(main())
    ended = sum(
        1 for rec in history.records() if rec.action == "terminate" and rec.reason == "end_cond"
    )
    return heart.gaps(ends.timestamp(), last[0] if last else float("inf")), ended


def case_loop_stall(work: dict) -> dict:
    """Gaps of the scheduler's loop while 1,000 runs of mixed executions are ended at once."""
    rt = work["runtime"]
    rows = {}
    for tasks, repeats in rt["stall"]:
        rows[f"stall {tasks}"] = stall_row(
            tasks, repeats, rt["stall_lead"], _stall_once, gc.collect
        )
    return rows


def case_total_memory(work: dict, tasks: str) -> dict:
    """This whole process's peak RSS (interpreter, imports, grammar, tasks) after building
    ``tasks`` waiting tasks and running; the process must be fresh (no baseline reset)."""
    from conddsl.runtime import Scheduler  # noqa: F401 - as the sched-memory case

    count = int(tasks)
    now = datetime.now(timezone.utc)
    app = _scheduler(timeout="never")
    for i in range(count):
        app.task(closed_window(now, i), name=f"t{i}")(_forever)
    timer = threading.Timer(work["runtime"]["memory_seconds"], app.shut_down)
    timer.start()
    app.run()
    return {f"total {count}": {"bytes": peak_rss(), "tasks": count}}


RUNTIME_CASES = {
    "idle-cpu": case_idle_cpu,
    "start": case_start_lateness,
    "terminate": case_termination,
    "sched-memory": case_scheduler_memory,
    "total-memory": case_total_memory,
    "waits": case_waits,
    "process-start": case_process_start,
    "stall": case_loop_stall,
}


def main() -> None:
    case, workload, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(workload, encoding="utf-8") as f:
        work = json.load(f)
    rows = RUNTIME_CASES[case](work, *extra)
    json.dump({"rows": rows}, sys.stdout)


if __name__ == "__main__":
    main()
