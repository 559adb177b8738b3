"""Process tasks start from the fork server, not from the scheduler (real processes, Linux)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import pickle
import signal
import socket
import sys
import time
from functools import partial

import pytest
from runtime_helpers import gone
from runtime_helpers.scenario import Once, play, records_appear

from conddsl.runtime import (
    Scheduler,
    TaskTerminationException,
    TerminationFlag,
    forkserver,
    processes,
)
from conddsl.runtime.forkserver import by_reference

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork server, /proc")


def real(**config: object) -> Scheduler:
    config.setdefault("kill_grace", 0.2)
    config.setdefault("timeout", "never")
    return Scheduler(config)


def write_json(path: str, value: object) -> None:
    with open(path + ".tmp", "w") as file:
        json.dump(value, file)
    os.replace(path + ".tmp", path)


def read_json(path: str, timeout: float = 10.0) -> object:
    ends = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < ends, f"{path} never written"
        time.sleep(0.01)
    with open(path) as file:
        return json.load(file)


def _command_line(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        return file.read().replace(b"\0", b" ").decode()


def report_parent(path: str) -> None:
    """Write this process's parent and its command line, the environment and the cwd."""
    parent = os.getppid()
    write_json(
        path,
        {
            "parent": parent,
            "parent_command": _command_line(parent),
            "marker": os.environ.get("CONDDSL_FORKSERVER_TEST"),
            "cwd": os.getcwd(),
            "parent_session": os.getsid(parent),
            "argv": sys.argv,
        },
    )


