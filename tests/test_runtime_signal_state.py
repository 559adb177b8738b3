"""The signal state a run's body starts with: whichever way its process started (served by
the fork server or forked from the scheduler; a function or a program), SIGTERM is not
blocked in it (the fork server and the scheduler fork with SIGTERM blocked for a moment),
nor in what it forks, and a program starts with the dispositions a program expects
(Python ignores SIGPIPE and SIGXFSZ: a program exec'd with them ignored gets EPIPE where
it would have died quietly, as `yes | head -1` does)."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time

import pytest
from runtime_helpers.scenario import Once, play

from conddsl.runtime import Scheduler, forkserver

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc, fork server")

# Bits of /proc/<pid>/status's SigBlk and SigIgn masks (signal n is bit n-1).
_SIGTERM_BIT = 1 << (signal.SIGTERM - 1)
_SIGPIPE_BIT = 1 << (signal.SIGPIPE - 1)
_SIGXFSZ_BIT = 1 << (signal.SIGXFSZ - 1)


def _masks(pid: int | str = "self") -> dict[str, int]:
    """The SigBlk and SigIgn masks of a process (``self``: this thread's process)."""
    masks = {}
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            name, _, value = line.partition(":")
            if name in ("SigBlk", "SigIgn"):
                masks[name] = int(value, 16)
    return masks


def note_masks(path: str) -> None:
    """A process task: note its own masks and those of a child it forks (a grandchild of
    the run)."""
    child = os.fork()
    if child == 0:
        try:
            with open(path + ".child", "w") as file:
                json.dump(_masks(), file)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    with open(path, "w") as file:
        json.dump(_masks(), file)


def _read(path: str) -> dict[str, int]:
    with open(path) as file:
        return json.load(file)


async def _shut_after_end(app: Scheduler) -> None:
    import asyncio

    while not any(rec.action != "run" for rec in app.history.records()):
        await asyncio.sleep(0.01)
    app.shut_down()


def _run(app: Scheduler) -> None:
    play(app, _shut_after_end)
    ended = [rec for rec in app.history.records() if rec.action != "run"]
    assert [rec.action for rec in ended] == ["success"], ended


@pytest.mark.parametrize("forker", ["server", "scheduler"])
def test_a_process_body_and_its_child_run_with_sigterm_unblocked(tmp_path, forker):
    path = str(tmp_path / "masks.json")
    app = Scheduler({"kill_grace": 0.5, "timeout": "never"})
    func = functools.partial(note_masks, path)
    if forker == "scheduler":
        func = lambda: note_masks(path)  # noqa: E731 - a lambda is forked from the scheduler
    app.task(Once(), name="masks", execution="process")(func)
    _run(app)
    for masks in (_read(path), _read(path + ".child")):
        assert not masks["SigBlk"] & _SIGTERM_BIT, masks


@pytest.mark.parametrize("forker", ["server", "scheduler"])
def test_a_program_and_its_child_start_with_sigterm_unblocked_and_default_dispositions(
    tmp_path, monkeypatch, forker
):
    if forker == "scheduler":
        monkeypatch.setattr(forkserver.ForkServer, "start", lambda self: False)
    path = tmp_path / "status"
    # A program the shell forks reads its own status, then the shell becomes one that does
    # (the shell's status read from outside may show the moment it blocks all signals to fork).
    masks = "grep -E '^Sig(Blk|Ign)' /proc/self/status"
    script = f"{masks} > {path}.child; exec {masks} > {path}"
    app = Scheduler({"kill_grace": 0.5, "timeout": "never"})
    app.command_task(Once(), argv=["sh", "-c", script], name="masks")
    _run(app)
    for text in (path.read_text(), (tmp_path / "status.child").read_text()):
        masks = {
            name: int(value, 16) for name, value in (line.split(":") for line in text.splitlines())
        }
        assert not masks["SigBlk"] & _SIGTERM_BIT, masks
        assert not masks["SigIgn"] & (_SIGPIPE_BIT | _SIGXFSZ_BIT), masks


def swallow_sigterm_then_sleep(path: str) -> None:
    """A careless task: its own SIGTERM handler, which swallows it; then it sleeps."""
    signal.signal(signal.SIGTERM, lambda *_: None)
    open(path, "w").close()
    time.sleep(60)


def test_a_signal_a_forked_function_handles_does_not_reach_the_hosts_loop(tmp_path):
    """A host whose loop handles SIGTERM (``loop.add_signal_handler``: Python then writes
    each signal's number to the loop's wakeup descriptor) runs a function forked from it
    that installs its own SIGTERM handler: the run's SIGTERM is the child's alone, and
    never reaches the host's handler (through the descriptor the child inherited)."""
    path = str(tmp_path / "ready")
    heard: list[str] = []
    app = Scheduler({"kill_grace": 0.3, "timeout": "never"})
    app.task("false", name="careless", execution="process")(
        lambda: swallow_sigterm_then_sleep(path)
    )

    async def terminate_it(app: Scheduler) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, heard.append, "the host's SIGTERM")
        try:
            app.run_task("careless")
            while not os.path.exists(path):
                await asyncio.sleep(0.01)
            app.terminate("careless")
            while not any(rec.action != "run" for rec in app.history.records()):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # the loop's turn to read its wakeup descriptor
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
        app.shut_down()

    play(app, terminate_it)
    (ended,) = [rec for rec in app.history.records() if rec.action != "run"]
    assert ended.action == "terminate"
    assert ended.message.endswith("killed by signal SIGKILL")  # its handler swallowed SIGTERM
    assert heard == []


