"""The operating commands (status, history, next, timeline, run-task, terminate) on a shared
PostgreSQL history: read without looking like a node, live nodes and their clocks in
``status``, requests served by exactly one live node (issue 19)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from runtime_helpers.cli import run_cli

from conddsl.cli import main as cli_main
from conddsl.history import HistoryError, MemoryHistory, PostgresHistory
from conddsl.history.postgres.schema import SCHEMA_VERSION
from conddsl.ops.common import load_setup, open_history
from conddsl.ops.pg_requests import PgRequestBox, PgRequestPoller
from tests.postgres_helpers.databases import scratch_database
from tests.postgres_helpers.nodes import ROOT, records, start_node, stop, wait_until, write_setup

psycopg = pytest.importorskip("psycopg")

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)

# The scheduler and the hourly task both task files of these tests have.
_HOURLY = """
[scheduler]
timezone = "UTC"
lease = "3 seconds"

[tasks.hourly]
func = "nodetasks:quick"
execution = "thread"
start_cond = "every 1 hour"
"""

TASK_FILE = (
    _HOURLY
    + """
[tasks.manual]
func = "nodetasks:quick"
execution = "thread"
"""
)


@pytest.fixture
def node(postgres_dsn: str):
    """An in-process node named ``alpha`` on the test database, closed after the test."""
    history = PostgresHistory(postgres_dsn, node="alpha", lease="3 seconds")
    yield history
    with contextlib.suppress(HistoryError):
        history.close()


@pytest.fixture
def empty_dsn(postgres_server: str):
    """A database of its own without conddsl's tables, dropped after the test."""
    with scratch_database(postgres_server, "conddsl_empty") as dsn:
        yield dsn


@pytest.fixture
def folder(tmp_path: Path, postgres_dsn: str, monkeypatch) -> Path:
    """A task file whose history is the test database (through CONDDSL_HISTORY)."""
    write_setup(tmp_path, TASK_FILE)
    monkeypatch.setenv("CONDDSL_HISTORY", postgres_dsn)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _node_rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT node, lost_at IS NULL FROM conddsl_nodes").fetchall()


# ------------------------------------------------------------------- reading


def test_a_reader_takes_no_lease_and_writes_nothing(node, postgres_dsn: str) -> None:
    node.record("hourly", "run", at=T0, run_id="r1")
    before = _node_rows(postgres_dsn)
    reader = PostgresHistory(postgres_dsn, reader=True)
    try:
        assert reader.exists
        assert [r.run_id for r in reader.records("hourly")] == ["r1"]
        assert reader.records()[0].node == "alpha"
        assert [name for name, _, _ in reader.live_nodes()] == ["alpha"]
        with pytest.raises(HistoryError, match="read only"):
            reader.record("hourly", "success", at=T0, run_id="r1")
        with pytest.raises(HistoryError, match="read only"):
            reader.claim("hourly", lambda history, now: 1)
    finally:
        reader.close()
    assert _node_rows(postgres_dsn) == before  # not registered, and closing released nothing
    assert [r.action for r in node.records("hourly")] == ["run"]  # its run is still open


def test_open_history_reads_the_shared_store_named_by_the_environment(folder, node) -> None:
    setup = load_setup("tasks.toml")
    assert setup.shared is not None and setup.where.startswith("postgresql://")
    history, exists = open_history(setup)
    try:
        assert exists and isinstance(history, PostgresHistory) and history.reader
    finally:
        history.close()


def test_open_history_with_a_history_setting_that_is_a_url(tmp_path, postgres_dsn, monkeypatch):
    monkeypatch.delenv("CONDDSL_HISTORY", raising=False)
    from psycopg.conninfo import conninfo_to_dict

    url = "postgresql://postgres@127.0.0.1:5432/" + conninfo_to_dict(postgres_dsn)["dbname"]
    (tmp_path / "tasks.toml").write_text(
        f'[scheduler]\nhistory = "{url}"\n\n[tasks.a]\nfunc = "os:getcwd"\n', encoding="utf-8"
    )
    setup = load_setup(str(tmp_path / "tasks.toml"))
    assert setup.shared == url
    history, _ = open_history(setup)
    history.close()
    assert not list(tmp_path.glob("*.sqlite3*"))  # the URL was not taken for a file name


