"""What a local user can and cannot make conddsl do (docs/reliability.md).

Each attack plants files owned by ``nobody`` in a fresh sticky world-writable folder
(as ``/tmp`` is) and runs conddsl as root, as a system service would: a planted file is
never loaded, unpickled, imported or obeyed, and conddsl says so.
"""

from __future__ import annotations

import os
import pickle
import pwd
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from reliability import SUBPROCESS_ENV

from conddsl.trust import history_folder_problem, untrusted, untrusted_folder

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="planting files owned by another user needs root"
)
NOBODY = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else -1


@pytest.fixture
def sticky(tmp_path_factory):
    """A fresh folder like /tmp: world-writable and sticky, owned by root."""
    folder = tmp_path_factory.mktemp("sticky")
    os.chmod(folder.parent, 0o755)  # pytest's base folder is root's 0700: reachable
    os.chmod(folder, 0o1777)
    return folder


@pytest.fixture
def private(tmp_path):
    """A folder only root may write, where ``nobody``'s files were put (as if it had been
    open once): the files themselves must still be judged."""
    folder = tmp_path / "private"
    folder.mkdir(mode=0o755)
    return folder


def elsewhere(task_file: str, folder) -> str:
    """``task_file`` with its history in ``folder`` (a private one)."""
    return task_file.replace("[scheduler]\n", f'[scheduler]\nhistory = "{folder}/h.sqlite3"\n', 1)


def plant(path, data: bytes) -> None:
    """A file written by ``nobody``."""
    path.write_bytes(data)
    os.chown(path, NOBODY, NOBODY)


class _Touch:
    """Unpickling this creates the file ``path``: proof that a planted pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


# As the `conddsl` script runs: its own folder, not the working one, first on sys.path.
_AS_SCRIPT = "import sys; del sys.path[0]; from conddsl.cli import main; sys.exit(main())"


def conddsl(*argv: str, cwd=None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _AS_SCRIPT, *argv],
        env={**SUBPROCESS_ENV, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def cli(capsys, monkeypatch):
    """The CLI in-process (faster than a subprocess where no fresh process is needed)."""
    from conddsl.cli import main

    monkeypatch.setattr(sys, "path", list(sys.path))
    # The tests' task modules are named alike (jobs.py): one an earlier test imported in
    # this process would be taken as already imported, and never judged.
    for name in [name for name in sys.modules if name == "jobs" or name.startswith("jobs.")]:
        monkeypatch.delitem(sys.modules, name)

    def call(*argv: str) -> subprocess.CompletedProcess[str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, captured.out, captured.err)

    return call


# ---------------------------------------------------------------- the rule


def test_rule_refuses_other_owners_and_open_folders(sticky, tmp_path):
    mine = sticky / "mine"
    mine.write_text("x")
    theirs = sticky / "theirs"
    plant(theirs, b"x")
    assert untrusted(mine) is None
    assert "another user" in untrusted(theirs)
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    os.chmod(open_folder, 0o777)
    assert "not sticky" in untrusted(open_folder / "anything")
    owned = sticky / "owned"
    owned.mkdir()
    os.chown(owned, NOBODY, NOBODY)
    assert "belongs to another user" in untrusted_folder(owned)
    os.chmod(mine, 0o666)
    assert "anyone" in untrusted(mine)


def test_rule_refuses_a_path_through_another_users_symlink(sticky, tmp_path):
    """The symlink is the other user's pointer: what it names now is no promise for the
    next open (it can be flipped between the check and the read)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "file").write_text("x")
    link = sticky / "link"
    link.symlink_to(mine)
    os.lchown(link, NOBODY, NOBODY)
    assert untrusted(mine / "file") is None
    assert "symlink" in untrusted(link / "file") and "another user" in untrusted(link / "file")
    assert "symlink" in untrusted_folder(link)
    os.lchown(link, 0, 0)
    assert untrusted(link / "file") is None  # root's own link is root's word


# ---------------------------------------------------------------- (1) the parser cache


