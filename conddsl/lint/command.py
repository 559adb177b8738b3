"""The ``check`` and ``schema`` subcommands of the ``conddsl`` command line."""

from __future__ import annotations

import argparse
import gc
import sys

__all__ = ["add_commands"]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_TROUBLE = 2

_CHECK_HELP = """\
Check .cond rule files and TOML task files (folders are searched recursively).

Prints one finding per line, 'path:line:col: CODE message', and a summary on stderr.
Exit status: 0 no errors (warnings allowed), 1 errors (or warnings with --strict),
2 usage or I/O trouble (a missing or unreadable path).

A finding is silenced by a comment on its line: '# conddsl: ignore[C401]', or
'# conddsl: ignore' for all. TOML files without a [tasks] or [scheduler] table
(pyproject.toml, say) are skipped. Codes: docs/check.md."""


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``check`` and ``schema`` to the command line's subcommands."""
    check = commands.add_parser(
        "check",
        help="check rule files and task files",
        description=_CHECK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help=".cond/.toml files or folders")
    check.add_argument(
        "--output-format",
        choices=("concise", "full", "json", "github"),
        default="concise",
        help="concise lines (default), full (with the source line and ^^^), json, or "
        "github (workflow annotations)",
    )
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    check.add_argument(
        "--import-funcs",
        action="store_true",
        help="also import the module of each task's func and report those that fail; "
        "this RUNS the code of those modules (the task file's folder is put on sys.path)",
    )
    check.set_defaults(handler=_run_check)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of task files (for editors)",
        description="Print the JSON Schema of TOML task files, for editors that validate "
        "TOML with one (e.g. Taplo / Even Better TOML: '#:schema ./tasks.schema.json').",
    )
    schema.set_defaults(handler=_run_schema)
    for command in (check, schema):
        # SUPPRESS keeps a "conddsl --debug check …" given before the command.
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
        )


def _run_check(args: argparse.Namespace) -> int:
    from conddsl.errors import printable
    from conddsl.lint.output import render, summary
    from conddsl.lint.runner import check_paths

    # A check builds many small objects that all live until it ends (nodes, locations,
    # findings): the collector's young-generation passes would walk them again and
    # again for nothing (a sixth of the time at 5,000 tasks). Fewer passes, then as
    # before.
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 100_000), *thresholds[1:])
    try:
        result = check_paths(args.paths, import_funcs=args.import_funcs)
    finally:
        gc.set_threshold(*thresholds)
    text = render(result.diagnostics, result.texts, args.output_format)
    if text:
        try:
            print(text, flush=True)
        except BrokenPipeError:  # `conddsl check . | head`: the reader has had enough
            _silence_stdout()
    # One line each: a line break in one is in a path (a file named to forge a line).
    for note in result.notes:
        print(f"conddsl: note: {printable(note)}", file=sys.stderr)
    for problem in result.io_errors:
        print(f"conddsl: error: {printable(problem)}", file=sys.stderr)
    print(summary(result.diagnostics, len(result.io_errors)), file=sys.stderr)
    if result.io_errors:
        return EXIT_TROUBLE
    if any(d.severity == "error" or args.strict for d in result.diagnostics):
        return EXIT_FINDINGS
    return EXIT_OK


def _silence_stdout() -> None:
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _run_schema(args: argparse.Namespace) -> int:
    import json

    from conddsl.rules.models import TaskFile

    print(json.dumps(TaskFile.model_json_schema(), indent=2))
    return EXIT_OK
