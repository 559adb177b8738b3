"""What one evaluation of a compiled condition needs besides the wall time."""

from __future__ import annotations

from datetime import datetime

__all__ = ["Context"]


class Context:
    """The real instant, the task, its history and the session of one evaluation."""

    __slots__ = ("real", "task", "history", "session")

    def __init__(self, real: datetime, task: str | None, history, session=None) -> None:
        self.real = real
        self.task = task
        self.history = history
        self.session = session

    def at(self, real: datetime) -> Context:
        """The same evaluation at another instant (custom conditions called again)."""
        return Context(real, self.task, self.history, self.session)