def _lark_cache_name(scratch) -> str:
    """The name Lark's own cache (cache=True) gives this grammar: what conddsl used to read."""
    code = (
        "import lark, sys; from conddsl.parse import grammar_text;"
        "lark.Lark(grammar_text(), parser='lalr', lexer='contextual', propagate_positions=True,"
        " maybe_placeholders=False, strict=False, cache=True)"
    )
    env = {**SUBPROCESS_ENV, "TMPDIR": str(scratch)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    (name,) = [p.name for p in scratch.iterdir() if p.name.startswith(".lark_cache_")]
    return name


def test_planted_parser_cache_is_never_unpickled(sticky, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    proof = tmp_path / "ran"
    payload = b"0" * 64 + b"\n" + pickle.dumps(_Touch(str(proof)))
    # Where Lark's default cache looked: $TMPDIR.
    plant(sticky / _lark_cache_name(scratch), payload)
    # Where conddsl's own cache lives, pre-created by the other user.
    planted_cache = sticky / "cache"
    (planted_cache / "conddsl").mkdir(parents=True)
    for folder in (planted_cache, planted_cache / "conddsl"):
        os.chown(folder, NOBODY, NOBODY)
    from conddsl.parse import grammar_text, parser_cache_path

    name = os.path.basename(parser_cache_path(grammar_text()))
    plant(planted_cache / "conddsl" / name, payload)
    result = conddsl(
        "next", "daily after 10:00", TMPDIR=str(sticky), XDG_CACHE_HOME=str(planted_cache)
    )
    assert result.returncode == 0, result.stderr
    assert not proof.exists()
    assert "parser cache" in result.stderr and "not trusted" in result.stderr


def test_parser_cache_file_of_another_user_in_own_folder_is_ignored(tmp_path):
    proof = tmp_path / "ran"
    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache)}
    assert conddsl("next", "daily", **env).returncode == 0  # writes the cache
    (written,) = (cache / "conddsl").glob("parser-*")
    assert written.stat().st_mode & 0o777 and (cache / "conddsl").stat().st_mode & 0o077 == 0
    plant(written, b"0" * 64 + b"\n" + pickle.dumps(_Touch(str(proof))))
    # Without the fast parser's tables (conddsl.lalr_tables), Lark's parser is built.
    for tables in (cache / "conddsl").glob("tables-*"):
        tables.unlink()
    result = conddsl("next", "daily", **env)
    assert result.returncode == 0 and not proof.exists()
    assert "belongs to another user" in result.stderr


@pytest.mark.parametrize("how", ["symlink", "sticky folder"])
def test_parser_cache_folder_others_may_add_to_is_not_used(sticky, how, monkeypatch):
    """XDG_CACHE_HOME somewhere odd: a cache folder anybody may add files to (or a
    symlink of another user standing for it) is raceable: nothing there is read or written."""
    from conddsl.parse import grammar_text, parser_cache_path

    folder = sticky / "conddsl"
    if how == "symlink":
        folder.symlink_to(sticky)
        os.lchown(folder, NOBODY, NOBODY)
    else:
        folder.mkdir()
        os.chmod(folder, 0o1777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(sticky))
    assert parser_cache_path(grammar_text()) is None
    result = conddsl("next", "daily after 10:00", XDG_CACHE_HOME=str(sticky))
    assert result.returncode == 0, result.stderr
    assert "parser cache" in result.stderr and "not trusted" in result.stderr
    assert not [p for p in sticky.iterdir() if p.name.startswith("parser-")]
    assert not [p for p in (sticky / "conddsl").iterdir() if p.name.startswith("parser-")]


# ---------------------------------------------------------------- (3) the import path

PROOF_MODULE = "open({proof!r}, 'w').close()\n"
COMMAND_ONLY = """
[scheduler]
shut_cond = "task 'hello' has succeeded"
instant_shutdown = true

[tasks.hello]
command = ["true"]
start_cond = "every 1 hour"
"""


