"""What process and command tasks print: split into lines (conddsl.runtime.output) and,
under a real ``conddsl run``, each line after its task's name; the API leaves it alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conddsl.runtime import Scheduler
from conddsl.runtime.output import LineSplitter, OutputPump

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


# -- the line splitter ---------------------------------------------------------------


def test_whole_lines_come_out_and_the_rest_waits():
    split = LineSplitter()
    assert split.feed(b"one\ntw") == ["one"]
    assert split.feed(b"o\n\nthree") == ["two", ""]
    assert split.finish() == ["three"]
    assert split.finish() == []


def test_a_crlf_line_end_is_a_line_end_but_a_lone_cr_is_kept():
    split = LineSplitter()
    assert split.feed(b"dos\r\n10%\r20%\n") == ["dos", "10%\r20%"]


def test_invalid_utf8_is_shown_as_escapes_and_a_split_character_is_whole():
    split = LineSplitter()
    assert split.feed(b"bad \xff\xfe end\n") == ["bad \\xff\\xfe end"]
    euro = "€".encode()
    assert split.feed(b"price " + euro[:1]) == []
    assert split.feed(euro[1:] + b"\n") == ["price €"]


def test_a_line_longer_than_the_limit_comes_out_in_pieces_never_held_whole():
    split = LineSplitter(limit=8)
    assert split.feed(b"abcdefghijklmnopqrs") == ["abcdefgh", "ijklmnop"]
    assert split.feed(b"\n") == ["qrs"]
    # A cut never falls inside a UTF-8 character.
    split = LineSplitter(limit=8)
    pieces = split.feed(("aaaaaaa" + "€" * 3).encode()) + split.finish()
    assert "".join(pieces) == "aaaaaaa€€€"
    assert all("\\x" not in piece for piece in pieces)


# -- the pump --------------------------------------------------------------------------


def _collector():
    lines: list[tuple[str, str, str]] = []
    done = threading.Event()

    def emit(task: str, stream: str, line: str) -> None:
        lines.append((task, stream, line))
        if line == "END":
            done.set()

    return lines, done, emit


def test_the_pump_hands_on_lines_in_order_and_the_unended_last_one_at_the_close():
    lines, done, emit = _collector()
    pump = OutputPump(emit)
    out = pump.pipe("job", "stdout")
    err = pump.pipe("job", "stderr")
    os.write(out.write_fd, b"first\nsec")
    os.write(err.write_fd, b"oops\nEND\n")
    assert done.wait(5)
    os.write(out.write_fd, b"ond\nlast, unended")
    out.close_write()
    err.close_write()
    pump.close()
    assert [line for line in lines if line[1] == "stdout"] == [
        ("job", "stdout", "first"),
        ("job", "stdout", "second"),
        ("job", "stdout", "last, unended"),
    ]
    assert [line for line in lines if line[1] == "stderr"] == [
        ("job", "stderr", "oops"),
        ("job", "stderr", "END"),
    ]


def test_a_blocked_sink_never_blocks_settle_and_the_tail_is_kept():
    """The terminal may block (nobody reads): the scheduler's side returns at once."""
    release = threading.Event()
    entered = threading.Event()

    def stuck(task: str, stream: str, line: str) -> None:
        entered.set()
        release.wait(10)

    pump = OutputPump(stuck)
    err = pump.pipe("job", "stderr", tail=10)
    os.write(err.write_fd, b"first line\n")
    assert entered.wait(5)  # the pump's thread is stuck in the sink now
    os.write(err.write_fd, b"x" * 1000 + b"\ndisk full\n")
    err.close_write()
    began = time.monotonic()
    assert pump.settle(err) == "disk full"  # the last 10 bytes, stripped
    assert time.monotonic() - began < 1.0
    release.set()
    pump.close()


def test_a_pipe_nobody_writes_to_any_more_is_closed_at_eof():
    lines, _, emit = _collector()
    pump = OutputPump(emit)
    out = pump.pipe("job", "stdout")
    os.write(out.write_fd, b"bye")
    out.close_write()
    deadline = time.monotonic() + 5
    while not out.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.closed and lines == [("job", "stdout", "bye")]
    pump.close()


# -- a real conddsl run ----------------------------------------------------------------

