"""The session: the scheduler state its conditions may read (``scheduler …``, ``env``,
``param``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class Session:
    """The scheduler state that conditions may read (``scheduler …``, ``env``, ``param``)."""

    started_at: datetime | None = None
    cycles: int = 0  # loop iterations: each wake-up of the scheduler is one cycle
    env: str | None = None
    params: Mapping[str, object] = field(default_factory=dict)