def test_a_bad_connection_string_in_the_environment_is_a_usage_error(folder, monkeypatch, capsys):
    monkeypatch.setenv("CONDDSL_HISTORY", "runs.sqlite3")
    code, _, err = _cli(capsys, "status", "tasks.toml")
    assert code == 2 and "is not a PostgreSQL connection string" in err


def test_status_shows_the_node_of_each_run_and_the_live_nodes(folder, node, capsys) -> None:
    now = node.now()
    node.record("hourly", "run", at=now - timedelta(minutes=5), run_id="r1")
    node.record("hourly", "success", at=now - timedelta(minutes=4), run_id="r1")
    node.record("manual", "run", at=now - timedelta(minutes=1), run_id="m1")
    code, out, _ = _cli(capsys, "status", "tasks.toml")
    assert code == 0
    head, hourly, manual = out.splitlines()[:3]
    assert "NODE" in head.split()
    assert "alpha" in hourly.split() and "success" in hourly.split()
    assert "alpha" in manual.split() and "running" in manual.split()
    assert "1 live node:" in out
    assert "alpha  lease until" in out and "clock " in out
    code, out, _ = _cli(capsys, "status", "tasks.toml", "--json")
    document = json.loads(out)
    assert [task["node"] for task in document["tasks"]] == ["alpha", "alpha"]
    (alpha,) = document["nodes"]
    assert alpha["node"] == "alpha" and alpha["clock_warning"] is False
    assert abs(alpha["clock_offset_seconds"]) < 1.0
    assert _node_rows(node._dsn) == [("alpha", True)]  # status registered no node


def test_status_warns_of_a_node_whose_clock_is_off(folder, node, postgres_dsn, capsys) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:  # as its lease thread writes
        conn.execute("UPDATE conddsl_nodes SET clock_offset = -2.5 WHERE node = 'alpha'")
    code, out, _ = _cli(capsys, "status", "tasks.toml")
    assert code == 0 and "clock +2.500 s (warning: off by more than 1 s)" in out
    code, out, _ = _cli(capsys, "status", "tasks.toml", "--json")
    (alpha,) = json.loads(out)["nodes"]
    assert alpha["clock_offset_seconds"] == 2.5 and alpha["clock_warning"] is True


def test_status_without_a_live_node_says_so(folder, node, capsys) -> None:
    node.record("hourly", "run", at=node.now(), run_id="r1")
    node.close()  # its lease ends: its open run is crashed
    code, out, _ = _cli(capsys, "status", "tasks.toml")
    assert code == 0 and "No live node serves this history" in out
    assert "crash" in out.split("\n")[1].split()


