"""PostgresHistory against the real server: claims race to one winner, leases expire and are
taken over, a node that lost its lease is fenced, listeners reconnect, clocks are measured."""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from conddsl.history import (
    ClaimBusy,
    History,
    HistoryError,
    HistoryUnavailable,
    PostgresHistory,
    RunLost,
)
from conddsl.history.postgres.schema import SCHEMA_VERSION
from conddsl.history.postgres.store import describe_dsn, parse_lease

psycopg = pytest.importorskip("psycopg")

HOUR_US = 3_600_000_000


def hourly(task: str):
    """A claim check: the task has not run in the database's current hour (its occurrence)."""

    def check(history: History, now: datetime) -> int | None:
        start = now.replace(minute=0, second=0, microsecond=0)
        if history.last_in(task, "run", start, now + timedelta(microseconds=1)) is not None:
            return None
        return int(start.timestamp() * 1_000_000)

    return check


def wait_for(predicate, timeout: float, what: str) -> float:
    """Poll until predicate() is true; the seconds it took (fails after timeout)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
def nodes(postgres_dsn: str):
    """A factory of PostgresHistory nodes on the test database, closed after the test."""
    opened: list[PostgresHistory] = []

    def make(name: str, *, dsn=None, **kwargs) -> PostgresHistory:
        where = postgres_dsn if dsn is None else dsn(postgres_dsn)
        history = PostgresHistory(where, node=name, **kwargs)
        opened.append(history)
        return history

    yield make
    for history in opened:
        with contextlib.suppress(HistoryError):
            history.close()


def test_racing_claims_have_exactly_one_winner(nodes) -> None:
    histories = [nodes(f"n{i}") for i in range(6)]
    barrier = threading.Barrier(len(histories))
    won: list[str] = []

    def race(history: PostgresHistory) -> None:
        for round_ in range(20):
            barrier.wait()
            found = history.claim(f"task{round_}", hourly(f"task{round_}"))
            if found is not None:
                won.append(found.task)

    threads = [threading.Thread(target=race, args=(h,)) for h in histories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == sorted(f"task{i}" for i in range(20))
    check = histories[0]
    for i in range(20):
        assert len(check.running(f"task{i}")) == 1


def test_the_occurrence_alone_admits_one_run(nodes) -> None:
    """Even a check that would always start (no re-check) cannot start an occurrence twice."""
    a, b = nodes("a"), nodes("b")
    assert a.claim("job", lambda history, now: 7) is not None
    assert b.claim("job", lambda history, now: 7) is None
    assert a.claim("job", lambda history, now: 7) is None
    assert b.claim("job", lambda history, now: 8) is not None
    assert len(a.records("job")) == 2


def test_claims_race_across_processes(postgres_dsn: str) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from conddsl.history import PostgresHistory

        def check(history, now):  # once ever: the first run is the occurrence
            return None if history.last("p", "run") is not None else 1

        history = PostgresHistory(sys.argv[1], node=sys.argv[2])
        time.sleep(max(0.0, float(sys.argv[3]) - time.time()))
        print("won" if history.claim("p", check) else "lost", flush=True)
        history.close()
        """
    )
    go = time.time() + 1.0  # together, once every interpreter is up (or at once if late)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, postgres_dsn, f"proc{i}", str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert sorted(outputs) == ["lost", "lost", "lost", "won"]


def test_the_check_reads_what_the_previous_winner_committed(nodes) -> None:
    a, b = nodes("a"), nodes("b")
    seen: list[int] = []

    def check(history: History, now: datetime) -> int | None:
        seen.append(len(history.running("job")))
        return None if history.running("job") else int(now.timestamp() * 1e6)

    assert a.claim("job", check) is not None
    assert b.claim("job", check) is None
    assert seen == [0, 1]


