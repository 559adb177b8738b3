"""Zones for tests that run a scheduler on the real clock, chosen far from a day's edge."""

from __future__ import annotations

from datetime import datetime, timezone


def noon_zone(now: datetime | None = None) -> str:
    """An Etc/GMT zone whose wall clock reads about noon now.

    A task file in this zone cannot see ``daily`` roll over to the next day while a test
    of a few minutes runs, whatever the real time is.
    """
    now = now or datetime.now(timezone.utc)
    offset = 12 - now.hour  # UTC+offset reads 12:xx
    if offset == 0:
        return "Etc/GMT"
    return f"Etc/GMT{-offset:+d}"  # the Etc names have the sign inverted