def wait_for_flag(path: str, flag: TerminationFlag = TerminationFlag()) -> None:  # noqa: B008
    """Ignore SIGTERM; stop once the flag is set (it is set before the SIGTERM)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    write_json(path, {"pid": os.getpid(), "set_at_start": flag.is_set()})
    seen = flag.wait(20)
    write_json(path + ".seen", seen)
    raise TaskTerminationException("saw the flag")


def sleep_and_report_parent(path: str) -> None:
    write_json(path, {"pid": os.getpid(), "parent": os.getppid()})
    time.sleep(60)


async def coroutine_task(path: str) -> None:
    import asyncio

    await asyncio.sleep(0)
    write_json(path, "awaited")


def test_a_module_level_function_is_forked_by_the_server_not_the_scheduler(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDDSL_FORKSERVER_TEST", "one")
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / "parent.json")
    app = real()
    app.task(Once(), name="where", execution="process")(partial(report_parent, path))
    play(app, lambda app: _shut_after(app, "where"))
    report = read_json(path)
    assert report["parent"] != os.getpid()
    assert "conddsl.runtime.forkserver" in report["parent_command"]
    # The child sees the scheduler's environment and working directory of the start.
    assert report["marker"] == "one"
    assert report["cwd"] == str(tmp_path)
    assert report["argv"] == sys.argv
    # The server is in a session of its own: a signal to the scheduler's process group
    # (Ctrl-C, `kill -TERM -PGID`, timeout(1)) is the scheduler's to handle.
    assert report["parent_session"] != os.getsid(0)
    assert _finish(app, "where").action == "success"
    assert gone(report["parent"])  # the server ends with the scheduler


def test_a_lambda_is_still_forked_from_the_scheduler(tmp_path):
    path = str(tmp_path / "parent.json")
    app = real()
    app.task(Once(), name="local", execution="process")(lambda: report_parent(path))
    play(app, lambda app: _shut_after(app, "local"))
    assert read_json(path)["parent"] == os.getpid()
    assert _finish(app, "local").action == "success"


def test_the_flag_reaches_a_served_child_before_the_sigterm(tmp_path):
    path = str(tmp_path / "flag.json")
    app = real(kill_grace=5)
    app.task(Once(), name="flagged", execution="process", timeout=1.5)(partial(wait_for_flag, path))
    play(app, lambda app: _shut_after(app, "flagged"))
    assert read_json(path)["set_at_start"] is False
    assert read_json(path + ".seen") is True
    ended = _finish(app, "flagged")
    assert (ended.action, ended.reason) == ("terminate", "timeout")
    assert ended.message.endswith("exit code 0")  # it ended itself, long before the SIGKILL


def test_a_coroutine_function_runs_to_completion_in_the_child(tmp_path):
    path = str(tmp_path / "coroutine.json")
    app = real()
    app.task(Once(), name="coro", execution="process")(partial(coroutine_task, path))
    play(app, lambda app: _shut_after(app, "coro"))
    assert read_json(path) == "awaited"
    assert _finish(app, "coro").action == "success"


def test_a_server_that_dies_fails_its_runs_and_ends_their_trees(tmp_path):
    path = str(tmp_path / "child.json")
    app = real()
    app.task(Once(), name="orphaned", execution="process")(partial(sleep_and_report_parent, path))

    async def kill_the_server(app: Scheduler) -> None:
        import asyncio

        await records_appear(app, "run", 1)
        report = await asyncio.to_thread(read_json, path)
        keeper = processes.read_stat(report["parent"])  # the run's keeper: its parent serves
        os.kill(keeper.ppid, signal.SIGKILL)
        await records_appear(app, "fail", 1)
        app.shut_down()

    play(app, kill_the_server)
    report = read_json(path)
    ended = _finish(app, "orphaned")
    assert ended.action == "fail"
    assert ended.message == "the fork server ended (killed by signal SIGKILL)"
    assert gone(report["pid"])


def test_a_module_loaded_from_a_file_off_the_path_is_found_by_the_child(tmp_path):
    import importlib.util

    source = tmp_path / "hidden" / "conddsl_hidden_task.py"
    source.parent.mkdir()
    source.write_text(
        "import json, os\n"
        "def work(path):\n"
        "    with open(path, 'w') as file:\n"
        "        json.dump(os.getppid(), file)\n"
    )
    spec = importlib.util.spec_from_file_location("conddsl_hidden_task", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["conddsl_hidden_task"] = module
    try:
        spec.loader.exec_module(module)
        path = str(tmp_path / "hidden.json")
        app = real()
        app.task(Once(), name="hidden", execution="process")(partial(module.work, path))
        play(app, lambda app: _shut_after(app, "hidden"))
    finally:
        del sys.modules["conddsl_hidden_task"]
    assert _finish(app, "hidden").action == "success"
    assert read_json(path) != os.getpid()  # the server forked it


def _module(tmp_path, monkeypatch, name: str, source: str):
    """Write and import a module ``name`` from a folder on sys.path (the server finds it)."""
    import importlib

    folder = tmp_path / "modules"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module(name)
    monkeypatch.setitem(sys.modules, name, module)  # and gone from sys.modules after
    return module


def test_a_file_a_task_module_opened_at_import_stays_open_in_the_child(tmp_path, monkeypatch):
    log_path = tmp_path / "log.txt"
    module = _module(
        tmp_path,
        monkeypatch,
        "conddsl_opens_a_log",
        f"LOG = open({str(log_path)!r}, 'a')\n"
        "def work():\n"
        "    LOG.write('written by the child\\n')\n"
        "    LOG.flush()\n",
    )
    app = real()
    app.task(Once(), name="logs", execution="process")(module.work)
    try:
        play(app, lambda app: _shut_after(app, "logs"))
    finally:
        module.LOG.close()  # the scheduler's copy
    assert _finish(app, "logs").action == "success", _finish(app, "logs").message
    assert log_path.read_text() == "written by the child\n"


# Seconds of real work: run by CI's smoke pass, kept out of the default run.
@pytest.mark.long
@pytest.mark.smoke
def test_a_run_the_stuck_server_never_forks_ends_after_the_grace(tmp_path, monkeypatch):
    """The server hangs importing a module (a lock, say): the run is terminated by its
    timeout, and ends kill_grace later although no process ever started."""
    from conddsl.runtime import process_exec

    marker = tmp_path / "hang"
    module = _module(
        tmp_path,
        monkeypatch,
        "conddsl_hangs_at_import",
        "import os, time\n"
        f"if os.path.exists({str(marker)!r}):\n"
        "    time.sleep(120)\n"
        "def work(): ...\n",
    )
    marker.touch()  # from now on, importing it hangs: in the server
    monkeypatch.setattr(process_exec, "_WARM_TIMEOUT", 0.3)
    app = real(kill_grace=0.3)
    app.task(Once(), name="stuck", execution="process", timeout=0.2)(module.work)
    started = time.monotonic()
    play(app, lambda app: _shut_after(app, "stuck"))
    ended = _finish(app, "stuck")
    assert (ended.action, ended.reason) == ("terminate", "timeout")
    assert ended.message.endswith("never started: the fork server did not fork it")
    # Not "ran longer than its timeout": it never ran.
    assert ended.message.startswith("its process did not start within its timeout 0:00:00.2")
    assert time.monotonic() - started < 10  # the stuck server was killed at the end


@pytest.mark.parametrize(
    "program", [None, "#!/bin/sh\nexec sleep 60\n"], ids=["missing", "never-answers"]
)
def test_an_interpreter_that_cannot_serve_makes_runs_fork_from_the_scheduler(
    tmp_path, monkeypatch, program
):
    """``sys.executable`` missing, or not a Python understanding ``-c`` (a frozen app, an
    embedding program): the runs are forked from the scheduler instead."""
    from conddsl.runtime import forkserver

    fake = tmp_path / "not-python"
    if program is not None:
        fake.write_text(program)
        fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    monkeypatch.setattr(forkserver, "_READY_TIMEOUT", 0.3)
    path = str(tmp_path / "parent.json")
    app = real()
    app.task(Once(), name="fallback", execution="process")(partial(report_parent, path))
    play(app, lambda app: _shut_after(app, "fallback"))
    assert read_json(path)["parent"] == os.getpid()
    assert _finish(app, "fallback").action == "success"


def test_a_removed_working_directory_forks_from_the_scheduler(tmp_path, monkeypatch):
    gone_dir = tmp_path / "removed"
    gone_dir.mkdir()
    monkeypatch.chdir(gone_dir)
    gone_dir.rmdir()
    path = str(tmp_path / "parent.json")
    app = real()
    app.task(Once(), name="homeless", execution="process")(CallableJob(path))
    fds = len(os.listdir("/proc/self/fd"))
    play(app, lambda app: _shut_after(app, "homeless"))
    assert _finish(app, "homeless").action == "success"
    assert read_json(path) == os.getpid()
    assert len(os.listdir("/proc/self/fd")) == fds


@dataclasses.dataclass
class CallableJob:
    """An unhashable callable (a dataclass with eq): it goes by value, its class by reference."""

    path: str

    def __call__(self) -> None:
        write_json(self.path, os.getppid())


def test_an_unhashable_callable_runs_from_the_server(tmp_path):
    path = str(tmp_path / "callable.json")
    app = real()
    app.task(Once(), name="callable", execution="process")(CallableJob(path))
    play(app, lambda app: _shut_after(app, "callable"))
    assert _finish(app, "callable").action == "success"
    assert read_json(path) != os.getpid()


# ---------------------------------------------------------------- by reference


def _module_level() -> None: ...


def test_the_servers_messages_are_handled_a_slice_of_a_turn_at_a_time(monkeypatch):
    """Fifty runs ending together held the loop 10 ms in one callback: the messages past
    the slice (here: every one after the first) wait for the loop's next turn."""
    monkeypatch.setattr(forkserver, "_READ_SLICE", 0.0, raising=False)
    exited: list[int] = []
    loop = asyncio.new_event_loop()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        server = forkserver.ForkServer(
            loop,
            started=lambda *args: None,
            prepared=lambda *args: None,
            failed=lambda *args: None,
            exited=lambda key, code, outcome: exited.append(key),
            lost=lambda code: None,
        )
        ours.setblocking(False)
        server._sock = ours
        for key in range(3):
            theirs.send(pickle.dumps(("exited", key, 0, None)))
        server._readable()
        assert exited == [0]
        server._readable()
        server._readable()
        server._readable()  # nothing left to read
        assert exited == [0, 1, 2]
    finally:
        ours.close()
        theirs.close()
        loop.close()


