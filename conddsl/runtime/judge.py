"""Condition verdicts as the scheduler takes them: what a condition that fails makes of
the answer.

A condition that raises is fatal to the scheduler, unless ``silence_cond_check`` is
set (then it is taken as the caller's default); on a shared history that cannot be
reached, it is neither: the outage is ridden out and the condition tried again soon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

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
            return is_true(cond, where, now, **context)
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
            return next_change(cond, where, now, **context)
        except ConditionFailed as exc:
            if self.shared is not None and is_outage(exc):
                self.shared.outage(exc)
                return now + OUTAGE_RECHECK
            if not self._silence:
                self._fail(exc)
            return None