def test_history_next_and_timeline_read_the_shared_store(folder, node, capsys) -> None:
    now = node.now()
    node.record("hourly", "run", at=now - timedelta(minutes=30), run_id="r1")
    node.record("hourly", "fail", at=now - timedelta(minutes=29), run_id="r1", message="boom")
    code, out, _ = _cli(capsys, "history", "tasks.toml", "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(x["action"], x["node"]) for x in lines] == [("run", "alpha"), ("fail", "alpha")]
    code, out, _ = _cli(capsys, "history", "tasks.toml", "--failed")
    assert code == 0 and "node=alpha" in out and "(boom)" in out
    code, out, _ = _cli(capsys, "next", "tasks.toml", "--task", "hourly", "-n", "1")
    start = (now + timedelta(minutes=30)).astimezone(timezone.utc)
    assert code == 0 and f"from {start:%Y-%m-%d %H:%M}" in out  # an hour after its run
    since = (now - timedelta(hours=1)).isoformat()
    code, out, _ = _cli(capsys, "timeline", "tasks.toml", "--from", since, "-o", "t.svg")
    assert code == 0 and "1 runs" in out
    assert "<svg" in (folder / "t.svg").read_text(encoding="utf-8")


def test_history_follow_shows_what_another_node_writes(folder, node, postgres_dsn) -> None:
    """``conddsl history --follow`` reads the shared store as a reader and prints the
    records other nodes write while it runs, each once, with their node."""
    from runtime_helpers.cli import start_cli

    node.record("hourly", "run", at=node.now(), run_id="r1")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(folder)])}
    env["CONDDSL_HISTORY"] = postgres_dsn
    follower = start_cli(folder, "history", "tasks.toml", "--follow", "--json", env=env)
    printed: queue.Queue[str] = queue.Queue()

    def read_all() -> None:  # one reader: a line is waited for only as long as it takes
        for line in follower.stdout:
            printed.put(line)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()

    def stderr_at_end() -> str:
        reader.join(10)  # the follower has ended: its stdout is at its end
        return follower.stderr.read()

    def next_line(what: str) -> dict:
        try:
            return json.loads(printed.get(timeout=30))
        except queue.Empty:
            follower.kill()
            follower.wait()
            pytest.fail(f"the follower printed no {what} within 30 s: {stderr_at_end()!r}")

    try:
        first = next_line("record already there")
        assert (first["action"], first["run_id"]) == ("run", "r1")
        other = PostgresHistory(postgres_dsn, node="beta", lease="3 seconds")
        try:
            other.record("hourly", "success", at=other.now(), run_id="r1")
        finally:
            other.close()
        second = next_line("record of the other node")
    finally:
        if follower.poll() is None:
            follower.send_signal(signal.SIGINT)
            try:
                follower.wait(timeout=10)
            except subprocess.TimeoutExpired:
                follower.kill()
                follower.wait()
                pytest.fail(f"the follower did not end within 10 s of SIGINT: {stderr_at_end()!r}")
    err = stderr_at_end()
    assert follower.returncode == 130, err  # ended by the interrupt, not by an error
    assert [(x["action"], x["run_id"], x["node"]) for x in (first, second)] == [
        ("run", "r1", "alpha"),
        ("success", "r1", "beta"),
    ], err
    assert printed.empty(), f"printed more than the two records: {printed.get()!r}"
    assert sorted(_node_rows(postgres_dsn)) == [("alpha", True), ("beta", False)]  # no lease taken


