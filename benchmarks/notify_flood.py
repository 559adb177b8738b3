"""What a flood of NOTIFYs on the history's channel costs a node (a script, not a test).

    python benchmarks/notify_flood.py [--server postgresql://postgres@127.0.0.1/postgres]
                                      [--rate 10000] [--seconds 5] [--task NAME] [--code DIR]

Anybody who may connect to the database may ``NOTIFY conddsl_records``. On a fresh
database of its own (created on ``--server``, dropped after) a node serves 20 tasks that
read the history (``after task 'up'``) for ``--seconds``, twice: quiet, then while another
process sends ``--rate`` notifications a second, each naming another task (or, with
``--task up``, all naming the task the 20 read). It prints the
node's CPU time (the whole process: event loop, listener and lease threads; the flood
comes from another process) and how many wake-ups the scheduler was given. ``--code``
imports conddsl from another checkout (to compare with an older version).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_FLOODER = textwrap.dedent(
    """
    import sys, time
    import psycopg

    dsn, rate, seconds, task = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    batch = max(1, rate // 100)  # a statement every 10 ms
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < seconds:
            # Distinct payloads (the server drops repeats within a transaction): a task
            # of its own each, or the same task from "senders" of their own.
            conn.execute(
                "SELECT pg_notify('conddsl_records', CASE WHEN %s = '' THEN"
                " 'mallory' || chr(10) || 'x-' || (%s + g)"
                " ELSE 'mallory-' || (%s + g) || chr(10) || %s END)"
                " FROM generate_series(1, %s) AS g",
                (task, sent, sent, task, batch),
            )
            sent += batch
            time.sleep(max(0.0, start + sent / rate - time.monotonic()))
        print(sent, flush=True)
    """
)


def serve(dsn: str, seconds: float, flood: list[str] | None) -> tuple[float, int, int]:
    """Serve a node for ``seconds`` (with the flood command running, if given): its CPU
    seconds, the wake-ups it heard, the notifications sent."""
    from conddsl.history import PostgresHistory
    from conddsl.runtime import Scheduler

    history = PostgresHistory(dsn, node=f"victim-{uuid.uuid4().hex[:6]}")
    app = Scheduler(
        {"history": history, "shut_cond": f"scheduler has run over {seconds + 1} seconds"}
    )
    for n in range(20):
        app.task("after task 'up'", name=f"t{n}", execution="thread")(lambda: None)
    heard = [0]
    original = app._heard_record

    def counted(task: str | None) -> None:
        heard[0] += 1
        original(task)

    app._heard_record = counted  # the scheduler's wake-up from the listener
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    time.sleep(1.0)  # started, listening
    cpu, woken = time.process_time(), heard[0]
    sender = None if flood is None else subprocess.Popen(flood, stdout=subprocess.PIPE, text=True)
    time.sleep(seconds)
    cpu, woken = time.process_time() - cpu, heard[0] - woken
    sent = 0
    if sender is not None:
        out, _ = sender.communicate(timeout=60)
        sent = int(out.strip() or 0)
    thread.join(timeout=60)
    history.close()
    return cpu, woken, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--task", default="", help="the task every notification names")
    parser.add_argument("--code", default=str(ROOT), help="the checkout to import conddsl from")
    args = parser.parse_args()
    sys.path.insert(0, args.code)
    import psycopg
    from psycopg.conninfo import make_conninfo

    import conddsl

    name = f"conddsl_flood_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(args.server, dbname=name)
    try:
        print(f"conddsl from {Path(conddsl.__file__).parent}")
        for label, flood in (
            ("quiet", None),
            (
                f"{args.rate}/s",
                [sys.executable, "-c", _FLOODER, dsn, str(args.rate), str(args.seconds), args.task],
            ),
        ):
            cpu, woken, sent = serve(dsn, args.seconds, flood)
            print(
                f"{label:>9}: node CPU {cpu:.2f} s in {args.seconds:g} s"
                f" ({100 * cpu / args.seconds:.0f}% of a core), {woken} wake-ups,"
                f" {sent} notifications sent"
            )
    finally:
        with psycopg.connect(args.server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