def test_a_claimed_run_is_finished_by_its_owner_only(nodes) -> None:
    a, b = nodes("a"), nodes("b")
    run = a.claim("job", hourly("job"), run_id="r1")
    assert run is not None and run.node == "a"
    with pytest.raises(RunLost, match="taken over"):
        b.record("job", "success", at=run.at, run_id="r1")
    done = a.record("job", "success", at=run.at + timedelta(seconds=1), run_id="r1")
    assert done.node == "a"
    assert a.running("job") == []
    # Finished: a second finish of the same run is refused too (it is no longer live).
    with pytest.raises(RunLost):
        a.record("job", "fail", at=run.at + timedelta(seconds=2), run_id="r1")


def _expire(dsn: str, node: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE conddsl_nodes SET lease_until = clock_timestamp() - interval '1 second'"
            " WHERE node = %s",
            (node,),
        )


def test_an_expired_node_is_taken_over_and_fenced(nodes, postgres_dsn: str) -> None:
    fenced: list[str] = []
    a = nodes("a", lease=3, on_fenced=fenced.append)
    b = nodes("b", lease=1)
    run = a.claim("job", hourly("job"), run_id="r1", on_lost="fail")
    assert run is not None
    # As if a had been frozen past its lease: b takes its run over within a lease.
    _expire(postgres_dsn, "a")
    wait_for(lambda: b.takeovers, 1.5, "b takes a over")
    (crash,) = b.takeovers[0].crashed
    assert (crash.task, crash.action, crash.run_id, crash.reason) == (
        "job",
        "crash",
        "r1",
        "node lost",
    )
    assert crash.node == "b"
    assert b.running("job") == []
    # a comes back: its finish is refused, it learns it was fenced, and it claims nothing
    # more for that occurrence (fail: the hour's run is over).
    with pytest.raises(RunLost):
        a.record("job", "success", at=run.at, run_id="r1")
    wait_for(lambda: fenced, 3, "a is told it was fenced")
    assert "taken over" in fenced[0]
    assert b.take_retries(["job"]) == []
    assert a.claim("job", hourly("job")) is None
    assert [r.action for r in b.records("job")] == ["run", "crash"]


