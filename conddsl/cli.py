"""The ``conddsl`` command line: ``next`` and ``explain`` for condition text."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timedelta, timezone, tzinfo

from conddsl import ast
from conddsl.errors import ConditionSyntaxError, TaskFileProblem, UsageError, printable
from conddsl.terminal import escape_warnings, names_from_outside, printable_lines
from conddsl.timeline.clock import later

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    escape_warnings()
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except ConditionSyntaxError as error:
        print(f"conddsl: {printable_lines(str(error))}", file=sys.stderr)
        return EXIT_FINDINGS
    except UsageError as error:
        print(f"conddsl: {printable_lines(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`conddsl schema | head`): not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:  # never a traceback unless asked for
        from conddsl.history import HistoryError

        if isinstance(error, TaskFileProblem):  # the findings, as `conddsl check` shows them
            print(printable_lines(str(error)), file=sys.stderr)
            return EXIT_FINDINGS
        if getattr(args, "debug", False):
            raise
        if isinstance(error, HistoryError):  # a file's trouble (locked, disk full), not ours
            print(f"conddsl: {printable_lines(str(error))}", file=sys.stderr)
            return EXIT_FINDINGS
        shown = printable_lines(str(error))
        print(f"conddsl: internal error: {shown} (run with --debug for details)", file=sys.stderr)
        return EXIT_USAGE


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conddsl", description="Say when a job may run and when it must stop."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command")

    nxt = commands.add_parser(
        "next",
        help="print the next windows in which a condition is true, or a task file's next starts",
    )
    _add_window_options(nxt)
    nxt.add_argument("-n", type=int, default=None, help="how many windows (default 5; 3 a task)")
    nxt.add_argument("--task", help="with a task file: only this task")
    nxt.set_defaults(handler=_cmd_next)

    explain = commands.add_parser(
        "explain", help="canonical form, tree and next windows of a condition"
    )
    _add_window_options(explain)
    explain.add_argument("-n", type=int, default=3, help="how many windows (default 3)")
    explain.set_defaults(handler=_cmd_explain)

    from conddsl.lint.command import add_commands

    add_commands(commands)  # check, schema

    from conddsl.ops.command import add_commands as add_operating_commands

    add_operating_commands(commands)  # status, history, timeline

    run = commands.add_parser(
        "run",
        help="run the scheduler of a task file (SQLite history beside it); "
        "Ctrl-C stops gracefully, a second Ctrl-C forces",
    )
    run.add_argument("task_file", help="a TOML task file")
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="a line a record with date and zone (text, the default), or JSON lines",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics (needs the metrics "
        "extra; 0: any free port, printed)",
    )
    run.add_argument("--debug", action="store_true", help="show tracebacks")
    run.set_defaults(handler=_cmd_run)
    return parser


def _add_window_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "expression",
        help="the condition, e.g. 'time of day between 08:00 and 18:00'"
        + (", or a task file (FILE.toml)" if command.prog.endswith(" next") else ""),
    )
    command.add_argument("--after", help="start from this ISO time (default: now)")
    command.add_argument("--tz", help="timezone to evaluate in (default: the system's)")
    command.add_argument("--debug", action="store_true", help="show tracebacks")


def _start(args: argparse.Namespace, zone: tzinfo) -> datetime:
    if args.after is None:
        return datetime.now(zone).replace(microsecond=0)
    try:
        at = datetime.fromisoformat(args.after)
    except ValueError as error:
        raise UsageError(
            f"--after {args.after!r} is not an ISO time like 2024-01-01T08:00"
        ) from error
    return at.replace(tzinfo=zone) if at.tzinfo is None else at


def _compile(args: argparse.Namespace):
    from conddsl.compile import compile_condition
    from conddsl.timeline.zones import resolve_zone

    if args.tz is not None and resolve_zone(args.tz) is None:
        raise UsageError(f"unknown timezone {args.tz!r}")
    return compile_condition(args.expression, timezone=args.tz)


def _next_windows(condition, start: datetime, count: int) -> tuple[list, str | None]:
    """Up to ``count`` windows from ``start``, and a note when the answer is special."""
    horizon = max(condition.horizon, timedelta(days=2))
    end = later(start, horizon * 4)
    try:
        found = []
        for window in condition.windows(start, end):
            found.append(window)
            if len(found) >= count:
                break
    except NotImplementedError as error:
        return [], f"cannot be listed: {error}"
    history_note = ""
    if _reads_history(condition.ast):
        history_note = " (as if no task had run yet)"
    if not found:
        if end.replace(tzinfo=None) == datetime.max:
            return [], f"never true{history_note}: no window before the end of the calendar"
        return [], f"never true{history_note}: no window in the next " + _human(end - start)
    if len(found) == 1 and found[0][0] == start and found[0][1] >= end:
        return found, f"always true{history_note}"
    return found, history_note.strip() or None


def _reads_history(node: ast.Node) -> bool:
    """Whether any part of the condition depends on what tasks did."""
    history_forms = (
        ast.Periodic,
        ast.Every,
        ast.Cron,
        ast.TaskHas,
        ast.AfterTask,
        ast.TaskRunning,
        ast.RunningFor,
    )
    return any(isinstance(item, history_forms) for item in ast.walk(node))


def _human(delta: timedelta) -> str:
    days = delta.days
    if days >= 365:
        return f"{days // 365} years"
    return f"{days} days"


def _format_window(window: tuple[datetime, datetime]) -> str:
    start, end = window
    # Real elapsed time: across a DST change the wall-clock difference is an hour off.
    length = end.astimezone(timezone.utc) - start.astimezone(timezone.utc)
    return f"{start.isoformat(sep=' ')}  ->  {end.isoformat(sep=' ')}  ({length})"


def _cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from conddsl.runfile import run_task_file

    names_from_outside(args.task_file)
    path = Path(args.task_file)
    if not path.is_file():
        why = "not a regular file" if path.exists() else "no such task file"
        raise UsageError(f"{args.task_file}: {why}")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise UsageError(f"--metrics-port {args.metrics_port}: a port is 0 to 65535")
    return run_task_file(path, log_format=args.log_format, metrics_port=args.metrics_port)


def _cmd_next(args: argparse.Namespace) -> int:
    from conddsl.ops.command import is_task_file, run_next

    if is_task_file(args.expression):
        if args.n is None:
            args.n = 3
        return run_next(args)
    if args.task is not None:
        raise UsageError("--task needs a task file (conddsl next FILE.toml --task NAME)")
    condition = _compile(args)
    start = _start(args, condition.zone)
    windows, note = _next_windows(condition, start, max(args.n or 5, 1))
    for window in windows if not (note or "").startswith("always true") else ():
        print(_format_window(window))
    if note:
        print(f"# {printable(note)}")  # it may quote the condition
    return EXIT_OK


def _cmd_explain(args: argparse.Namespace) -> int:
    condition = _compile(args)
    start = _start(args, condition.zone)
    print(f"canonical: {printable(str(condition))}")
    print("tree:")
    for line in _tree_lines(condition.ast, 1):
        print(printable(line))
    windows, note = _next_windows(condition, start, max(args.n, 1))
    print(f"next windows from {start.isoformat(sep=' ')}:")
    for window in windows if not (note or "").startswith("always true") else ():
        print(f"  {_format_window(window)}")
    if note:
        print(f"  {printable(note)}")
    return EXIT_OK


def _tree_lines(node: ast.Node, depth: int) -> list[str]:
    pad = "  " * depth
    if isinstance(node, ast.All | ast.Any):
        lines = [f"{pad}{'all of' if isinstance(node, ast.All) else 'any of'}"]
        for item in node.items:
            lines.extend(_tree_lines(item, depth + 1))
        return lines
    if isinstance(node, ast.Not):
        return [f"{pad}not", *_tree_lines(node.item, depth + 1)]
    if isinstance(node, ast.Zoned):
        return [f"{pad}in {node.zone}", *_tree_lines(node.item, depth + 1)]
    kind = type(node).__name__
    details = ", ".join(
        f"{f.name}={getattr(node, f.name)}"
        for f in fields(node)
        if f.name != "span" and getattr(node, f.name) is not None
    )
    return [f"{pad}{kind}({details})  # {node}"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
