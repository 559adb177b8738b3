"""The operating subcommands of the command line: ``status``, ``history``, ``timeline``,
and ``next FILE.toml`` (``cli.py``'s ``next`` hands a task file over to :func:`run_next`)."""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from pathlib import Path

from conddsl.errors import UsageError, printable
from conddsl.terminal import Escaped

__all__ = ["add_commands", "run_next", "is_task_file"]

EXIT_OK = 0
EXIT_FINDINGS = 1

_STATUS_HELP = """\
One row per task of a task file, like 'systemctl list-timers': when it can next start
(NEXT, LEFT), its last run (LAST, PASSED, OUTCOME, DURATION), its STATE (waiting,
running, terminating, disabled) and WHY it is not started sooner. Read from the task
file and its history; nothing is written."""

_HISTORY_HELP = """\
The records of a task file's history, oldest first: the date with its zone, the action
(start, success, fail, terminate, inaction, crash), the task, the reason, the message
and the run_id; a failure's traceback follows it, indented."""


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``status``, ``history`` and ``timeline`` to the command line's subcommands."""
    status = commands.add_parser(
        "status",
        help="each task's state, next start and why, last run",
        description=_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("task_file", help="a TOML task file")
    status.add_argument("--json", action="store_true", help="one JSON document")
    status.add_argument("--at", help="as of this ISO time (default: now)")
    status.set_defaults(handler=_run_status)

    history = commands.add_parser(
        "history",
        help="the records of a task file's history (--follow to watch)",
        description=_HISTORY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    history.add_argument("task_file", help="a TOML task file")
    history.add_argument("--task", help="only this task's records")
    history.add_argument(
        "--since", help="from this long ago ('2h', '3 days') or this ISO time (default: all)"
    )
    history.add_argument(
        "--failed", action="store_true", help="only runs that failed, were terminated or crashed"
    )
    history.add_argument("--json", action="store_true", help="one JSON object a line")
    history.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new records until Ctrl-C"
    )
    history.set_defaults(handler=_run_history)

    timeline = commands.add_parser(
        "timeline",
        help="draw start windows and past runs as a standalone SVG",
        description="Draw each task's start windows and its runs from the history on a time "
        "axis, as an SVG that opens in any browser.",
    )
    timeline.add_argument("task_file", help="a TOML task file")
    timeline.add_argument(
        "--from", dest="start", help="ISO time (default: one day before --to, or now)"
    )
    timeline.add_argument("--to", dest="end", help="ISO time (default: a day after --from)")
    timeline.add_argument("-o", "--output", required=True, help="the SVG file to write")
    timeline.set_defaults(handler=_run_timeline)

    asks = []
    for op, name, text in (
        ("run", "run-task", "ask the scheduler serving a task file to run a task now"),
        ("terminate", "terminate", "ask the scheduler serving a task file to end a task's runs"),
    ):
        ask = commands.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ", through its history file. Exit "
            "status: 0 done, 1 refused (the scheduler's reason is printed), 2 nothing serves "
            "the file or no answer in time.",
        )
        ask.add_argument("task_file", help="a TOML task file")
        ask.add_argument("task", help="the task's name")
        ask.add_argument(
            "--wait",
            type=float,
            default=10.0,
            help="seconds to wait for the scheduler's answer (default 10)",
        )
        ask.set_defaults(handler=_run_request, op=op)
        asks.append(ask)

    for command in (status, history, timeline, *asks):
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
        )


def is_task_file(argument: str) -> bool:
    """Whether ``conddsl next``'s argument names a task file rather than a condition."""
    return argument.endswith(".toml") and "\n" not in argument


def _setup(file: str):
    from conddsl.ops.common import load_setup, open_history

    setup = load_setup(file)
    history, exists = open_history(setup)
    return setup, history, exists


def _no_history_note(setup, exists: bool) -> str | None:
    if exists:
        return None
    if setup.shared is not None:
        return f"conddsl: no history yet ({setup.where} has no conddsl tables): nothing has run"
    return f"conddsl: no history yet ({setup.history_path} does not exist): nothing has run"