def test_commands_on_a_database_without_tables_say_nothing_has_run(
    folder, empty_dsn, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("CONDDSL_HISTORY", empty_dsn)
    reader = PostgresHistory(empty_dsn, reader=True)
    assert not reader.exists
    reader.close()
    history, exists = open_history(load_setup("tasks.toml"))
    assert isinstance(history, MemoryHistory) and not exists
    code, out, err = _cli(capsys, "status", "tasks.toml")
    assert code == 0 and "no history yet" in err and "has no conddsl tables" in err
    assert "No live node serves this history" in out
    code, _, err = _cli(capsys, "run-task", "tasks.toml", "manual")
    assert code == 2 and "nothing serves tasks.toml" in err
    with psycopg.connect(empty_dsn, autocommit=True) as conn:  # looking made no tables
        assert conn.execute("SELECT to_regclass('conddsl_records')").fetchone()[0] is None


# ------------------------------------------------------------------- requests


def test_run_task_without_a_live_node_exits_2_at_once(folder, node, capsys) -> None:
    node.close()
    code, _, err = _cli(capsys, "run-task", "tasks.toml", "manual")
    assert code == 2
    assert "nothing serves tasks.toml" in err and "holds a lease" in err
    code, _, err = _cli(capsys, "terminate", "tasks.toml", "manual")
    assert code == 2 and "nothing serves tasks.toml" in err


def test_each_request_is_taken_by_exactly_one_node(node, postgres_dsn: str) -> None:
    applied: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def applier(name: str):
        def apply(op: str, task: str) -> None:
            with lock:
                applied.append((name, op, task))

        return apply

    # Two pollers a node name, each with its connection: six takers at once.
    pollers = [
        PgRequestPoller(node.connect, name, ["hourly"], applier(name))
        for name in ("alpha", "beta", "gamma")
        for _ in range(2)
    ]
    box = PgRequestBox(node.connect)
    try:
        asked = [box.ask("hourly", "run") for _ in range(30)]
        threads = [threading.Thread(target=poller.poll) for poller in pollers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(applied) == 30  # each request applied once, whoever took it
        for request in asked:
            answer, by = box.answer_of(request)
            assert answer.answer == "started" and by in ("alpha", "beta", "gamma")
    finally:
        box.close()
        for poller in pollers:
            poller.stop()


def test_terminate_goes_to_the_node_that_owns_the_run(node, postgres_dsn: str) -> None:
    beta = PostgresHistory(postgres_dsn, node="beta", lease="3 seconds")
    applied: list[str] = []
    try:
        beta.record("hourly", "run", at=beta.now(), run_id="b1")
        alpha_side = PgRequestPoller(
            node.connect, "alpha", ["hourly"], lambda *a: applied.append("a")
        )
        beta_side = PgRequestPoller(
            node.connect, "beta", ["hourly"], lambda *a: applied.append("b")
        )
        box = PgRequestBox(node.connect)
        request = box.ask("hourly", "terminate")
        assert alpha_side.poll() == 0  # not its run
        assert beta_side.poll() == 1
        assert applied == ["b"]
        assert box.answer_of(request)[1] == "beta"
        box.close()
        alpha_side.stop()
        beta_side.stop()
    finally:
        beta.close()


def test_a_refused_request_carries_the_reason_and_a_node_skips_unknown_tasks(node) -> None:
    def refuse(op: str, task: str) -> None:
        raise RuntimeError(f"task {task!r} is running (and not multilaunch)")

    poller = PgRequestPoller(node.connect, "alpha", ["hourly"], refuse)
    box = PgRequestBox(node.connect)
    try:
        other = box.ask("elsewhere", "run")  # a task this node does not have
        mine = box.ask("hourly", "run")
        assert poller.poll() == 1
        assert box.answer_of(mine)[0].answer.startswith("refused: task 'hourly' is running")
        assert box.answer_of(other)[0].answer is None
        answer, by = box.wait(other, 0.1, sleep=lambda _: None)
        assert answer is None and by is None  # withdrawn: no node took it
        assert box.answer_of(other)[0].answer == "withdrawn"
    finally:
        box.close()
        poller.stop()


def test_a_malformed_request_row_is_refused_and_strands_none_beside_it(node) -> None:
    # A row written by hand (not by run-task) with an asked_at no date holds once made
    # every request taken with it stay taken and unanswered.
    applied: list[tuple[str, str]] = []
    poller = PgRequestPoller(node.connect, "alpha", ["hourly"], lambda *a: applied.append(a))
    box = PgRequestBox(node.connect)
    try:
        before = box.ask("hourly", "run")
        with node.connect() as conn:
            bad = conn.execute(
                "INSERT INTO conddsl_requests (task, op, asked_at) VALUES ('hourly', 'run', %s)"
                " RETURNING id",
                (2**63 - 1,),
            ).fetchone()[0]
        after = box.ask("hourly", "run")
        assert poller.poll() == 2
        assert box.answer_of(before)[0].answer == "started"
        assert box.answer_of(after)[0].answer == "started"
        with node.connect() as conn:
            (answer,) = conn.execute(
                "SELECT answer FROM conddsl_requests WHERE id = %s", (bad,)
            ).fetchone()
        assert answer.startswith("refused: malformed request")
        assert applied == [("run", "hourly"), ("run", "hourly")]
    finally:
        box.close()
        poller.stop()


def test_a_version_1_schema_gets_the_requests_table(node, postgres_dsn: str) -> None:
    node.close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE conddsl_requests")
        conn.execute("UPDATE conddsl_schema SET version = 1")
    again = PostgresHistory(postgres_dsn, node="alpha2", lease="3 seconds")
    again.close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM conddsl_schema").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT to_regclass('conddsl_requests')").fetchone()[0] is not None


def test_a_version_2_schema_gets_the_node_task_digests(node, postgres_dsn: str) -> None:
    node.close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for column in ("tasks_fingerprint", "tasks_digests"):
            conn.execute(f"ALTER TABLE conddsl_nodes DROP COLUMN {column}")
        conn.execute("UPDATE conddsl_schema SET version = 2")
    again = PostgresHistory(postgres_dsn, node="alpha2", lease="3 seconds")
    assert again.publish_tasks("f1", {"hourly": "d1"}) == []
    assert again.task_fingerprints() == {"alpha2": "f1"}
    again.close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM conddsl_schema").fetchone()[0] == SCHEMA_VERSION


# ------------------------------------------------------------------- end to end


def _command(folder: Path, dsn: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(folder)])}
    env["CONDDSL_HISTORY"] = dsn
    return run_cli(folder, *argv, env=env)


