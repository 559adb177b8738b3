"""Reliability, part 6: what conditions and task files can make conddsl do (docs/reliability.md).

(a) A condition is data: code-shaped text (``__import__('os').system(...)``, ``$(...)``,
    backticks, ``eval``, template syntax) is a syntax error or an unknown name, and
    parsing, compiling and evaluating any condition raises no audit event of code
    execution, import, file access, process or network (``sys.addaudithook``).
(b) A command task runs its argv without a shell: a task name and arguments full of
    shell metacharacters reach the program verbatim and nothing else runs.
(c) ``conddsl run`` of a task file, under an audit hook, does exactly what
    docs/reliability.md says a task file can make it do: import the named modules and
    call the named functions, start the named programs, write the history file, and
    nothing else (no other file written, no other program, no network).
"""

from __future__ import annotations

import os
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from reliability import SUBPROCESS_ENV
from runtime_helpers.cli import run_cli

from conddsl.compile import compile_condition
from conddsl.errors import ConditionSyntaxError
from conddsl.history import MemoryHistory
from conddsl.runtime import Scheduler
from conddsl.runtime.session import Session

# ---------------------------------------------------------------- an audit hook

_RECORDING: list[list[tuple[str, tuple]]] = []


def _hook(event: str, args: tuple) -> None:
    if _RECORDING:
        _RECORDING[-1].append((event, args))


sys.addaudithook(_hook)  # hooks cannot be removed: this one records only inside watch()


class watch:
    """Record the audit events of every thread of this process inside the ``with`` block."""

    def __enter__(self) -> list[tuple[str, tuple]]:
        self.events: list[tuple[str, tuple]] = []
        _RECORDING.append(self.events)
        return self.events

    def __exit__(self, *exc: object) -> None:
        _RECORDING.remove(self.events)


# ---------------------------------------------------------------- (a) conditions are data

PAYLOADS = [
    "__import__('os').system('touch PWNED')",
    "eval('1+1')",
    "exec('import os')",
    "open('/etc/passwd').read()",
    "lambda: 0",
    "os.system('touch PWNED')",
    "().__class__.__bases__[0].__subclasses__()",
    "{{7*7}}",
    "${IFS}touch${IFS}PWNED",
    "$(touch PWNED)",
    "`touch PWNED`",
    "daily; touch PWNED",
    "daily && touch PWNED",
    "daily | touch PWNED",
    'f\'{__import__("os").system("touch PWNED")}\'',
    "globals()['__builtins__']",
    "import os",
]
# Code quoted as a name or value, or in a comment: valid conditions, and still only data.
QUOTED = [
    "daily # $(touch PWNED)",
    "task '$(touch PWNED)' has succeeded",
    "env '`touch PWNED`'",
    "param '__import__(\"os\")' is 'x'",
]
VALID = [
    "daily after 22:00 & ~task 'x' is running",
    "time of day between 08:00 and 18:00 in Europe/Helsinki",
    "cron */5 9-17 * * mon-fri | every 10 minutes",
    "after tasks 'a', 'b' succeeded & has failed in past 2 hours",
    "running for more than 1 hour | scheduler has run over 30 minutes",
    "env 'prod' & param 'a' is 'b' & param 'c' exists",
]
FORBIDDEN = ("exec", "compile", "import", "open", "subprocess", "os.", "socket", "ctypes", "shutil")
AT = datetime(2024, 6, 1, 12, tzinfo=timezone.utc)


def _evaluate(text: str) -> str:
    try:
        condition = compile_condition(text, timezone="UTC")
    except ConditionSyntaxError as error:
        return error.code
    history = MemoryHistory()
    history.record("a", "run", at=AT - timedelta(hours=1), run_id="1")
    session = Session(started_at=AT - timedelta(hours=2), env="prod", params={"a": "b"})
    context = {"task": "t", "history": history, "session": session}
    condition.is_true(AT, **context)
    condition.next_change(AT, **context)
    return "ok"


def test_code_shaped_conditions_are_syntax_errors_or_plain_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcomes = {text: _evaluate(text) for text in PAYLOADS}
    assert all(outcome.startswith("E1") for outcome in outcomes.values()), outcomes
    assert [_evaluate(text) for text in QUOTED] == ["ok"] * len(QUOTED)
    assert list(tmp_path.iterdir()) == []  # nothing ran: no PWNED file