def _run_status(args: argparse.Namespace) -> int:
    from conddsl.ops.common import read_time, utc_now
    from conddsl.ops.requests import accepted_terminations
    from conddsl.ops.status import status_json, status_lines, task_statuses

    setup, history, exists = _setup(args.task_file)
    out = Escaped(sys.stdout)
    nodes = None
    with closing(history):
        if setup.shared is None:
            asked = accepted_terminations(setup.history_path) if exists else {}
        else:
            from conddsl.ops.pg_requests import accepted_terminations as shared_terminations
            from conddsl.ops.status import live_nodes

            asked = shared_terminations(history.connect) if exists else {}
            nodes = live_nodes(history) if exists else []
        now = read_time("--at", args.at, setup.zone, utc_now())
        statuses = task_statuses(setup, history, now, terminating=asked)
    if args.json:
        out.write(status_json(statuses, now, nodes) + "\n")
        return EXIT_OK
    note = _no_history_note(setup, exists)
    if note:
        print(note, file=sys.stderr)
    for line in status_lines(statuses, now, setup.zone, nodes):
        out.write(line + "\n")
    return EXIT_OK


def _run_history(args: argparse.Namespace) -> int:
    from conddsl.ops.common import read_since, utc_now
    from conddsl.ops.journal import follow, select, write_records

    setup, history, exists = _setup(args.task_file)
    if args.task is not None and args.task not in setup.model.tasks:
        known = set(setup.model.tasks)
        if args.task not in history.tasks():  # a task removed from the file keeps its records
            history.close()
            raise UsageError(_unknown_task(setup, args.task, known))
    out = sys.stdout
    with closing(history):
        since = read_since(args.since, utc_now(), setup.zone) if args.since else None
        found = select(history, task=args.task, since=since, failed=args.failed)
        write_records(found, out, setup.zone, args.json)
        if not args.follow:
            if not found and not args.json:
                note = _no_history_note(setup, exists) or "conddsl: no records"
                print(note, file=sys.stderr)
            return EXIT_OK
        if not exists:
            raise UsageError(
                f"{setup.where} holds no history yet: start `conddsl run {args.task_file}`"
                " first, then follow its history"
            )
        for record in follow(history, found, task=args.task, failed=args.failed, since=since):
            write_records([record], out, setup.zone, args.json)
    return EXIT_OK