def test_stdlib_names_beside_a_command_only_task_file_are_never_imported(sticky, tmp_path):
    proof = tmp_path / "ran"
    for name in ("ctypes", "json", "signal", "selectors", "sqlite3"):
        (sticky / f"{name}.py").write_text(PROOF_MODULE.format(proof=str(proof)))
    (sticky / "tasks.toml").write_text(elsewhere(COMMAND_ONLY, tmp_path))
    result = conddsl("run", str(sticky / "tasks.toml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout
    assert not proof.exists()


def test_func_module_folder_comes_after_the_standard_library(tmp_path):
    (tmp_path / "ctypes.py").write_text("raise SystemExit('the planted ctypes ran')\n")
    (tmp_path / "jobs.py").write_text("import ctypes\ndef where():\n    return ctypes.__file__\n")
    (tmp_path / "tasks.toml").write_text('[tasks.a]\nfunc = "jobs:where"\n')
    code = (
        "import sys, pathlib; from conddsl.rules.taskfile import read_task_file;"
        "from conddsl.runtime.from_file import scheduler_from_task_file;"
        "m = read_task_file(pathlib.Path(sys.argv[1])).model;"
        "app = scheduler_from_task_file(m);"
        "print(app.tasks['a'].func())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "tasks.toml")],
        env=SUBPROCESS_ENV,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ctypes/__init__.py")


PROCESS_TASK = """
[scheduler]
shut_cond = "task 'a' has succeeded"
instant_shutdown = true

[tasks.a]
func = "jobs:go"
execution = "process"
start_cond = "true"
"""


def test_fork_server_never_imports_from_the_working_folder(sticky, tmp_path):
    """The fork server (``python -c``) started from a folder anybody may write: the
    ``socket.py`` planted there is not imported in place of the standard library's."""
    proof = tmp_path / "ran"
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "jobs.py").write_text("def go():\n    pass\n")
    (tasks / "tasks.toml").write_text(PROCESS_TASK)
    for name in ("socket", "subprocess", "selectors"):
        plant(sticky / f"{name}.py", PROOF_MODULE.format(proof=str(proof)).encode())
    result = conddsl("run", str(tasks / "tasks.toml"), cwd=sticky)
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout
    assert "fork server ended" not in result.stderr, result.stderr
    assert not proof.exists()


@pytest.mark.parametrize("where", ["own folder", "sticky folder"])
def test_func_module_of_another_user_is_refused(sticky, tmp_path, cli, where):
    """A module owned by another user, or any module of a folder anybody may add to."""
    proof = tmp_path / "ran"
    folder = sticky if where == "sticky folder" else tmp_path / "tasks"
    folder.mkdir(exist_ok=True)
    plant(folder / "jobs.py", PROOF_MODULE.format(proof=str(proof)).encode())
    (folder / "tasks.toml").write_text(
        elsewhere(
            '[scheduler]\nshut_cond = "true"\n[tasks.a]\nfunc = "jobs:go"\nstart_cond = "true"\n',
            tmp_path,
        )
    )
    task_file = str(folder / "tasks.toml")
    why = "anybody may add modules" if where == "sticky folder" else "another user"
    for argv in (["run", task_file], ["check", "--import-funcs", task_file]):
        result = cli(*argv)
        assert result.returncode == 1, (argv, result.stdout, result.stderr)
        assert "not trusted" in result.stdout + result.stderr
        assert why in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert not proof.exists()


def test_func_package_folder_anybody_may_write_is_refused(tmp_path, cli):
    """The task folder is private, but the package folder of the func is sticky and open:
    anybody could add the ``helper.py`` its module imports."""
    folder = tmp_path / "tasks"
    (folder / "jobs").mkdir(parents=True)
    (folder / "jobs" / "__init__.py").write_text("")
    (folder / "jobs" / "run.py").write_text("def go():\n    pass\n")
    os.chmod(folder / "jobs", 0o1777)
    (folder / "tasks.toml").write_text(
        '[scheduler]\nshut_cond = "true"\n[tasks.a]\nfunc = "jobs.run:go"\nstart_cond = "true"\n'
    )
    for argv in (
        ["run", str(folder / "tasks.toml")],
        ["check", "--import-funcs", str(folder / "tasks.toml")],
    ):
        result = cli(*argv)
        assert result.returncode == 1, (argv, result.stdout, result.stderr)
        assert "anybody may add modules" in result.stdout + result.stderr


def test_func_module_compiled_file_of_another_user_is_refused(tmp_path, cli):
    """A current ``__pycache__/jobs.*.pyc`` runs instead of ``jobs.py``: it is judged too."""
    import importlib.util
    import py_compile

    proof = tmp_path / "ran"
    folder = tmp_path / "tasks"
    folder.mkdir()
    source = folder / "jobs.py"
    source.write_text("def go():\n    pass\n")
    evil = tmp_path / "evil.py"
    evil.write_text(PROOF_MODULE.format(proof=str(proof)) + "def go():\n    pass\n")
    cached = importlib.util.cache_from_source(str(source))
    # The planted bytecode claims the real source's mtime and size: Python would use it.
    py_compile.compile(str(evil), cfile=cached)
    data = bytearray(type(source)(cached).read_bytes())
    info = source.stat()
    data[8:16] = int(info.st_mtime).to_bytes(4, "little") + info.st_size.to_bytes(4, "little")
    plant(type(source)(cached), bytes(data))
    (folder / "tasks.toml").write_text(
        '[scheduler]\nshut_cond = "true"\n[tasks.a]\nfunc = "jobs:go"\nstart_cond = "true"\n'
    )
    result = cli("check", "--import-funcs", str(folder / "tasks.toml"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not trusted" in result.stdout + result.stderr and "pycache" in result.stdout
    assert not proof.exists()


# ---------------------------------------------------------------- (5) bounded reads


def test_read_bounded_enforces_the_limit_while_reading():
    from conddsl.bounded import FileRefused, FileTooLarge, read_bounded

    # /proc files say they are 0 bytes long: the limit cannot come from stat.
    assert os.stat("/proc/self/maps").st_size == 0
    with pytest.raises(FileTooLarge, match="larger than 10 bytes"):
        read_bounded("/proc/self/maps", 10)
    with pytest.raises(FileRefused, match="character device"):
        read_bounded("/dev/zero", 10)


def test_read_bounded_owned_judges_the_file_opened(sticky):
    from conddsl.bounded import FileRefused, read_bounded

    mine = sticky / "mine"
    mine.write_bytes(b"ok")
    theirs = sticky / "theirs"
    plant(theirs, b"planted")
    assert read_bounded(mine, 10, owned=True) == b"ok"
    assert read_bounded(theirs, 10) == b"planted"  # a file the user named: read
    with pytest.raises(FileRefused, match="another user"):
        read_bounded(theirs, 10, owned=True)
    os.chmod(mine, 0o666)
    with pytest.raises(FileRefused, match="anyone may write"):
        read_bounded(mine, 10, owned=True)


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_fifo_or_device_as_task_or_rules_file_is_refused_at_once(tmp_path, special, cli):
    target = str(tmp_path / "x.toml")
    if special == "fifo":
        os.mkfifo(target)  # nobody ever writes it: reading would wait forever
    else:
        os.symlink(special, target)
    kind = "FIFO" if special == "fifo" else "character device"
    result = cli("check", target)
    assert result.returncode == 2, result.stderr
    assert f"not a regular file (a {kind})" in result.stderr + result.stdout
    result = cli("run", target)
    assert result.returncode == 2 and "not a regular file" in result.stderr, result.stderr
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(f'[scheduler]\nrules = [{target!r}]\n[tasks.a]\ncommand = ["true"]\n')
    for argv in (["check", str(tasks)], ["run", str(tasks)]):
        result = cli(*argv)
        assert result.returncode == 1, (argv, result.stderr)
        assert "C204" in result.stdout + result.stderr and kind in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_task_file_that_cannot_be_read_is_a_clear_error(cli):
    """/proc/self/mem is a regular file whose read fails (EIO): no 'internal error'."""
    result = cli("run", "/proc/self/mem")
    assert result.returncode == 2, result.stderr
    assert "/proc/self/mem: cannot be read (Input/output error)" in result.stderr
    assert "internal error" not in result.stderr


# ---------------------------------------------------------------- (2) the process registry

HARMLESS = """
[scheduler]
history = "runs.sqlite3"
shut_cond = "task 'hello' has succeeded"
instant_shutdown = true
kill_grace = 0.2

[tasks.hello]
command = ["true"]
start_cond = "every 1 hour"
"""


@pytest.fixture
def victim():
    """A process of root's that nobody asked conddsl to end: leads its own session."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def registry(trees: dict[int, int | None]) -> bytes:
    """A registry naming ``{pid: pgid}`` with their real start times, from a dead owner."""
    import json

    from conddsl.runtime.leftovers import boot_id
    from conddsl.runtime.processes import read_stat

    owner = {"pid": 4_000_000, "start": 1, "token": "x", "boot": boot_id()}
    entries = {
        f"run{pid}": {"task": "t", "pid": pid, "start": read_stat(pid).start, "pgid": pgid or pid}
        for pid, pgid in trees.items()
    }
    return json.dumps({"version": 1, "owner": owner, "trees": entries}).encode()


def test_planted_registry_of_another_user_signals_nothing(private, victim, cli):
    (private / "tasks.toml").write_text(HARMLESS)
    plant(private / "runs.sqlite3.procs.json", registry({victim.pid: None}))
    check = cli("check", str(private / "tasks.toml"))
    assert "C602" in check.stdout and "another user" in check.stdout, check.stdout
    result = conddsl("run", str(private / "tasks.toml"), cwd=private)
    assert result.returncode == 0, result.stderr
    assert "process registry" in result.stderr and "not trusted" in result.stderr
    assert victim.poll() is None  # still running: never signalled


def test_registry_planted_after_the_check_is_refused_when_read(sticky, victim, caplog):
    """The registry's trust is judged on the file opened: one that appears between the
    check at the start and the read (a race in /tmp) is not obeyed either."""
    from conddsl.runtime.leftovers import ProcessRegistry

    path = sticky / "runs.sqlite3.procs.json"
    plant(path, registry({victim.pid: None}))
    assert ProcessRegistry(str(path)).read() == (None, [])
    assert "another user" in caplog.text
    link = sticky / "link.procs.json"
    link.symlink_to(path)  # never through a symlink, even the reader's own
    assert ProcessRegistry(str(link)).read() == (None, [])


def test_registry_never_names_pid_1_our_ancestors_or_a_foreign_group(tmp_path, victim, cli):
    (tmp_path / "tasks.toml").write_text(HARMLESS)
    child = subprocess.Popen(["sleep", "60"])  # not a group leader: no task root
    try:
        own = {1: None, os.getpid(): None, child.pid: None, victim.pid: os.getpgrp()}
        (tmp_path / "runs.sqlite3.procs.json").write_bytes(registry(own))
        check = cli("check", str(tmp_path / "tasks.toml"))
        assert check.stdout.count("C602") == 4, check.stdout
        result = conddsl("run", str(tmp_path / "tasks.toml"), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "left alone" in result.stderr
        assert child.poll() is None and victim.poll() is None
    finally:
        child.kill()
        child.wait()


# ---------------------------------------------------------------- histories and journals

DAILY = """
[scheduler]
history = "runs.sqlite3"
shut_cond = "task 'report' has succeeded"
instant_shutdown = true

[tasks.report]
command = ["true"]
start_cond = "daily"
"""


def journal_line(task: str, action: str) -> bytes:
    """One journal entry: ``task`` did ``action`` now."""
    import json
    import time

    entry = {"key": f"k-{task}-{action}", "task": task, "action": action}
    entry.update(at=int(time.time() * 1_000_000), run_id=None, reason=None, message=None)
    return json.dumps(entry).encode() + b"\n"


@pytest.mark.parametrize("planted", ["runs.sqlite3", "runs.sqlite3.pending.jsonl"])
def test_planted_history_or_journal_is_refused(private, planted, cli):
    from conddsl.history import SQLiteHistory

    (private / "tasks.toml").write_text(DAILY)
    if planted.endswith(".jsonl"):
        # A "success" today would make the daily task wait until tomorrow.
        plant(private / planted, journal_line("report", "success"))
    else:
        SQLiteHistory(private / planted).close()
        os.chown(private / planted, NOBODY, NOBODY)
    check = cli("check", str(private / "tasks.toml"))
    assert check.returncode == 1 and "C601" in check.stdout, check.stdout
    result = cli("run", str(private / "tasks.toml"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "another user" in result.stderr and "Traceback" not in result.stderr
    assert "success" not in result.stdout  # nothing ran, nothing was taken from it


@pytest.mark.parametrize("planted", [False, True])
def test_history_in_a_folder_anybody_may_write_is_refused(sticky, tmp_path, cli, planted):
    """Root's own sticky folder, as ``/tmp``: another user may create the lock, registry,
    journal or SQLite's ``-wal``/``-shm`` first, or swap one between a check and SQLite's
    own open. So the folder itself is refused, before anything is made or opened there."""
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (sticky / "tasks.toml").write_text(DAILY)
    if planted:
        for side in (".run.lock", ".procs.json", ".pending.jsonl", "-wal", "-shm"):
            link = sticky / f"runs.sqlite3{side}"
            link.symlink_to(victim)
            os.lchown(link, NOBODY, NOBODY)
    before = sorted(path.name for path in sticky.iterdir())
    check = cli("check", "--output-format", "full", str(sticky / "tasks.toml"))
    assert check.returncode == 1 and "C601" in check.stdout, check.stdout
    assert f"the history's folder {sticky} is not private" in check.stdout
    assert "e.g. ~/.local/state/conddsl/" in check.stdout
    result = cli("run", str(sticky / "tasks.toml"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"the history's folder {sticky} is not private" in result.stderr, result.stderr
    assert "anybody may add files" in result.stderr
    assert "hint: keep the history in a folder only you (or root) may write" in result.stderr
    assert "success" not in result.stdout and "Traceback" not in result.stderr
    assert sorted(path.name for path in sticky.iterdir()) == before  # nothing made there
    assert victim.read_text() == "keep"
    # A folder not made yet would be made where anybody may make it first.
    assert "anybody may add files" in history_folder_problem(sticky / "not-yet" / "h.sqlite3")
    assert history_folder_problem(tmp_path / "not-yet" / "h.sqlite3") is None


def test_scheduler_keeps_no_registry_beside_a_history_in_an_open_folder(sticky, victim, caplog):
    """Through the API too (no ``conddsl run`` to refuse the folder): the history is not
    opened there, and a registry whose name anybody may take is neither obeyed nor
    written, even one of root's own."""
    import asyncio

    from conddsl.history import HistoryError, SQLiteHistory
    from conddsl.runtime.leftovers import recover

    path = sticky / "h.sqlite3"
    (sticky / "h.sqlite3.procs.json").write_bytes(registry({victim.pid: None}))
    with pytest.raises(HistoryError, match="is not private: anybody may add files"):
        SQLiteHistory(path)
    assert not path.exists()
    loop = asyncio.new_event_loop()
    try:
        found = recover(str(path) + ".procs.json", 0.1, loop)
    finally:
        loop.close()
    assert found.registry is None and found.killer is None
    assert "is not kept" in caplog.text and "anybody may add files" in caplog.text
    assert victim.poll() is None


NOGROUP = 65534  # nobody's group: not root's


def test_group_writable_file_is_trusted_only_when_the_group_is_yours_alone(private, monkeypatch):
    """``umask 002`` makes files group-writable: fine in a user-private group (your
    primary group, nobody else in it), refused in any other group."""
    import grp

    from conddsl import trust

    path = private / "file"
    path.write_text("x")
    os.chmod(path, 0o664)
    assert untrusted(path) is None  # root:root, and no other member in group root
    os.chown(path, 0, NOGROUP)
    assert "may be written by group" in untrusted(path) and "65534" in untrusted(path)
    os.chmod(path, 0o644)
    assert untrusted(path) is None  # its group may read it only
    os.chmod(path, 0o664)
    os.chown(path, 0, os.getegid())
    real = grp.getgrgid(os.getegid())
    shared = grp.struct_group((real.gr_name, real.gr_passwd, real.gr_gid, ["nobody"]))
    monkeypatch.setattr(grp, "getgrgid", lambda gid: shared)
    assert not trust._private_group(os.getegid())
    assert "may be written by group" in untrusted(path)


def test_history_or_folder_a_shared_group_may_write_is_refused(private, cli):
    from conddsl.history import SQLiteHistory

    (private / "tasks.toml").write_text(DAILY)
    SQLiteHistory(private / "runs.sqlite3").close()
    os.chown(private / "runs.sqlite3", 0, NOGROUP)
    os.chmod(private / "runs.sqlite3", 0o664)
    check = cli("check", str(private / "tasks.toml"))
    assert check.returncode == 1 and "C601" in check.stdout, check.stdout
    assert "may be written by group nogroup" in check.stdout
    result = cli("run", str(private / "tasks.toml"))
    assert result.returncode == 1 and "may be written by group nogroup" in result.stderr
    os.chmod(private / "runs.sqlite3", 0o644)
    os.chown(private, 0, NOGROUP)
    os.chmod(private, 0o775)  # the group may add the history's side files
    result = cli("run", str(private / "tasks.toml"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "group nogroup (gid 65534) may add files" in result.stderr
    assert "success" not in result.stdout


def test_task_and_rules_files_others_may_write_are_read_with_a_warning(private, tmp_path, cli):
    """They are what you pointed conddsl at (not found by it): read, but you are told."""
    rules = private / "rules.cond"
    plant(rules, b"often = every 1 hour\n")
    task_file = private / "tasks.toml"
    task_file.write_text(
        elsewhere(COMMAND_ONLY.replace('"every 1 hour"', '"often"'), tmp_path).replace(
            "[scheduler]\n", '[scheduler]\nrules = ["rules.cond"]\n', 1
        )
    )
    os.chown(task_file, 0, NOGROUP)
    os.chmod(task_file, 0o664)
    check = cli("check", str(task_file))
    assert check.returncode == 0, check.stdout + check.stderr
    result = cli("run", str(task_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "success" in result.stdout
    for shown, prefix in ((check.stderr, "conddsl: note: "), (result.stderr, "conddsl: warning: ")):
        assert f"{prefix}{rules} belongs to another user (uid {NOBODY})" in shown, shown
        assert f"{prefix}{task_file} may be written by group nogroup (gid 65534)" in shown
        assert "decides what conddsl run does as you" in shown


def test_planted_journal_lock_symlink_creates_nothing(private, tmp_path, cli):
    """``<journal>.lock`` is a symlink another user planted: root must not create (or
    open) the file it names when it replays its own journal."""
    (private / "tasks.toml").write_text(DAILY.replace("task 'report' has succeeded", "true"))
    (private / "runs.sqlite3.pending.jsonl").write_bytes(journal_line("report", "success"))
    target = tmp_path / "created-by-root"
    lock = private / "runs.sqlite3.pending.jsonl.lock"
    lock.symlink_to(target)
    os.lchown(lock, NOBODY, NOBODY)
    result = cli("run", str(private / "tasks.toml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "now written" in result.stdout
    assert not target.exists()


def test_journal_lock_held_by_another_user_does_not_hang_open(tmp_path, monkeypatch):
    """Anybody who may read the lock file may flock it: the wait for it is bounded."""
    from conddsl.history import SQLiteHistory
    from conddsl.history import sqlite as store

    monkeypatch.setattr(store, "_LOCK_WAIT", 0.2, raising=False)
    (tmp_path / "runs.sqlite3.pending.jsonl").write_bytes(journal_line("report", "success"))
    lock = tmp_path / "runs.sqlite3.pending.jsonl.lock"
    lock.touch(mode=0o644)  # as locks were made before: anybody may read it
    # Another user who may read it opens it, and holds a shared flock on it.
    fd = os.open(lock, os.O_RDONLY)
    holder = subprocess.Popen(
        ["/bin/sh", "-c", f"flock -s {fd} && echo held && exec sleep 20"],
        pass_fds=(fd,),
        user=NOBODY,
        stdout=subprocess.PIPE,
        text=True,
    )
    os.close(fd)
    try:
        assert holder.stdout.readline() == "held\n"
        history = SQLiteHistory(tmp_path / "runs.sqlite3")
        try:
            assert [record.action for record in history.take_replayed()] == ["success"]
        finally:
            history.close()
        assert holder.poll() is None  # opened while the lock was still held
    finally:
        holder.kill()
        holder.wait()


def test_planted_sqlite_rollback_journal_is_refused(private, cli):
    """SQLite rolls a "hot" ``-journal`` back into the database when it opens it: one
    another user wrote would write their pages into the history."""
    from conddsl.history import SQLiteHistory

    (private / "tasks.toml").write_text(DAILY)
    SQLiteHistory(private / "runs.sqlite3").close()
    plant(private / "runs.sqlite3-journal", b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" + bytes(504))
    check = cli("check", str(private / "tasks.toml"))
    assert check.returncode == 1 and "C601" in check.stdout, check.stdout
    result = cli("run", str(private / "tasks.toml"))
    assert (
        result.returncode == 1 and "runs.sqlite3-journal belongs to another user" in result.stderr
    )


def test_history_side_file_symlinked_by_another_user_is_refused_by_check_and_run(private, cli):
    """``runs.sqlite3-wal`` planted as a symlink: run refuses it, so check reports it."""
    (private / "tasks.toml").write_text(DAILY)
    wal = private / "runs.sqlite3-wal"
    wal.symlink_to(private / "tasks.toml")
    os.lchown(wal, NOBODY, NOBODY)
    check = cli("check", str(private / "tasks.toml"))
    assert check.returncode == 1 and "C601" in check.stdout, check.stdout
    assert "symlink of another user" in check.stdout
    result = cli("run", str(private / "tasks.toml"))
    assert result.returncode == 1 and "symlink of another user" in result.stderr
    assert "hint: another user could have written it" in result.stderr


def test_copy_of_a_replaced_history_is_never_written_through_a_planted_symlink(private, tmp_path):
    """The copy beside a replaced history has a name anybody can guess (time and pid):
    symlinks planted under it must not make root write the database over their target.
    (A folder others may write is refused outright; this holds in a private one where such
    links were left, as a second line.)"""
    sticky = private
    import time

    from conddsl.history import HistoryError, SQLiteHistory

    now = datetime.now(timezone.utc)
    victim = tmp_path / "victim"
    victim.write_bytes(b"")  # empty (or a database): SQLite would write over it
    path = sticky / "h.sqlite3"
    history = SQLiteHistory(path)
    history.record("a", "run", at=now)
    start = time.time()
    for ahead in range(5):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(start + ahead))
        link = sticky / f"h.sqlite3.replaced-{stamp}-{os.getpid()}.sqlite3"
        link.symlink_to(victim)
        os.lchown(link, NOBODY, NOBODY)
    SQLiteHistory(sticky / "other.sqlite3").close()
    os.replace(sticky / "other.sqlite3", path)  # the file is replaced while in use
    with pytest.raises(HistoryError, match="replaced by another file") as raised:
        history.record("a", "success", at=now)
    with pytest.raises(HistoryError):  # "success" waits in the journal
        history.close(journal=True)
    assert victim.read_bytes() == b""
    copy = str(raised.value).rsplit(" ", 1)[-1]
    assert not os.path.islink(copy)
    with SQLiteHistory(copy) as kept:
        assert [r.action for r in kept.records()] == ["run"]


def test_replayed_journal_is_printed(tmp_path):
    (tmp_path / "tasks.toml").write_text(DAILY.replace("task 'report' has succeeded", "true"))
    (tmp_path / "runs.sqlite3.pending.jsonl").write_bytes(journal_line("report", "success"))
    result = conddsl("run", str(tmp_path / "tasks.toml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    (at,) = [i for i, line in enumerate(lines) if "by an earlier run, now written" in line]
    assert "1 record kept in" in lines[at]
    assert "success" in lines[at + 1] and "report" in lines[at + 1]


# ---------------------------------------------------------------- control characters

ESCAPED = r"""
[scheduler]
shut_cond = "task 'e\u001b[2Jx\u0000' has succeeded"
instant_shutdown = true

[tasks."e\u001b[2Jx\u0000"]
command = ["true"]
start_cond = "every 1 hour"
"""


def test_control_characters_in_task_names_are_escaped_in_run_output(tmp_path):
    (tmp_path / "tasks.toml").write_text(ESCAPED)
    result = conddsl("run", str(tmp_path / "tasks.toml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout + result.stderr and "\0" not in result.stdout
    assert r"e\x1b[2Jx\x00" in result.stdout


@pytest.mark.parametrize("command", ["explain", "next"])
def test_control_characters_in_conditions_are_escaped_in_cli_output(command, cli):
    for text in (
        "task 'a\x1b[2Jb' has succeeded",
        "task 'a\x1b[2Jb' has succeded",
        "param 'a\x1b[2J\x9bb' exists",  # quoted by the note: its windows cannot be listed
    ):
        result = cli(command, text)
        assert "\x1b" not in result.stdout + result.stderr, (text, result)
        assert "\x9b" not in result.stdout + result.stderr, (text, result)


def test_control_characters_in_file_paths_are_escaped_in_every_output(tmp_path):
    """A folder named with a terminal escape: run's header and errors, check's notes and
    errors, and the warnings logged (an untrusted parser cache here) print it escaped."""
    folder = tmp_path / "d\x1b[2Jx"
    folder.mkdir()
    (folder / "tasks.toml").write_text(COMMAND_ONLY)
    cache = folder / "cache"
    (cache / "conddsl").mkdir(parents=True)
    os.chmod(cache / "conddsl", 0o777)  # not trusted: a warning naming the folder
    missing = str(folder / "missing\x07.toml")
    outputs = [
        conddsl("run", str(folder / "tasks.toml"), XDG_CACHE_HOME=str(cache)),
        conddsl("run", missing),
        conddsl("check", missing, str(folder / "tasks.toml")),
        conddsl("next", "daily", XDG_CACHE_HOME=str(cache)),
    ]
    for result in outputs:
        shown = result.stdout + result.stderr
        assert "\x1b" not in shown and "\x07" not in shown, shown
        assert "Traceback" not in shown, shown
    assert r"d\x1b[2Jx" in outputs[0].stdout
    assert "not trusted" in outputs[0].stderr and "not trusted" in outputs[3].stderr
    assert r"missing\x07.toml" in outputs[1].stderr + outputs[2].stderr


def test_control_characters_in_findings_are_escaped():
    from conddsl.errors import Span
    from conddsl.lint.output import concise, full
    from conddsl.rules.diagnostics import Diagnostic, LineIndex

    found = Diagnostic("C301", "unknown task x\x1b[2J", "f\x07.toml", Span(1, 1, 1, 2), hint="\x9b")
    texts = {"f\x07.toml": LineIndex("a = 1\x1b\n")}
    for shown in (concise([found], texts), full([found], texts)):
        assert not any(ch in shown for ch in "\x1b\x07\x9b"), shown
        assert r"x\x1b[2J" in shown
