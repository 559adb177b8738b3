"""The task-file keys of issue 19: roles, params, cwd, env, keep, silence_cond_check.

Each is in the schema, checked (C203 for keys that do not go together, C409 for a task
that never starts), and run for real by `conddsl run`.
"""

from __future__ import annotations

import json
import os
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from runtime_helpers.cli import run_cli

from conddsl.cli import main as cli_main
from conddsl.history import SQLiteHistory
from conddsl.rules.taskfile import load_task_file
from conddsl.runtime import scheduler_from_task_file

ROOT = Path(__file__).resolve().parent.parent
NEW_TASK_KEYS = {"on_startup", "permanent", "on_shutdown", "params", "cwd", "env"}
NEW_SCHEDULER_KEYS = {"keep", "silence_cond_check"}


def test_the_schema_knows_every_new_key(capsys):
    assert cli_main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    defs = schema["$defs"]
    task = next(d for d in defs.values() if d.get("title") == "task")
    scheduler = next(d for d in defs.values() if d.get("title") == "scheduler")
    assert set(task["properties"]) >= NEW_TASK_KEYS
    assert set(scheduler["properties"]) >= NEW_SCHEDULER_KEYS
    assert task["properties"]["env"]["additionalProperties"] == {"type": "string"}


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('command = ["x"]\nparams = { a = 1 }', "has params, which are keyword arguments for func"),
        ('func = "m:f"\ncwd = "sub"', "has cwd, which is for command tasks only"),
        ('func = "m:f"\nenv = { A = "1" }', "has env, which is for command tasks only"),
        ('func = "m:f"\non_startup = true\npermanent = true', "has two roles"),
        ('func = "m:f"\npermanent = true\nstart_cond = "daily"', "so it takes no start_cond"),
        ('func = "m:f"\non_shutdown = true\nend_cond = "daily"', "so it takes no end_cond"),
        ('func = "m:f"\npermanent = true\ntimeout = 5', "it is never timed out"),
        ('func = "m:f"\npermanent = true\nexecution = "main"', "in the main execution"),
    ],
)
def test_keys_that_do_not_go_together_are_c203(tmp_path, capsys, monkeypatch, table, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.toml").write_text(f"[tasks.a]\n{table}\n")
    assert cli_main(["check", "t.toml"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("t.toml:1:1: C203 task 'a' "), out
    assert words in out


def test_wrong_values_are_c202(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.toml").write_text(
        '[scheduler]\nkeep = "ninety days"\nsilence_cond_check = "yes"\n\n'
        '[tasks.a]\ncommand = ["x"]\nstart_cond = "daily"\nenv = { A = 1 }\n'
    )
    assert cli_main(["check", "t.toml"]) == 1
    codes = [line.split(" ")[:2] for line in capsys.readouterr().out.splitlines()]
    assert codes == [["t.toml:2:8:", "C202"], ["t.toml:3:22:", "C202"], ["t.toml:8:13:", "C202"]]


def test_role_tasks_need_no_start_cond_and_are_not_c409(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.toml").write_text(
        '[tasks.a]\nfunc = "m:f"\non_startup = true\n\n'
        '[tasks.b]\nfunc = "m:f"\npermanent = true\n\n'
        '[tasks.c]\ncommand = ["x"]\non_shutdown = true\n'
    )
    assert cli_main(["check", "t.toml"]) == 0, capsys.readouterr().out


def test_silence_cond_check_reaches_the_scheduler(tmp_path):
    (tmp_path / "t.toml").write_text(
        '[scheduler]\nsilence_cond_check = true\n\n[tasks.a]\ncommand = ["true"]\n'
        'start_cond = "daily"\n'
    )
    app = scheduler_from_task_file(load_task_file(tmp_path / "t.toml"))
    assert app.config.silence_cond_check is True


TASKS = textwrap.dedent(
    """
    [scheduler]
    history = "runs.sqlite3"
    keep = "90 days"
    shut_cond = "task 'report' has succeeded & task 'listing' has succeeded"
    kill_grace = 1

    [tasks.prepare]
    func = "jobs:prepare"
    on_startup = true

    [tasks.serve]
    func = "jobs:serve"
    permanent = true

    [tasks.goodbye]
    func = "jobs:goodbye"
    on_shutdown = true

    [tasks.report]
    func = "jobs:report"
    execution = "process"
    params = { table = "orders", days = 7, tags = ["a", "b"] }
    start_cond = "after task 'prepare'"

    [tasks.listing]
    command = ["sh", "-c", "pwd > ../listing.txt; echo \\"$GREETING\\" >> ../listing.txt"]
    cwd = "sub"
    env = { GREETING = "hello from env" }
    start_cond = "every 1 hour"
    """
)
JOBS = textwrap.dedent(
    """
    import time
    from pathlib import Path
    from conddsl import TaskTerminationException, TerminationFlag

    HERE = Path(__file__).parent

    def prepare():
        (HERE / "prepared.txt").write_text("yes")
        print("prepared")

    def serve(flag=TerminationFlag()):
        while not flag.is_set():
            time.sleep(0.02)
        raise TaskTerminationException()

    def goodbye():
        (HERE / "goodbye.txt").write_text("bye")

    def report(table, days, tags):
        (HERE / "report.txt").write_text(f"{table} {days} {tags}")
    """
)


def test_a_run_with_every_new_key(tmp_path):
    (tmp_path / "tasks.toml").write_text(TASKS)
    (tmp_path / "jobs.py").write_text(JOBS)
    (tmp_path / "sub").mkdir()
    # Records older than `keep` go while serving, but each task's latest of each kind stays.
    old = datetime.now(timezone.utc) - timedelta(days=200)
    with SQLiteHistory(tmp_path / "runs.sqlite3") as history:
        for days in (0, 10):
            at = old - timedelta(days=days)
            history.record("report", "run", at=at, run_id=f"old{days}")
            history.record("report", "success", at=at + timedelta(seconds=1), run_id=f"old{days}")
        history.record("gone", "run", at=old, run_id="open")  # a run still open: kept
    done = run_cli(tmp_path, "run", "tasks.toml", "--log-format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    # --log-format json: every line is one JSON object, conddsl's own, records, task output
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["logger"] == "conddsl.run" and "running 5 tasks" in events[0]["message"]
    assert events[-1]["message"].startswith("conddsl: stopped by shut_cond")
    output = [(e["task"], e["message"]) for e in events if e["logger"] == "conddsl.output"]
    assert output == [("prepare", "prepared")]
    shutdown = next(e for e in events if e.get("task") == "serve" and e["action"] == "terminate")
    assert (shutdown["level"], shutdown["reason"]) == ("warning", "shutdown")
    assert datetime.fromisoformat(shutdown["time"]).tzinfo is not None
    assert (tmp_path / "prepared.txt").read_text() == "yes"
    assert (tmp_path / "goodbye.txt").read_text() == "bye"
    assert (tmp_path / "report.txt").read_text() == "orders 7 ['a', 'b']"
    assert (tmp_path / "listing.txt").read_text().splitlines() == [
        str((tmp_path / "sub").resolve()),
        "hello from env",
    ]
    with SQLiteHistory(tmp_path / "runs.sqlite3") as history:
        serve = [(r.action, r.reason) for r in history.records("serve")]
        report_runs = {r.run_id for r in history.records("report")}
        gone = [(r.action, r.run_id) for r in history.records("gone")]
        order = [r.task for r in history.records(actions="run") if r.at > old + timedelta(days=1)]
    assert serve == [("run", None), ("terminate", "shutdown")]
    # The first sweep (at the run's first record) deleted what was older than 90 days
    # but the latest of each kind then, old0's; the next sweep is keep/10 later.
    assert "old10" not in report_runs and "old0" in report_runs and len(report_runs) == 2
    # The open run a dead scheduler left is closed as a crash, its start never deleted.
    assert gone == [("run", "open"), ("crash", "open")]
    assert order[0] == "prepare" and order[-1] == "goodbye"


def test_the_examples_use_the_new_keys():
    """The demo (roles, params, cwd, env, keep, silence_cond_check) and the warehouse
    example (cwd, env) build into the scheduler with them."""
    import functools

    demo = load_task_file(ROOT / "examples" / "demo" / "tasks.toml")
    assert demo.scheduler.keep == timedelta(days=30) and demo.scheduler.silence_cond_check
    app = scheduler_from_task_file(demo)
    roles = {name: task.role for name, task in app.tasks.items() if task.role}
    assert roles == {"warm_up": "on_startup", "server": "permanent", "goodbye": "on_shutdown"}
    warm_up = app.tasks["warm_up"].func
    assert isinstance(warm_up, functools.partial)
    assert warm_up.keywords == {"caches": ["rates", "customers"]}
    goodbye = app.tasks["goodbye"]
    assert goodbye.cwd == str((ROOT / "examples" / "demo").resolve())
    assert goodbye.env is not None and goodbye.env["DEMO_GREETING"] == "goodbye"
    assert goodbye.env["PATH"] == os.environ["PATH"]  # added to, not replacing, the env
    warehouse = load_task_file(ROOT / "examples" / "warehouse_maintenance" / "tasks.toml")
    vacuum = scheduler_from_task_file(warehouse).tasks["vacuum"]
    assert vacuum.env is not None and vacuum.env["PYTHONUNBUFFERED"] == "1"