def test_a_killed_node_is_crashed_within_a_lease_and_retried_once(nodes, postgres_dsn: str) -> None:
    script = textwrap.dedent(
        """
        import os, signal, sys
        from conddsl.history import PostgresHistory

        history = PostgresHistory(sys.argv[1], node="victim", lease=1)
        run = history.claim("job", lambda h, now: 1, run_id="r1", on_lost="retry")
        print("claimed" if run else "lost", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, postgres_dsn], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL and proc.stdout.strip() == "claimed", proc.stderr
    died = time.monotonic()
    b, c = nodes("b", lease=1), nodes("c", lease=1)
    wait_for(lambda: b.takeovers or c.takeovers, 2.5, "the victim is taken over")
    assert time.monotonic() - died <= 1 + 1.5  # within lease + 1 s (plus this test's start)
    assert [r.action for r in b.records("job")] == ["run", "crash"]
    retries = b.take_retries(["job"]) + c.take_retries(["job"])
    assert len(retries) == 1
    assert retries[0].reason == "retry" and "attempt 2" in (retries[0].message or "")
    assert b.take_retries(["job"]) == c.take_retries(["job"]) == []
    assert len(b.running("job")) == 1


def test_a_retried_run_lost_again_is_not_retried_a_third_time(nodes, postgres_dsn) -> None:
    a = nodes("a", lease=1)
    assert a.claim("job", lambda h, now: 1, on_lost="retry") is not None
    a._stop.set()  # its lease thread stops, as in a node frozen for good
    a._heart.join()
    _expire(postgres_dsn, "a")
    b = nodes("b", lease=1)
    wait_for(lambda: b.takeovers, 2, "b takes a over")
    (retry,) = b.take_retries(["job"])
    _expire(postgres_dsn, "b")
    b._stop.set()
    b._heart.join()
    c = nodes("c", lease=1)
    wait_for(lambda: c.takeovers, 2, "c takes b over")
    assert c.take_retries(["job"]) == []
    assert [r.action for r in c.records("job")] == ["run", "crash", "run", "crash"]


def test_a_node_that_cannot_renew_fences_itself_before_the_others_take_over(
    nodes, postgres_dsn
) -> None:
    fenced: list[str] = []
    a = nodes("a", lease=1, on_fenced=fenced.append)
    assert not a.fenced
    a._renewed -= 0.9  # as if the last renewal that reached the server was 0.9 s ago
    assert a.fenced  # past lease minus the margin (0.8 s): no claims
    assert a.claim("job", lambda h, now: 1) is None


def test_listener_hears_other_nodes_and_reconnects_after_terminate(nodes, postgres_dsn) -> None:
    a, b = nodes("a"), nodes("b")
    heard: list[str | None] = []
    listener = a.watch(heard.append, poll=30)
    wait_for(listener.connected.is_set, 5, "the listener connects")
    heard.clear()
    at = datetime.now(timezone.utc)
    b.record("up", "success", at=at)
    took = wait_for(lambda: "up" in heard, 2, "a hears b's record")
    assert took < 1.0
    a.record("own", "success", at=at)  # its own records are not echoed back
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
    wait_for(lambda: listener.reconnects >= 1 and listener.connected.is_set(), 5, "reconnect")
    assert None in heard  # the resynchronisation after the reconnect
    b.record("later", "success", at=at)
    wait_for(lambda: "later" in heard, 2, "a hears b after the reconnect")
    assert "own" not in heard


class _Flood:
    """A listening connection on a simulated clock: ``packets`` are (seconds, payloads)
    the server sends; each ``notifies`` call returns the next packet due, or waits."""

    def __init__(self, packets: list[tuple[float, list[str]]], stop: threading.Event) -> None:
        self.now = 0.0
        self.packets = packets
        self.stop = stop

    def execute(self, sql: str) -> None:
        pass

    def close(self) -> None:
        pass

    def notifies(self, *, timeout: float, stop_after: int):
        from types import SimpleNamespace

        if self.packets and self.packets[0][0] <= self.now + timeout:
            at, payloads = self.packets.pop(0)
            self.now = max(self.now, at)
            yield from (SimpleNamespace(payload=text) for text in payloads)
            return
        self.now += timeout
        if not self.packets:
            self.stop.set()  # the listener stops once the script is played


def _heard_from(packets: list[tuple[float, list[str]]]) -> list[tuple[float, str | None]]:
    """Play ``packets`` to a listener (polling every 10 s); what it passed on, and when."""
    from conddsl.history.postgres.listen import Listener

    stop = threading.Event()
    flood = _Flood(packets, stop)
    heard: list[tuple[float, str | None]] = []
    listener = Listener(
        lambda: flood,
        "me",
        lambda task: heard.append((flood.now, task)),
        poll=10,
        clock=lambda: flood.now,
    )
    listener._stop = stop
    listener._listen(flood)
    return heard


def test_a_notify_flood_is_coalesced_into_a_bounded_number_of_wake_ups() -> None:
    """10,000 NOTIFYs a second for 5 s (anybody who may connect can send them), each its
    own packet: the scheduler is woken a bounded number of times, not 50,000."""
    flood = [(i / 10_000, [f"mallory\ntask-{i % 5000}"]) for i in range(50_000)]
    heard = _heard_from(flood)
    assert len(heard) <= 5 / 1.0 + 10, len(heard)  # about one a MAX_GAP once it is seen
    assert heard[0] == (0.0, "task-0")  # the first is passed on at once
    assert None in {task for _, task in heard}  # too many names: everything is looked at
    # A flood spoofing one real task wakes it, also a bounded number of times.
    heard = _heard_from([(i / 10_000, ["mallory\nup"]) for i in range(50_000)])
    assert {task for _, task in heard} == {"up"} and len(heard) <= 15, len(heard)


def test_notifications_after_a_quiet_spell_are_passed_on_at_once() -> None:
    packets = [(1.0, ["b\nup"]), (1.01, ["b\nup", "b\ndown", "me\nown"]), (3.0, ["b\nlate"])]
    heard = _heard_from(packets)
    # At once; the two that followed within 50 ms, together at its end; later, at once.
    assert heard == [(1.0, "up"), (1.05, "down"), (1.05, "up"), (3.0, "late")]


def test_clock_offset_is_measured_and_reported(nodes, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="conddsl.history")
    fast = nodes("fast", lease=1, clock=lambda: time.time() + 5)
    wait_for(lambda: fast.clock_offset is not None, 3, "the offset is measured")
    assert -5.5 < fast.clock_offset < -4.5
    said = re.search(r"differs from the database's by ([+-][0-9.]+) s", caplog.text)
    assert said is not None and 4.5 < float(said.group(1)) < 5.5, caplog.text
    on_time = nodes("on-time", lease=1)
    wait_for(lambda: on_time.clock_offset is not None, 3, "the offset is measured")
    assert abs(on_time.clock_offset) < 0.5

    # Each renewal stores it beside the lease, for a status view of the nodes.
    def stored() -> float | None:
        return {name: offset for name, _, _, offset in fast.nodes()}["fast"]

    wait_for(lambda: stored() is not None, 3, "the offset is stored")
    assert stored() < -4.5


def test_claims_use_the_database_clock_not_the_node_clock(nodes) -> None:
    fast = nodes("fast", clock=lambda: time.time() + 3600)
    run = fast.claim("job", hourly("job"))
    assert run is not None
    assert abs((run.at - fast.now()).total_seconds()) < 5


def test_a_live_node_name_cannot_be_taken_twice(nodes) -> None:
    nodes("same")
    with pytest.raises(HistoryError, match="node name 'same' is held by a live scheduler"):
        nodes("same")


def test_a_node_restarted_under_its_name_crashes_its_previous_runs(nodes, postgres_dsn) -> None:
    old = nodes("n1", lease=1)
    assert old.claim("job", lambda h, now: 1, run_id="old") is not None
    old._stop.set()
    old._heart.join()  # it stops renewing (as if killed) ...
    _expire(postgres_dsn, "n1")  # ... and its lease passes
    new = nodes("n1", lease=1)
    assert new.running("job") == []
    assert [r.reason for r in new.records("job", actions="crash")] == ["node lost"]


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(HistoryUnavailable) as found:
        PostgresHistory("postgresql://postgres:secret@127.0.0.1:9/none", connect_timeout=1)
    text = str(found.value)
    assert "postgresql://127.0.0.1:9/none" in text and "cannot be reached" in text
    assert "secret" not in text


def test_a_newer_schema_is_refused(nodes, postgres_dsn) -> None:
    nodes("first").close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE conddsl_schema SET version = 99")
    try:
        with pytest.raises(HistoryError, match="schema version 99 is newer"):
            nodes("second")
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("UPDATE conddsl_schema SET version = %s", (SCHEMA_VERSION,))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10 seconds", timedelta(seconds=10)),
        (2.5, timedelta(seconds=2.5)),
        ("1m", timedelta(minutes=1)),
    ],
)
def test_lease_values(value, expected) -> None:
    assert parse_lease(value) == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [(0.5, "at least 1 second"), ("soon", "lease"), (True, "seconds as a number")],
)
def test_bad_lease_values(value, match) -> None:
    with pytest.raises(ValueError, match=match):
        parse_lease(value)


def test_describe_dsn_hides_the_password() -> None:
    assert (
        describe_dsn("postgresql://u:pw@db.example:6543/sched")
        == "postgresql://db.example:6543/sched"
    )
    assert (
        describe_dsn("host=/run/postgresql dbname=x password=pw")
        == "postgresql:///run/postgresql:5432/x"
    )


def test_a_malformed_connection_string_is_reported_without_its_password() -> None:
    # libpq quotes a URI it cannot parse whole in its message, password and all.
    for dsn in ("postgresql://u:S3CRET@[bad/x", "postgresql://u:S3CRET@db/x?nosuch=1"):
        with pytest.raises(HistoryError) as info:
            PostgresHistory(dsn, node="alpha")
        assert "S3CRET" not in str(info.value)
        assert "postgresql (unreadable connection string)" in str(info.value)


def test_pending_records_survive_a_lost_connection(nodes, postgres_dsn) -> None:
    a = nodes("a")
    at = datetime.now(timezone.utc)
    a.record("job", "run", at=at, run_id="1")
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (a._conn.info.backend_pid,))
    # The connection is gone; the next write finds out, reconnects and writes.
    time.sleep(0.1)
    try:
        a.record("job", "success", at=at, run_id="1")
    except HistoryUnavailable:
        a.flush()
    assert [r.action for r in a.records("job")] == ["run", "success"]


@pytest.fixture
def proxy():
    from tests.postgres_helpers.tcpproxy import Proxy

    found = Proxy(("127.0.0.1", 5432))
    yield found
    found.close()


def test_a_short_outage_keeps_records_pending_and_claims_nothing(nodes, proxy) -> None:
    cut_off = nodes("behind", lease=3, dsn=proxy.dsn)
    run = cut_off.claim("job", lambda h, now: 1, run_id="r1")
    assert run is not None
    proxy.cut()
    with pytest.raises(HistoryUnavailable, match="kept pending"):
        cut_off.record("job", "success", at=run.at, run_id="r1")
    with pytest.raises(HistoryUnavailable):
        cut_off.claim("other", lambda h, now: 1)
    proxy.restore()
    # The lease thread writes what was pending once the server answers again.
    wait_for(lambda: not cut_off.pending, 5, "the pending record is written")
    assert [r.action for r in cut_off.records("job")] == ["run", "success"]
    assert not cut_off.fenced
    assert cut_off.claim("other", lambda h, now: 1) is not None


def test_an_outage_longer_than_the_lease_fences_the_node_and_the_others_take_over(
    nodes, proxy
) -> None:
    fenced: list[str] = []
    cut_off = nodes("behind", lease=1, dsn=proxy.dsn, on_fenced=fenced.append)
    other = nodes("other", lease=1)
    assert cut_off.claim("job", lambda h, now: 1, run_id="r1") is not None
    proxy.cut()
    wait_for(lambda: fenced, 3, "the cut-off node fences itself")
    assert "could not be renewed" in fenced[0]
    wait_for(lambda: other.takeovers, 3, "the other node takes over")
    with pytest.raises(HistoryUnavailable):
        cut_off.record("job", "success", at=datetime.now(timezone.utc), run_id="r1")
    proxy.restore()
    # Back: its finish of the taken-over run is dropped (the crash stands), it joins again.
    wait_for(lambda: not cut_off.pending and not cut_off.fenced, 5, "the node is back")
    assert [r.action for r in other.records("job")] == ["run", "crash"]
    assert cut_off.claim("job", lambda h, now: 2) is not None


def test_a_claim_does_not_wait_forever_for_a_frozen_claimant(nodes, postgres_dsn) -> None:
    a = nodes("a", lease=2)
    a.claim("job", lambda h, now: None)  # the task's row exists
    with psycopg.connect(postgres_dsn) as frozen:  # a transaction that never ends
        frozen.execute("SELECT 1 FROM conddsl_tasks WHERE task = 'job' FOR UPDATE")
        started = time.monotonic()
        assert a.claim("job", lambda h, now: 1) is None
        assert time.monotonic() - started < 3
        frozen.rollback()
    assert a.claim("job", lambda h, now: 1) is not None


def test_a_claim_without_waiting_says_another_node_is_claiming(nodes, postgres_dsn) -> None:
    a = nodes("a")
    a.claim("job", lambda h, now: None)  # the task's row exists
    with psycopg.connect(postgres_dsn) as other:  # another node's claim, in progress
        other.execute("SELECT 1 FROM conddsl_tasks WHERE task = 'job' FOR UPDATE")
        started = time.monotonic()
        with pytest.raises(ClaimBusy, match="another node is claiming task 'job'"):
            a.claim("job", lambda h, now: 1, wait=False)
        assert time.monotonic() - started < 0.5
        other.rollback()
    assert a.claim("job", lambda h, now: 1, wait=False) is not None


def test_the_server_ends_a_session_frozen_inside_a_transaction(nodes) -> None:
    a = nodes("a", lease=1)
    conn = a.connect()
    conn.autocommit = False
    conn.execute("SELECT 1")  # a transaction is open, then nothing comes
    time.sleep(1.0)
    with pytest.raises(psycopg.Error, match="idle-in-transaction"):
        conn.execute("SELECT 1")
    conn.close()
