"""Every setup in examples/ passes ``conddsl check`` and runs as its README says.

Each test builds the scheduler from the example's task file the way ``conddsl run``
does (see ``build``), on a virtual clock, and drives days or months of schedule in
milliseconds; the assertions are on the run history: which task started when, and how
each run ended.

Virtual time: thread tasks here do quick work, and time stands still while they run
(``WorkClock``), so a run that starts at 22:00 also ends at 22:00. Process and command
tasks run in real time while virtual time jumps to the next deadline, so a long one is
ended by its timeout, its end condition or the shutdown at exactly that instant.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conddsl.cli import main as cli_main
from conddsl.history import FINISH_ACTIONS, Record
from conddsl.rules import load_task_file
from conddsl.runtime import Scheduler, VirtualClock, scheduler_from_task_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# examples/demo (the README's demo) and examples/termination have tests of their own.
SETUPS = sorted(
    path.parent.name for path in EXAMPLES.glob("*/tasks.toml") if path.parent.name != "demo"
)


class WorkClock(VirtualClock):
    """A VirtualClock that does not jump while a thread task is running.

    Quick work in a thread then takes no virtual time, whatever the machine's load.
    (Thread tasks are named ``conddsl:<task>`` by the scheduler.)
    """

    async def sleep_until(self, deadline: datetime | None, wake: asyncio.Event) -> None:
        while not wake.is_set():
            for _ in range(8):
                await asyncio.sleep(0)
                if wake.is_set():
                    return
            if not any(thread.name.startswith("conddsl:") for thread in threading.enumerate()):
                break
            await asyncio.sleep(0.0002)
        if not wake.is_set():
            await super().sleep_until(deadline, wake)


def build(task_file: Path, clock: VirtualClock, **overrides: Any) -> Scheduler:
    """The scheduler ``conddsl run task_file`` runs, on ``clock`` with an in-memory history.

    ``overrides`` replace settings of the ``[scheduler]`` table (a short ``kill_grace``,
    say: grace periods are real time).
    """
    tasks = load_task_file(task_file)  # TaskFileError with every finding
    return scheduler_from_task_file(tasks, clock=clock, **overrides)


def play(
    app: Scheduler,
    until: datetime,
    driver: Callable[[Scheduler], Awaitable[None]] | None = None,
    limit: float = 20.0,
) -> list[Record]:
    """Serve ``app`` until ``until`` (virtual), with ``driver`` beside it; its records."""

    async def main() -> None:
        async def stop() -> None:
            await app.clock.sleep((until - app.clock.now()).total_seconds())
            app.shut_down(force=True)

        stopping = asyncio.ensure_future(stop())
        driving = asyncio.ensure_future(driver(app)) if driver is not None else None
        try:
            await asyncio.wait_for(app.serve(), limit)
        finally:
            for task in (stopping, driving):
                if task is not None and not task.done():
                    task.cancel()
        if driving is not None and driving.done() and not driving.cancelled():
            driving.result()  # an assertion in the driver fails the test

    asyncio.run(main())
    records = app.history.records()
    runs = {rec.run_id for rec in records if rec.action == "run"}
    ends = [rec.run_id for rec in records if rec.action in FINISH_ACTIONS]
    assert sorted(ends) == sorted(runs), "every run has exactly one finishing record"
    return records


def local(records: list[Record], zone: str, action: str, task: str | None = None) -> list:
    """``(task, local time)`` of the records with that action (and task)."""
    tz = ZoneInfo(zone)
    return [
        (rec.task, rec.at.astimezone(tz).replace(tzinfo=None))
        for rec in records
        if rec.action == action and (task is None or rec.task == task)
    ]


def starts(records: list[Record], zone: str, task: str) -> list[datetime]:
    """The local times at which ``task`` started."""
    return [at for _, at in local(records, zone, "run", task)]


def outcomes(records: list[Record], zone: str, task: str, *, reasons: bool = False) -> list:
    """``(action, local time[, reason])`` of the finishing records of ``task``."""
    tz = ZoneInfo(zone)
    return [
        (rec.action, rec.at.astimezone(tz).replace(tzinfo=None), *([rec.reason] if reasons else []))
        for rec in records
        if rec.task == task and rec.action in FINISH_ACTIONS
    ]


def whole(at: datetime) -> datetime:
    """``at`` without its microseconds."""
    return at.replace(microsecond=0)


async def sleep_until(app: Scheduler, at: datetime) -> None:
    """Sleep on the scheduler's virtual clock until ``at``."""
    await app.clock.sleep((at - app.clock.now()).total_seconds())