def test_the_schedulers_mask_is_restored_when_a_fork_fails(tmp_path, monkeypatch):
    """The scheduler forks a function with SIGTERM blocked for a moment: when the fork fails
    (EAGAIN: RLIMIT_NPROC reached), its thread gets its mask back all the same, and the run
    fails with why."""
    monkeypatch.setattr(forkserver.ForkServer, "start", lambda self: False)

    def no_more_processes() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_more_processes)
    masks: list[set[int]] = []
    app = Scheduler({"kill_grace": 0.5, "timeout": "never"})
    app.task(Once(), name="unforked", execution="process")(lambda: None)

    async def note_mask(app: Scheduler) -> None:
        await _shut_after_end(app)
        masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, set()))

    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    play(app, note_mask)
    (ended,) = [rec for rec in app.history.records() if rec.action != "run"]
    assert ended.action == "fail"
    assert "could not start a process" in ended.message
    assert masks == [before]
    assert signal.SIGTERM not in before


def stubborn(path: str, how: str) -> None:
    """A task that will not end by SIGTERM: it ignores it, blocks it, or handles it by
    sleeping; then it says it is ready and sleeps."""
    if how == "ignores":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif how == "blocks":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    else:
        signal.signal(signal.SIGTERM, lambda *_: time.sleep(60))
    open(path, "w").close()
    time.sleep(60)


@pytest.mark.parametrize("how", ["ignores", "blocks", "sleeps_in_its_handler"])
@pytest.mark.parametrize("forker", ["server", "scheduler"])
def test_a_task_that_outlasts_its_sigterm_ends_by_the_sigkill_after_the_grace(
    tmp_path, forker, how
):
    path = str(tmp_path / "ready")
    app = Scheduler({"kill_grace": 0.3, "timeout": "never"})
    func = functools.partial(stubborn, path, how)
    if forker == "scheduler":
        func = lambda: stubborn(path, how)  # noqa: E731 - a lambda is forked from the scheduler
    app.task(Once(), name="stubborn", execution="process")(func)

    async def stop_once_ready(app: Scheduler) -> None:
        import asyncio

        while not os.path.exists(path):
            await asyncio.sleep(0.01)
        app.shut_down(force=True)

    play(app, stop_once_ready)
    assert [rec.action for rec in app.history.records()] == ["run", "terminate"]
    assert app.history.records()[-1].message.endswith("killed by signal SIGKILL")
