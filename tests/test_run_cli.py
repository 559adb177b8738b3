"""``conddsl run``: a real scheduler run from a task file, in a subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from runtime_helpers.cli import run_cli, start_run

from conddsl.history import SQLiteHistory

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

TASKS = textwrap.dedent(
    """
    [scheduler]
    history = "runs.sqlite3"
    # Ends once every task has done what the tests look for, however slow the machine;
    # hello fails when nobody reads the output (test_run_goes_on_when_its_reader_goes_away).
    shut_cond = '''task 'slow' has finished & task 'forever' is running
                 & (task 'chained' has finished | task 'hello' has failed)'''
    instant_shutdown = true
    kill_grace = 0.5

    [tasks.hello]
    command = ["echo", "hello there"]
    start_cond = "every 1 hour"

    [tasks.chained]
    func = "jobs:quick"
    start_cond = "after task 'hello'"

    [tasks.slow]
    func = "jobs:slow"
    start_cond = "every 1 hour"
    timeout = "0.5 seconds"

    [tasks.forever]
    func = "jobs:forever"
    start_cond = "every 1 hour"
    execution = "process"
    """
)
JOBS = textwrap.dedent(
    """
    import time
    from conddsl import TaskTerminationException, TerminationFlag

    def quick():
        pass

    def slow(flag=TerminationFlag()):
        while not flag.is_set():
            time.sleep(0.02)
        raise TaskTerminationException()

    def forever():
        time.sleep(60)
    """
)


def _write(folder: Path) -> Path:
    (folder / "tasks.toml").write_text(TASKS)
    (folder / "jobs.py").write_text(JOBS)
    return folder / "tasks.toml"


def test_run_prints_each_record_and_keeps_the_history(tmp_path):
    task_file = _write(tmp_path)
    result = run_cli(tmp_path, "run", str(task_file))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Traceback" not in result.stdout + result.stderr
    assert any("success    hello" in line for line in lines)
    assert any("success    chained" in line for line in lines)
    assert any("terminate  slow  reason=timeout" in line for line in lines)
    assert any("terminate  forever  reason=shutdown" in line for line in lines)
    with SQLiteHistory(tmp_path / "runs.sqlite3") as history:
        finishes = [r for r in history.records() if r.action != "run"]
        runs = [r for r in history.records() if r.action == "run"]
    assert len(runs) == len(finishes) == 4  # exactly one finishing record per run


def test_run_refuses_a_broken_task_file(tmp_path):
    task_file = tmp_path / "tasks.toml"
    task_file.write_text('[tasks.a]\ncommand = ["true"]\nstart_cond = "time of dya after 10:00"\n')
    result = run_cli(tmp_path, "run", str(task_file))
    assert result.returncode == 1
    assert "tasks.toml:3:" in result.stdout + result.stderr
    assert "nothing was run" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_a_shut_cond_about_its_own_task(tmp_path):
    """`check` reports it (C303), and `run` refuses it before anything runs."""
    task_file = tmp_path / "tasks.toml"
    task_file.write_text(
        '[scheduler]\nshut_cond = "every 1 minute"\n'
        '[tasks.a]\ncommand = ["true"]\nstart_cond = "true"\n'
    )
    result = run_cli(tmp_path, "run", str(task_file))
    assert result.returncode == 1, result.stderr
    assert (
        "cannot start" in result.stderr
        and "is about the runs of the task it belongs to" in result.stderr
    )
    assert "internal error" not in result.stderr and "start" not in result.stdout
    check = run_cli(tmp_path, "check", str(task_file))
    assert check.returncode == 1 and "C303" in check.stdout


def test_async_task_that_blocks_past_its_timeout_says_so(tmp_path):
    """It blocks the loop, so nothing could stop it: recorded as it ended, but not plain."""
    (tmp_path / "jobs.py").write_text("import time\nasync def block():\n    time.sleep(0.6)\n")
    (tmp_path / "tasks.toml").write_text(
        "[scheduler]\nshut_cond = \"task 'a' has finished\"\ninstant_shutdown = true\n"
        '[tasks.a]\nfunc = "jobs:block"\nexecution = "async"\ntimeout = "0.1 seconds"\n'
        'start_cond = "true"\n'
    )
    result = run_cli(tmp_path, "run", str(tmp_path / "tasks.toml"))
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if "success    a" in line]
    # Blocked 0.6 s past a 0.1 s timeout: overran by 0.5 s at least (more on a loaded machine).
    overrun = re.search(r"overran its timeout 0:00:00\.100000 by (\d+\.\d+)", line)
    assert overrun and 0.5 <= float(overrun[1]) < 5, line
    assert "overran its timeout" in result.stderr  # and the log


def test_run_missing_file_is_a_usage_error(tmp_path):
    result = run_cli(tmp_path, "run", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "no such task file" in result.stderr


def test_second_interrupt_forces_the_shutdown(tmp_path):
    (tmp_path / "jobs.py").write_text(JOBS)
    (tmp_path / "tasks.toml").write_text(
        textwrap.dedent(
            """
            [scheduler]
            history = "runs.sqlite3"
            kill_grace = 0.5

            [tasks.forever]
            func = "jobs:forever"
            start_cond = "every 1 hour"
            execution = "process"
            """
        )
    )
    process = start_run(tmp_path)
    try:
        seen = ""
        while "start      forever" not in seen:
            line = process.stdout.readline()
            assert line, process.stderr.read()
            seen += line
        process.send_signal(signal.SIGINT)  # graceful: the task may finish...
        time.sleep(0.3)
        assert process.poll() is None  # ...so the scheduler still waits for it
        process.send_signal(signal.SIGINT)  # forced
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "terminate  forever  reason=forced" in seen + out


def test_run_goes_on_when_its_reader_goes_away(tmp_path):
    """`conddsl run tasks.toml | head -1`: the run ends as planned, every record kept."""
    task_file = _write(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "conddsl.cli", "run", str(task_file)],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.readline()  # the banner, then nobody reads any more
    process.stdout.close()
    try:
        process.wait(30)
    finally:
        process.kill()
    assert process.returncode == 0, process.stderr.read()
    process.stderr.close()
    with SQLiteHistory(tmp_path / "runs.sqlite3") as history:
        records = history.records()
    finishes = {r.run_id: r for r in records if r.action != "run"}
    runs = [r.run_id for r in records if r.action == "run"]
    assert len(finishes) == len(runs) >= 3 and set(runs) == set(finishes)
    # The echo command shares the closed output: it fails, as it would in a shell.
    assert {r.task: r.action for r in finishes.values()}["slow"] == "terminate"


def test_a_second_run_on_the_same_history_is_refused_at_once(tmp_path):
    """One task file, one SQLite history, one scheduler: the second exits 2 naming the first."""
    (tmp_path / "jobs.py").write_text("def quick():\n    pass\n")
    (tmp_path / "tasks.toml").write_text(
        textwrap.dedent(
            """
            [scheduler]
            history = "runs.sqlite3"

            [tasks.quick]
            func = "jobs:quick"
            start_cond = "every 1 hour"
            """
        )
    )
    first = start_run(tmp_path)
    try:
        assert "success    quick" in first.stdout.readline() + first.stdout.readline() + (
            first.stdout.readline()
        )
        started = time.monotonic()
        second = start_run(tmp_path)
        out, err = second.communicate(timeout=30)
        took = time.monotonic() - started
        assert second.returncode == 2, out + err
        assert f"in use by another `conddsl run` (pid {first.pid} on " in err
        assert ", since 20" in err
        assert "start" not in out
        assert took < 10  # at once: it does not wait for the first to end
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
    assert not (tmp_path / "runs.sqlite3.run.lock").exists()  # the first let it go


FORGED = "fake.toml:1:1: E999 forged"


def _forged_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if FORGED in line and "\\n" not in line]


def _in_process(capsys, *argv: str) -> subprocess.CompletedProcess:
    from conddsl.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


def test_a_folder_name_cannot_forge_an_output_line_of_run_or_next(tmp_path: Path, capsys) -> None:
    """A folder named ``d<newline>fake.toml:1:1: E999 forged``: run's header, its
    errors (a missing file, a history refused) and the warnings ``next`` logs (about a
    parser cache there) print the name escaped, on the line it belongs to."""
    folder = tmp_path / f"d\n{FORGED}"
    folder.mkdir()
    (folder / "tasks.toml").write_text(
        '[scheduler]\nshut_cond = "true"\ninstant_shutdown = true\n'
        '[tasks.a]\ncommand = ["true"]\nstart_cond = "every 1 hour"\n'
    )
    (folder / "refused.toml").write_text('[scheduler]\nhistory = "open/h.sqlite3"\n')
    (folder / "open").mkdir()
    os.chmod(folder / "open", 0o777)
    cache = folder / "conddsl"
    cache.mkdir()
    os.chmod(cache, 0o777)  # the parser cache is not used there, and a warning says so
    results = [
        _in_process(capsys, "run", str(folder / "tasks.toml")),
        _in_process(capsys, "run", str(folder / "missing.toml")),
        _in_process(capsys, "run", str(folder / "refused.toml")),
        subprocess.run(
            [sys.executable, "-m", "conddsl.cli", "next", "daily", "-n", "1"],
            env={**ENV, "XDG_CACHE_HOME": str(folder)},
            capture_output=True,
            text=True,
            timeout=60,
        ),
    ]
    for result in results:
        shown = result.stdout + result.stderr
        assert not _forged_lines(shown), shown
        assert f"d\\n{FORGED}" in shown, shown
    assert [result.returncode for result in results] == [0, 2, 1, 0]
    assert "not trusted" in results[3].stderr
