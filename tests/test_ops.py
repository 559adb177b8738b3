"""``conddsl status``, ``history``, ``next FILE.toml`` and ``timeline``, end to end on the
SQLite history a real ``conddsl run`` wrote (one short run, shared by the tests here)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import textwrap
import threading
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from runtime_helpers.cli import run_cli, start_cli, start_run

from conddsl.cli import main as cli_main
from conddsl.history import MemoryHistory, SQLiteHistory
from conddsl.ops.common import load_setup, runs_of, show_span
from conddsl.ops.journal import follow

TASKS = textwrap.dedent(
    """
    [scheduler]
    history = "runs.sqlite3"
    timezone = "Europe/Helsinki"
    shut_cond = "task 'broken' has failed & task 'slow' has terminated & task 'load' has succeeded"
    instant_shutdown = true
    kill_grace = 0.5

    [tasks.extract]
    func = "jobs:extract"
    start_cond = "every 1 hour"

    [tasks.load]
    func = "jobs:load"
    start_cond = "after task 'extract'"

    [tasks.report]
    func = "jobs:load"
    start_cond = "after task 'broken' & time of day between 06:00 and 07:00"

    [tasks.broken]
    func = "jobs:broken"
    start_cond = "daily"

    [tasks.slow]
    func = "jobs:slow"
    start_cond = "every 1 hour"
    timeout = "0.3 seconds"

    [tasks.manual]
    command = ["echo", "by hand"]

    [tasks.off]
    command = ["echo", "off"]
    start_cond = "every 1 minute"
    disabled = true
    """
)
JOBS = textwrap.dedent(
    """
    import time
    from conddsl import TaskTerminationException, TerminationFlag

    def extract():
        print("extracting")

    def load():
        pass

    def broken():
        raise ValueError("the input file is empty")

    def slow(flag=TerminationFlag()):
        while not flag.is_set():
            time.sleep(0.02)
        raise TaskTerminationException()
    """
)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    """A folder with tasks.toml and the history of one real `conddsl run` of it."""
    folder = tmp_path_factory.mktemp("ops")
    (folder / "tasks.toml").write_text(TASKS)
    (folder / "jobs.py").write_text(JOBS)
    done = run_cli(folder, "run", "tasks.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    (folder / "run.out").write_text(done.stdout)
    return folder


@pytest.fixture
def records(served):
    with SQLiteHistory(served / "runs.sqlite3") as history:
        return history.records()


def _cli(capsys, monkeypatch, folder: Path, *argv: str) -> tuple[int, str, str]:
    monkeypatch.chdir(folder)
    code = cli_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _last(records, task, action="run"):
    return [r for r in records if r.task == task and r.action == action][-1]


# ---------------------------------------------------------------- conddsl run's output


def test_run_prints_dates_with_the_zone_and_prefixes_task_output(served, records):
    lines = (served / "run.out").read_text().splitlines()
    zone = load_setup(str(served / "tasks.toml")).zone
    failed = _last(records, "broken", "fail").at.astimezone(zone)
    stamp = f"{failed:%Y-%m-%d %H:%M:%S}.{failed.microsecond // 1000:03d} {failed.tzname()}"
    assert f"{stamp}  fail       broken  (the input file is empty)" in lines
    assert "extract | extracting" in lines  # what the thread task printed, with its name
    assert "extracting" not in lines


# ---------------------------------------------------------------- status


def test_status_json_says_state_next_start_why_and_last_run(served, records, capsys, monkeypatch):
    at = max(r.at for r in records) + timedelta(seconds=1)
    code, out, _ = _cli(
        capsys, monkeypatch, served, "status", "tasks.toml", "--json", "--at", at.isoformat()
    )
    assert code == 0
    found = json.loads(out)
    assert datetime.fromisoformat(found["at"]) == at
    tasks = {task["task"]: task for task in found["tasks"]}
    assert list(tasks) == ["extract", "load", "report", "broken", "slow", "manual", "off"]

    extract = tasks["extract"]
    started = _last(records, "extract").at
    assert extract["state"] == "waiting"
    # every 1 hour: true once more than an hour has passed since its run started
    hour_later = started + timedelta(hours=1, microseconds=1)
    assert datetime.fromisoformat(extract["next_start"]) == hour_later
    assert extract["last_run"]["outcome"] == "success"
    assert datetime.fromisoformat(extract["last_run"]["started"]) == started

    assert tasks["load"]["next_start"] is None
    assert tasks["load"]["why"] == "after extract succeeds"
    assert tasks["broken"]["last_run"]["outcome"] == "fail"
    assert tasks["slow"]["last_run"]["outcome"] == "terminate"
    assert tasks["slow"]["last_run"]["reason"] == "timeout"
    assert tasks["slow"]["last_run"]["duration_seconds"] >= 0.3
    assert tasks["off"]["state"] == "disabled"
    assert "no start_cond" in tasks["manual"]["why"]
    # report waits on its clock part only: broken has failed, which `after task` does not take
    assert "after broken succeeds" in tasks["report"]["why"]


def test_status_table_has_one_row_a_task_with_times_and_zone(served, records, capsys, monkeypatch):
    at = max(r.at for r in records) + timedelta(seconds=2)
    code, out, _ = _cli(capsys, monkeypatch, served, "status", "tasks.toml", "--at", at.isoformat())
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:8] == [
        "NEXT",
        "LEFT",
        "LAST",
        "PASSED",
        "OUTCOME",
        "DURATION",
        "TASK",
        "STATE",
    ]
    extract = next(line for line in lines if "  extract  " in line)
    setup = load_setup(str(served / "tasks.toml"))
    started = _last(records, "extract").at
    shown = started.astimezone(setup.zone)
    assert f"{shown:%Y-%m-%d %H:%M:%S} {shown.tzname()}" in extract  # EET or EEST
    # LEFT: an hour after the start, less the time since; PASSED: the time since
    assert f"  {show_span(started + timedelta(hours=1, microseconds=1) - at)}  " in extract
    assert f"  {show_span(at - started)} ago  success  " in extract
    off = next(line for line in lines if "  off  " in line)
    assert "disabled" in off
    assert lines[-1].startswith("7 tasks listed at ")


def test_status_of_a_file_never_run_says_so_and_creates_nothing(tmp_path, capsys, monkeypatch):
    (tmp_path / "tasks.toml").write_text(
        '[tasks.a]\ncommand = ["true"]\nstart_cond = "every 1 hour"\n'
    )
    code, out, err = _cli(capsys, monkeypatch, tmp_path, "status", "tasks.toml")
    assert code == 0
    assert "no history yet" in err
    assert "every 1 hour (true from" not in out  # never ran: true now
    assert "its start condition is true" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.toml"]


def test_status_of_a_broken_task_file_shows_the_findings(tmp_path, capsys, monkeypatch):
    (tmp_path / "tasks.toml").write_text(
        '[tasks.a]\ncommand = ["true"]\nstart_cond = "evry 1 hour"\n'
    )
    code, _, err = _cli(capsys, monkeypatch, tmp_path, "status", "tasks.toml")
    assert code == 1
    assert "tasks.toml:3:" in err and "has errors" in err


def test_status_of_a_missing_file_is_a_usage_error(tmp_path, capsys, monkeypatch):
    code, _, err = _cli(capsys, monkeypatch, tmp_path, "status", "nope.toml")
    assert code == 2 and "no such task file" in err


# ---------------------------------------------------------------- history


def test_history_lists_every_record_with_zone_and_tracebacks(served, records, capsys, monkeypatch):
    code, out, _ = _cli(capsys, monkeypatch, served, "history", "tasks.toml")
    assert code == 0
    heads = [line for line in out.splitlines() if not line.startswith("    ")]
    assert len(heads) == len(records)
    for line, record in zip(heads, records, strict=True):
        local = record.at.astimezone(load_setup(str(served / "tasks.toml")).zone)
        stamp = f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local.tzname()}"
        assert line.startswith(stamp)
        assert f"run_id={record.run_id}" in line
    failed = _last(records, "broken", "fail")
    assert failed.traceback and "ValueError: the input file is empty" in failed.traceback
    assert "    ValueError: the input file is empty" in out.splitlines()
    assert "reason=timeout" in out


def test_history_filters_by_task_failure_and_time(served, records, capsys, monkeypatch):
    code, out, _ = _cli(capsys, monkeypatch, served, "history", "tasks.toml", "--failed", "--json")
    assert code == 0
    found = [json.loads(line) for line in out.splitlines()]
    assert sorted((r["task"], r["action"]) for r in found) == [
        ("broken", "fail"),
        ("slow", "terminate"),
    ]
    fail = next(r for r in found if r["action"] == "fail")
    assert fail["traceback"].rstrip().endswith("ValueError: the input file is empty")
    assert datetime.fromisoformat(fail["at"]) == _last(records, "broken", "fail").at

    code, out, _ = _cli(
        capsys, monkeypatch, served, "history", "tasks.toml", "--task", "extract", "--json"
    )
    assert [json.loads(line)["action"] for line in out.splitlines()] == ["run", "success"]

    code, out, err = _cli(
        capsys, monkeypatch, served, "history", "tasks.toml", "--since", "1 second"
    )
    # --since counts back from now: the run ended over a second ago when the fixture is warm
    newest = max(r.at for r in records)
    if datetime.now(timezone.utc) - newest > timedelta(seconds=1.5):
        assert out == "" and "no records" in err

    since = _last(records, "slow", "terminate").at
    code, out, _ = _cli(
        capsys, monkeypatch, served, "history", "tasks.toml", "--since", since.isoformat(), "--json"
    )
    assert all(datetime.fromisoformat(json.loads(line)["at"]) >= since for line in out.splitlines())
    assert out


def test_history_refuses_an_unknown_task_and_a_bad_since(served, capsys, monkeypatch):
    code, _, err = _cli(capsys, monkeypatch, served, "history", "tasks.toml", "--task", "extrakt")
    assert code == 2 and "did you mean 'extract'?" in err
    code, _, err = _cli(
        capsys, monkeypatch, served, "history", "tasks.toml", "--since", "yesterdayish"
    )
    assert code == 2 and "--since 'yesterdayish'" in err


def test_follow_yields_each_new_record_once_including_late_stamped_ones(tmp_path):
    history = SQLiteHistory(tmp_path / "h.sqlite3")
    t0 = datetime(2024, 1, 5, 8, 0, tzinfo=timezone.utc)
    history.record("a", "run", at=t0, run_id="1")
    seen = history.records()
    polls = []

    def writer_sleep(_: float) -> None:
        # Each poll, the "scheduler" writes: a new run, then a finish stamped earlier.
        n = len(polls)
        polls.append(n)
        if n == 0:
            history.record("b", "run", at=t0 + timedelta(seconds=5), run_id="2")
            history.record("a", "success", at=t0 + timedelta(seconds=4), run_id="1")
        elif n == 1:
            history.record("b", "fail", at=t0 + timedelta(seconds=6), run_id="2")

    got = list(follow(history, seen, interval=0, stop=lambda: len(polls) >= 3, sleep=writer_sleep))
    history.close()
    assert [(r.task, r.action) for r in got] == [("a", "success"), ("b", "run"), ("b", "fail")]


def test_follow_keeps_to_since_when_nothing_was_seen(tmp_path):
    history = SQLiteHistory(tmp_path / "h.sqlite3")
    t0 = datetime(2024, 1, 5, 8, 0, tzinfo=timezone.utc)
    history.record("a", "run", at=t0, run_id="1")  # before --since: never shown
    polls = []

    def writer_sleep(_: float) -> None:
        polls.append(1)
        if len(polls) == 1:
            history.record("a", "success", at=t0 + timedelta(seconds=20), run_id="1")

    since = t0 + timedelta(seconds=10)
    stop = lambda: len(polls) >= 2  # noqa: E731
    got = list(follow(history, [], since=since, interval=0, stop=stop, sleep=writer_sleep))
    history.close()
    assert [(r.task, r.action) for r in got] == [("a", "success")]


def test_history_follow_prints_records_as_a_run_writes_them(served, tmp_path):
    """`conddsl history --follow` in a child: a record written meanwhile appears."""
    folder = tmp_path
    (folder / "tasks.toml").write_text(TASKS)
    store = SQLiteHistory(folder / "runs.sqlite3")
    store.record("extract", "run", at=datetime.now(timezone.utc), run_id="r1")
    child = start_cli(folder, "history", "tasks.toml", "--follow", "--json")
    try:
        first = json.loads(child.stdout.readline())
        assert first["run_id"] == "r1"
        store.record("extract", "success", at=datetime.now(timezone.utc), run_id="r1")
        timer = threading.Timer(30, child.kill)
        timer.start()
        second = json.loads(child.stdout.readline())
        timer.cancel()
        assert (second["action"], second["run_id"]) == ("success", "r1")
    finally:
        child.terminate()
        child.wait(10)
        store.close()


def test_history_follow_in_a_child_ends_on_sigint_even_if_the_tests_ignore_it(tmp_path):
    """A test run started as a script's background job (``pytest ... &``) inherits SIGINT
    ignored, and so would its ``conddsl history --follow`` children: Ctrl-C would not stop
    them (a test waited its full 30 s for that). ``start_cli`` starts them as a terminal would."""
    (tmp_path / "tasks.toml").write_text(TASKS)
    store = SQLiteHistory(tmp_path / "runs.sqlite3")
    store.record("extract", "run", at=datetime.now(timezone.utc), run_id="r1")
    store.close()
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = start_cli(tmp_path, "history", "tasks.toml", "--follow", "--json")
    finally:
        signal.signal(signal.SIGINT, before)
    try:
        assert json.loads(child.stdout.readline())["run_id"] == "r1"  # following now
        child.send_signal(signal.SIGINT)
        code = child.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("conddsl history --follow did not end within 10 s of SIGINT")
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    assert code == 130  # the interrupt's exit status


# ---------------------------------------------------------------- next FILE


def test_next_of_a_task_file_lists_each_tasks_starts(served, records, capsys, monkeypatch):
    at = max(r.at for r in records) + timedelta(seconds=1)
    code, out, _ = _cli(
        capsys, monkeypatch, served, "next", "tasks.toml", "--after", at.isoformat()
    )
    assert code == 0
    zone = load_setup(str(served / "tasks.toml")).zone
    expected = (_last(records, "extract").at + timedelta(hours=1)).astimezone(zone)
    lines = out.splitlines()
    assert lines[0] == "extract: every 1 hour"
    assert lines[1].startswith(f"  from {expected:%Y-%m-%d %H:%M:%S} {expected.tzname()}")
    assert "  waits on: after extract succeeds" in lines
    assert "  runs only when asked (conddsl run-task)" in lines
    assert "  disabled in the task file" in lines
    report = lines.index("report: after task 'broken' & time of day between 06:00 and 07:00")
    if at.astimezone(zone).hour == 6:  # the window is open at --after: only the task waits
        assert lines[report + 1] == "  waits on: after broken succeeds"
    else:
        waits = (
            r"  waits on: after broken succeeds; time of day between 06:00 and 07:00 \(true from "
        )
        assert re.fullmatch(waits + r"\d{4}-\d\d-\d\d 06:00:00 EES?T\)", lines[report + 1])


def test_next_of_one_task_and_its_mistakes(served, capsys, monkeypatch):
    code, out, _ = _cli(
        capsys, monkeypatch, served, "next", "tasks.toml", "--task", "slow", "-n", "1"
    )
    assert code == 0 and out.splitlines()[0] == "slow: every 1 hour" and len(out.splitlines()) == 2
    code, _, err = _cli(capsys, monkeypatch, served, "next", "tasks.toml", "--task", "lod")
    assert code == 2 and "did you mean 'load'?" in err
    code, _, err = _cli(capsys, monkeypatch, served, "next", "daily", "--task", "load")
    assert code == 2 and "--task needs a task file" in err
    code, _, err = _cli(capsys, monkeypatch, served, "next", "missing.toml")
    assert code == 2 and "no such task file" in err


# ---------------------------------------------------------------- timeline


def _svg(path: Path):
    return ElementTree.parse(path).getroot()  # well-formed, or this raises


def test_timeline_draws_the_windows_and_the_runs(served, records, capsys, monkeypatch, tmp_path):
    first = min(r.at for r in records)
    start = first - timedelta(hours=2)
    end = first + timedelta(hours=26)
    target = tmp_path / "day.svg"
    code, out, _ = _cli(
        capsys, monkeypatch, served, "timeline", "tasks.toml",
        "--from", start.isoformat(), "--to", end.isoformat(), "-o", str(target),
    )  # fmt: skip
    assert code == 0 and out.startswith(f"conddsl: wrote {target}: 7 tasks")
    root = _svg(target)
    ns = {"s": "http://www.w3.org/2000/svg"}
    groups = {g.get("data-task"): g for g in root.iterfind("s:g[@class='task']", ns)}
    assert list(groups) == ["extract", "load", "report", "broken", "slow", "manual", "off"]

    setup = load_setup(str(served / "tasks.toml"))
    with SQLiteHistory(served / "runs.sqlite3") as history:
        for name, group in groups.items():
            drawn = [
                (
                    datetime.fromisoformat(r.get("data-start")),
                    datetime.fromisoformat(r.get("data-end")),
                )
                for r in group.iterfind("s:rect[@class='window']", ns)
            ]
            cond = setup.model.tasks[name].start_cond
            if cond is None or setup.model.tasks[name].disabled:
                assert drawn == []
                continue
            from conddsl.ops.status import session_at

            now_ish = datetime.now(timezone.utc)
            expected = list(
                setup.condition(cond).windows(
                    start, end, task=name, history=history, session=session_at(now_ish)
                )
            )
            assert drawn == expected, name

    runs = runs_of(records)
    drawn_runs = [
        (g.get("data-task"), r.get("data-outcome"), r.get("data-run-id"),
         datetime.fromisoformat(r.get("data-start")), datetime.fromisoformat(r.get("data-end")))
        for g in groups.values()
        for r in g.iterfind("s:rect[@class='run']", ns)
    ]  # fmt: skip
    expected_runs = [
        (run.task, run.outcome, run.start.run_id, run.start.at, run.finish.at) for run in runs
    ]
    assert sorted(drawn_runs) == sorted(expected_runs)
    assert len(expected_runs) == 4  # extract, load, broken, slow
    # extract ran at `first`: its window opens again an hour after, as drawn
    extract_windows = groups["extract"].findall("s:rect[@class='window']", ns)
    assert datetime.fromisoformat(extract_windows[0].get("data-start")) == start
    tips = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any("broken: fail" in tip and "the input file is empty" in tip for tip in tips)


def test_timeline_refuses_an_empty_range(served, capsys, monkeypatch, tmp_path):
    code, _, err = _cli(
        capsys, monkeypatch, served, "timeline", "tasks.toml",
        "--from", "2024-01-02T00:00", "--to", "2024-01-01T00:00", "-o", str(tmp_path / "x.svg"),
    )  # fmt: skip
    assert code == 2 and "must be before" in err
    assert not (tmp_path / "x.svg").exists()


def test_timeline_escapes_what_it_draws(tmp_path, capsys, monkeypatch):
    (tmp_path / "tasks.toml").write_text(
        '[tasks."<b>&amp"]\ncommand = ["true"]\n'
        'start_cond = "time of day between 08:00 and 09:00"\n'
    )
    code, _, _ = _cli(
        capsys, monkeypatch, tmp_path, "timeline", "tasks.toml",
        "--from", "2024-01-01T00:00", "--to", "2024-01-03T00:00", "-o", "t.svg",
    )  # fmt: skip
    assert code == 0
    root = _svg(tmp_path / "t.svg")
    group = root.find("{http://www.w3.org/2000/svg}g")
    assert group.get("data-task") == "<b>&amp"
    assert len(group.findall("{http://www.w3.org/2000/svg}rect[@class='window']")) == 2


# ---------------------------------------------------------------- run-task, terminate

SERVED = textwrap.dedent(
    """
    [scheduler]
    history = "runs.sqlite3"
    kill_grace = 0.5

    [tasks.manual]
    func = "jobs:wait"

    [tasks.hourly]
    func = "jobs:quick"
    start_cond = "every 1 hour"
    """
)
SERVED_JOBS = textwrap.dedent(
    """
    import time
    from conddsl import TaskTerminationException, TerminationFlag

    def quick():
        pass

    def wait(flag=TerminationFlag()):
        while not flag.is_set():
            time.sleep(0.02)
        raise TaskTerminationException()
    """
)


def _until(check, what: str, seconds: float = 30.0):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"waited {seconds} s for {what}")


def test_run_task_and_terminate_reach_the_serving_scheduler(tmp_path, capsys, monkeypatch):
    import signal

    (tmp_path / "tasks.toml").write_text(SERVED)
    (tmp_path / "jobs.py").write_text(SERVED_JOBS)
    code, _, err = _cli(capsys, monkeypatch, tmp_path, "run-task", "tasks.toml", "manual")
    assert code == 2 and "nothing serves tasks.toml" in err
    assert not (tmp_path / "runs.sqlite3").exists()

    child = start_run(tmp_path)
    try:
        history = tmp_path / "runs.sqlite3"

        def hourly_ran():
            if not history.exists():
                return False
            with SQLiteHistory(history) as store:
                return store.last("hourly", "success")

        _until(hourly_ran, "the scheduler to serve")
        code, out, err = _cli(capsys, monkeypatch, tmp_path, "run-task", "tasks.toml", "manual")
        assert code == 0, err
        assert out.startswith("conddsl: manual: started by the scheduler serving tasks.toml (pid ")

        def manual_open():
            with SQLiteHistory(history) as store:
                return store.running("manual")

        [started] = _until(manual_open, "the manual run")
        assert started.reason == "manual"

        code, _, err = _cli(capsys, monkeypatch, tmp_path, "run-task", "tasks.toml", "manual")
        assert code == 1 and "refused" in err and "is running" in err

        code, out, _ = _cli(capsys, monkeypatch, tmp_path, "status", "tasks.toml", "--json")
        manual = next(t for t in json.loads(out)["tasks"] if t["task"] == "manual")
        assert (manual["state"], manual["last_run"]["outcome"]) == ("running", "running")
        assert manual["why"].startswith("running since ")

        code, out, err = _cli(capsys, monkeypatch, tmp_path, "terminate", "tasks.toml", "manual")
        assert code == 0, err
        assert "asked to terminate" in out

        def manual_ended():
            with SQLiteHistory(history) as store:
                return [r for r in store.records("manual") if r.action == "terminate"]

        [ended] = _until(manual_ended, "the termination")
        assert (ended.reason, ended.run_id) == ("forced", started.run_id)

        code, out, _ = _cli(capsys, monkeypatch, tmp_path, "status", "tasks.toml", "--json")
        manual = next(t for t in json.loads(out)["tasks"] if t["task"] == "manual")
        assert manual["state"] == "waiting"
        assert manual["last_run"]["outcome"] == "terminate"

        # Nothing runs now: the answer says so instead of "asked to terminate".
        code, out, err = _cli(capsys, monkeypatch, tmp_path, "terminate", "tasks.toml", "manual")
        assert (code, out) == (1, "")
        assert "refused: task 'manual' is not running: nothing to terminate" in err

        code, _, err = _cli(capsys, monkeypatch, tmp_path, "terminate", "tasks.toml", "manul")
        assert code == 2 and "did you mean 'manual'?" in err
    finally:
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    assert child.returncode == 0, out + err
    assert "start      manual  reason=manual" in out
    code, _, err = _cli(capsys, monkeypatch, tmp_path, "terminate", "tasks.toml", "manual")
    assert code == 2 and "nothing serves" in err


def test_status_says_terminating_while_an_asked_termination_runs(served, records):
    from conddsl.ops.status import task_statuses

    setup = load_setup(str(served / "tasks.toml"))
    history = MemoryHistory()
    started = datetime(2024, 1, 5, 8, 0, tzinfo=timezone.utc)
    history.record("extract", "run", at=started, run_id="x")
    asked = {"extract": started + timedelta(seconds=1)}
    now = started + timedelta(seconds=2)
    [extract] = [s for s in task_statuses(setup, history, now, terminating=asked)][:1]
    assert extract.state == "terminating"
    earlier = {"extract": started - timedelta(seconds=1)}  # asked of an earlier run
    assert task_statuses(setup, history, now, terminating=earlier)[0].state == "running"


def test_a_request_taken_but_never_answered_is_waited_for_a_bounded_time(monkeypatch):
    """The scheduler took the request (so it cannot be withdrawn) and died before answering:
    the asker gives up after the taker's grace instead of spinning for ever."""
    from conddsl.ops import requests

    class TakenBox:
        withdrawals = 0

        def answer_of(self, request):
            return None  # taken, never answered

        def withdraw(self, request):
            self.withdrawals += 1
            return False  # the scheduler took it meanwhile

    now = [0.0]
    monkeypatch.setattr(requests.time, "monotonic", lambda: now[0])

    def sleep(seconds):
        now[0] += seconds

    box = TakenBox()
    assert requests.wait_for_answer(box, 1, 2.0, sleep=sleep) is None
    assert box.withdrawals == 1
    assert 2.0 + requests.TAKER_GRACE <= now[0] < 2.0 + requests.TAKER_GRACE + 0.2


def test_a_request_answer_escapes_a_task_name_that_holds_control_characters() -> None:
    # Found by hand: `run-task` echoed a task named "we\x1b[2Jird" raw, clearing the screen.
    from conddsl.ops.command import answer_line

    line = answer_line("we\x1b[2Jird\n'q", "run", "the scheduler serving t.toml (pid 1)")
    assert "\x1b" not in line and "\n" not in line
    assert line == "conddsl: we\\x1b[2Jird\\n'q: started by the scheduler serving t.toml (pid 1)"
    assert answer_line("x", "terminate", "node n1 serving t.toml") == (
        "conddsl: x: asked to terminate (reason: forced) by node n1 serving t.toml"
    )
