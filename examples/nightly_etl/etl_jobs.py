"""The Python side of the nightly ETL example.

The upstream system drops ``sales-*.csv`` files (``day,store,amount`` rows) into
``$ETL_DATA/inbox`` (default: ``data/`` beside this file).

- ``extract`` moves them to ``staging/``; with nothing to move it raises ``Inaction``,
  so the chain stops there for the night without counting as a failure;
- ``transform`` sums the amounts per day and store into ``staging/totals.csv``
  (a malformed row fails it, and the chain stops before the warehouse is touched);
- ``load`` replaces those days in the ``warehouse.sqlite3`` table ``daily_sales``;
- ``alert`` is started when any of them failed.
"""

from __future__ import annotations

import csv
import os
import sqlite3
from collections import defaultdict
from pathlib import Path

from conddsl.runtime import Inaction, TaskTerminationException, TerminationFlag


def data_folder() -> Path:
    """The inbox, the staging area and the warehouse file live here."""
    return Path(os.environ.get("ETL_DATA", Path(__file__).parent / "data"))


def extract(flag: TerminationFlag = TerminationFlag()) -> None:  # noqa: B008
    """Move the new export files from the inbox to the staging area; asked to stop, it
    stops between two files (each file is moved whole or not at all)."""
    base = data_folder()
    exports = sorted((base / "inbox").glob("sales-*.csv"))
    if not exports:
        raise Inaction("no new export in the inbox")
    staging = base / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    for path in exports:
        if flag.is_set():
            raise TaskTerminationException("stopped between two exports")
        path.rename(staging / path.name)


def transform(flag: TerminationFlag = TerminationFlag()) -> None:  # noqa: B008
    """Sum the staged exports per (day, store) into totals.csv; the exports are consumed.
    Asked to stop, it stops before the next export and writes nothing."""
    staging = data_folder() / "staging"
    totals: dict[tuple[str, str], float] = defaultdict(float)
    exports = sorted(staging.glob("sales-*.csv"))
    for path in exports:
        if flag.is_set():
            raise TaskTerminationException("stopped before totals.csv was written")
        with path.open(newline="", encoding="utf-8") as file:
            for line, row in enumerate(csv.DictReader(file), start=2):
                try:
                    totals[row["day"], row["store"]] += float(row["amount"])
                except (KeyError, TypeError, ValueError) as error:
                    raise ValueError(f"{path.name}:{line}: bad row {row}") from error
    with (staging / "totals.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        for (day, store), amount in sorted(totals.items()):
            writer.writerow([day, store, f"{amount:.2f}"])
    for path in exports:
        path.unlink()


def load(flag: TerminationFlag = TerminationFlag()) -> None:  # noqa: B008
    """Replace the days of totals.csv in the warehouse, in one transaction; asked to stop
    (office hours began) before it writes, it leaves the warehouse untouched."""
    base = data_folder()
    totals = base / "staging" / "totals.csv"
    with totals.open(newline="", encoding="utf-8") as file:
        rows = [(day, store, float(amount)) for day, store, amount in csv.reader(file)]
    if flag.is_set():
        raise TaskTerminationException("office hours began before the load")
    connection = sqlite3.connect(base / "warehouse.sqlite3")
    try:
        with connection:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS daily_sales"
                " (day TEXT, store TEXT, amount REAL, PRIMARY KEY (day, store))"
            )
            connection.executemany("INSERT OR REPLACE INTO daily_sales VALUES (?, ?, ?)", rows)
    finally:
        connection.close()
    totals.unlink()


def alert() -> None:
    """Tell someone the chain broke (here: a line in alerts.log; in real life, a message)."""
    base = data_folder()
    base.mkdir(parents=True, exist_ok=True)
    with (base / "alerts.log").open("a", encoding="utf-8") as log:
        log.write("the nightly ETL chain failed: see the run history\n")
