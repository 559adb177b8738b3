"""Benchmark the PostgreSQL history (a script, not a test).

    python benchmarks/postgres_bench.py [--server postgresql://postgres@127.0.0.1/postgres]
                                        [--tasks 1000] [--records 4000] [--smoke]

On a fresh database of its own (created on ``--server``, dropped after) it measures:

- claims per second when ``--tasks`` tasks are due at once, with 1 node and with 3 node
  processes racing for every task (each task must be claimed exactly once);
- the takeover time after ``kill -9`` of a node holding a run (lease 1 s and 3 s): from
  the kill to the ``crash`` record written by another node;
- the cost of ``record`` and of the condition queries, beside the SQLite store (ratios).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from history_bench import fill, queries  # noqa: E402

from conddsl.history import PostgresHistory, SQLiteHistory  # noqa: E402

# One node process: claims every task in its own order, prints how many it won.
_CLAIMER = textwrap.dedent(
    """
    import random, sys, time
    from conddsl.history import ClaimBusy, PostgresHistory

    dsn, node, tasks, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    history = PostgresHistory(dsn, node=node)
    names = [f"task-{n:04d}" for n in range(tasks)]
    random.Random(node).shuffle(names)
    time.sleep(max(0.0, start - time.time()))
    began = time.perf_counter()
    won = 0
    for name in names:
        try:  # as a scheduler claims: never waiting for another node's decision
            won += history.claim(name, lambda h, now: 1, wait=False) is not None
        except ClaimBusy:
            pass  # another node is claiming it now: its claim decides

    print(won, time.perf_counter() - began, flush=True)
    history.close()
    """
)

# A node that claims one run and is killed: prints the kill's time (epoch seconds).
_VICTIM = textwrap.dedent(
    """
    import os, signal, sys, time
    from conddsl.history import PostgresHistory

    history = PostgresHistory(sys.argv[1], node=sys.argv[2], lease=float(sys.argv[3]))
    history.claim("victim-task", lambda h, now: 1, run_id=sys.argv[2])
    time.sleep(float(sys.argv[3]) / 2)  # a renewal or so
    print(time.time(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@contextmanager
def database(server: str):
    """A fresh database on ``server``: its DSN, dropped after."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"conddsl_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(server, dbname=name)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('conddsl_records')").fetchone()[0] is not None:
            conn.execute(
                "TRUNCATE conddsl_records, conddsl_open_runs, conddsl_tasks, conddsl_claims,"
                " conddsl_nodes"
            )


def claims(dsn: str, tasks: int, nodes: int) -> dict[str, float]:
    """Every node process claims every task; the wall time until all are done."""
    _empty(dsn)
    PostgresHistory(dsn, node="schema").close()  # the schema exists before the race
    start = time.time() + 3.0  # after every interpreter has started and connected
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, dsn, f"bench-{n}", str(tasks), str(start)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
        )
        for n in range(nodes)
    ]
    results = [proc.communicate(timeout=600)[0].split() for proc in procs]
    won = sum(int(found[0]) for found in results)
    wall = max(float(found[1]) for found in results)
    if won != tasks:
        raise SystemExit(f"{nodes} node(s) claimed {won} of {tasks} tasks: not exactly once")
    return {"claims": won, "seconds": wall, "per_second": won / wall}


def takeover(dsn: str, lease: float) -> float:
    """Seconds from the kill -9 of a node holding a run to its crash record."""
    _empty(dsn)
    victim = f"victim-{uuid.uuid4().hex[:6]}"
    watcher = PostgresHistory(dsn, node="watcher", lease=lease)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _VICTIM, dsn, victim, str(lease)],
            capture_output=True,
            text=True,
            cwd=str(ROOT),
            timeout=120,
        )
        if done.returncode != -signal.SIGKILL:
            raise SystemExit(f"the victim node did not die by SIGKILL: {done.stderr}")
        killed = float(done.stdout.strip())
        while not watcher.records("victim-task", actions="crash"):
            if time.time() - killed > lease * 5 + 5:
                raise SystemExit("no takeover")
            time.sleep(0.005)
        return time.time() - killed
    finally:
        watcher.close()


def costs(dsn: str, records: int, tasks: int, n: int) -> dict[str, dict[str, float]]:
    """Microseconds per record and per query, PostgreSQL beside SQLite."""
    _empty(dsn)
    found: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        stores = {
            "sqlite": SQLiteHistory(os.path.join(folder, "bench.sqlite3")),
            "postgres": PostgresHistory(dsn, node="costs"),
        }
        for name, store in stores.items():
            seconds = fill(store, records, tasks)
            found[name] = {"record": seconds / records * 1e6, **queries(store, records, tasks, n)}
            store.close()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it runs")
    args = parser.parse_args(argv)
    tasks, records, n = (50, 200, 20) if args.smoke else (args.tasks, args.records, 500)
    with database(args.server) as dsn:
        print(f"## PostgreSQL history ({tasks} tasks due at once, {records} records)\n")
        print("| case | figure |\n|---|---|")
        for nodes in (1, 3):
            got = claims(dsn, tasks, nodes)
            print(
                f"| claims, {nodes} node(s) | {got['per_second']:.0f} claims/s"
                f" ({got['claims']} in {got['seconds']:.2f} s, each exactly once) |"
            )
        for lease in (1.0,) if args.smoke else (1.0, 3.0):
            took = takeover(dsn, lease)
            print(f"| takeover after kill -9, lease {lease:g} s | {took:.2f} s |")
        found = costs(dsn, records, max(1, tasks // 5), n)
        print("\n| operation | SQLite µs | PostgreSQL µs | ratio |\n|---|---|---|---|")
        for key in found["sqlite"]:
            ours, theirs = found["postgres"][key], found["sqlite"][key]
            print(f"| {key} | {theirs:.1f} | {ours:.1f} | {ours / theirs:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
