"""What a scheduler loads: a whole process's memory is mostly modules (issue 21), so a
scheduler that needs no store on disk, no task file and no pydantic loads none of them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

# Each costs a process 1-10 MiB of RSS and is needed only by what a plain scheduler
# does not do: validate a task file or an odd config (pydantic), keep its history in a
# file (sqlite3), read a packaged file from an archive (zipfile, importlib's readers),
# suggest a name on the way to an error (difflib), parse a text the cached tables do not
# answer for or build them (lark), run a process task (multiprocessing, tempfile, ctypes), hash
# (hashlib: OpenSSL), or make path objects (pathlib, with urllib.parse and ipaddress).
# Nor, until it has such a task or value: the process machinery (the process executor,
# the fork server's protocol, pickle), a run id (uuid, with platform), a named time zone
# (zoneinfo, with sysconfig) or a fractional duration (decimal), nor with no process
# registry to keep (an in-memory history) the registry's reader: ~1.3 MiB together.
NOT_LOADED = (
    "pydantic",
    "sqlite3",
    "zipfile",
    "importlib.readers",
    "difflib",
    "lark",
    "multiprocessing",
    "ctypes",
    "tempfile",
    "hashlib",
    "pathlib",
    "conddsl.runtime.process_exec",
    "conddsl.runtime.forkserver",
    "conddsl.runtime.leftovers",
    "pickle",
    "uuid",
    "zoneinfo",
    "decimal",
)

SERVE = """
import sys, threading
from conddsl.runtime import Scheduler

app = Scheduler({"timezone": "UTC", "timeout": "never", "kill_grace": 1})

async def wait():
    pass

app.task(%r, name="t")(wait)
threading.Timer(0.2, app.shut_down).start()
app.run()
print(" ".join(name for name in %r if name in sys.modules))
"""


def test_a_plain_scheduler_loads_no_store_no_pydantic_no_archive_reader(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    # The task must wait: a window twelve hours from now (a fixed "10:00 to 11:00" ran the
    # task, and loaded uuid for its run id, when the suite ran between 10 and 11 UTC).
    hour = (datetime.now(timezone.utc) + timedelta(hours=12)).hour
    waiting = f"time of day between {hour:02d}:00 and {hour:02d}:30"

    def serve() -> str:
        done = subprocess.run(
            [sys.executable, "-c", SERVE % (waiting, NOT_LOADED)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert "lark" in serve()  # the first run in a fresh cache builds the parser's tables
    loaded = serve()
    assert loaded == "", f"loaded: {loaded}"


def test_the_grammar_read_beside_the_package_is_the_repositorys():
    from pathlib import Path

    from conddsl.grammar import grammar_text

    root = Path(__file__).resolve().parent.parent
    assert grammar_text() == (root / "grammar" / "conddsl.lark").read_text(encoding="utf-8")
