"""What the process executor keeps of a run (``Run.handle``): one type per way a child
process is started, so that each use of a handle says which it expects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from conddsl.runtime.output import Pipe


@dataclass
class Served:
    """A run handed to the fork server: its key there, its keeper's pid once forked,
    and a command's stderr file."""

    key: int
    pid: int | None = None
    stderr: IO[bytes] | None = None
    output: Pipe | None = None  # a command's stderr pipe, when output is piped (its tail)


@dataclass
class Forked:
    """A process run forked by the scheduler itself (no fork server): the child, and the
    pipe its outcome comes back by."""

    process: BaseProcess
    reader: Connection
