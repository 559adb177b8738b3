"""The bookkeeping every history store shares for retention: when a trim or age sweep is due."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from conddsl.history.base import check_retention


class Retention:
    """Mixin for a store that drops old records by count (``max_records``) and age (``max_age``).

    The store keeps ``_count`` (records it knows of) and ``_now`` (its latest time, in
    microseconds) up to date; this class decides when a pass is due. Both passes run in
    steps of a tenth of their limit, so that a store at its limit does not sweep on
    every insert.
    """

    _count: int
    _now: int | None

    def _init_retention(self, max_age: timedelta | None, max_records: int | None) -> None:
        """Validate the limits and start with no pass due before the first insert."""
        self._max_age_us = check_retention(max_age, max_records)
        self._max_records = max_records
        self._slack = max(1, max_records // 10) if max_records else 0
        self._trim_count_at = max_records
        self._next_age_sweep: int | None = None

    def _count_trim_due(self) -> bool:
        """Whether the store holds more records than the count limit lets it."""
        return self._trim_count_at is not None and self._count > self._trim_count_at

    def _age_sweep_due(self) -> bool:
        """Whether a tenth of ``max_age`` has passed since the last age sweep."""
        if self._max_age_us is None or self._now is None:
            return False
        return self._next_age_sweep is None or self._now >= self._next_age_sweep

    def _run_age_sweep(self, delete_older: Callable[[int], object]) -> None:
        """Have ``delete_older(cutoff)`` drop what is older than ``max_age``, then plan the next."""
        assert self._max_age_us is not None and self._now is not None
        delete_older(self._now - self._max_age_us)
        # Set only once the deletion went through: a failed sweep runs again next write.
        self._next_age_sweep = self._now + max(1, self._max_age_us // 10)

    def _trim_target(self) -> int:
        """How many records a count trim leaves: 9/10 of the limit."""
        assert self._max_records is not None
        return self._max_records - self._slack

    def _count_trimmed(self) -> None:
        """Plan the next count trim after one ended (with ``_count`` up to date)."""
        assert self._max_records is not None
        # If protected records alone exceed the limit, wait for another slack's worth
        # of inserts before trying again, rather than trimming on every insert.
        self._trim_count_at = max(self._max_records, self._count + self._slack)
