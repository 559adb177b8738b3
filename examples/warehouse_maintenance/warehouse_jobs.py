"""The Python side of the warehouse-maintenance example.

The work is simulated, as the warehouse is not there: ``ingest`` moves files from
``$WAREHOUSE_DATA/spool`` (default: ``data/`` beside this file) into ``loaded/``,
looking every ``$INGEST_POLL_SECONDS`` (default 5);
``rebuild_index`` works through the index in steps of ``$REBUILD_STEP_SECONDS``
(default 30). Both run in processes of their own and stop cleanly on SIGTERM: the
current item or step is finished, and nothing is left half done.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path


def data_folder() -> Path:
    """The spool, the loaded files and the index live here."""
    return Path(os.environ.get("WAREHOUSE_DATA", Path(__file__).parent / "data"))


def _stop_on_sigterm() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    return stop


def ingest() -> None:
    """Load every file that appears in the spool, until SIGTERM."""
    stop = _stop_on_sigterm()
    spool, loaded = data_folder() / "spool", data_folder() / "loaded"
    spool.mkdir(parents=True, exist_ok=True)
    loaded.mkdir(parents=True, exist_ok=True)
    pause = float(os.environ.get("INGEST_POLL_SECONDS", "5"))
    while not stop.is_set():
        for path in sorted(spool.glob("*.csv")):
            path.rename(loaded / path.name)  # one item at a time: a stop never splits one
            if stop.is_set():
                break
        stop.wait(pause)


def rebuild_index(partitions: int = 240) -> None:
    """Rebuild the index partition by partition; a SIGTERM keeps the old index."""
    stop = _stop_on_sigterm()
    step = float(os.environ.get("REBUILD_STEP_SECONDS", "30"))
    work = data_folder() / "index.building"
    work.parent.mkdir(parents=True, exist_ok=True)
    work.write_text("", encoding="utf-8")
    for partition in range(partitions):
        if stop.wait(step):
            work.unlink()
            raise SystemExit(f"stopped at partition {partition}; the old index stays")
        with work.open("a", encoding="utf-8") as file:
            file.write(f"partition {partition}\n")
    work.replace(data_folder() / "index")