def test_parsing_compiling_and_evaluating_run_no_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    texts = PAYLOADS + QUOTED + VALID
    for text in texts:  # warm: lazy imports, the zone files, the parser
        _evaluate(text)
    with watch() as events:
        for text in texts:
            _evaluate(text + " ")  # new text: not from a cache
    found = sorted({event for event, _ in events if event.startswith(FORBIDDEN)})
    assert found == [], events[:20]
    with watch() as control:  # the hook does see such events
        open(os.devnull).close()
    assert [event for event, _ in control] == ["open"]


# ---------------------------------------------------------------- (b) no shell

SHELL_WORDS = [
    "$(touch PWNED1)",
    "`touch PWNED2`",
    "; touch PWNED3",
    "| touch PWNED4",
    "*",
    "$HOME",
]
ECHO_ARGS = "import sys, pathlib; pathlib.Path('args.txt').write_text('\\n'.join(sys.argv[1:]))"


class Once:
    def is_true(self, at, *, task, history, **context):
        return history.last(task, "run") is None

    def next_change(self, after, **context):
        return None


def test_a_command_task_runs_without_a_shell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = "report; touch PWNED0 #$(id)"
    # Stops when the run has ended, however long a loaded machine takes to start it.
    app = Scheduler({"timeout": "never", "shut_cond": f"task '{name}' has finished"})
    app.command_task(Once(), argv=[sys.executable, "-c", ECHO_ARGS, *SHELL_WORDS], name=name)
    with watch() as events:
        app.run()
    (record,) = [r for r in app.history.records() if r.action != "run"]
    assert (record.task, record.action) == (name, "success")
    assert (tmp_path / "args.txt").read_text().split("\n") == SHELL_WORDS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["args.txt"]
    # The program is exec'd with exactly this argv by the fork server, under the run's
    # keeper; the only process this process starts is the server: no shell anywhere.
    started = [list(args[1]) for event, args in events if event == "subprocess.Popen"]
    assert [argv[:2] for argv in started] == [[sys.executable, "-c"]]
    assert "conddsl.runtime.forkserver" in started[0][2]


def test_a_task_file_command_runs_without_a_shell(tmp_path):
    (tmp_path / "tasks.toml").write_text(
        textwrap.dedent(
            """
            [scheduler]
            history = "runs.sqlite3"
            shut_cond = "task 'report; touch PWNED0 # $(id)' has finished"

            [tasks."report; touch PWNED0 # $(id)"]
            command = ["printf", "<%s>", "$(touch PWNED1)", "`touch PWNED2`", "; touch PWNED3"]
            start_cond = "every 1 hour"
            """
        )
    )
    done = run_cli(tmp_path, "run", "tasks.toml", env=SUBPROCESS_ENV)
    assert done.returncode == 0, done.stderr
    assert "<$(touch PWNED1)><`touch PWNED2`><; touch PWNED3>" in done.stdout
    assert "success    report; touch PWNED0 # $(id)" in done.stdout
    assert not list(tmp_path.glob("PWNED*"))


# ---------------------------------------------------------------- (c) what conddsl run does

JOBS = """
def hello():
    return None
"""
TASKS = """
[scheduler]
history = "data/runs.sqlite3"
rules = ["office.cond"]
# Ends when the work is done, however slow the machine (a minute at most if it never is).
shut_cond = '''task 'greet' has finished & task 'forked' has finished
             | scheduler has run over 60 seconds'''
timezone = "Europe/Helsinki"

[tasks.hello]
func = "myjobs:hello"
start_cond = "every 1 hour & (office | ~office)"

[tasks.greet]
command = ["echo", "hi"]
start_cond = "after task 'hello'"

[tasks.forked]
func = "myjobs:hello"
execution = "process"
start_cond = "every 1 hour"
"""
WRITE = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _writes(events: list[tuple[str, tuple]]) -> list[str]:
    found = []
    for event, args in events:
        if event == "open":
            path, mode, flags = args
            if (isinstance(mode, str) and set(mode) & set("wax+")) or (flags or 0) & WRITE:
                found.append(os.fsdecode(path) if not isinstance(path, int) else f"fd {path}")
        elif event in ("os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree"):
            found.append(f"{event} {args[0]}")
    return found