TASKS = textwrap.dedent(
    r"""
    [scheduler]
    history = "runs.sqlite3"
    shut_cond = '''task 'cmd' has finished & task 'proc' has finished
        & task 'bad' has finished & task 'loud' has terminated'''
    kill_grace = 2

    [tasks.cmd]
    command = [
        "sh", "-c",
        "echo out line; echo err line >&2; printf 'esc \\033[31m \\377\\n'; printf 'no end'",
    ]
    start_cond = "every 1 hour"

    [tasks.bad]
    command = ["sh", "-c", "echo failing >&2; exit 3"]
    start_cond = "every 1 hour"

    [tasks.proc]
    func = "jobs:proc"
    execution = "process"
    start_cond = "every 1 hour"

    [tasks.loud]
    func = "jobs:loud"
    execution = "process"
    start_cond = "every 1 hour"
    # Long enough for a loaded machine to start it and set its SIGTERM handler first.
    timeout = "2 seconds"
    """
)
JOBS = textwrap.dedent(
    """
    import signal, sys, time

    def proc():
        print("from a process")
        print("to stderr", file=sys.stderr)
        sys.stdout.write("partial")

    def loud():
        def bye(*_):
            print("terminated, bye")
            sys.exit(1)
        signal.signal(signal.SIGTERM, bye)
        print("waiting")
        time.sleep(30)
    """
)


