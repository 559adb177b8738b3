"""A scheduler's part in a history that several schedulers share (``PostgresHistory``).

The scheduler asks this object before it starts a run by its condition (``claim``), takes
the retries of runs lost with their node (``retries``), hears other nodes' records and
its own fencing on its event loop (``start``), and learns which failures of the history
are an outage to ride out rather than a fatal error (``is_outage``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from conddsl.history.base import History, HistoryUnavailable, Record
from conddsl.runtime.claims import claim_check

log = logging.getLogger("conddsl.runtime")

ON_NODE_LOST = ("fail", "retry")


def shared_store(history: object) -> Any | None:
    """The shared store behind ``history`` (through wrappers with an ``inner``), or None."""
    seen = 0
    while history is not None and seen < 8:
        if callable(getattr(history, "claim", None)) and callable(
            getattr(history, "take_retries", None)
        ):
            return history
        history = getattr(history, "inner", None)
        seen += 1
    return None


def is_outage(error: BaseException | None) -> bool:
    """Whether an error (or what caused it) is the shared history being unreachable."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, HistoryUnavailable):
            return True
        error = getattr(error, "error", None) or error.__cause__
        seen += 1
    return False


class SharedNode:
    """Claims, retries, wake-ups and fencing of one scheduler on a shared history."""

    def __init__(self, store: Any, session: Any = None) -> None:
        self.store = store
        self.session = session
        self._unreachable = False

    @property
    def node(self) -> str:
        """This scheduler's node name."""
        return self.store.node

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        on_change: Callable[[str | None], None],
        on_fenced: Callable[[str], None],
    ) -> None:
        """Call ``on_change(task)`` (None: every task) and ``on_fenced(why)`` on ``loop``."""

        def soon(callback: Callable[..., None], *args: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(callback, *args)

        self.store.set_on_fenced(lambda why: soon(on_fenced, why))
        self.store.watch(lambda task: soon(on_change, task))

    def claim(self, task: Any, run_id: str, history: History | None = None) -> Record | None:
        """The run record if this node wins the start of ``task`` now, else None.

        An unreachable database claims nothing (said once, and again when it answers).
        ``ClaimBusy`` when another node is claiming the task at this instant: the caller
        looks again soon, rather than hold its loop until that node decides.
        """
        check = claim_check(
            task.start, task=task.name, session=self.session, exclusive=not task.multilaunch
        )
        return self._claim_now(task, check, run_id)

    def claim_manual(self, task: Any, run_id: str) -> Record | None:
        """The run record of a manual start (``run_task``) if this node may make it now.

        Claimed like any start, under the task's lock: a task that is not ``multilaunch``
        never runs on two nodes at once. Each manual start is an occurrence of its own
        (minus the claim's instant in microseconds: never a condition window's start,
        and claims of one task are serial). None when it runs elsewhere or the database
        cannot be reached; ``ClaimBusy`` as for ``claim``.
        """
        from conddsl.history.base import to_us

        exclusive = not task.multilaunch

        def check(history: History, now: Any) -> int | None:
            if exclusive and history.running(task.name):
                return None
            return -to_us(now)

        return self._claim_now(task, check, run_id, reason="manual")

    def _claim_now(
        self,
        task: Any,
        check: Callable[[History, Any], int | None],
        run_id: str,
        reason: str | None = None,
    ) -> Record | None:
        """Claim a start of ``task`` without waiting; None when the database cannot be reached."""
        try:
            found = self.store.claim(
                task.name,
                check,
                run_id=run_id,
                on_lost=getattr(task, "on_node_lost", "fail"),
                reason=reason,
                wait=False,
            )
        except HistoryUnavailable as error:
            self.outage(error)
            return None
        self._reachable()
        return found

    def retries(self, tasks: list[Any]) -> list[Record]:
        """The run records of the retries (``on_node_lost = "retry"``) this node took."""
        names = [task.name for task in tasks if getattr(task, "on_node_lost", "fail") == "retry"]
        if not names:
            return []
        try:
            found = self.store.take_retries(names)
        except HistoryUnavailable as error:
            self.outage(error)
            return []
        self._reachable()
        return found

    def outage(self, error: BaseException) -> None:
        """Say once that the shared history cannot be reached (again when it answers)."""
        if not self._unreachable:
            self._unreachable = True
            log.error(
                "node %s: the shared history cannot be reached (%s): running runs go on,"
                " nothing new is claimed, records wait until it answers",
                self.node,
                error,
            )

    def _reachable(self) -> None:
        if self._unreachable:
            self._unreachable = False
            log.warning("node %s: the shared history answers again", self.node)
