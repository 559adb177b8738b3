"""conddsl side by side with Rocketry 2.5.1 and croniter 7.0.0, reported as ratios.

    python benchmarks/run.py [--smoke] [--only CASE ...] [--repeats N] [--json PATH]

Cases: parse, clock, task-state, cron, memory, cli, and the scheduler runtime:
idle-cpu, start, process-start, terminate, stall, waits, sched-memory, total-memory,
check (see docs/performance.md).

The conddsl side runs in this interpreter. The peer side runs in a side
virtualenv, ``benchmarks/.venv-rocketry`` (Rocketry needs ``pydantic<2``, the
project needs pydantic 2), which this script builds on first use with
``rocketry==2.5.1``, ``pydantic<2`` and ``croniter==7.0.0``; it starts
``benchmarks/peer.py`` there once per case and reads JSON timings from it. The
project never imports Rocketry.

Each measurement is min / median / max over ``--repeats`` samples (default 7);
the ratio is peer time / conddsl time (> 1: conddsl is faster), taken on the
medians and on the minimums. Ratios hold better than absolute times on a noisy
shared machine, as both sides run in the same invocation, case after case.

The runtime cases run each scheduler (conddsl's and Rocketry's) in a fresh
process on the same workload and report latencies as p50 / p99 / max over all
runs of all repeats, CPU as min / median / max of several readings, and memory as
the growth of peak RSS (``sched-memory``) or the whole process's peak RSS
(``total-memory``, one fresh process per size and side); there the ratio is
peer / conddsl too (> 1: conddsl uses less, or is less late). Their repeats are
set per row (``RUNTIME``), not by ``--repeats``.

``--smoke`` runs every case at a tiny size, conddsl side only, in a few seconds
(the peer side is marked "skipped in smoke" and the side virtualenv is not built).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))

import conddsl_side  # noqa: E402
from common import summary  # noqa: E402

RUNTIME_CASES = (
    "idle-cpu",
    "start",
    "process-start",
    "terminate",
    "stall",
    "waits",
    "sched-memory",
    "total-memory",
    "check",
)
CASES = ("parse", "clock", "task-state", "cron", "memory", "cli", *RUNTIME_CASES)
PEER_VENV = HERE / ".venv-rocketry"
PEER_REQUIREMENTS = ("rocketry==2.5.1", "pydantic<2", "croniter==7.0.0", "apscheduler==4.0.0a6")
ROCKETRY = "Rocketry 2.5.1"
CRONITER = "croniter 7.0.0"
APSCHEDULER = "APScheduler 4.0.0a6"

TASK_EXPRS = (
    "daily between 07:00 and 08:00",
    "after task 'a'",
    "every 10 minutes",
    "has succeeded today",
)
CRON_EXPRS = ("*/5 9-17 * * 1-5", "0 0 1 * *", "30 2 * * sun", "0 0 29 2 *")
CLI_COMPILE = "daily between 07:00 and 08:00"

# Sizes: (full, smoke).
SIZES = {
    "parse_exprs": (200, 10),
    "task_records": ((10_000, 1_000_000), (200, 2_000)),
    "task_peer_records": (10_000, 200),
    "task_instants": (48, 4),
    "cron_instants": (500, 10),
    "memory_runs": (1_000_000, 1_000),
    "memory_peer_runs": (10_000, 100),
}


# The runtime workloads: (full, smoke). Latency rows are (tasks, repeats) or
# (kind, tasks, repeats); every run of every repeat is one sample.
RUNTIME = {
    "idle_tasks": ([10, 100, 1_000, 10_000], [10, 100]),
    "idle_warmup": (2.0, 0.3),  # seconds after run() before the first reading
    "idle_samples": (3, 2),
    "idle_seconds": (1.0, 0.2),
    "start": ([[1, 10], [100, 5], [1_000, 3]], [[1, 2], [10, 1]]),
    "process_start": ([[1, 10], [50, 3]], [[3, 1]]),
    "terminate": (
        [
            ["async", 1, 10],
            ["async", 100, 5],
            ["async", 1_000, 3],
            ["thread", 100, 3],
            ["process", 100, 3],
            ["tree", 1, 10],
            ["tree", 100, 3],
            ["stubborn", 1, 5],
            ["stubborn", 100, 2],
        ],
        [
            ["async", 1, 2],
            ["async", 10, 1],
            ["thread", 5, 1],
            ["process", 3, 1],
            ["tree", 2, 1],
            ["stubborn", 2, 1],
        ],
    ),
    "timeout": (0.2, 0.2),
    # Loop stalls: (tasks, repeats) of mixed executions ended by one end condition, and the
    # seconds before it (plus 2 ms a task) for every run to start.
    "stall": ([[100, 3], [1_000, 3]], [[10, 1]]),
    "stall_lead": (2.0, 1.0),
    # Long waits: seconds to a start and timeouts of as many seconds, tasks per wait, and
    # seconds of lead before the first opening. Both sides run at once (30 min in all).
    "waits": ([1, 65, 1800], [0.3]),
    "wait_tasks": (6, 1),
    "wait_lead": (2.0, 0.5),
    "kill_grace": (0.2, 0.2),
    "memory_tasks": (10_000, 100),
    "memory_seconds": (2.0, 0.3),
    # Whole-process peak RSS (interpreter, imports, grammar, tasks): one fresh process a size.
    "total_tasks": ([1_000, 10_000], [100]),
    "check_tasks": ([500, 5_000], [20]),
    "check_repeats": (5, 1),
}

# ---------------------------------------------------------------- workload


def build_workload(smoke: bool, repeats: int) -> dict:
    """The inputs both sides use, as plain JSON data."""
    pick = 1 if smoke else 0
    size = {name: value[pick] for name, value in SIZES.items()}
    fixture = json.loads(
        (ROOT / "tests" / "fixtures" / "rocketry_clock_verdicts.json").read_text(encoding="utf-8")
    )
    exprs: list[str] = []
    for row in fixture:
        if row["expr"] not in exprs:
            exprs.append(row["expr"])
            if len(exprs) == size["parse_exprs"]:
                break
    chosen = set(exprs)
    clock_rows = [row for row in fixture if row["expr"] in chosen]
    rng = random.Random(20240304)
    start = datetime(2023, 1, 1)
    cron_instants = [
        (start + timedelta(seconds=rng.randrange(4 * 365 * 86400))).isoformat()
        for _ in range(size["cron_instants"])
    ]
    return {
        "timing": {"repeats": repeats, "min_time": 0.0 if smoke else 0.05},
        "parse_exprs": exprs,
        "first_value_at": "2024-05-17T12:30:00",  # the first evaluation of the parse rows
        "clock_pairs": [[row["expr"], row["at"]] for row in clock_rows],
        "clock_expected_trues": sum(row["value"] for row in clock_rows),
        "task_exprs": list(TASK_EXPRS),
        "task_records": list(size["task_records"]),
        "task_peer_records": size["task_peer_records"],
        "task_instants": size["task_instants"],
        "cron_exprs": list(CRON_EXPRS),
        "cron_instants": cron_instants,
        "memory_runs": size["memory_runs"],
        "memory_peer_runs": size["memory_peer_runs"],
        "runtime": {name: value[pick] for name, value in RUNTIME.items()},
    }


# ---------------------------------------------------------------- peer side


def peer_python() -> Path:
    """The side virtualenv's interpreter, built (or rebuilt) when it is missing or stale."""
    python = PEER_VENV / "bin" / "python"
    if os.name == "nt":  # pragma: no cover
        python = PEER_VENV / "Scripts" / "python.exe"
    marker = PEER_VENV / "bench-requirements.txt"
    wanted = "\n".join(PEER_REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    needs = ", ".join(PEER_REQUIREMENTS)
    print(f"building {PEER_VENV.relative_to(ROOT)} ({needs})", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        + list(PEER_REQUIREMENTS),
        check=True,
    )
    marker.write_text(wanted)
    return python


def peer_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(TZ="UTC", PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    return env


def run_peer(python: Path, case: str, workload_path: str) -> dict:
    """The peer's rows for one case, or {"error": message}."""
    return _run_side(python, HERE / "peer.py", case, workload_path, "peer")


def prepare_ours() -> None:
    """Put conddsl in the state an installed package is in after its first use, as the
    peer's packages are: its modules' bytecode compiled (pip does it at install; an
    editable install under PYTHONDONTWRITEBYTECODE=1 would compile every module from
    source in each measured process, ~1.5 MiB more peak RSS) and the parser's tables
    cached (conddsl.lalr_tables; the first process of a machine builds them with Lark)."""
    import compileall

    compileall.compile_dir(str(ROOT / "conddsl"), quiet=1)
    subprocess.run(
        [sys.executable, "-c", "from conddsl.parse import parse; parse('daily')"],
        check=True,
        env=peer_env(),
        cwd=str(ROOT),
    )


def run_ours_apart(case: str, workload_path: str, *extra: str) -> dict:
    """conddsl's rows for a runtime case, measured in a fresh process (as the peer's are)."""
    script = HERE / "conddsl_side.py"
    done = _run_side(Path(sys.executable), script, case, workload_path, "conddsl", *extra)
    return done if "error" in done else done["rows"]


def run_total_memory(python: Path | None, workload_path: str, work: dict) -> tuple[dict, dict]:
    """The total-memory rows: each size in a fresh process per side, the sides alternating."""
    ours: dict = {}
    rows: dict = {}
    peer: dict = {"rows": rows}
    for tasks in work["runtime"]["total_tasks"]:
        mine = run_ours_apart("total-memory", workload_path, str(tasks))
        ours.update(mine if "error" not in mine else {f"total {tasks}": mine})
        if python is not None:
            theirs = _run_side(
                python, HERE / "peer.py", "total-memory", workload_path, "peer", str(tasks)
            )
            rows.update(theirs.get("rows", {f"total {tasks}": theirs}))
            peer.setdefault("versions", theirs.get("versions"))
    return ours, ({} if python is None else peer)


def _run_side(
    python: Path, script: Path, case: str, workload_path: str, who: str, *extra: str
) -> dict:
    done = subprocess.run(
        [str(python), str(script), case, workload_path, *extra],
        capture_output=True,
        text=True,
        env=peer_env(),
        cwd=str(ROOT),
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"{who} failed (exit {done.returncode}): {tail}"}
    return json.loads(done.stdout)


# ---------------------------------------------------------------- CLI case


def wall_times(argv: list[str], repeats: int, env: dict | None = None) -> list[float]:
    """Wall times of a whole process, after one untimed run (warm file cache)."""
    subprocess.run(argv, check=True, cwd=str(ROOT), env=env, capture_output=True)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, check=True, cwd=str(ROOT), env=env, capture_output=True)
        samples.append(time.perf_counter() - started)
    return samples


CLI_START = "interpreter start (`python -c pass`)"
CLI_ROWS = (
    (CLI_START, "pass", "pass"),
    ("`python -c 'import conddsl'` vs `import rocketry`", "import conddsl", "import rocketry"),
    (
        f"import + first compile of `{CLI_COMPILE}` (Rocketry: parse_condition)",
        f"import conddsl; conddsl.compile_condition({CLI_COMPILE!r})",
        f"from rocketry.parse import parse_condition; parse_condition({CLI_COMPILE!r})",
    ),
)
NET = ", net of interpreter start"


def _cli_side(python: str, code_of: dict, repeats: int, env: dict) -> dict:
    """Raw wall times per row, and the same less the interpreter's own median start time."""
    out = {}
    start = None
    for label, code in code_of.items():
        samples = wall_times([python, "-c", code], repeats, env)
        out[label] = summary(samples)
        if label == CLI_START:
            start = out[label]["median"]
        else:
            out[label + NET] = summary([sample - start for sample in samples])
    return out


def case_cli(repeats: int, python: Path | None) -> tuple[dict, dict]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    ours = _cli_side(sys.executable, {label: code for label, code, _ in CLI_ROWS}, repeats, env)
    peer = {}
    if python is not None:
        peer = _cli_side(
            str(python), {label: code for label, _, code in CLI_ROWS}, repeats, peer_env()
        )
    return ours, peer


# ---------------------------------------------------------------- check case


def case_check(work: dict) -> dict:
    """Wall time of the whole `python -m conddsl.cli check` command on a generated file."""
    rt = work["runtime"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    probe = subprocess.run(
        [sys.executable, "-m", "conddsl.cli", "check", "--help"],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=env,
    )
    if probe.returncode != 0:
        missing = {"unavailable": "`conddsl check` is not in conddsl/cli.py yet"}
        return {f"check {tasks}": missing for tasks in rt["check_tasks"]}
    import check_bench

    results = {}
    for tasks in rt["check_tasks"]:
        samples, codes = [], set()
        with tempfile.TemporaryDirectory() as folder:
            path = check_bench.write_task_files(Path(folder), tasks)
            argv = [sys.executable, "-m", "conddsl.cli", "check", str(path)]
            for index in range(rt["check_repeats"] + 1):  # the first run warms the file cache
                started = time.perf_counter()
                done = subprocess.run(argv, capture_output=True, cwd=str(ROOT), env=env)
                if index:
                    samples.append(time.perf_counter() - started)
                codes.add(done.returncode)
        results[f"check {tasks}"] = summary(samples, exit_codes=sorted(codes))
    return results


# ---------------------------------------------------------------- the table


class Row:
    def __init__(self, case, what, unit, ours, peer, peer_name, target=None) -> None:
        self.case = case
        self.what = what
        self.unit = unit  # "us", "ms" or "B/run"
        self.ours = ours
        self.peer = peer  # a result dict, or a str saying why there is none
        self.peer_name = peer_name
        self.target = target


def _scale(unit: str) -> float:
    return {"us": 1e6, "ms": 1e3, "B/run": 1.0}[unit]


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(result, unit: str) -> str:
    if isinstance(result, str):
        return result
    if "unavailable" in result:
        return "not yet available"
    if "error" in result:
        return "peer error (see below)"
    if "bytes_per_run" in result:
        return _num(result["bytes_per_run"])
    k = _scale(unit)
    return " / ".join(_num(result[key] * k) for key in ("min", "median", "max"))


def _ratio(ours, peer, key: str) -> float | None:
    if isinstance(ours, str) or isinstance(peer, str):
        return None
    if "bytes_per_run" in ours and "bytes_per_run" in peer:
        return peer["bytes_per_run"] / ours["bytes_per_run"]
    if key in ours and key in peer and ours[key] > 0:
        return peer[key] / ours[key]
    return None


def _ratio_text(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}x" if value < 100 else f"{value:,.0f}x"


def render(rows: list[Row]) -> str:
    head = (
        "| case | what | unit | conddsl min / median / max | peer | peer min / median / max "
        "| ratio (median) | ratio (min) | target |"
    )
    lines = [head, "|" + "---|" * 9]
    for row in rows:
        med = _ratio(row.ours, row.peer, "median")
        low = _ratio(row.ours, row.peer, "min")
        target = ""
        if row.target:
            target = f">= {row.target}x"
            if med is not None:
                target += " met" if med >= row.target else " NOT met"
        unit = {"us": "µs/op", "ms": "ms", "B/run": "bytes/run"}[row.unit]
        lines.append(
            f"| {row.case} | {row.what} | {unit} | {_cell(row.ours, row.unit)} | {row.peer_name} "
            f"| {_cell(row.peer, row.unit)} | {_ratio_text(med)} | {_ratio_text(low)} | {target} |"
        )
    return "\n".join(lines)


def _peer_row(peer_rows, key: str, smoke: bool):
    if smoke:
        return "skipped in smoke"
    if "error" in peer_rows:
        return peer_rows
    return peer_rows.get("rows", {}).get(key, "missing")


def _human(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def rows_for(case: str, ours: dict, peer: dict, work: dict, smoke: bool) -> list[Row]:
    """The table rows of one case, and the checks that both sides agree."""
    p = lambda key: _peer_row(peer, key, smoke)  # noqa: E731
    n_parse = len(work["parse_exprs"])
    if case == "parse":
        return [
            Row(
                "parse",
                f"{n_parse} distinct strings, cold (conddsl: uncached parser)",
                "us",
                ours["parse-cold"],
                p("parse-cold"),
                ROCKETRY,
            ),
            Row(
                "parse",
                f"{n_parse} distinct strings, parse + compile through `compile_condition` "
                "(its caches emptied first; Rocketry: parse_condition)",
                "us",
                ours["parse-compile-cold"],
                p("parse-compile-cold"),
                ROCKETRY,
                target=2,
            ),
            Row(
                "parse",
                f"{n_parse} distinct strings, parse + compile + a first `is_true` "
                "(Rocketry: parse_condition + observe)",
                "us",
                ours["parse-compile-first-value"],
                p("parse-compile-first-value"),
                ROCKETRY,
            ),
            Row(
                "parse",
                f"{n_parse} strings, repeated (conddsl: lru_cache hit; Rocketry has no cache)",
                "us",
                ours["parse-repeated"],
                p("parse-repeated"),
                ROCKETRY,
            ),
        ]
    if case == "clock":
        return [
            Row(
                "clock",
                f"`is_true` vs `observe()`, {len(work['clock_pairs'])} (expr, instant) pairs "
                f"over {n_parse} exprs",
                "us",
                ours["clock"],
                p("clock"),
                ROCKETRY,
                target=100,
            )
        ]
    if case == "task-state":
        out = []
        peer_n = work["task_peer_records"]
        for expr in work["task_exprs"]:
            for n in work["task_records"]:
                what = f"`{expr}`, conddsl {_human(n)} records vs Rocketry {_human(peer_n)}"
                out.append(
                    Row(
                        "task-state",
                        what,
                        "us",
                        ours[f"task-state {expr} @{n}"],
                        p(f"task-state {expr} @{peer_n}"),
                        ROCKETRY,
                    )
                )
        return out
    if case == "cron":
        out = []
        for expr in work["cron_exprs"]:
            for variant in ("reused", "parse+next"):
                what = f"`{expr}` next fire, " + (
                    "reused parsed spec" if variant == "reused" else "parse + next"
                )
                key = f"cron {variant} {expr}"
                out.append(Row("cron", what, "us", ours[key], p(key), CRONITER, target=3))
            key = f"cron next_change {expr}"
            what = f"`cron {expr}`: public `Condition.next_change` vs "
            out.append(
                Row(
                    "cron",
                    what + "a reused croniter",
                    "us",
                    ours[key],
                    p(f"cron reused {expr}"),
                    CRONITER,
                    target=5,
                )
            )
            out.append(
                Row(
                    "cron",
                    what + "a reused CronTrigger's `next()`",
                    "us",
                    ours[key],
                    p(f"cron apscheduler {expr}"),
                    APSCHEDULER,
                    target=3,
                )
            )
        return out
    if case == "memory":
        n, peer_n = _human(work["memory_runs"]), _human(work["memory_peer_runs"])
        return [
            Row(
                "memory",
                f"MemoryHistory {n} runs ({label}) vs Rocketry log {peer_n} runs ({model})",
                "B/run",
                ours[f"memory {label}"],
                p(f"memory {model}"),
                ROCKETRY,
            )
            for label, model in (
                ("no run_id", "LogRecord"),
                ("run_id", "LogRecord"),
                ("no run_id", "MinimalRecord"),
            )
        ]
    if case == "cli":
        labels = [label for label, _, _ in CLI_ROWS]
        labels += [label + NET for label in labels[1:]]
        return [Row("cli", label, "ms", ours[label], p(label), ROCKETRY) for label in labels]
    raise ValueError(case)


def _differences(ours: list, theirs: list, inputs: list) -> list:
    return [(item, a, b) for item, a, b in zip(inputs, ours, theirs, strict=True) if a != b]


def _shown(diffs: list, limit: int = 3) -> str:
    shown = "; ".join(f"{item}: conddsl {a}, peer {b}" for item, a, b in diffs[:limit])
    return shown + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")


def checks(case: str, ours: dict, peer: dict, work: dict) -> list[str]:
    """Lines saying whether both sides gave the same answers (and where not)."""
    lines = []
    peer_rows = peer.get("rows", {})
    if case == "clock" and "answers" in peer_rows.get("clock", {}):
        pairs = [f"`{expr}` @ {at}" for expr, at in work["clock_pairs"]]
        diffs = _differences(ours["clock"]["answers"], peer_rows["clock"]["answers"], pairs)
        line = (
            f"clock: conddsl and Rocketry agree on {len(pairs) - len(diffs)} of {len(pairs)} "
            f"(expr, instant) pairs (true verdicts: conddsl {ours['clock']['trues']}, "
            f"Rocketry {peer_rows['clock']['trues']}, fixture {work['clock_expected_trues']})"
        )
        lines.append(line + (f"; differ at {_shown(diffs)}" if diffs else ""))
    if case == "cron":
        for expr in work["cron_exprs"]:
            lines.extend(_next_change_checks(expr, ours, peer_rows, work))
        for key, result in ours.items():
            if key.startswith("cron next_change"):
                continue
            other = peer_rows.get(key)
            if other and "answers" in other:
                diffs = _differences(result["answers"], other["answers"], work["cron_instants"])
                if diffs or key.startswith("cron reused"):
                    line = f"{key}: {len(diffs)} of {len(result['answers'])} next fire times differ"
                    lines.append(line + (f" ({_shown(diffs)})" if diffs else ""))
    if case == "task-state":
        from common import task_state_instants

        instants = [at.isoformat() for at in task_state_instants(work["task_instants"])]
        for key, result in ours.items():
            if "unavailable" in result:
                continue
            peer_key = key.rsplit("@", 1)[0] + f"@{work['task_peer_records']}"
            other = peer_rows.get(peer_key)
            if other and "answers" in other:
                diffs = _differences(result["answers"], other["answers"], instants)
                line = (
                    f"{key} records: true at {result['trues']} of {len(instants)} instants, "
                    f"Rocketry ({work['task_peer_records']} records) at {other['trues']}"
                )
                lines.append(line + (f"; differ at {_shown(diffs)}" if diffs else ""))
    return lines


def _next_change_checks(expr: str, ours: dict, peer_rows: dict, work: dict) -> list[str]:
    """next_change against each peer's next fire, at the instants outside a matching minute."""
    result = ours.get(f"cron next_change {expr}")
    if result is None:
        return []
    lines = []
    outside = [i for i, inside in enumerate(result["inside"]) if not inside]
    for peer_key, name in (
        (f"cron reused {expr}", CRONITER),
        (f"cron apscheduler {expr}", APSCHEDULER),
    ):
        other = peer_rows.get(peer_key)
        if not other or "answers" not in other:
            continue
        diffs = _differences(
            [result["answers"][i] for i in outside],
            [other["answers"][i] for i in outside],
            [work["cron_instants"][i] for i in outside],
        )
        line = (
            f"cron next_change {expr} vs {name}: {len(diffs)} of {len(outside)} differ "
            f"({len(result['inside']) - len(outside)} instants inside a matching minute, where "
            "the condition changes at the minute's end, left out)"
        )
        lines.append(line + (f" ({_shown(diffs)})" if diffs else ""))
    return lines


# ---------------------------------------------------------------- the runtime table


class RuntimeRow:
    """A runtime row: lower is better on both sides; ``target`` is (key, limit, text)."""

    def __init__(self, case, what, kind, ours, peer, target=None) -> None:
        self.case = case
        self.what = what
        self.kind = kind  # "lateness" (ms), "cpu" (% of a core), "memory" (MiB), "wall" (s)
        self.ours = ours
        self.peer = peer  # a result dict, or a str saying why there is none
        self.target = target


_KEYS = {
    "lateness": ("p50", "p99", "max"),
    "cpu": ("min", "median", "max"),
    "wall": ("min", "median", "max"),
}
_UNITS = {
    "lateness": "ms, p50 / p99 / max",
    "cpu": "% of a core, min / median / max",
    "memory": "MiB (KiB per task)",
    "total": "MiB",
    "wall": "s, min / median / max",
}
_SCALES = {"lateness": 1e3, "cpu": 1.0, "wall": 1.0}


def _runtime_cell(result, kind: str) -> str:
    if isinstance(result, str):
        return result
    if "unavailable" in result:
        return "not yet available"
    if "unsupported" in result:
        return "not supported (see below)"
    if "error" in result:
        return "error (see below)"
    if kind == "memory":
        return f"{_num(result['bytes'] / 2**20)} ({_num(result['per_task'] / 1024)})"
    if kind == "total":
        return _num(result["bytes"] / 2**20)
    scale = _SCALES[kind]
    return " / ".join(_num(result[key] * scale) for key in _KEYS[kind])


def _runtime_ratio(row: RuntimeRow, tail: bool) -> float | None:
    """Peer / conddsl on the central value (p50, median, bytes) or on the tail (p99, max)."""
    ours, peer = row.ours, row.peer
    if not isinstance(ours, dict) or not isinstance(peer, dict):
        return None
    if row.kind in ("memory", "total"):
        key = None if tail else "bytes"
    elif row.kind == "lateness":
        key = "p99" if tail else "p50"
    else:
        key = "max" if tail else "median"
    if key is None or key not in ours or key not in peer or ours[key] <= 0:
        return None
    return peer[key] / ours[key]


def _target_text(row: RuntimeRow) -> str:
    if not row.target:
        return ""
    key, limit, text = row.target
    if not isinstance(row.ours, dict) or key not in row.ours:
        return text
    value = row.ours[key]
    if key == "bytes":  # a share of the peer's
        if not isinstance(row.peer, dict) or not row.peer.get(key):
            return text
        value /= row.peer[key]
    return text + (" met" if value <= limit else " NOT met")


def render_runtime(rows: list[RuntimeRow]) -> str:
    head = (
        "| case | what | unit | conddsl | Rocketry 2.5.1 | ratio (p50 or median) "
        "| ratio (p99 or max) | target |"
    )
    lines = [head, "|" + "---|" * 8]
    for row in rows:
        lines.append(
            f"| {row.case} | {row.what} | {_UNITS[row.kind]} | {_runtime_cell(row.ours, row.kind)} "
            f"| {_runtime_cell(row.peer, row.kind)} | {_ratio_text(_runtime_ratio(row, False))} "
            f"| {_ratio_text(_runtime_ratio(row, True))} | {_target_text(row)} |"
        )
    return "\n".join(lines)


_KIND_TEXT = {
    "async": "async",
    "thread": "thread (the body waits on its flag)",
    "process": "process (dies on SIGTERM)",
    "tree": "process with a child in its group (both die on SIGTERM; Rocketry ends the root only)",
    "stubborn": "process ignoring SIGTERM",
}


def _tasks(n: int) -> str:
    return f"{n:,} task" + ("" if n == 1 else "s")


def _seconds(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 600 else f"{seconds:g} s"


def _repeats(n: int) -> str:
    return f"{n} repeat" + ("" if n == 1 else "s")


def runtime_rows_for(case: str, ours: dict, peer: dict, work: dict, smoke: bool) -> list:
    """The runtime table rows of one case."""
    p = lambda key: _peer_row(peer, key, smoke)  # noqa: E731
    rt = work["runtime"]
    if isinstance(ours.get("error"), str):
        ours = {}  # said in the notes
    mine = lambda key: ours.get(key, "missing")  # noqa: E731
    if case == "idle-cpu":
        return [
            RuntimeRow(
                "idle-cpu",
                f"{_tasks(n)} waiting for closed windows, {rt['idle_samples']} readings of "
                f"{rt['idle_seconds']:g} s (Rocketry: cycle_sleep 0.1)",
                "cpu",
                mine(f"idle {n}"),
                p(f"idle {n}"),
                target=("median", 1.0, "< 1 %") if n == 10_000 else None,
            )
            for n in rt["idle_tasks"]
        ]
    if case == "start":
        rows = []
        for n, repeats in rt["start"]:
            rows.append(
                RuntimeRow(
                    "start",
                    f"{_tasks(n)}, window opens at one instant: first line of body - opening, "
                    f"{_repeats(repeats)}",
                    "lateness",
                    mine(f"start {n}"),
                    p(f"start {n}"),
                    target=("p99", 0.005, "p99 <= 5 ms") if n == 1_000 else None,
                )
            )
            rows.append(
                RuntimeRow(
                    "start",
                    f"{_tasks(n)}, the machine's floor: a bare asyncio program (no scheduler) "
                    "opening gates made ahead at the instant, the same bodies, "
                    f"{_repeats(repeats)}",
                    "lateness",
                    mine(f"floor {n}"),
                    "no peer: no scheduler starts them sooner on this machine",
                )
            )
        return rows
    if case == "terminate":
        out = []
        for kind, n, repeats in rt["terminate"]:
            target = None
            if kind == "async" and n == 1_000:
                target = ("p99", 0.005, "p99 <= 5 ms")
            if kind == "stubborn":
                target = ("p99", 0.05, "p99 <= 50 ms")
            if kind == "tree":
                target = ("p99", 0.02, "p99 <= 20 ms")
            allowed = "timeout"
            limits = f"timeout {rt['timeout']:g} s"
            if kind == "stubborn":
                allowed += " + kill_grace"
                limits += f", kill_grace {rt['kill_grace']:g} s"
            what = (
                f"{_tasks(n)}, {_KIND_TEXT[kind]}, {limits}: terminate record - "
                f"(run record + {allowed}), {_repeats(repeats)}"
            )
            key = f"terminate {kind} {n}"
            out.append(RuntimeRow("terminate", what, "lateness", mine(key), p(key), target))
        return out
    if case == "stall":
        return [
            RuntimeRow(
                "stall",
                f"{_tasks(n)} running at once (half async, 3/10 thread, 1/5 process), "
                "ended together by one end condition: the loop's gaps (a 1 ms heartbeat, less "
                "the time others held the CPU) from the end to the last finishing record, "
                f"{_repeats(repeats)}",
                "lateness",
                mine(f"stall {n}"),
                p(f"stall {n}"),
                target=("p99", 0.01, "p99 <= 10 ms") if n == 1_000 else None,
            )
            for n, repeats in rt["stall"]
        ]
    if case == "process-start":
        return [
            RuntimeRow(
                "process-start",
                f"{_tasks(n)}, process, window opens at one instant: first line of body - "
                f"run record, {_repeats(repeats)}",
                "lateness",
                mine(f"process-start {n}"),
                p(f"process-start {n}"),
                target=("p99", 0.01, "p99 <= 10 ms") if n == 50 else None,
            )
            for n, repeats in rt["process_start"]
        ]
    if case == "waits":
        return [
            RuntimeRow(
                "waits",
                f"{rt['wait_tasks']} async tasks, "
                + (
                    f"window opens {_seconds(w)} ahead: first line of body - opening"
                    if kind == "start"
                    else f"timeout {_seconds(w)}: terminate record - (run record + timeout)"
                ),
                "lateness",
                mine(f"{kind} {w:g}"),
                p(f"{kind} {w:g}"),
                target=("p99", 0.005, "p99 <= 5 ms"),
            )
            for w in rt["waits"]
            for kind in ("start", "timeout")
        ]
    if case == "sched-memory":
        n = rt["memory_tasks"]
        return [
            RuntimeRow(
                "sched-memory",
                f"peak RSS growth: build {n:,} waiting tasks, run {rt['memory_seconds']:g} s",
                "memory",
                mine(f"memory {n}"),
                p(f"memory {n}"),
                target=("per_task", 1024, "<= 1 KiB a task") if n == 10_000 else None,
            )
        ]
    if case == "total-memory":
        limits = {1_000: 0.75, 10_000: 0.5}
        return [
            RuntimeRow(
                "total-memory",
                f"whole process's peak RSS (interpreter, imports, grammar): {n:,} waiting "
                f"tasks, run {rt['memory_seconds']:g} s",
                "total",
                mine(f"total {n}"),
                p(f"total {n}"),
                target=("bytes", limits[n], f"<= {limits[n]:g}x Rocketry's")
                if n in limits
                else None,
            )
            for n in rt["total_tasks"]
        ]
    if case == "check":
        return [
            RuntimeRow(
                "check",
                f"`python -m conddsl.cli check` on a {tasks:,}-task file "
                "(benchmarks/check_bench.py), whole command",
                "wall",
                mine(f"check {tasks}"),
                "no equivalent",
                target=("median", 1.0, "< 1 s"),
            )
            for tasks in rt["check_tasks"]
        ]
    raise ValueError(case)


def runtime_notes(case: str, ours: dict, peer: dict) -> list[str]:
    lines = []
    for who, rows in (("conddsl", ours), ("Rocketry", peer.get("rows", peer))):
        if isinstance(rows.get("error"), str):
            lines.append(f"{case}: {rows['error']}")
            continue
        for key, result in rows.items():
            if not isinstance(result, dict):
                continue
            for field in ("unsupported", "error", "unavailable"):
                if field in result:
                    lines.append(f"{key}: {who}: {result[field]}")
    for key, check in ours.items():
        if key.startswith("check") and isinstance(check, dict) and "exit_codes" in check:
            lines.append(f"{key}: exit codes {check['exit_codes']}")
    return lines


# ---------------------------------------------------------------- main


def machine() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout.strip()
        commit = head + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        commit = "unknown"
    return [
        f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"machine: {os.cpu_count()} CPUs (nproc), {cpu}, {platform.system()} {platform.release()}",
        f"python: {platform.python_version()} ({sys.executable})",
        "load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        f"conddsl: {commit}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, conddsl side only")
    parser.add_argument(
        "--only", action="append", choices=CASES, metavar="CASE", help=f"one of {', '.join(CASES)}"
    )
    parser.add_argument("--repeats", type=int, default=None, help="samples per measurement")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results there")
    args = parser.parse_args(argv)
    smoke = args.smoke
    repeats = args.repeats or (2 if smoke else 7)
    cases = [case for case in CASES if not args.only or case in args.only]

    python = None if smoke else peer_python()
    work = build_workload(smoke, repeats)
    header = machine()
    header.append("command: " + shlex.join(["python", "benchmarks/run.py", *sys.argv[1:]]))
    if python is not None:
        version = subprocess.run(
            [str(python), "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        header.append(
            f"peer: {ROCKETRY}, {CRONITER}, pydantic<2, Python {version} in {PEER_VENV.name}"
        )
    header.append(f"repeats: {repeats}; ratio = peer time / conddsl time (> 1: conddsl faster)")
    for line in header:
        print(line)
    print()

    rows: list[Row] = []
    runtime_rows: list[RuntimeRow] = []
    notes: list[str] = []
    raw: dict = {"header": header, "cases": {}}
    started = time.perf_counter()
    if not smoke:
        prepare_ours()
    with tempfile.TemporaryDirectory() as tmp:
        workload_path = os.path.join(tmp, "workload.json")
        Path(workload_path).write_text(json.dumps(work), encoding="utf-8")
        for case in cases:
            print(f"running {case} ...", file=sys.stderr, flush=True)
            case_started = time.perf_counter()
            if case in RUNTIME_CASES:
                if case == "check":
                    ours, peer = case_check(work), {}
                elif case == "total-memory":
                    ours, peer = run_total_memory(python, workload_path, work)
                elif case == "waits" and python is not None:
                    # Half an hour of waiting each: both sides wait side by side.
                    with concurrent.futures.ThreadPoolExecutor(2) as pool:
                        theirs = pool.submit(run_peer, python, case, workload_path)
                        ours = run_ours_apart(case, workload_path)
                        peer = theirs.result()
                else:
                    ours = run_ours_apart(case, workload_path)
                    peer = {} if python is None else run_peer(python, case, workload_path)
                runtime_rows.extend(runtime_rows_for(case, ours, peer, work, smoke))
                notes.extend(runtime_notes(case, ours, peer))
                raw["cases"][case] = {"conddsl": ours, "peer": peer}
                print(f"  {case}: {time.perf_counter() - case_started:.1f} s", file=sys.stderr)
                continue
            if case == "cli":
                ours, peer_cli = case_cli(1 if smoke else repeats, python)
                peer = {"rows": peer_cli}
            else:
                ours = conddsl_side.CASES[case](work)
                peer = {} if python is None else run_peer(python, case, workload_path)
            rows.extend(rows_for(case, ours, peer, work, smoke))
            notes.extend(checks(case, ours, peer, work))
            if "error" in peer:
                notes.append(f"{case}: {peer['error']}")
            for key, result in ours.items():
                if isinstance(result, dict) and "unavailable" in result:
                    notes.append(f"{key}: conddsl: not yet available ({result['unavailable']})")
            raw["cases"][case] = {"conddsl": ours, "peer": peer}
            print(f"  {case}: {time.perf_counter() - case_started:.1f} s", file=sys.stderr)
    if rows:
        print(render(rows))
        print()
    if runtime_rows:
        print(render_runtime(runtime_rows))
        print()
    if smoke:
        print("peer side: skipped in smoke")
    for line in notes:
        print(f"- {line}")
    print(f"\ncases: {', '.join(cases)}; total {time.perf_counter() - started:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
