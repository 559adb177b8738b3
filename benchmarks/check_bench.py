"""Benchmark ``conddsl check`` on a generated task file (a script, not a test).

    python benchmarks/check_bench.py [--tasks 500] [--problems 0] [--repeat 5]

Writes a task file with ``--tasks`` tasks (clock windows, once-per-cycle forms, cron,
``every``, ``after task`` chains, named conditions from a rules file, end conditions
and timeouts; ``--problems`` of them with a mistake each) and reports the time of
``conddsl check`` on it: the imports and the check itself, in a fresh process each time
(cold parse caches), and the whole command (``python -m conddsl.cli check``, interpreter
start included), each as CPU time and wall time. CPU time is what the command costs;
wall time is that plus waiting for a core, which on a shared machine is most of it.
Issue 21's target: the whole command under 1 s for 5,000 tasks.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RULES = """\
# Named conditions used by the generated tasks.
office = time of day between 08:00 and 18:00
weekday = time of week between Mon and Fri
workday =
    office
    & weekday
night = time of day between 22:00 and 04:00
"""

# Start conditions, each with an end condition that makes sense with it (or none).
_FORMS = (
    ("daily after {h:02d}:00", None),
    ("every {m} minutes", "running for more than 1 hour"),
    ("cron {m} {h} * * 1-5", "time of day after {h3:02d}:00"),
    ("hourly & workday", "~workday"),
    ("daily between {h:02d}:00 and {h2:02d}:30 & weekday", "running for more than 2 hours"),
    ("after task '{prev}' succeeded", None),
    ("weekly on Mon & time of day after {h:02d}:00", "time of day after 23:00"),
    ("night & every 2 hours", "office"),
    ("after any tasks '{prev}', '{prev2}' & office", "~office"),
    ("monthly between 1st and 5th & time of day after {h:02d}:00", "time of month after 6th"),
)
# Mistakes the checker must find, planted with --problems.
_PROBLEMS = (
    ("time of day before 08:00 & time of day after 18:00", None),  # C401
    ("daily after 07:00 & weekday", "time of day after 06:00"),  # C403
    ("monthly between 1st and 5th & time of day after 19:00", "~workday"),  # C403, 29 years
    ("after task '{name}'", None),  # C302
    ("daily", "true"),  # C402
)


def task_file_text(tasks: int, problems: int = 0) -> str:
    """A task file of ``tasks`` tasks using ``rules.cond``; the last ``problems`` of them
    hold mistakes (one finding each), the others none."""
    lines = [
        "[scheduler]",
        'timezone = "Europe/Helsinki"',
        'rules = ["rules.cond"]',
        'history = "history.sqlite3"',
        "",
    ]
    for i in range(tasks):
        name = f"task_{i:03d}"
        h = i % 20
        values = {
            "h": h,
            "h2": h + 2,
            "h3": h + 3,
            "m": 10 + i % 40,
            "prev": f"task_{max(i - 1, 0):03d}",
            "prev2": f"task_{max(i - 2, 0):03d}",
            "name": name,
        }
        if i >= tasks - problems:
            start, end = _PROBLEMS[(tasks - 1 - i) % len(_PROBLEMS)]
        else:
            start, end = _FORMS[i % len(_FORMS)]
            if i < 2 and "after" in start:
                start, end = "daily", None
        lines += [f"[tasks.{name}]", f'func = "jobs.batch:run_{i % 7}"']
        lines.append(f'start_cond = "{start.format(**values)}"')
        if end is not None:
            lines.append(f'end_cond = "{end.format(**values)}"')
        if i % 3 == 0 and not start.startswith("every"):
            lines.append('timeout = "30 minutes"')
        lines.append("")
    return "\n".join(lines)


def write_task_files(folder: Path, tasks: int = 500, problems: int = 0) -> Path:
    """Write ``tasks.toml`` and ``rules.cond`` into ``folder``; return the task file."""
    (folder / "rules.cond").write_text(RULES, encoding="utf-8")
    path = folder / "tasks.toml"
    path.write_text(task_file_text(tasks, problems), encoding="utf-8")
    return path


_IN_PROCESS = """
import sys, time, io, contextlib
sys.path.insert(0, {root!r})
started, cpu_started = time.perf_counter(), time.process_time()
from conddsl.cli import main
import conddsl.lint.runner, conddsl.lint.tasks, conddsl.lint.output
imported, cpu_imported = time.perf_counter(), time.process_time()
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = main(["check", {path!r}])
checked, cpu_checked = time.perf_counter(), time.process_time()
print(cpu_imported - cpu_started, cpu_checked - cpu_imported,
      imported - started, checked - imported, code)
"""


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--problems", type=int, default=0, help="tasks with a mistake each")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    names = ("imports", "check (cold parse caches)", "whole command, python -m")
    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    codes = set()
    with tempfile.TemporaryDirectory() as folder:
        path = write_task_files(Path(folder), args.tasks, args.problems)
        for _ in range(args.repeat):
            script = _IN_PROCESS.format(root=str(ROOT), path=str(path))
            out = subprocess.run(
                [sys.executable, "-c", script], capture_output=True, text=True, check=True
            )
            *figures, code = out.stdout.split()
            cpu[names[0]].append(float(figures[0]))
            cpu[names[1]].append(float(figures[1]))
            wall[names[0]].append(float(figures[2]))
            wall[names[1]].append(float(figures[3]))
            codes.add(int(code))
            cpu_before, started = _children_cpu(), time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "conddsl.cli", "check", str(path)],
                cwd=ROOT,
                capture_output=True,
                check=False,
            )
            wall[names[2]].append(time.perf_counter() - started)
            cpu[names[2]].append(_children_cpu() - cpu_before)
    print(
        f"conddsl check, {args.tasks} tasks, {args.problems} with mistakes "
        f"(exit codes {sorted(codes)}), best / median of {args.repeat}, seconds:"
    )
    print(f"  {'':28} {'CPU':>15}   {'wall':>15}")
    for name in names:
        print(
            f"  {name + ':':28} {min(cpu[name]):.3f} / {_median(cpu[name]):.3f}"
            f"   {min(wall[name]):.3f} / {_median(wall[name]):.3f}"
        )


if __name__ == "__main__":
    main()