async def held_until(app: Scheduler, done: Callable[[], bool], limit: float = 10.0) -> None:
    """Hold virtual time until ``done()`` (polled in real time): slow real work, no time."""
    app.clock.hold()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not done():
            assert loop.time() < deadline, f"still waiting: {app.history.records()}"
            await asyncio.sleep(0.005)
    finally:
        app.clock.release()


# ---------------------------------------------------------------- every example


@pytest.mark.parametrize("setup", SETUPS)
def test_example_passes_check(setup: str, capsys) -> None:
    assert cli_main(["check", "--strict", str(EXAMPLES / setup)]) == 0
    assert capsys.readouterr().out == ""


def test_the_demo_passes_check(capsys) -> None:
    assert cli_main(["check", str(EXAMPLES / "demo")]) == 0


def test_there_are_five_setups_besides_the_demo() -> None:
    assert len(SETUPS) >= 5, SETUPS
    for setup in SETUPS:
        folder = EXAMPLES / setup
        assert list(folder.glob("*.cond")), f"{setup} has no rule file"
        assert list(folder.glob("*.py")), f"{setup} has no Python functions"


# ---------------------------------------------------------------- (a) a nightly ETL chain


def test_nightly_etl_chain(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ETL_DATA", str(tmp_path))
    zone = "Europe/Helsinki"
    tz = ZoneInfo(zone)
    clock = WorkClock(datetime(2024, 1, 1, tzinfo=tz))  # Monday 00:00
    app = build(EXAMPLES / "nightly_etl" / "tasks.toml", clock)
    good = "day,store,amount\n{day},north,10.50\n{day},south,4\n{day},north,1.50\n"

    async def upstream(app: Scheduler) -> None:
        """Each evening at 21:00 the upstream system exports the day's sales (or not)."""
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        for day, text in [
            (1, good.format(day="2024-01-01")),
            (2, None),  # Tuesday: no export
            (3, "day,store,amount\n2024-01-03,north,lots\n"),  # Wednesday: a bad row
            (4, good.format(day="2024-01-04")),
        ]:
            await sleep_until(app, datetime(2024, 1, day, 21, 0, tzinfo=tz))
            if day == 4:  # Thursday morning someone removed Wednesday's bad file
                (tmp_path / "staging" / "sales-2024-01-03.csv").unlink()
            if text is not None:
                (inbox / f"sales-2024-01-0{day}.csv").write_text(text)

    records = play(app, datetime(2024, 1, 5, 12, 0, tzinfo=tz), upstream)
    night = [datetime(2024, 1, day, 22, 0) for day in (1, 2, 3, 4)]
    assert starts(records, zone, "extract") == night
    # Each step starts when the one before it has succeeded, at the same instant.
    assert starts(records, zone, "transform") == [night[0], night[2], night[3]]
    assert starts(records, zone, "load") == [night[0], night[3]]
    assert outcomes(records, zone, "extract") == [
        ("success", night[0]),
        ("inaction", night[1]),
        ("success", night[2]),
        ("success", night[3]),
    ]
    assert outcomes(records, zone, "transform") == [
        ("success", night[0]),
        ("fail", night[2]),
        ("success", night[3]),
    ]
    (failure,) = [rec for rec in records if rec.action == "fail"]
    assert "sales-2024-01-03.csv:2: bad row" in failure.message
    assert starts(records, zone, "alert") == [night[2]]
    with sqlite3.connect(tmp_path / "warehouse.sqlite3") as db:
        rows = db.execute("SELECT day, store, amount FROM daily_sales ORDER BY 1, 2").fetchall()
    assert rows == [
        ("2024-01-01", "north", 12.0),
        ("2024-01-01", "south", 4.0),
        ("2024-01-04", "north", 12.0),
        ("2024-01-04", "south", 4.0),
    ]


# ---------------------------------------------------------------- (b) a backup window


def test_backup_stops_before_business_hours(tmp_path, monkeypatch) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    for number in range(40):
        (source / f"dir{number % 4}").mkdir(parents=True, exist_ok=True)
        (source / f"dir{number % 4}" / f"file{number}.txt").write_text(f"file {number}\n")
    monkeypatch.setenv("BACKUP_SOURCE", str(source))
    monkeypatch.setenv("BACKUP_TARGET", str(target))
    monkeypatch.setenv("BACKUP_PAUSE", "60")  # slow: no night is long enough
    zone = "Europe/Berlin"
    tz = ZoneInfo(zone)
    clock = WorkClock(datetime(2024, 1, 1, tzinfo=tz))  # Monday 00:00
    app = build(EXAMPLES / "backup_window" / "tasks.toml", clock, kill_grace=5)

    async def quiet_monday(app: Scheduler) -> None:
        """The second Monday the disks are fast: time stands still until the copy is done."""
        await sleep_until(app, datetime(2024, 1, 7, 12, 0, tzinfo=tz))
        monkeypatch.setenv("BACKUP_PAUSE", "0")
        await sleep_until(app, datetime(2024, 1, 8, 1, 0, tzinfo=tz))
        assert [run.task.name for run in app.running_runs] == ["backup"]
        await held_until(app, lambda: not app.running_runs)

    records = play(app, datetime(2024, 1, 8, 12, 0, tzinfo=tz), quiet_monday)
    assert starts(records, zone, "backup") == [datetime(2024, 1, day, 1, 0) for day in range(1, 9)]
    weekday_end = [("terminate", datetime(2024, 1, day, 7, 30), "end_cond") for day in range(1, 6)]
    weekend_end = [("terminate", datetime(2024, 1, day, 11, 0), "timeout") for day in (6, 7)]
    assert outcomes(records, zone, "backup", reasons=True) == [
        *weekday_end,
        *weekend_end,
        ("success", datetime(2024, 1, 8, 1, 0), None),
    ]
    message = next(rec.message for rec in records if rec.reason == "end_cond")
    assert message.startswith("its end condition 'business_hours' became true")
    # Each unfinished night is reported when it ends; the finished one is verified.
    assert starts(records, zone, "report_unfinished") == [at for _, at, _ in weekday_end] + [
        at for _, at, _ in weekend_end
    ]
    assert outcomes(records, zone, "verify") == [("success", datetime(2024, 1, 8, 1, 0))]
    assert sorted(p.name for p in target.rglob("*.txt")) == sorted(
        p.name for p in source.rglob("*.txt")
    )
    assert not (target / "STOPPED").exists()


# ---------------------------------------------------------------- (c) business-hours polling


def test_business_hours_polling(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ORDERS_DATA", str(tmp_path))
    zone = "Europe/Helsinki"
    tz = ZoneInfo(zone)
    clock = WorkClock(datetime(2024, 1, 1, tzinfo=tz))  # Monday 00:00
    app = build(EXAMPLES / "business_hours_polling" / "tasks.toml", clock)
    inbox = tmp_path / "inbox"

    async def customers(app: Scheduler) -> None:
        inbox.mkdir()
        await sleep_until(app, datetime(2024, 1, 2, 10, 2, tzinfo=tz))  # Tuesday
        (inbox / "o-1.json").write_text('{"id": 1, "customer": "Ada", "total": 12}')
        (inbox / "o-2.json").write_text('{"id": 2, "customer": "Bo", "total": 30.5}')
        await sleep_until(app, datetime(2024, 1, 3, 9, 0, tzinfo=tz))  # Wednesday
        (inbox / "o-3.json").write_text("{not json")
        await sleep_until(app, datetime(2024, 1, 3, 9, 2, tzinfo=tz))
        (inbox / "o-3.json").unlink()  # someone took the broken file away
        await sleep_until(app, datetime(2024, 1, 6, 11, 0, tzinfo=tz))  # Saturday
        (inbox / "o-4.json").write_text('{"id": 4, "customer": "Cy", "total": 8}')

    records = play(app, datetime(2024, 1, 8, 8, 30, tzinfo=tz), customers)
    polls = starts(records, zone, "poll_orders")
    # `every 5 minutes` is true once five minutes have passed since the last start: one
    # microsecond after it (as in Rocketry). Use `cron */5 * * * *` for whole minutes.
    pace = timedelta(minutes=5, microseconds=1)
    day = [datetime(2024, 1, 1, 8, 0) + k * pace for k in range(120)]
    week = [at + timedelta(days=offset) for offset in range(5) for at in day]
    assert polls == [*week, *(at + timedelta(days=7) for at in day[:6])]
    assert day[-1] == datetime(2024, 1, 1, 17, 55, 0, 119)  # no poll at 18:00 or at weekends
    done = [(action, whole(at)) for action, at in outcomes(records, zone, "poll_orders")]
    assert done.count(("success", datetime(2024, 1, 2, 10, 5))) == 1
    assert [entry for entry in done if entry[0] != "inaction"] == [
        ("success", datetime(2024, 1, 2, 10, 5)),
        ("fail", datetime(2024, 1, 3, 9, 0)),
        ("success", datetime(2024, 1, 8, 8, 0)),  # Saturday's order, on Monday morning
    ]
    assert [whole(at) for at in starts(records, zone, "alert")] == [datetime(2024, 1, 3, 9, 0)]
    digests = [datetime(2024, 1, day, 18, 0) for day in range(1, 6)]
    assert starts(records, zone, "daily_digest") == digests
    ledger = (tmp_path / "ledger.csv").read_text().splitlines()
    assert ledger == ["1,Ada,12.00", "2,Bo,30.50", "4,Cy,8.00"]
    assert (tmp_path / "digest.txt").read_text() == "2 orders, 42.50 EUR\n"


# ---------------------------------------------------------------- (d) month-end report


def test_month_end_report(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("REPORT_DATA", str(tmp_path))
    zone = "Europe/London"
    tz = ZoneInfo(zone)
    clock = WorkClock(datetime(2024, 1, 1, tzinfo=tz))
    app = build(EXAMPLES / "month_end_report" / "tasks.toml", clock)

    async def bookkeeping(app: Scheduler) -> None:
        for month, account, amount in [(1, "sales", "120"), (2, "sales", "80"), (3, "rent", "0")]:
            await sleep_until(app, datetime(2024, month, 15, 12, 0, tzinfo=tz))
            with (tmp_path / "ledger.csv").open("a") as ledger:
                ledger.write(f"2024-{month:02}-15,{account},{amount}\n")
                ledger.write(f"2024-{month:02}-16,fees,-5\n")

    records = play(app, datetime(2024, 4, 1, 12, 0, tzinfo=tz), bookkeeping)
    month_ends = [datetime(2024, 1, 31), datetime(2024, 2, 29), datetime(2024, 3, 31)]
    closing = [day.replace(hour=18) for day in month_ends]
    assert starts(records, zone, "close_books") == closing
    # 31 March is the day British Summer Time starts: 18:00 there is 17:00 UTC.
    last = [rec.at for rec in records if rec.task == "close_books" and rec.action == "run"][-1]
    assert (last.hour, last.utcoffset()) == (17, timedelta(0))
    assert starts(records, zone, "archive_report") == closing
    assert starts(records, zone, "ledger_check") == [day.replace(hour=12) for day in month_ends]
    assert [action for action, _ in outcomes(records, zone, "ledger_check")] == [
        "success",
        "success",
        "fail",  # March has a zero amount
    ]
    fridays = [datetime(2024, 1, 26, 9), datetime(2024, 2, 23, 9), datetime(2024, 3, 29, 9)]
    assert starts(records, zone, "timesheet_reminder") == fridays
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == [
        "2024-01.zip",
        "2024-02.zip",
        "2024-03.zip",
    ]
    assert (tmp_path / "reports" / "2024-02.csv").read_text().splitlines() == [
        "account,total",
        "fees,-5.00",
        "sales,80.00",
    ]


# ---------------------------------------------------------------- (e) long-running processes


def test_warehouse_maintenance_processes(tmp_path, monkeypatch) -> None:
    if shutil.which("python3") is None:
        pytest.skip("the vacuum task runs python3")
    monkeypatch.setenv("WAREHOUSE_DATA", str(tmp_path))
    monkeypatch.setenv("INGEST_POLL_SECONDS", "0.01")
    zone = "America/New_York"
    tz = ZoneInfo(zone)
    clock = WorkClock(datetime(2024, 1, 5, 12, 0, tzinfo=tz))  # Friday noon
    app = build(EXAMPLES / "warehouse_maintenance" / "tasks.toml", clock, kill_grace=0.3)

    async def operator(app: Scheduler) -> None:
        """Ctrl-C on Monday at 10:00, and again at 10:30."""
        await sleep_until(app, datetime(2024, 1, 6, 9, 0, tzinfo=tz))
        (tmp_path / "spool").mkdir(exist_ok=True)
        (tmp_path / "spool" / "batch-1.csv").write_text("id\n1\n")
        await held_until(app, (tmp_path / "loaded" / "batch-1.csv").exists)
        # vacuum.py starts in real time: hold virtual time until it has started
        await sleep_until(app, datetime(2024, 1, 7, 3, 0, tzinfo=tz))
        await held_until(app, (tmp_path / "vacuum.log").exists)
        await sleep_until(app, datetime(2024, 1, 8, 10, 0, tzinfo=tz))
        app.shut_down()
        await sleep_until(app, datetime(2024, 1, 8, 10, 30, tzinfo=tz))
        app.shut_down()

    records = play(app, datetime(2024, 1, 9, tzinfo=tz), operator)
    friday = datetime(2024, 1, 5, 12, 0)
    assert starts(records, zone, "ingest") == [friday]  # one run, as long as the scheduler's
    nights = [datetime(2024, 1, day, 1, 0) for day in (6, 7, 8)]
    assert starts(records, zone, "rebuild_index") == nights
    # Sunday 01:00: ingest and rebuild_index hold both process slots, so vacuum waits
    # for rebuild_index's timeout at 03:00, then runs into its own at 06:00.
    assert starts(records, zone, "vacuum") == [datetime(2024, 1, 7, 3, 0)]
    assert outcomes(records, zone, "rebuild_index", reasons=True) == [
        ("terminate", at.replace(hour=3), "timeout") for at in nights
    ]
    (vacuum,) = [rec for rec in records if rec.task == "vacuum" and rec.action != "run"]
    assert (vacuum.action, vacuum.reason) == ("terminate", "timeout")
    assert vacuum.at.astimezone(tz).replace(tzinfo=None) == datetime(2024, 1, 7, 6, 0)
    assert vacuum.message == "ran longer than its timeout 3:00:00; killed by signal SIGKILL"
    # The first shutdown request lets ingest go on; the second terminates it.
    (ingest,) = [rec for rec in records if rec.task == "ingest" and rec.action != "run"]
    assert (ingest.action, ingest.reason) == ("terminate", "forced")
    assert ingest.at.astimezone(tz).replace(tzinfo=None) == datetime(2024, 1, 8, 10, 30)
    assert ingest.message.startswith("shut_down() was called a second time")
    assert not [rec for rec in records if rec.at > ingest.at]