def _run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "tasks.toml").write_text(TASKS)
    (tmp_path / "jobs.py").write_text(JOBS)
    done = subprocess.run(
        [sys.executable, "-m", "conddsl.cli", "run", "tasks.toml", *extra],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.long
@pytest.mark.smoke
def test_conddsl_run_prefixes_what_process_and_command_tasks_print(tmp_path):
    done = _run(tmp_path)
    lines = done.stdout.decode().splitlines()
    printed = [line for line in lines if " | " in line]
    for expected in (
        "cmd | out line",
        "cmd | err line",  # stderr too, prefixed the same way
        "cmd | esc \\x1b[31m \\xff",  # escaped: no colour, no broken byte
        "cmd | no end",  # the unended last line, at the end
        "proc | from a process",
        "proc | to stderr",
        "proc | partial",
        "bad | failing",
        "loud | waiting",
        "loud | terminated, bye",  # printed once it was told to stop
    ):
        assert expected in printed, (expected, done.stdout.decode())
    assert b"\x1b" not in done.stdout and done.stderr == b""
    # A command's stderr still ends its fail message.
    assert any("fail       bad  (exit code 3: failing)" in line for line in lines)
    # Each task's own lines keep their order.
    cmd = [line for line in printed if line.startswith("cmd | ")]
    assert cmd.index("cmd | out line") < cmd.index("cmd | esc \\x1b[31m \\xff") < len(cmd) - 1
    assert cmd[-1] == "cmd | no end"


@pytest.mark.long
def test_json_log_format_carries_process_output_as_json_lines(tmp_path):
    done = _run(tmp_path, "--log-format", "json")
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    output = {
        (e["task"], e["stream"], e["message"]) for e in events if e["logger"] == "conddsl.output"
    }
    assert {
        ("cmd", "stdout", "out line"),
        ("cmd", "stderr", "err line"),
        ("cmd", "stdout", "esc \x1b[31m \\xff"),  # JSON escapes the ESC itself
        ("proc", "stdout", "partial"),
        ("loud", "stdout", "terminated, bye"),
    } <= output


# -- embedding: the API leaves output where it went ------------------------------------


def test_without_task_output_a_command_writes_where_the_scheduler_does(capfd):
    app = Scheduler({"timezone": "UTC", "shut_cond": "task 'hi' has finished"})
    app.command_task("~has started", argv=["sh", "-c", "echo plain; echo raw >&2"], name="hi")
    app.run()
    captured = capfd.readouterr()
    assert "plain\n" in captured.out and "hi |" not in captured.out
    # stderr went to the file its fail message would be taken from, as before
    assert "raw" not in captured.err


def test_task_output_asked_in_the_api_gets_a_commands_lines():
    lines: list[tuple[str, str, str]] = []
    app = Scheduler({"timezone": "UTC", "shut_cond": "task 'hi' has finished"})
    app.task_output = lambda task, stream, line: lines.append((task, stream, line))
    app.command_task("~has started", argv=["sh", "-c", "echo plain; echo raw >&2"], name="hi")
    app.run()
    assert sorted(lines) == [("hi", "stderr", "raw"), ("hi", "stdout", "plain")]


def test_without_a_fork_server_forked_and_spawned_runs_are_piped_too(tmp_path, monkeypatch):
    """No server (the interpreter cannot serve): a function forked from the scheduler and
    a program started by ``subprocess`` write to the same pipes."""
    from conddsl.runtime import forkserver, output

    monkeypatch.setattr(sys, "executable", str(tmp_path / "not-python"))
    monkeypatch.setattr(forkserver, "_READY_TIMEOUT", 0.3)
    # The sink never blocks here: a loaded machine may still take over a second to run the
    # pump's thread at the end, which must not count as a blocked terminal.
    monkeypatch.setattr(output, "CLOSE_WAIT", 30.0)
    lines: list[tuple[str, str, str]] = []
    done = "task 'forked' has finished & task 'spawned' has finished"
    app = Scheduler({"timezone": "UTC", "shut_cond": done})
    app.task_output = lambda task, stream, line: lines.append((task, stream, line))

    def forked() -> None:  # a closure: never by reference, forked here
        print("from the scheduler's fork")
        print("unended", end="", file=sys.stderr)

    app.task("~has started", name="forked", execution="process")(forked)
    app.command_task("~has started", argv=["sh", "-c", "echo spawned; exit 2"], name="spawned")
    app.run()
    assert sorted(lines) == [
        ("forked", "stderr", "unended"),
        ("forked", "stdout", "from the scheduler's fork"),
        ("spawned", "stdout", "spawned"),
    ]
    ends = {r.task: r.action for r in app.history.records() if r.action != "run"}
    assert ends == {"forked": "success", "spawned": "fail"}


def test_a_sink_that_never_returns_blocks_the_runs_not_the_scheduler(caplog, monkeypatch):
    """Nobody reads (a terminal stopped with Ctrl-S): the run blocks on its full pipe, its
    timeout still ends it, and the scheduler stops."""
    from conddsl.runtime import output

    monkeypatch.setattr(output, "CLOSE_WAIT", 0.1)
    blocked = threading.Event()
    config = {"timezone": "UTC", "shut_cond": "task 'flood' has terminated", "kill_grace": 0.2}
    app = Scheduler(config)
    app.task_output = lambda task, stream, line: blocked.wait()
    flood = "yes 'a line of output' | head -c 5000000; echo finished"
    app.command_task("~has started", argv=["sh", "-c", flood], name="flood", timeout=0.3)
    began = time.monotonic()
    try:
        app.run()
    finally:
        blocked.set()
    assert time.monotonic() - began < 10
    ends = [(r.action, r.reason) for r in app.history.records("flood") if r.action != "run"]
    assert ends == [("terminate", "timeout")]
    assert "the output is blocked" in caplog.text


def test_a_lot_of_output_comes_through_whole_and_in_order():
    lines: list[str] = []
    app = Scheduler({"timezone": "UTC", "shut_cond": "task 'many' has finished"})
    app.task_output = lambda task, stream, line: lines.append(line)
    app.command_task("~has started", argv=["seq", "1", "50000"], name="many")
    app.run()
    assert lines == [str(n) for n in range(1, 50001)]


def test_a_pump_that_never_served_closes_what_it_opened():
    before = len(os.listdir("/proc/self/fd"))
    OutputPump(lambda task, stream, line: None).close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_pipe_settled_before_the_pump_took_it_up_keeps_its_lines():
    """A program that exits before the pump's thread first runs: its pipe is read to the
    end and closed by ``settle``, and the thread then skips it (registering its closed
    descriptor raised EBADF and ended the thread: the lines were never handed on)."""
    lines: list[tuple[str, str, str]] = []
    pump = OutputPump(lambda task, stream, line: lines.append((task, stream, line)))
    # The thread is made but not started yet: pipe() sees one and starts none.
    thread = pump._thread = threading.Thread(target=pump._serve, daemon=True)
    pipe = pump.pipe("t", "stdout")
    os.write(pipe.write_fd, b"first\nlast words")
    pipe.close_write()
    assert pump.settle(pipe) == ""
    thread.start()
    pump.close(timeout=5)
    assert not thread.is_alive()
    assert lines == [("t", "stdout", "first"), ("t", "stdout", "last words")]
