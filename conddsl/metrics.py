"""Prometheus metrics of a scheduler's runs (``pip install 'conddsl[metrics]'``).

:class:`SchedulerMetrics` is a record listener: give it to ``Scheduler.subscribe`` (or
call it with each record) and it keeps

- ``conddsl_task_last_success_timestamp_seconds{task}``: the time of the last success,
  in seconds since the epoch (the one to alert on: ``time() - … > 2 * 3600``);
- ``conddsl_task_runs_total{task,outcome}``: finished runs by outcome (success, fail,
  terminate, inaction, crash);
- ``conddsl_task_run_duration_seconds{task}``: how long runs ran (a histogram);
- ``conddsl_task_start_delay_seconds{task}``: how long after it was due a run started;
- ``conddsl_task_terminations_total{task,reason}``: terminations by reason (timeout,
  end_cond, shutdown, forced, task);
- ``conddsl_scheduler_loop_lag_seconds``: how late the scheduler's loop last woke.

Labels stay few: a task's name, an outcome, a reason; never a run id. The metrics live in
their own ``CollectorRegistry`` unless one is given (``prometheus_client.REGISTRY`` to
serve them with the host program's own).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

try:
    import prometheus_client
except ImportError as error:  # pragma: no cover - the extra is installed in the tests
    raise ImportError(
        "conddsl.metrics needs prometheus_client: pip install 'conddsl[metrics]'"
    ) from error

from conddsl.history import Record

__all__ = ["SchedulerMetrics", "DURATION_BUCKETS", "DELAY_BUCKETS"]

# Runs last from milliseconds to hours; the client's default buckets stop at 10 s.
DURATION_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)
# A start is due at an instant the scheduler computed: milliseconds late is normal.
DELAY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60)

_REASONS = frozenset({"timeout", "end_cond", "shutdown", "forced", "task"})


class SchedulerMetrics:
    """Prometheus metrics kept from the records a scheduler writes (a record listener)."""

    def __init__(self, registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else prometheus_client.CollectorRegistry()
        make: dict[str, Any] = {"registry": self.registry}
        self.last_success = prometheus_client.Gauge(
            "conddsl_task_last_success_timestamp_seconds",
            "When the task last succeeded, in seconds since the epoch",
            ["task"],
            **make,
        )
        self.runs = prometheus_client.Counter(
            "conddsl_task_runs",
            "Finished runs of the task, by outcome",
            ["task", "outcome"],
            **make,
        )
        self.duration = prometheus_client.Histogram(
            "conddsl_task_run_duration_seconds",
            "How long the task's runs ran",
            ["task"],
            buckets=DURATION_BUCKETS,
            **make,
        )
        self.start_delay = prometheus_client.Histogram(
            "conddsl_task_start_delay_seconds",
            "How long after it was due each run started",
            ["task"],
            buckets=DELAY_BUCKETS,
            **make,
        )
        self.terminations = prometheus_client.Counter(
            "conddsl_task_terminations",
            "Runs the scheduler terminated, by reason",
            ["task", "reason"],
            **make,
        )
        self.loop_lag = prometheus_client.Gauge(
            "conddsl_scheduler_loop_lag_seconds",
            "How late the scheduler's loop woke up the last time",
            **make,
        )
        # Start times of open runs, for durations when the caller gives bare records.
        self._started: dict[tuple[str, str | None], datetime] = {}

    def __call__(self, event: Any) -> None:
        """Count one record: a ``Record``, or the scheduler's ``Recorded`` (record + times)."""
        record: Record = getattr(event, "record", event)
        task = record.task
        key = (task, record.run_id)
        if record.action == "run":
            self._started[key] = record.at
            delay = getattr(event, "start_delay", None)
            if isinstance(delay, timedelta):
                self.start_delay.labels(task).observe(max(delay.total_seconds(), 0.0))
            return
        started = self._started.pop(key, None)
        duration = getattr(event, "duration", None)
        if not isinstance(duration, timedelta) and started is not None:
            duration = record.at - started
        self.runs.labels(task, record.action).inc()
        if isinstance(duration, timedelta):
            self.duration.labels(task).observe(max(duration.total_seconds(), 0.0))
        if record.action == "success":
            self.last_success.labels(task).set(record.at.timestamp())
        elif record.action == "terminate":
            reason = record.reason if record.reason in _REASONS else "other"
            self.terminations.labels(task, reason).inc()

    def observe_loop_lag(self, seconds: float) -> None:
        """Set how late the scheduler's loop woke (seconds after the instant it slept until)."""
        self.loop_lag.set(max(seconds, 0.0))

    def serve(self, port: int, address: str = "127.0.0.1") -> Any:
        """Serve the metrics over HTTP at ``http://address:port/metrics`` (a daemon thread).

        Returns what ``prometheus_client.start_http_server`` returns (the server and its
        thread in recent versions): ``shutdown()`` the server to stop it.
        """
        return prometheus_client.start_http_server(port, addr=address, registry=self.registry)

    def text(self) -> str:
        """The metrics in Prometheus's text format (what a scrape returns)."""
        return prometheus_client.generate_latest(self.registry).decode("utf-8")
