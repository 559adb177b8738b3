"""Condition verdicts as the scheduler takes them: what a condition that fails makes of
the answer.

A condition that raises is fatal to the scheduler, unless ``silence_cond_check`` is
set (then it is taken as the caller's default); on a shared history that cannot be
reached, it is neither: the outage is ridden out and the condition tried again soon.

A condition that reads neither records nor the cycle counter (a clock window, ``env``,
``param``, ``scheduler has run over``) answers the same for every task at one instant:
tasks that share it (equal texts compile to one condition) get the answer found for the
first of them at that instant, so a thousand tasks opening at once cost one evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from conddsl.compile import Condition
from conddsl.reads import NOTHING
from conddsl.runtime.conditions import ConditionFailed, ConditionLike, is_true, next_change
from conddsl.runtime.shared import SharedNode, is_outage

log = logging.getLogger("conddsl.runtime")
# While a shared history cannot be reached, conditions are tried again this often.
OUTAGE_RECHECK = timedelta(seconds=2)


class Judge:
    """Whether a condition holds and when it next changes, failures taken by the rules above."""

    def __init__(self, *, silence: bool, fail: Callable[[BaseException], None]) -> None:
        """``silence``: the ``silence_cond_check`` setting; ``fail``: a fatal error."""
        self._silence = silence
        self._fail = fail
        #: This node's part of a shared history, once it joined one.
        self.shared: SharedNode | None = None
        # Answers of conditions the same for every task (see above), at _at only.
        self._at: datetime | None = None
        self._values: dict[int, tuple[ConditionLike, bool]] = {}
        self._changes: dict[int, tuple[ConditionLike, datetime | None]] = {}

    def _shared_answers(self, cond: ConditionLike, now: datetime) -> bool:
        """Whether ``cond``'s answers at ``now`` are kept for the other tasks that use it
        (the answers kept are those of ``now``: another instant drops them)."""
        if now != self._at:
            self._at = now
            self._values.clear()
            self._changes.clear()
        return self.alike(cond)

    def _answer(
        self,
        kept: dict[int, tuple[ConditionLike, Any]],
        ask: Callable[..., Any],
        cond: ConditionLike,
        where: str,
        now: datetime,
        context: dict[str, Any],
    ) -> Any:
        """``ask(cond, where, now, **context)``, kept in ``kept`` for the other tasks at
        ``now`` when ``cond`` answers the same for every task."""
        if not self._shared_answers(cond, now):
            return ask(cond, where, now, **context)
        found = kept.get(id(cond))
        if found is not None and found[0] is cond:
            return found[1]
        answer = ask(cond, where, now, **context)
        kept[id(cond)] = (cond, answer)
        return answer

    @staticmethod
    def alike(cond: ConditionLike) -> bool:
        """Whether ``cond`` answers the same for every task: it reads neither records nor
        the cycle counter (see the module)."""
        # Only a plain compiled Condition: a GatedCondition calls custom parts (Python
        # code that may answer otherwise at each call), and the scheduler compiles every
        # condition with a custom part as one; an object of the caller's may read anything.
        # Nothing is kept per condition: a Condition keeps its reads (no dict entry for
        # each of 10,000 waiting tasks, issue 21).
        if type(cond) is not Condition:
            return False
        found = cond.reads
        return found is NOTHING or found == NOTHING

    def holds(
        self,
        cond: ConditionLike,
        where: str,
        now: datetime,
        context: dict[str, Any],
        *,
        on_error: bool,
    ) -> bool:
        """Whether ``cond`` holds at ``now``; ``on_error`` when it fails and is silenced."""
        try:
            return self._answer(self._values, is_true, cond, where, now, context)
        except ConditionFailed as exc:
            if self.shared is not None and is_outage(exc):
                self.shared.outage(exc)
                return False  # neither started nor ended while the history cannot answer
            if self._silence:
                log.debug("%s (silenced: taken as %s)", exc, on_error)
            else:
                self._fail(exc)
            return on_error

    def next(
        self, cond: ConditionLike, where: str, now: datetime, context: dict[str, Any]
    ) -> datetime | None:
        """When ``cond`` may next change after ``now`` (None: never, or it failed)."""
        try:
            return self._answer(self._changes, next_change, cond, where, now, context)
        except ConditionFailed as exc:
            if self.shared is not None and is_outage(exc):
                self.shared.outage(exc)
                return now + OUTAGE_RECHECK
            if not self._silence:
                self._fail(exc)
            return None
