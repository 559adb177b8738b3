"""The scheduler on a shared PostgreSQL history: its settings, claims, fencing, and
``conddsl run`` as a node (the multi-node runs are in test_postgres_nodes.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from runtime_helpers.cli import run_cli
from runtime_helpers.zones import noon_zone

from conddsl.history import PostgresHistory
from conddsl.history.postgres.leases import take_over_node
from conddsl.rules import load_task_file
from conddsl.runfile import shared_dsn
from conddsl.runtime import Scheduler, TerminationFlag
from conddsl.runtime.config import ConfigError

psycopg = pytest.importorskip("psycopg")
ROOT = Path(__file__).resolve().parent.parent
_FLAG = TerminationFlag()  # a parameter defaulting to a flag receives the run's


def test_a_task_file_names_a_shared_history_its_node_and_lease(tmp_path: Path) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text(
        textwrap.dedent(
            """
            [scheduler]
            history = "postgresql://scheduler@db.internal/conddsl"
            node = "web-1"
            lease = "5 seconds"

            [tasks.nightly]
            command = ["true"]
            start_cond = "daily"
            on_node_lost = "retry"
            """
        ),
        encoding="utf-8",
    )
    model = load_task_file(path)
    assert model.scheduler.node == "web-1"
    assert model.scheduler.lease.total_seconds() == 5
    assert model.tasks["nightly"].on_node_lost == "retry"


def test_on_node_lost_is_fail_or_retry(tmp_path: Path) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text('[tasks.x]\ncommand = ["true"]\non_node_lost = "maybe"\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "conddsl.cli", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "on_node_lost" in done.stdout + done.stderr
    app = Scheduler()
    with pytest.raises(ConfigError, match="on_node_lost must be 'fail'"):
        app.command_task("daily", argv=["true"], name="x", on_node_lost="maybe")


def test_the_environment_names_the_shared_history(monkeypatch) -> None:
    monkeypatch.delenv("CONDDSL_HISTORY", raising=False)
    assert shared_dsn("tasks.history.sqlite3") is None
    assert shared_dsn(None) is None
    assert shared_dsn("postgresql://db/x") == "postgresql://db/x"
    monkeypatch.setenv("CONDDSL_HISTORY", "host=db dbname=x")
    assert shared_dsn("tasks.history.sqlite3") == "host=db dbname=x"  # the environment wins
    monkeypatch.setenv("CONDDSL_HISTORY", "other.sqlite3")
    found = shared_dsn(None)
    assert isinstance(found, ValueError) and "not a PostgreSQL connection string" in str(found)


def test_conddsl_run_says_when_the_database_cannot_be_reached(tmp_path: Path) -> None:
    (tmp_path / "tasks.toml").write_text('[tasks.x]\ncommand = ["true"]\n', encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "CONDDSL_HISTORY": "postgresql://postgres:secret@127.0.0.1:9/none?connect_timeout=1",
    }
    done = run_cli(tmp_path, "run", "tasks.toml", env=env)
    assert done.returncode == 1
    assert "cannot be reached" in done.stderr and "hint:" in done.stderr
    assert "secret" not in done.stderr


def _serve_briefly(app: Scheduler) -> threading.Thread:
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    return thread


def test_a_start_another_node_runs_is_not_made_here(postgres_dsn: str) -> None:
    other = PostgresHistory(postgres_dsn, node="other")
    here = PostgresHistory(postgres_dsn, node="here")
    try:
        # The other node runs the task (an open run): this one must not start it.
        assert other.claim("job", lambda h, now: 1, run_id="theirs") is not None
        app = Scheduler({"history": here, "shut_cond": "scheduler has run over 0.6 seconds"})
        app.task("true", name="job", execution="thread")(lambda: None)
        app.task("true", name="free", execution="thread")(lambda: None)
        thread = _serve_briefly(app)
        thread.join(timeout=30)
        jobs = [r for r in here.records("job", actions="run")]
        assert [r.node for r in jobs] == ["other"]
        free = here.records("free")
        assert free and {r.node for r in free} == {"here"}
        # The claim wrote the run record: one per run, not two.
        runs = [r.run_id for r in free if r.action == "run"]
        assert len(runs) == len(set(runs))
    finally:
        here.close()
        other.close()


@pytest.mark.long
@pytest.mark.smoke
def test_a_node_that_lost_its_lease_ends_its_runs_and_records_nothing_for_them(
    postgres_dsn: str,
) -> None:
    here = PostgresHistory(postgres_dsn, node="here", lease=1)
    heard = []
    app = Scheduler(
        # In a zone near noon: "daily" cannot start the task again past midnight.
        {"history": here, "timezone": noon_zone(), "shut_cond": "scheduler has run over 4 seconds"},
        on_record=lambda recorded: heard.append(recorded.record),
    )

    @app.task("daily", name="long", execution="thread")
    def long(flag=_FLAG) -> None:
        flag.wait(30)

    thread = _serve_briefly(app)
    try:
        for _ in range(200):
            if here.running("long"):
                break
            thread.join(0.05)
        # As if this node had frozen past its lease: another took its run over.
        other = PostgresHistory(postgres_dsn, node="other", lease=1)
        with psycopg.connect(postgres_dsn, autocommit=True) as conn, conn.transaction():
            take_over_node(conn, "here", "other")
        thread.join(timeout=30)
        assert not thread.is_alive()
        rows = other.records("long")
        assert [(r.action, r.node) for r in rows] == [("run", "here"), ("crash", "other")]
        assert rows[1].reason == "node lost"
        assert app.fatal_error is None
        other.close()
    finally:
        here.close()
    assert datetime.now(timezone.utc) > rows[0].at


@pytest.mark.parametrize("planted", ["[" * 100_000, '{"job": ' * 100_000, "not json"])
def test_a_nodes_unreadable_task_digests_are_none_not_a_crash(postgres_dsn: str, planted) -> None:
    # Anybody who may write the nodes' table may put anything in a live node's digests:
    # nested deeply enough, reading them raised RecursionError (not a ValueError) out of
    # publish_tasks, and a node starting beside it died with a traceback.
    import psycopg

    from conddsl.runtime.claims import announce_tasks

    other = PostgresHistory(postgres_dsn, node="other")
    here = PostgresHistory(postgres_dsn, node="here")
    try:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE conddsl_nodes SET tasks_fingerprint = 'theirs', tasks_digests = %s"
                " WHERE node = 'other'",
                (planted,),
            )
        app = Scheduler()
        app.task("daily", name="job", execution="thread")(lambda: None)
        (warning,) = announce_tasks(here, app.tasks.values())
        assert "live node other serves tasks theirs (only here: 'job')" in warning
    finally:
        here.close()
        other.close()


def test_a_node_serving_other_task_definitions_is_pointed_out(postgres_dsn: str, caplog) -> None:
    """Nodes claim a task by their own definition of it: a node that starts beside a live
    node serving other definitions says which tasks differ, and ``status`` shows it."""
    from conddsl.ops.status import live_nodes, node_lines
    from conddsl.runtime.claims import announce_tasks

    one = PostgresHistory(postgres_dsn, node="one")
    two = PostgresHistory(postgres_dsn, node="two")
    same = PostgresHistory(postgres_dsn, node="same")
    reader = PostgresHistory(postgres_dsn, reader=True)
    try:
        first = Scheduler()
        first.task("daily", name="job", execution="thread")(lambda: None)
        first.task("every 1 hour", name="gone", execution="thread")(lambda: None)
        assert announce_tasks(one, first.tasks.values()) == []  # alone: nothing to compare
        assert announce_tasks(same, first.tasks.values()) == []  # the same definitions
        app = Scheduler({"history": two, "shut_cond": "scheduler has run over 0.3 seconds"})
        app.task("every 1 hour", name="job", execution="thread")(lambda: None)
        app.task("false", name="extra", execution="thread")(lambda: None)
        with caplog.at_level("WARNING", logger="conddsl.runtime"):
            thread = _serve_briefly(app)
            thread.join(timeout=30)
        warned = [r.getMessage() for r in caplog.records if "serves tasks" in r.getMessage()]
        assert len(warned) == 2, warned  # one line for each node serving others
        for other in ("one", "same"):
            (line,) = [text for text in warned if f"live node {other} serves" in text]
            assert "defined differently: 'job'; only here: 'extra'; only there: 'gone'" in line
        nodes = {node.node: node for node in live_nodes(reader)}
        assert nodes["one"].tasks == nodes["same"].tasks != nodes["two"].tasks
        assert all(node.tasks_differ for node in nodes.values())
        lines = node_lines(list(nodes.values()), timezone.utc)
        assert any(
            line.startswith("Warning: the live nodes serve different task") for line in lines
        )
    finally:
        for history in (reader, same, two, one):
            history.close()