def test_what_goes_by_reference():
    def local() -> None: ...

    assert by_reference(_module_level) is not None
    payload, modules = by_reference(partial(_module_level))
    assert set(modules) == {"functools", __name__}
    assert modules[__name__] == __file__
    assert by_reference(local) is None
    assert by_reference(lambda: None) is None
    assert by_reference(partial(_module_level, object.__new__(_Unpicklable))) is None
    main_function = _module_level.__class__(_module_level.__code__, {"__name__": "__main__"})
    main_function.__module__ = "__main__"
    assert by_reference(main_function) is None
    assert by_reference(functools.partial(print, "x" * (1 << 17))) is None  # too large


def test_a_package_still_being_imported_is_not_imported_again(tmp_path, monkeypatch):
    package = tmp_path / "conddsl_unguarded_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import sys\n"
        "from conddsl_unguarded_pkg import tasks\n"
        "sys.modules['conddsl_unguarded_pkg_seen'] = "
        "sys.modules['conddsl.runtime.forkserver'].by_reference(tasks.job)\n"
    )
    (package / "tasks.py").write_text("def job(): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import conddsl_unguarded_pkg

    try:
        assert sys.modules["conddsl_unguarded_pkg_seen"] is None  # the package was importing
        assert by_reference(conddsl_unguarded_pkg.tasks.job) is not None
    finally:
        for name in list(sys.modules):
            if name.startswith("conddsl_unguarded_pkg"):
                del sys.modules[name]


def test_a_module_still_being_imported_is_not_imported_again(tmp_path, monkeypatch):
    """A module that serves a scheduler from its own import (no ``__main__`` guard) would
    serve another one inside the server: its functions are forked from the scheduler."""
    (tmp_path / "conddsl_unguarded.py").write_text(
        "import sys\n"
        "def job(): ...\n"
        "sys.modules['conddsl_unguarded_seen'] = "
        "sys.modules['conddsl.runtime.forkserver'].by_reference(job)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import conddsl_unguarded

    try:
        assert sys.modules["conddsl_unguarded_seen"] is None  # asked during its import
        assert by_reference(conddsl_unguarded.job) is not None  # asked once imported
    finally:
        for name in ("conddsl_unguarded", "conddsl_unguarded_seen"):
            sys.modules.pop(name, None)


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("no")


# ---------------------------------------------------------------- helpers


async def _shut_after(app: Scheduler, task: str) -> None:
    import asyncio

    while not any(rec.action != "run" for rec in app.history.records(task)):
        await asyncio.sleep(0.01)
    app.shut_down()


def _finish(app: Scheduler, task: str):
    (ended,) = [rec for rec in app.history.records(task) if rec.action != "run"]
    return ended


def first_line_then_sleep(path: str) -> None:
    write_json(path, time.time())
    time.sleep(60)


def test_the_timeout_counts_from_when_the_process_exists(tmp_path, monkeypatch):
    """A start the server takes long to fork (here held back 0.6 s, longer than the
    timeout) still gets its whole timeout: the run record is written when the process
    exists, and the body's first line comes after it."""
    import asyncio

    from conddsl.runtime.forkserver import ForkServer

    sent: list[float] = []
    launch = ForkServer.launch

    def late_launch(self, *args):
        def now() -> None:
            sent.append(time.time())
            launch(self, *args)

        asyncio.get_running_loop().call_later(0.6, now)
        return True

    monkeypatch.setattr(ForkServer, "launch", late_launch)
    path = str(tmp_path / "first.json")
    app = real()
    app.task(Once(), name="late", execution="process", timeout=0.4)(
        functools.partial(first_line_then_sleep, path)
    )
    play(app, lambda app: _shut_after(app, "late"))
    started, ended = app.history.records("late")
    assert started.at.timestamp() >= sent[0]  # not when the scheduler decided to start it
    assert started.at.timestamp() <= read_json(path)
    assert (ended.action, ended.reason) == ("terminate", "timeout")
    assert (ended.at - started.at).total_seconds() >= 0.4


def test_a_shutdown_while_the_server_imports_the_task_modules_is_not_held_up(tmp_path, monkeypatch):
    """A task module slow to import (in the server: 10 s here) does not hold a shutdown
    asked meanwhile: Ctrl-C at the start of a `conddsl run` is answered at once."""
    module = _module(
        tmp_path,
        monkeypatch,
        "conddsl_slow_import",
        "import os, time\ntime.sleep(float(os.environ.get('CONDDSL_SLOW_IMPORT', 0)))\n"
        "def work():\n    pass\n",
    )
    monkeypatch.setenv("CONDDSL_SLOW_IMPORT", "10")  # the server's import only
    app = real()
    app.task(Once(), name="slow", execution="process")(module.work)

    async def shut_soon(app: Scheduler) -> None:
        await asyncio.sleep(0.3)
        app.shut_down()

    started = time.monotonic()
    play(app, shut_soon)
    # Not the 10 s import nor the 30 s warm limit (generous: a loaded 2-core CI machine).
    assert time.monotonic() - started < 6
    assert app.history.records() == []
    assert app.stopped_by[0] == "shut_down"


def test_runs_started_together_hold_none_of_each_others_descriptors(tmp_path):
    """The server reads every queued request before it serves the first: a body forked
    meanwhile must not hold the pipes of the runs still queued (their output would get
    no end of file while it runs). Each body holds as many descriptors as the others."""
    from runtime_helpers import report_open_fds

    app = real()
    names = [f"t{i}" for i in range(12)]
    for name in names:
        app.task(Once(), name=name, execution="process")(
            partial(report_open_fds, str(tmp_path), name)
        )

    async def all_done(app: Scheduler) -> None:
        await records_appear(app, "success", len(names))
        app.shut_down()

    play(app, all_done)
    counts = {name: int((tmp_path / name).read_text()) for name in names}
    assert len(set(counts.values())) == 1, counts


class _SlowToLoad:
    """Pickled with a run's function; unpickling it (in the body, before go) writes
    ``path`` after a pause, so a run record written before the body is set up is seen."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (_loaded_slowly, (self.path,))


def _loaded_slowly(path: str) -> _SlowToLoad:
    write_json(path + ".loading", "loading")
    time.sleep(0.3)  # (widens the window a record written too early falls in)
    write_json(path, "loaded")
    return _SlowToLoad(path)


def note_body(path: str, loader: _SlowToLoad) -> None:
    write_json(path, "ran")


def test_the_run_record_waits_for_the_body_to_be_prepared(tmp_path):
    """The run record is written once the body has loaded its function and waits for go
    (the record is not followed by a fork or an unpickling: only by one read), and
    still before the body's first line."""
    loaded, ran = str(tmp_path / "loaded.json"), str(tmp_path / "ran.json")
    seen: list[tuple[bool, bool]] = []

    def on_record(recorded) -> None:
        if recorded.record.action == "run":
            seen.append((os.path.exists(loaded), os.path.exists(ran)))

    app = Scheduler({"kill_grace": 0.2, "timeout": "never"}, on_record=on_record)
    body = functools.partial(note_body, ran, _SlowToLoad(loaded))
    app.task(Once(), name="prepared", execution="process")(body)
    play(app, lambda app: _shut_after(app, "prepared"))
    assert seen == [(True, False)]  # loaded before the record, run after it
    assert read_json(ran) == "ran"
    assert _finish(app, "prepared").action == "success"


def test_a_run_stopped_while_its_body_loads_never_runs_it(tmp_path):
    """A forced shutdown while the body is still loading its function: the body never
    goes, and the run is recorded, then terminated."""
    loaded, ran = str(tmp_path / "loaded.json"), str(tmp_path / "ran.json")
    app = real()
    body = functools.partial(note_body, ran, _SlowToLoad(loaded))
    app.task(Once(), name="stopped", execution="process")(body)

    async def stop_while_loading(app: Scheduler) -> None:
        while not os.path.exists(loaded + ".loading"):
            await asyncio.sleep(0.01)
        app.shut_down(force=True)

    play(app, stop_while_loading)
    assert [rec.action for rec in app.history.records("stopped")] == ["run", "terminate"]
    assert not os.path.exists(ran)


# A task module whose at-fork hook holds the first child of the process that imported it
# (the fork server's: a keeper; the scheduler's: a function forked from it) at one point
# of its start, until the test has sent the run its SIGTERM, then notes whether that
# SIGTERM waits there, pending. ``when``: "after_in_child", before the child's own setup
# (its handlers still its parent's); "before", in a keeper about to fork the body.
_HELD_AT_FORK = """
import json, os, signal, time

PARENT = os.getpid()  # the process that imports this: the fork server, the scheduler
HELD, SENT = {held!r}, {sent!r}


def _hold_the_child():
    if os.getppid() != PARENT:  # only in a child of the importer
        return
    try:
        os.unlink(HELD + ".armed")  # the first one only
    except FileNotFoundError:
        return
    open(HELD, "w").close()
    ends = time.monotonic() + 10
    while not os.path.exists(SENT) and time.monotonic() < ends:
        time.sleep(0.005)
    with open(HELD + ".pending", "w") as file:
        json.dump(signal.SIGTERM in signal.sigpending(), file)


os.register_at_fork({when}=_hold_the_child)


def sleep_long():
    time.sleep(60)
"""


@pytest.mark.parametrize(
    "forker, when",
    [("server", "after_in_child"), ("server", "before"), ("scheduler", "after_in_child")],
)
def test_a_sigterm_sent_before_the_run_set_up_its_process_ends_it(
    tmp_path, monkeypatch, forker, when
):
    """A run asked to stop the moment its process is forked (the scheduler hears of it at
    once; under load the process may not have run a line yet) ends by that SIGTERM, not
    by the SIGKILL after the grace. The SIGTERM reaches the keeper (or the process forked
    from the scheduler) alone: before it has its own handler (it then has its parent's,
    the fork server's or a host's, which would swallow it), or before the keeper has
    forked the body (a fork passes no pending signal on; the body never goes)."""
    held, sent = str(tmp_path / "held"), str(tmp_path / "sent")
    source = _HELD_AT_FORK.format(held=held, sent=sent, when=when)
    module = _module(tmp_path, monkeypatch, f"conddsl_held_{forker}_{when}", source)
    signal_tree = processes.TreeKiller._signal

    def signal_then_say(self, sig, table) -> None:
        signal_tree(self, sig, table)
        if sig == signal.SIGTERM:
            open(sent, "w").close()  # sent: the held process goes on

    monkeypatch.setattr(processes.TreeKiller, "_signal", signal_then_say)
    app = real(kill_grace=3)
    func, host_handler = module.sleep_long, None
    if forker == "scheduler":  # a lambda cannot go by reference; the host handles SIGTERM
        func = lambda: module.sleep_long()  # noqa: E731
        host_handler = signal.signal(signal.SIGTERM, lambda *_: None)
    app.task(Once(), name="held", execution="process")(func)

    async def stop_while_held(app: Scheduler) -> None:
        while not os.path.exists(held):
            await asyncio.sleep(0.01)
        app.shut_down(force=True)

    open(held + ".armed", "w").close()
    try:
        play(app, stop_while_held)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(held + ".armed")
        if host_handler is not None:
            signal.signal(signal.SIGTERM, host_handler)
    assert read_json(held + ".pending") is True  # it waited for the process's own handler
    assert [rec.action for rec in app.history.records("held")] == ["run", "terminate"]
    assert _finish(app, "held").message.endswith("killed by signal SIGTERM")


# A task module that the fork server cannot import (it raises there: its body imports it),
# whose import in the body installs a SIGTERM handler noting each SIGTERM and swallowing
# it, then waits (at most 10 s) until the test has sent the run its SIGTERM, and a moment.
_COUNTS_SIGTERMS_AT_IMPORT = """
import os, signal, time

if os.getppid() == {scheduler}:
    raise ImportError("imported by its body, not by the fork server")


def _note(*_):
    with open({counts!r}, "a") as file:
        file.write("SIGTERM\\n")


if os.getpid() != {scheduler}:  # in the body
    signal.signal(signal.SIGTERM, _note)
    open({importing!r}, "w").close()
    _ends = time.monotonic() + 10
    while not os.path.exists({sent!r}) and time.monotonic() < _ends:
        time.sleep(0.005)
    time.sleep(0.1)


def work():
    open({ran!r}, "w").close()
"""


def test_a_body_stopped_while_it_imports_its_task_module_gets_one_sigterm(tmp_path, monkeypatch):
    """A run asked to stop while its body imports the task's module (task code, which may
    install a SIGTERM handler) sends that body one SIGTERM, as it does mid-run: the handler
    runs once, not once more when the body says it is prepared. It never runs the task."""
    paths = {name: str(tmp_path / name) for name in ("counts", "importing", "sent", "ran")}
    source = _COUNTS_SIGTERMS_AT_IMPORT.format(scheduler=os.getpid(), **paths)
    module = _module(tmp_path, monkeypatch, "conddsl_counts_sigterms_at_import", source)
    signal_tree = processes.TreeKiller._signal

    def signal_then_say(self, sig, table) -> None:
        signal_tree(self, sig, table)
        if sig == signal.SIGTERM:
            open(paths["sent"], "w").close()

    monkeypatch.setattr(processes.TreeKiller, "_signal", signal_then_say)
    app = real(kill_grace=1)
    app.task(Once(), name="counts", execution="process")(module.work)

    async def stop_while_importing(app: Scheduler) -> None:
        while not os.path.exists(paths["importing"]):
            await asyncio.sleep(0.01)
        app.shut_down(force=True)

    play(app, stop_while_importing)
    with open(paths["counts"]) as file:
        assert file.read().splitlines() == ["SIGTERM"]
    assert not os.path.exists(paths["ran"])
    assert [rec.action for rec in app.history.records("counts")] == ["run", "terminate"]
    # Its handler swallowed the SIGTERM: the SIGKILL after the grace ended it.
    assert _finish(app, "counts").message.endswith("killed by signal SIGKILL")
