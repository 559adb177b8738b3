"""The Python side of the month-end example.

The ledger is ``$REPORT_DATA/ledger.csv`` (default: ``data/`` beside this file), rows of
``date,account,amount`` with ISO dates. ``close_books`` reports the month of the latest
entry: the total per account, into ``reports/YYYY-MM.csv``; ``archive_report`` zips the
newest report into ``archive/``.
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections import defaultdict
from pathlib import Path

from conddsl.runtime import Inaction


def data_folder() -> Path:
    """The ledger, the reports and the archive live here."""
    return Path(os.environ.get("REPORT_DATA", Path(__file__).parent / "data"))


def _ledger() -> list[tuple[str, str, float]]:
    path = data_folder() / "ledger.csv"
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as file:
        return [(day, account, float(amount)) for day, account, amount in csv.reader(file)]


def ledger_check() -> None:
    """Fail (so that someone looks) when an entry has no account or a zero amount."""
    bad = [row for row in _ledger() if not row[1] or row[2] == 0]
    if bad:
        raise ValueError(f"{len(bad)} ledger entries need fixing, the first: {bad[0]}")


def close_books() -> str:
    """Write the totals per account of the latest month in the ledger; its YYYY-MM."""
    rows = _ledger()
    if not rows:
        raise Inaction("the ledger is empty")
    month = max(day for day, _, _ in rows)[:7]
    totals: dict[str, float] = defaultdict(float)
    for day, account, amount in rows:
        if day.startswith(month):
            totals[account] += amount
    reports = data_folder() / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    with (reports / f"{month}.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["account", "total"])
        for account, total in sorted(totals.items()):
            writer.writerow([account, f"{total:.2f}"])
    return month


def archive_report() -> None:
    """Zip the newest report into archive/YYYY-MM.zip."""
    base = data_folder()
    newest = max((base / "reports").glob("*.csv"))
    archive = base / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive / f"{newest.stem}.zip", "w") as bundle:
        bundle.write(newest, newest.name)


def timesheet_reminder() -> None:
    """Remind everyone (here: a line in reminders.log; in real life, a message)."""
    base = data_folder()
    base.mkdir(parents=True, exist_ok=True)
    with (base / "reminders.log").open("a", encoding="utf-8") as log:
        log.write("timesheets are due today\n")