E2E_FILE = (
    _HOURLY
    + """
[tasks.sleeper]
func = "nodetasks:sleeper"
execution = "process"
"""
)


@pytest.mark.long
@pytest.mark.smoke
def test_every_command_works_through_a_real_node(tmp_path: Path, postgres_dsn: str) -> None:
    write_setup(tmp_path, E2E_FILE)
    node = start_node(tmp_path, postgres_dsn, extra={"NODE_TEST_SLEEP": "60"})
    try:
        wait_until(
            lambda: any(r[:2] == ("hourly", "success") for r in records(postgres_dsn)),
            30,
            "the node runs hourly",
        )
        done = _command(tmp_path, postgres_dsn, "run-task", "tasks.toml", "sleeper", "--wait", "20")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "sleeper: started by node" in done.stdout
        wait_until(
            lambda: any(r[:2] == ("sleeper", "run") for r in records(postgres_dsn)),
            20,
            "the manual run starts",
        )
        (run,) = [r for r in records(postgres_dsn, "sleeper") if r[1] == "run"]
        assert run[4] == "manual"
        # A second run-task while it runs is refused by the node, with its reason.
        again = _command(tmp_path, postgres_dsn, "run-task", "tasks.toml", "sleeper")
        assert again.returncode == 1 and "refused" in again.stderr, again.stderr

        status = _command(tmp_path, postgres_dsn, "status", "tasks.toml", "--json")
        assert status.returncode == 0, status.stderr
        document = json.loads(status.stdout)
        by_task = {task["task"]: task for task in document["tasks"]}
        assert by_task["sleeper"]["state"] == "running"
        assert by_task["sleeper"]["node"] == run[5]
        assert [n["node"] for n in document["nodes"]] == [run[5]]
        history = _command(tmp_path, postgres_dsn, "history", "tasks.toml", "--task", "sleeper")
        assert history.returncode == 0 and "reason=manual" in history.stdout
        upcoming = _command(tmp_path, postgres_dsn, "next", "tasks.toml", "--task", "hourly")
        assert upcoming.returncode == 0 and "every 1 hour" in upcoming.stdout
        drawn = _command(tmp_path, postgres_dsn, "timeline", "tasks.toml", "-o", "t.svg")
        assert drawn.returncode == 0 and (tmp_path / "t.svg").exists(), drawn.stderr

        ended = _command(tmp_path, postgres_dsn, "terminate", "tasks.toml", "sleeper")
        assert ended.returncode == 0, ended.stdout + ended.stderr
        wait_until(
            lambda: any(r[:2] == ("sleeper", "terminate") for r in records(postgres_dsn)),
            20,
            "the run is terminated",
        )
        status = _command(tmp_path, postgres_dsn, "status", "tasks.toml")
        assert "terminate" in status.stdout and "1 live node:" in status.stdout
    finally:
        node.send_signal(signal.SIGINT)
        _, err = stop(node, timeout=30)
    assert node.returncode == 0, err[-3000:]
    gone = _command(tmp_path, postgres_dsn, "run-task", "tasks.toml", "sleeper")
    assert gone.returncode == 2 and "nothing serves tasks.toml" in gone.stderr


