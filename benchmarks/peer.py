"""The peer side of the benchmarks: Rocketry 2.5.1 and croniter 7.0.0.

Runs only in the side virtualenv that ``run.py`` builds (``benchmarks/.venv-rocketry``,
which has ``pydantic<2``); conddsl never imports Rocketry. ``run.py`` starts it once
per case::

    .venv-rocketry/bin/python benchmarks/peer.py CASE WORKLOAD.json [TASKS]

and reads one JSON object from its standard output: ``{"rows": {key: result}}``,
where a result holds min/median/max seconds per operation (or bytes, for memory)
and, where useful, the answers given, so that ``run.py`` can check both sides
computed the same thing. The inputs come from the workload file (and the history
generators of ``common.py``), so both sides see the same strings and instants.

Rocketry reads "now" only through ``session.config.time_func``; the script pins
``TZ=UTC`` so its naive local times are UTC, as they are on the conddsl side.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("TZ") != "UTC":
    os.environ["TZ"] = "UTC"
import time  # noqa: E402

time.tzset()

import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

# No pathlib, tracemalloc or statistics at the top (see conddsl_side.py).
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
warnings.simplefilter("ignore")

from common import (  # noqa: E402
    HISTORY_TASKS,
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

_NOW = [0.0]


def _clock() -> float:
    return _NOW[0]


def _session():
    """A Rocketry app whose clock is ``_NOW``, with the tasks of the history."""
    from rocketry import Rocketry
    from rocketry.tasks import FuncTask

    app = Rocketry(config={"execution": "main", "time_func": _clock})
    session = app.session
    session.set_as_default()
    session._wrap_log_record_creation()
    tasks = {
        name: FuncTask(func=lambda: None, name=name, execution="main", session=session)
        for name in HISTORY_TASKS
    }
    return session, tasks


def _reset_log(session, tasks, model=None) -> None:
    """A fresh in-memory log (Rocketry's default repo, LogRecord model unless given)."""
    from redbird.logging import RepoHandler
    from redbird.repos import MemoryRepo
    from rocketry.log.log_record import LogRecord

    logger = logging.getLogger(session.config.task_logger_basename)
    logger.handlers = [RepoHandler(repo=MemoryRepo(model=model or LogRecord))]
    for task in tasks.values():
        task._init_cache()
        task.status = None
        task._run_stack = []


_LOG_METHOD = {
    "run": "log_running",
    "success": "log_success",
    "fail": "log_failure",
}


def _load(tasks, events) -> int:
    """Record the events the way Rocketry's scheduler does (clock set to each event)."""
    from rocketry.core.task import TaskRun

    count = 0
    for name, action, when in events:
        task = tasks[name]
        _NOW[0] = when.timestamp()
        getattr(task, _LOG_METHOD[action])()
        if action == "run":
            task._run_stack.append(TaskRun(start=_NOW[0], task=None))
        else:
            task._run_stack = []
        count += 1
    return count


def _observe(cond, ts: float, task, session) -> bool:
    _NOW[0] = ts
    return cond.observe(task=task, session=session)


# ---------------------------------------------------------------- cases


def case_parse(work: dict) -> dict:
    from rocketry.parse import parse_condition

    session, _ = _session()
    exprs = work["parse_exprs"]

    def cold():
        # Rocketry caches only task-bound "meta" conditions, in session._cond_cache.
        session._cond_cache.clear()
        for expr in exprs:
            parse_condition(expr)

    def repeated():
        for expr in exprs:
            parse_condition(expr)

    task = _session()[1]["t"]
    first_at = datetime.fromisoformat(work["first_value_at"]).timestamp()

    def first_value():
        session._cond_cache.clear()
        for expr in exprs:
            _observe(parse_condition(expr), first_at, task, session)

    n = len(exprs)
    cold_result = measure(cold, n, **work["timing"])
    return {
        "parse-cold": cold_result,
        # Rocketry's parse is its compile: parse_condition returns the condition object.
        "parse-compile-cold": cold_result,
        "parse-compile-first-value": measure(first_value, n, **work["timing"]),
        "parse-repeated": measure(repeated, n, **work["timing"]),
    }


def case_clock(work: dict) -> dict:
    from rocketry.parse import parse_condition

    session, tasks = _session()
    task = tasks["t"]
    conds = {expr: parse_condition(expr) for expr, _ in work["clock_pairs"]}
    pairs = [
        (conds[expr], datetime.fromisoformat(at).timestamp()) for expr, at in work["clock_pairs"]
    ]

    def one_pass():
        trues = 0
        for cond, ts in pairs:
            _NOW[0] = ts
            if cond.observe(task=task, session=session):
                trues += 1
        return trues

    result = measure(one_pass, len(pairs), **work["timing"])
    result["trues"] = one_pass()
    result["answers"] = [bool(_observe(cond, ts, task, session)) for cond, ts in pairs]
    return {"clock": result}


def case_task_state(work: dict) -> dict:
    from rocketry.parse import parse_condition

    session, tasks = _session()
    _reset_log(session, tasks)
    records = work["task_peer_records"]
    _load(tasks, history_events(records))
    task = tasks["t"]
    stamps = [at.timestamp() for at in task_state_instants(work["task_instants"])]
    rows = {}
    for expr in work["task_exprs"]:
        cond = parse_condition(expr)

        def one_pass(cond=cond):
            trues = 0
            for ts in stamps:
                _NOW[0] = ts
                if cond.observe(task=task, session=session):
                    trues += 1
            return trues

        result = measure(one_pass, len(stamps), **work["timing"])
        result["trues"] = one_pass()
        result["answers"] = [bool(_observe(cond, ts, task, session)) for ts in stamps]
        rows[f"task-state {expr} @{records}"] = result
    return rows


def case_cron(work: dict) -> dict:
    from croniter import croniter

    instants = [datetime.fromisoformat(at) for at in work["cron_instants"]]
    rows = {}
    for expr in work["cron_exprs"]:
        reused = croniter(expr, instants[0])

        def with_reused(it=reused):
            out = []
            for at in instants:
                it.set_current(at, force=True)
                out.append(it.get_next(datetime))
            return out

        def parse_and_next(expr=expr):
            out = []
            for at in instants:
                out.append(croniter(expr, at).get_next(datetime))
            return out

        for variant, func in (("reused", with_reused), ("parse+next", parse_and_next)):
            result = measure(func, len(instants), **work["timing"])
            result["answers"] = [d.isoformat() for d in func()]
            rows[f"cron {variant} {expr}"] = result
        rows[f"cron apscheduler {expr}"] = _apscheduler_cron(expr, instants, work)
    return rows


def _apscheduler_cron(expr: str, instants: list, work: dict) -> dict:
    """APScheduler 4's CronTrigger, one trigger reused: each step is its ``next()``.

    ``next()`` continues from the trigger's last fire time plus one second; it is set to
    each instant (whole seconds here), so each call answers "the first fire after it".
    """
    try:
        from apscheduler.triggers.cron import CronTrigger
    except ImportError as exc:  # an older side virtualenv
        return {"error": f"APScheduler 4 is not installed: {exc}"}
    trigger = CronTrigger.from_crontab(expr, timezone="UTC")
    aware = [at.replace(tzinfo=timezone.utc) for at in instants]

    def iterate():
        out = []
        for at in aware:
            trigger._last_fire_time = at
            out.append(trigger.next())
        return out

    result = measure(iterate, len(instants), **work["timing"])
    result["answers"] = [d.replace(tzinfo=None).isoformat() if d else None for d in iterate()]
    return result


def case_memory(work: dict) -> dict:
    from rocketry.log.log_record import MinimalRecord

    session, tasks = _session()
    runs = work["memory_peer_runs"]
    rows = {}
    for label, model in (("LogRecord", None), ("MinimalRecord", MinimalRecord)):
        _reset_log(session, tasks, model)
        events = []
        for name, start, finish, ok in memory_runs(runs):
            events.append((name, "run", start))
            events.append((name, "success" if ok else "fail", finish))
        gc.collect()
        import tracemalloc

        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        _load(tasks, events)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        rows[f"memory {label}"] = {"bytes_per_run": (after - before) / runs, "runs": runs}
        _reset_log(session, tasks)
        gc.collect()
    return rows


# ---------------------------------------------------------------- runtime cases
#
# Rocketry's own scheduler, default cycle_sleep (0.1 s), the in-memory log. "Now"
# is naive local time, which TZ=UTC makes UTC, as on the conddsl side.


async def _forever() -> None:
    await asyncio.Event().wait()


def _sleep_forever() -> None:  # a process task: ends by SIGTERM
    time.sleep(3600)


def _rocketry(**config):
    from rocketry import Rocketry

    config.setdefault("execution", "async")
    return Rocketry(config=config)


class _Capture(logging.Handler):
    """Keeps (task, action, created) of every task record; calls ``on_record`` with each."""

    def __init__(self, on_record=None) -> None:
        super().__init__()
        self.records: list[tuple[str, str, float]] = []
        self.on_record = on_record

    def emit(self, record) -> None:
        item = (record.task_name, record.action, record.created)
        self.records.append(item)
        if self.on_record is not None:
            self.on_record(*item)


def _capturing(app, on_record=None) -> _Capture:
    capture = _Capture(on_record)
    logging.getLogger(app.session.config.task_logger_basename).addHandler(capture)
    return capture


def _release(app, capture: _Capture) -> None:
    logging.getLogger(app.session.config.task_logger_basename).removeHandler(capture)


def _serve_for(app, seconds: float, capture: _Capture, *, force: bool = True) -> None:
    """Run ``app`` until it shuts down, or for ``seconds`` at most; then stop capturing."""
    timer = threading.Timer(seconds, app.session.shut_down, kwargs={"force": force})
    timer.start()
    try:
        app.run()
    finally:
        timer.cancel()
        _release(app, capture)


def case_idle_cpu(work: dict) -> dict:
    rt = work["runtime"]
    rows = {}
    for tasks in rt["idle_tasks"]:
        app = _rocketry()
        now = datetime.now()
        for i in range(tasks):
            app.task(closed_window(now, i), name=f"t{i}")(_forever)
        rows[f"idle {tasks}"] = idle_cpu(
            app.run,
            app.session.shut_down,
            warmup=rt["idle_warmup"],
            samples=rt["idle_samples"],
            seconds=rt["idle_seconds"],
        )
        del app
        gc.collect()
    return rows


def _start_once(tasks: int, phase: float) -> list[float]:
    app = _rocketry()
    lead = start_lead(tasks) + phase
    opens = round_ms(datetime.now() + timedelta(seconds=lead))
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
                app.session.shut_down(force=True)

        stopper = asyncio.ensure_future(stop())
        await app.serve()
        await stopper

    asyncio.run(main())
    return [at - opens.timestamp() for at in started.values()]


def case_start_lateness(work: dict) -> dict:
    rows = {}
    for tasks, repeats in work["runtime"]["start"]:
        samples: list[float] = []
        for phase in start_phases(repeats):
            samples += _start_once(tasks, phase)
            gc.collect()
        rows[f"start {tasks}"] = percentiles(samples, repeats=repeats)
    return rows


def _terminate_once(kind: str, tasks: int, timeout: float) -> list[float]:
    """Seconds past the timeout at which each task's first run is logged as terminated."""
    from rocketry.args import TerminationFlag
    from rocketry.exc import TaskTerminationException

    def thread_body(flag=TerminationFlag()):  # noqa: B008
        flag.wait()
        raise TaskTerminationException()

    done: set[str] = set()

    def on_record(task: str, action: str, created: float) -> None:
        if action != "run" and task not in done:
            done.add(task)
            if len(done) == tasks:
                app.session.shut_down(force=True)

    app = _rocketry(
        execution="process" if kind == "tree" else kind,
        timeout=timeout,
        max_process_count=max(tasks, 1),
    )
    capture = _capturing(app, on_record)
    for i in range(tasks):
        if kind == "async":
            app.task("true", name=f"t{i}")(_forever)
        elif kind == "thread":
            app.task("true", name=f"t{i}", execution="thread")(thread_body)
        else:
            body = tree_forever if kind == "tree" else _sleep_forever
            app.task("true", name=f"t{i}", execution="process")(body)
    _serve_for(app, 60, capture)
    first_run: dict[str, float] = {}
    ended: dict[str, tuple[str, float]] = {}
    for task, action, created in capture.records:
        if action == "run":
            first_run.setdefault(task, created)
        elif task in first_run and task not in ended:
            ended[task] = (action, created)
    return [
        created - first_run[task] - timeout
        for task, (action, created) in ended.items()
        if action == "terminate"
    ]


def case_termination(work: dict) -> dict:
    rt = work["runtime"]
    rows = {}
    for kind, tasks, repeats in rt["terminate"]:
        key = f"terminate {kind} {tasks}"
        if kind == "stubborn":
            rows[key] = {
                "unsupported": "Rocketry sends SIGTERM only, then join()s with no time limit:"
                " its scheduler hangs on a process that ignores SIGTERM"
            }
            continue
        samples: list[float] = []
        for _ in range(repeats):
            samples += _terminate_once(kind, tasks, rt["timeout"])
            gc.collect()
        if len(samples) < tasks * repeats:
            rows[key] = {"error": f"{len(samples)} of {tasks * repeats} runs terminated"}
        else:
            rows[key] = percentiles(samples, repeats=repeats)
    return rows


# The most tasks of the stall case Rocketry is run with (see case_loop_stall).
STALL_MOST = 100


def _stall_once(tasks: int, lead: float) -> tuple[list[float], int]:
    """The loop's gaps from the instant one end condition ends every run of the mix to the
    last finishing record (see conddsl_side._stall_once), and how many runs it ended."""
    from rocketry.args import TerminationFlag
    from rocketry.exc import TaskTerminationException

    def thread_body(flag=TerminationFlag()):  # noqa: B008
        flag.wait()
        raise TaskTerminationException()

    bodies = {"async": _forever, "thread": thread_body, "process": stall_sleep}
    heart = Heartbeat()
    finished: set[str] = set()
    last: list[float] = []

    def on_record(task: str, action: str, created: float) -> None:
        if action != "run" and task not in finished:
            finished.add(task)
            if len(finished) == tasks:
                last.append(time.time())
                heart.stop()
                app.session.shut_down(force=True)

    app = _rocketry(timeout=3600, max_process_count=max(tasks, 1))
    capture = _capturing(app, on_record)
    ends = round_ms(datetime.now() + timedelta(seconds=lead))
    end_cond = opening_at(ends)
    for i, execution in enumerate(stall_mix(tasks)):
        app.task("true", name=f"t{i}", execution=execution, end_cond=end_cond)(bodies[execution])

    async def main() -> None:
        beat = asyncio.ensure_future(heart.run())
        timer = threading.Timer(lead + 60, app.session.shut_down, kwargs={"force": True})
        timer.start()
        try:
            await app.serve()
        finally:
            timer.cancel()
            heart.stop()
            await beat

    try:
        asyncio.run(main())
    finally:
        _release(app, capture)
    ended = sum(1 for _, action, _ in capture.records if action == "terminate")
    return heart.gaps(ends.timestamp(), last[0] if last else float("inf")), ended


def case_loop_stall(work: dict) -> dict:
    """Gaps of Rocketry's loop while runs of mixed executions are ended at once."""
    rt = work["runtime"]
    rows = {}
    for tasks, repeats in rt["stall"]:
        if tasks > STALL_MOST:
            rows[f"stall {tasks}"] = {
                "unsupported": f"Rocketry at {tasks:,} tasks: in a trial, 127 of its "
                f"{tasks // 5} process runs had started 90 s after the scheduler (it starts "
                "them one at a time), and it ended neither on a forced shut_down() nor on SIGINT"
            }
            continue
        rows[f"stall {tasks}"] = stall_row(
            tasks, repeats, rt["stall_lead"], _stall_once, gc.collect
        )
    return rows


def case_waits(work: dict) -> dict:
    """Start and termination lateness after long waits (see conddsl_side.case_waits)."""
    rt = work["runtime"]
    plan = wait_plan(datetime.now(), rt["waits"], rt["wait_tasks"], rt["wait_lead"])
    probe = WaitProbe(plan, lambda: app.session.shut_down(force=True))
    app = _rocketry(timeout=3600)
    capture = _capturing(app, probe.on_record)
    probe.add_tasks(app, _forever)
    _serve_for(app, max(rt["waits"]) + 60, capture)
    return probe.rows()


def _process_start_once(tasks: int) -> list[float]:
    """Seconds from each process run's ``run`` log record to the first line of its body."""
    import functools
    import tempfile

    folder = tempfile.mkdtemp()
    app = _rocketry(execution="process", timeout=1.0, max_process_count=tasks)
    capture = _capturing(app)
    lead = start_lead(tasks) + 1.0
    opens = round_ms(datetime.now() + timedelta(seconds=lead))
    for i in range(tasks):
        body = functools.partial(first_line, folder, f"t{i}")
        app.task(opening_at(opens), name=f"t{i}", func=body)
    _serve_for(app, lead + 0.8, capture)
    runs: dict[str, float] = {}
    for task, action, created in capture.records:
        if action == "run":
            runs.setdefault(task, created)
    lines = first_lines(folder)
    return [lines[name] - runs[name] for name in lines if name in runs]


def case_process_start(work: dict) -> dict:
    return latency_rows(work["runtime"]["process_start"], _process_start_once, "process-start")


def case_scheduler_memory(work: dict) -> dict:
    from rocketry import Rocketry  # noqa: F401 - imported before the baseline
    from rocketry.parse import parse_condition

    rt = work["runtime"]
    tasks = rt["memory_tasks"]
    now = datetime.now()
    parse_condition(closed_window(now, -1))
    gc.collect()
    before = rss_baseline()
    started = time.perf_counter()
    app = _rocketry()
    for i in range(tasks):
        app.task(closed_window(now, i), name=f"t{i}")(_forever)
    timer = threading.Timer(rt["memory_seconds"], app.session.shut_down)
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


def case_total_memory(work: dict, tasks: str) -> dict:
    """This whole process's peak RSS (interpreter, imports, tasks) after building ``tasks``
    waiting tasks and running; the process must be fresh (no baseline reset)."""
    count = int(tasks)
    now = datetime.now()
    app = _rocketry()
    for i in range(count):
        app.task(closed_window(now, i), name=f"t{i}")(_forever)
    timer = threading.Timer(work["runtime"]["memory_seconds"], app.session.shut_down)
    timer.start()
    app.run()
    return {f"total {count}": {"bytes": peak_rss(), "tasks": count}}


CASES = {
    "parse": case_parse,
    "clock": case_clock,
    "task-state": case_task_state,
    "cron": case_cron,
    "memory": case_memory,
    "idle-cpu": case_idle_cpu,
    "start": case_start_lateness,
    "waits": case_waits,
    "process-start": case_process_start,
    "terminate": case_termination,
    "stall": case_loop_stall,
    "sched-memory": case_scheduler_memory,
    "total-memory": case_total_memory,
}


def main() -> None:
    case, workload, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(workload, encoding="utf-8") as f:
        work = json.load(f)
    from importlib.metadata import version

    rows = CASES[case](work, *extra)
    versions = {name: version(name) for name in ("rocketry", "croniter", "pydantic")}
    json.dump({"rows": rows, "versions": versions}, sys.stdout)


if __name__ == "__main__":
    main()