def _run_timeline(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from conddsl.ops.common import read_time, utc_now
    from conddsl.ops.timeline import timeline_rows, timeline_svg

    setup, history, _ = _setup(args.task_file)
    now = utc_now()
    with closing(history):
        if args.start is None and args.end is not None:
            end = read_time("--to", args.end, setup.zone, now)
            start = end - timedelta(days=1)
        else:
            start = read_time("--from", args.start, setup.zone, now)
            end = read_time("--to", args.end, setup.zone, start + timedelta(days=1))
        rows = timeline_rows(setup, history, start, end, now)
    svg = timeline_svg(rows, start, end, now, setup)
    target = Path(args.output)
    try:
        target.write_text(svg, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{args.output}: cannot be written ({error.strerror or error})") from None
    runs = sum(len(row.runs) for row in rows)
    windows = sum(len(row.windows) for row in rows)
    print(f"conddsl: wrote {args.output}: {len(rows)} tasks, {windows} start windows, {runs} runs")
    return EXIT_OK


def _run_request(args: argparse.Namespace) -> int:
    import time

    from conddsl.ops.common import load_setup
    from conddsl.ops.requests import STALE_AFTER, RequestBox, served_by, wait_for_answer

    setup = load_setup(args.task_file)
    if args.task not in setup.model.tasks:
        raise UsageError(_unknown_task(setup, args.task, set(setup.model.tasks)))
    if not 0 < args.wait < STALE_AFTER:
        raise UsageError(f"--wait must be more than 0 and less than {STALE_AFTER:.0f} seconds")
    if setup.shared is not None:
        return _run_shared_request(args, setup)
    holder = served_by(setup.history_path)
    if holder is None:
        raise UsageError(
            f"nothing serves {args.task_file}: no `conddsl run {args.task_file}` holds"
            f" {setup.history_path.name}.run.lock; start one, then ask again"
        )
    deadline = time.monotonic() + args.wait
    while not setup.history_path.exists():  # the server takes its lock, then opens the file
        if time.monotonic() >= deadline:
            raise UsageError(f"{setup.history_path} does not exist: the scheduler is starting")
        time.sleep(0.05)
    box = RequestBox(setup.history_path)
    try:
        request = box.ask(args.task, args.op)
        answer = wait_for_answer(box, request, max(deadline - time.monotonic(), 0.0))
    finally:
        box.close()
    what = "run" if args.op == "run" else "terminate"
    if answer is None:
        raise UsageError(
            f"the scheduler serving {args.task_file} ({holder}) did not answer within"
            f" {args.wait:g} s; the request to {what} {args.task!r} is withdrawn"
        )
    if not answer.accepted:
        print(f"conddsl: {what} {args.task!r}: {printable(answer.answer)}", file=sys.stderr)
        return EXIT_FINDINGS
    print(answer_line(args.task, args.op, f"the scheduler serving {args.task_file} ({holder})"))
    return EXIT_OK


def answer_line(task: str, op: str, by: str) -> str:
    """The line saying a request was accepted; the task name is the file's, which may
    hold control characters: they are escaped, not sent to the terminal."""
    done = "started" if op == "run" else "asked to terminate (reason: forced)"
    return f"conddsl: {printable(task)}: {done} by {printable(by)}"


def _run_shared_request(args: argparse.Namespace, setup) -> int:
    """run-task / terminate through a shared PostgreSQL history's live nodes."""
    from conddsl.ops.common import open_history
    from conddsl.ops.pg_requests import PgRequestBox

    history, exists = open_history(setup)
    with closing(history):
        live = history.live_nodes() if exists else []  # type: ignore[attr-defined]
        if not live:
            raise UsageError(
                f"nothing serves {args.task_file}: no `conddsl run {args.task_file}` node holds"
                f" a lease on {setup.where}; start one, then ask again"
            )
        names = ", ".join(node for node, _, _ in live)
        box = PgRequestBox(history.connect)  # type: ignore[attr-defined]
        try:
            request = box.ask(args.task, args.op)
            answer, node = box.wait(request, args.wait)
        finally:
            box.close()
    what = "run" if args.op == "run" else "terminate"
    if answer is None:
        took = f"node {node} took it and did not answer" if node else "no node took it"
        raise UsageError(
            f"the nodes serving {args.task_file} ({names}) did not answer within"
            f" {args.wait:g} s: {took}; the request to {what} {args.task!r}"
            + (" is withdrawn" if node is None else " may still be applied")
        )
    if not answer.accepted:
        refused = printable(f"{answer.answer} (node {node})")
        print(f"conddsl: {what} {args.task!r}: {refused}", file=sys.stderr)
        return EXIT_FINDINGS
    print(answer_line(args.task, args.op, f"node {node} serving {args.task_file}"))
    return EXIT_OK


def run_next(args: argparse.Namespace) -> int:
    """``conddsl next FILE.toml [--task T]``: the next start windows of each task."""
    from conddsl.ops.common import read_time, utc_now
    from conddsl.ops.upcoming import upcoming_lines

    if args.tz is not None:
        raise UsageError("--tz is for a condition: a task file's times are in its own timezone")
    setup, history, _ = _setup(args.expression)
    out = Escaped(sys.stdout)
    with closing(history):
        now = read_time("--after", args.after, setup.zone, utc_now())
        lines = upcoming_lines(setup, history, now, task=args.task, count=max(args.n, 1))
    for line in lines:
        out.write(line + "\n")
    return EXIT_OK


def _unknown_task(setup, task: str, known: set[str]) -> str:
    from conddsl.errors import suggest

    hint = suggest(task, known)
    listed = ", ".join(sorted(known)) or "none"
    mean = f"; did you mean {hint!r}?" if hint else ""
    return f"{setup.path}: no task {task!r}{mean} (tasks: {listed})"
