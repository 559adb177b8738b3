"""The run history in PostgreSQL: one store shared by several schedulers (nodes)."""

from conddsl.history.postgres.store import PostgresHistory

__all__ = ["PostgresHistory"]