def test_what_conddsl_run_does(tmp_path, monkeypatch, capsys):
    """The list in docs/reliability.md, "What a task file can make conddsl do"."""
    import tempfile

    from conddsl import grammar
    from conddsl.cli import main

    # As at any start of `conddsl run`, the parser is made in the run, from the tables
    # cached in the user's cache folder (whether this process parsed before must not
    # change what the run does). They are cached first, so that the run only reads them.
    tables = grammar.parser_cache_path(grammar.grammar_text())
    if tables is not None and not os.path.exists(tables):
        grammar.build_parser()
    monkeypatch.setattr(grammar, "_parser", None)

    (tmp_path / "data").mkdir()
    (tmp_path / "myjobs.py").write_text(JOBS)
    (tmp_path / "office.cond").write_text("office = time of day between 08:00 and 18:00\n")
    (tmp_path / "tasks.toml").write_text(TASKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    modules = set(sys.modules)
    try:
        with watch() as events:
            code = main(["run", "tasks.toml"])
    finally:
        sys.modules.pop("myjobs", None)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "success    greet" in out
    assert "success    forked" in out
    kinds = {event.split(".")[0] for event, _ in events}
    assert not kinds & {"socket.connect", "urllib", "http", "webbrowser"}
    # ctypes only to reach libc's prctl (PR_SET_PDEATHSIG for the forked process task).
    native = [(event, args[0]) for event, args in events if event.startswith("ctypes")]
    assert {event for event, _ in native} <= {"ctypes.dlopen", "ctypes.dlsym"}, native
    assert {name for event, name in native if event == "ctypes.dlopen"} <= {None}, native
    # The only program started here is the fork server (this Python, running conddsl's
    # own module: it forks the process task, and execs the command task's program as
    # given, under each run's keeper). The scheduler forks nothing itself.
    programs = [list(args[1]) for event, args in events if event == "subprocess.Popen"]
    (server,) = programs
    assert server[:2] == [sys.executable, "-c"]
    assert "from conddsl.runtime.forkserver import serve" in server[2]
    assert [event for event, _ in events if event in ("os.system", "os.posix_spawn")] == []
    assert sum(event == "os.fork" for event, _ in events) == 0
    # The only modules of the task file's folder imported are the named ones.
    new = {name for name in set(sys.modules) - modules if name != "myjobs"}
    assert not [m for m in new if str(tmp_path) in str(getattr(sys.modules[m], "__file__", ""))]
    # Files written: the history file (SQLite: the file, its -wal and -shm), a command's
    # stderr in a temporary file removed at once when it starts without the fork server
    # (its output is piped), /dev/null as the command's stdin (and
    # Python's bytecode cache of the imported module, where bytecode is written at all).
    databases = {os.fspath(args[0]) for event, args in events if event == "sqlite3.connect"}
    assert databases == {str(tmp_path / "data" / "runs.sqlite3")}
    # Beside the history: its list of live task processes (runs.sqlite3.procs.json,
    # written through a temporary file and renamed), removed once none is left.
    registry = str(tmp_path / "data" / "runs.sqlite3.procs.json")
    # The parser's cache folder: made if missing (os.makedirs tries even when it is there).
    parser_cache = os.path.dirname(tables) if tables is not None else os.devnull
    allowed = (tempfile.gettempdir(), os.devnull, str(tmp_path / "__pycache__"), parser_cache)
    others = [
        w
        for w in _writes(events)
        if not w.removeprefix("os.remove ").removeprefix("os.mkdir ").startswith(allowed)
        and not w.removeprefix("os.rename ").startswith(registry)
    ]
    assert others == [], others
    # At most that folder (none when this process's fast parser was built before the run).
    made = [w for w in _writes(events) if w.startswith("os.mkdir")]
    assert made in ([], [f"os.mkdir {parser_cache}"]), made
    assert [w for w in _writes(events) if w.startswith(parser_cache)] == []  # tables only read
    history_files = {"runs.sqlite3", "runs.sqlite3-shm", "runs.sqlite3-wal"}
    assert {p.name for p in (tmp_path / "data").iterdir()} <= history_files


def test_an_unknown_name_in_a_task_file_is_never_imported(tmp_path, capsys, monkeypatch):
    """Condition words are looked up among rules and registered conditions, never imported."""
    from conddsl.cli import main

    (tmp_path / "os_system.py").write_text("open('IMPORTED', 'w').close()\n")
    (tmp_path / "tasks.toml").write_text(
        '[tasks.a]\ncommand = ["true"]\nstart_cond = "os_system \'touch PWNED\'"\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["check", "tasks.toml"]) == 1
    assert main(["run", "tasks.toml"]) == 1
    assert "E120 unknown condition 'os_system'" in capsys.readouterr().out
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["os_system.py", "tasks.toml"]


@pytest.mark.parametrize("text", ["daily in '../../../../etc/passwd'", "daily in '/etc/passwd'"])
def test_a_zone_name_is_not_a_path(text):
    with pytest.raises(ConditionSyntaxError) as info:
        compile_condition(text)
    assert info.value.code == "E113"
