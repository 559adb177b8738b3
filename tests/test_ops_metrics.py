"""Metrics (conddsl.metrics) and logs (conddsl.runlog) kept from records."""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from conddsl.history import Record  # noqa: E402
from conddsl.metrics import SchedulerMetrics  # noqa: E402
from conddsl.runlog import JsonFormatter, RecordLogger, TextFormatter  # noqa: E402

T0 = datetime(2024, 1, 5, 8, 0, tzinfo=timezone.utc)


@dataclass
class Recorded:  # what the scheduler hands its listeners: a record and its run's times
    record: Record
    start_delay: timedelta | None = None
    duration: timedelta | None = None


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _feed(metrics: SchedulerMetrics) -> None:
    metrics(Record("extract", "run", T0, run_id="1"))
    metrics(Record("extract", "success", T0 + timedelta(seconds=2), run_id="1"))
    metrics(Recorded(Record("load", "run", T0, run_id="2"), start_delay=timedelta(seconds=0.02)))
    metrics(Recorded(Record("load", "fail", T0 + timedelta(seconds=3), run_id="2")))
    metrics(Record("slow", "run", T0, run_id="3"))
    metrics(Record("slow", "terminate", T0 + timedelta(seconds=9), run_id="3", reason="timeout"))
    metrics(Record("slow", "run", T0 + timedelta(minutes=1), run_id="4"))
    metrics(Record("slow", "terminate", T0 + timedelta(minutes=2), run_id="4", reason="timeout"))


def test_metrics_count_runs_durations_delays_and_last_success():
    metrics = SchedulerMetrics()
    _feed(metrics)
    metrics.observe_loop_lag(0.004)
    got = _samples(metrics.text())
    assert (
        got[("conddsl_task_last_success_timestamp_seconds", (("task", "extract"),))]
        == (T0 + timedelta(seconds=2)).timestamp()
    )
    assert ("conddsl_task_last_success_timestamp_seconds", (("task", "load"),)) not in got
    runs = "conddsl_task_runs_total"
    assert got[(runs, (("outcome", "success"), ("task", "extract")))] == 1
    assert got[(runs, (("outcome", "fail"), ("task", "load")))] == 1
    assert got[(runs, (("outcome", "terminate"), ("task", "slow")))] == 2
    terminations = "conddsl_task_terminations_total"
    assert got[(terminations, (("reason", "timeout"), ("task", "slow")))] == 2
    duration = "conddsl_task_run_duration_seconds"
    assert got[(duration + "_sum", (("task", "slow"),))] == 69
    assert got[(duration + "_count", (("task", "load"),))] == 1
    assert got[(duration + "_bucket", (("le", "5.0"), ("task", "extract")))] == 1
    assert got[(duration + "_bucket", (("le", "1.0"), ("task", "extract")))] == 0
    delay = "conddsl_task_start_delay_seconds"
    assert got[(delay + "_sum", (("task", "load"),))] == pytest.approx(0.02)
    assert (delay + "_count", (("task", "extract"),)) not in got  # no due time known
    assert got[("conddsl_scheduler_loop_lag_seconds", ())] == 0.004


def test_labels_stay_low_cardinality():
    metrics = SchedulerMetrics()
    for n in range(50):
        metrics(Record("a", "run", T0, run_id=str(n)))
        metrics(Record("a", "terminate", T0, run_id=str(n), reason=f"odd reason {n}"))
    text = metrics.text()
    assert "run_id" not in text
    got = _samples(text)
    assert got[("conddsl_task_terminations_total", (("reason", "other"), ("task", "a")))] == 50


def test_metrics_are_scraped_over_http_on_localhost():
    metrics = SchedulerMetrics()
    _feed(metrics)
    server, thread = metrics.serve(0)
    try:
        port = server.server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            body = answer.read().decode()
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    got = _samples(body)
    assert got[("conddsl_task_runs_total", (("outcome", "success"), ("task", "extract")))] == 1


def test_record_logger_logs_under_conddsl_with_levels(caplog):
    caplog.set_level(logging.INFO, logger="conddsl")
    listener = RecordLogger()
    listener(Record("extract", "run", T0, run_id="1"))
    listener(
        Recorded(Record("load", "fail", T0, run_id="2", message="locked", traceback="T\nE: x\n"))
    )
    listener(Record("slow", "terminate", T0, run_id="3", reason="timeout"))
    assert [(r.name, r.levelname) for r in caplog.records] == [
        ("conddsl.records", "INFO"),
        ("conddsl.records", "ERROR"),
        ("conddsl.records", "WARNING"),
    ]
    assert caplog.records[1].getMessage() == "fail       load  (locked)"

    zone = timezone(timedelta(hours=2), "EET")
    text = TextFormatter(zone).format(caplog.records[1])
    assert text == "2024-01-05 10:00:00.000 EET  fail       load  (locked)\n    E: x"
    line = json.loads(JsonFormatter(timezone.utc).format(caplog.records[2]))
    assert line == {
        "time": "2024-01-05T08:00:00.000+00:00",
        "level": "warning",
        "logger": "conddsl.records",
        "message": "terminate  slow  reason=timeout",
        "task": "slow",
        "action": "terminate",
        "run_id": "3",
        "reason": "timeout",
        "record_message": None,
        "traceback": None,
    }


def test_conddsl_run_serves_its_metrics_over_http(tmp_path):
    """`conddsl run --metrics-port 0`: the address is printed, a scrape sees the runs."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    (tmp_path / "tasks.toml").write_text(
        textwrap.dedent(
            """
            [scheduler]
            history = "runs.sqlite3"

            [tasks.ok]
            command = ["true"]
            start_cond = "every 1 hour"

            [tasks.bad]
            command = ["false"]
            start_cond = "after task 'ok'"
            """
        )
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "conddsl.cli", "run", "tasks.toml", "--metrics-port", "0"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = child.stdout.readline()
        assert first.startswith("conddsl: metrics at http://127.0.0.1:"), first
        url = first.split(" at ", 1)[1].strip()
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(url, timeout=10) as answer:
                got = _samples(answer.read().decode())
            runs = "conddsl_task_runs_total"
            if (runs, (("outcome", "fail"), ("task", "bad"))) in got:
                break
            assert time.monotonic() < deadline, "no fail counted within 30 s"
            time.sleep(0.1)
        assert got[(runs, (("outcome", "success"), ("task", "ok")))] == 1
        assert got[(runs, (("outcome", "fail"), ("task", "bad")))] == 1
        last = got[("conddsl_task_last_success_timestamp_seconds", (("task", "ok"),))]
        assert abs(last - time.time()) < 60
        assert got[("conddsl_task_start_delay_seconds_count", (("task", "ok"),))] == 1
        assert got[("conddsl_task_run_duration_seconds_count", (("task", "bad"),))] == 1
        assert ("conddsl_scheduler_loop_lag_seconds", ()) in got
    finally:
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    assert child.returncode == 0, out + err