def _serve_with_manual_start(history: PostgresHistory, task: str) -> list:
    """A scheduler on ``history`` asked to run ``task`` by hand, served 0.6 s."""
    from conddsl.runtime import Scheduler

    app = Scheduler({"history": history, "shut_cond": "scheduler has run over 0.6 seconds"})
    app.task("false", name=task, execution="thread")(lambda: None)
    app.run_task(task)
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    return history.records(task)


def test_a_manual_start_on_a_shared_history_is_claimed(node, postgres_dsn: str) -> None:
    found = _serve_with_manual_start(node, "manual")
    assert [(r.action, r.reason, r.node) for r in found][:1] == [("run", "manual", "alpha")]
    assert [r.action for r in found] == ["run", "success"]
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        claims = conn.execute("SELECT occurrence, node, state FROM conddsl_claims").fetchall()
    (occurrence, owner, state), *more = claims
    assert not more and owner == "alpha" and state == "done"
    assert occurrence < 0  # a manual start's own occurrence, never a window's start


def test_a_manual_start_is_not_made_while_another_node_runs_the_task(node, postgres_dsn):
    other = PostgresHistory(postgres_dsn, node="other", lease="3 seconds")
    try:
        assert other.claim("manual", lambda h, now: 1, run_id="theirs") is not None
        found = _serve_with_manual_start(node, "manual")
        assert [(r.action, r.node) for r in found] == [("run", "other")]
    finally:
        other.close()


def test_a_run_request_for_a_task_running_on_another_node_is_refused(node, postgres_dsn):
    other = PostgresHistory(postgres_dsn, node="other", lease="3 seconds")
    applied: list[str] = []
    try:
        other.record("hourly", "run", at=other.now(), run_id="theirs")
        poller = PgRequestPoller(
            node.connect,
            "alpha",
            ["hourly"],
            lambda op, task: applied.append(task),
            exclusive=["hourly"],
        )
        box = PgRequestBox(node.connect)
        request = box.ask("hourly", "run")
        assert poller.poll() == 1 and applied == []
        answer = box.answer_of(request)[0].answer
        assert answer == "refused: task 'hourly' is running on node other (and not multilaunch)"
        box.close()
        poller.stop()
    finally:
        other.close()


def test_an_unreachable_database_is_a_clear_error_with_a_hint(folder, monkeypatch, capsys):
    monkeypatch.setenv("CONDDSL_HISTORY", "postgresql://postgres:secret@127.0.0.1:9/none")
    code, _, err = _cli(capsys, "status", "tasks.toml")
    assert code == 2
    assert "tasks.toml" in err and "postgresql://127.0.0.1:9/none" in err
    assert "cannot be reached" in err and "hint: check that the database answers" in err
    assert "secret" not in err


def test_a_notify_wakes_the_serving_node_at_once(node) -> None:
    done = threading.Event()
    # Polling every 60 s: only the NOTIFY can bring the request within the wait below.
    poller = PgRequestPoller(
        node.connect, "alpha", ["hourly"], lambda op, task: done.set(), interval=60
    ).start()
    box = PgRequestBox(node.connect)
    try:
        wait_until(lambda: poller._listen is not None, 10, "the node listens")
        request = box.ask("hourly", "run")
        answer, by = box.wait(request, 10)
        assert answer is not None and answer.answer == "started" and by == "alpha"
        assert done.is_set()
    finally:
        box.close()
        stopping = time.monotonic()
        poller.stop()  # wakes its own wait
    assert time.monotonic() - stopping < 10


def test_status_shows_a_run_asked_to_terminate_as_terminating(folder, node, capsys) -> None:
    node.record("manual", "run", at=node.now() - timedelta(seconds=5), run_id="m1")
    poller = PgRequestPoller(node.connect, "alpha", ["manual"], lambda op, task: None)
    box = PgRequestBox(node.connect)
    try:
        box.ask("manual", "terminate")
        assert poller.poll() == 1  # alpha owns the run: it takes the request
    finally:
        box.close()
        poller.stop()
    code, out, _ = _cli(capsys, "status", "tasks.toml", "--json")
    by_task = {task["task"]: task for task in json.loads(out)["tasks"]}
    assert code == 0 and by_task["manual"]["state"] == "terminating"
