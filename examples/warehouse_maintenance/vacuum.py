"""A stand-in for a legacy maintenance program that ignores SIGTERM.

    python3 vacuum.py --full

It "vacuums" 20 tables, ``$VACUUM_SECONDS_PER_TABLE`` seconds each (default 600),
logging its progress to ``$WAREHOUSE_DATA/vacuum.log`` (default: ``data/`` beside this
file), and takes no notice of SIGTERM, like many old tools: only SIGKILL stops it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seconds = float(os.environ.get("VACUUM_SECONDS_PER_TABLE", "600"))
    data = Path(os.environ.get("WAREHOUSE_DATA", Path(__file__).parent / "data"))
    data.mkdir(parents=True, exist_ok=True)
    mode = "full" if "--full" in argv else "quick"
    for table in range(20):
        with (data / "vacuum.log").open("a", encoding="utf-8") as log:
            log.write(f"vacuuming table {table} ({mode})\n")
        time.sleep(seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
