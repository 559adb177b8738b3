"""is_true, windows and next_change agree on both passes of a repeated hour (and in gaps).

A property test: for clock, periodic and cron forms in zones with DST, at instants
around a transition (each pass of a repeated hour is a different real instant), with
and without a run of the task nearby, the three answers tell one story.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from conddsl import compile_condition
from conddsl.history import MemoryHistory

UTC = timezone.utc
US = timedelta(microseconds=1)
SPAN = timedelta(hours=6)

# (zone, the real instant of a transition); the fold or gap is right after it in wall time.
TRANSITIONS = [
    ("Europe/Berlin", datetime(2024, 10, 27, 1, 0, tzinfo=UTC)),  # fold 02:00-03:00
    ("Europe/Berlin", datetime(2024, 3, 31, 1, 0, tzinfo=UTC)),  # gap 02:00-03:00
    ("America/New_York", datetime(2024, 11, 3, 6, 0, tzinfo=UTC)),  # fold 01:00-02:00
    ("Australia/Lord_Howe", datetime(2024, 4, 6, 15, 0, tzinfo=UTC)),  # fold 01:30-02:00
    ("Australia/Sydney", datetime(2024, 4, 6, 16, 0, tzinfo=UTC)),  # fold 02:00-03:00
]

FORMS = [
    "cron */10 * * * *",
    "cron * * * * *",
    "cron 0-30 2 * * *",
    "cron 15,45 1,2 * * *",
    "cron 40 1 * * *",
    "time of day between 02:15 and 02:45",
    "time of day between 01:45 and 02:15",
    "time of day after 02:30",
    "time of day before 01:40",
    "time of hour between 10:00 and 20:00",
    "time of minute between 15 and 45",
    "time of week on Sun",
    "daily between 02:10 and 02:40",
    "daily between 01:50 and 02:20",
    "daily",
    "hourly",
    "daily starting 02:30",
    "hourly between 20:00 and 40:00",
    "every 20 minutes",
    "time of month on last",
    "weekly on Sun",
    "monthly",
    "daily on 02:00",
    "time of day on 02:00",
    "cron 0 2 * * sun",
    "has succeeded today after 02:00",
    "has succeeded this hour",
    "has started in past 30 minutes",
]

OFFSETS = st.integers(min_value=-2 * 3600 * 10**6, max_value=3 * 3600 * 10**6)
# Minute-aligned instants hit the edges; arbitrary microseconds hit the insides.
INSTANTS = st.one_of(
    OFFSETS.map(lambda us: us - us % 60_000_000),
    OFFSETS.map(lambda us: us - us % 30_000_000),
    OFFSETS,
)


def test_the_transitions_are_where_the_table_says():
    for name, at in TRANSITIONS:
        zone = ZoneInfo(name)
        assert (at - US).astimezone(zone).utcoffset() != at.astimezone(zone).utcoffset()


@settings(max_examples=int(os.environ.get("DST_EXAMPLES", "300")), deadline=None)
@given(
    st.sampled_from(TRANSITIONS),
    st.sampled_from(FORMS),
    INSTANTS,
    st.one_of(st.none(), INSTANTS),
)
def test_is_true_windows_and_next_change_agree(transition, text, at_us, run_us):
    name, moment = transition
    zone = ZoneInfo(name)
    condition = compile_condition(text, timezone=name)
    history = MemoryHistory()
    at = moment + timedelta(microseconds=at_us)
    if run_us is not None:
        run = moment + timedelta(microseconds=run_us)
        if run <= at:
            history.record("t", "run", at=run)
            history.record("t", "success", at=run + timedelta(seconds=1))
    given_state = {"task": "t", "history": history}

    def value(instant: datetime) -> bool:
        return condition.is_true(instant, **given_state)

    now = value(at)
    # The zone's own reading of the instant (fold set on the second pass) is the same
    # instant, aware or naive (a naive time is a wall time in the condition's zone).
    local = at.astimezone(zone)
    assert condition.is_true(local, **given_state) == now
    assert condition.is_true(local.replace(tzinfo=None), **given_state) == now
    found = list(condition.windows(at, at + SPAN, **given_state))
    inside = bool(found) and found[0][0] == at
    assert inside == now, (found[:2], now)
    change = condition.next_change(at, **given_state)
    edges = [edge for window in found for edge in window if at < edge < at + SPAN]
    if edges:
        assert change == edges[0], (found[:3], change)
    if change is not None and change < at + SPAN:
        assert change > at
        assert value(change - US) == now
        assert value(change) != now
    for start, end in found:
        assert value(start) and value(end - US), (start, end)
        if end < at + SPAN:
            assert not value(end), (start, end)


def test_cron_every_ten_minutes_on_the_first_pass_after_a_run():
    # The bug: after a run at 02:00 CEST, the rest of the first pass was skipped and the
    # next window was 02:10 CET, an hour later (runs 70 minutes apart).
    condition = compile_condition("cron */10 * * * *", timezone="Europe/Berlin")
    run = datetime(2024, 10, 27, 0, 0, tzinfo=UTC)  # 02:00 CEST
    history = MemoryHistory()
    history.record("t", "run", at=run)
    after = run + timedelta(seconds=30)
    assert condition.is_true(run + timedelta(minutes=10), task="t", history=history)
    assert condition.next_change(after, task="t", history=history) == datetime(
        2024, 10, 27, 0, 10, tzinfo=UTC
    )
    found = list(condition.windows(after, after + timedelta(hours=2), task="t", history=history))
    starts = [start for start, _ in found]
    assert starts[:6] == [
        datetime(2024, 10, 27, 0, m, tzinfo=UTC) for m in (10, 20, 30, 40, 50)
    ] + [
        datetime(2024, 10, 27, 1, 10, tzinfo=UTC)  # 02:00 CET is the minute that already ran
    ]


def test_a_scheduler_runs_cron_every_ten_minutes_through_the_repeated_hour():
    # The bug as a user saw it: on a virtual clock, the runs around 02:00 CEST on
    # 2024-10-27 were 70 minutes apart. Wall minutes run once each: 02:00-02:50 on the
    # first pass, then the second pass's 02:00-02:50 are the same wall minutes (done).
    from conddsl.runtime import Scheduler, VirtualClock

    start = datetime(2024, 10, 26, 23, 55, tzinfo=UTC)  # 01:55 CEST
    config = {
        "timezone": "Europe/Berlin",
        "timeout": "never",
        "kill_grace": 0.5,
        "shut_cond": "time of day between 03:25 and 04:00 in UTC",
    }
    app = Scheduler(config, clock=VirtualClock(start, autojump_threshold=0.0))
    app.task("cron */10 * * * *", name="tick", execution="async")(_noop)
    asyncio.run(asyncio.wait_for(app.serve(), 20))
    runs = [r.at for r in app.history.records("tick", actions=("run",))]
    gaps = {b - a for a, b in zip(runs, runs[1:], strict=False)}
    assert runs[0] == datetime(2024, 10, 27, 0, 0, tzinfo=UTC)  # 02:00 CEST
    assert runs[:6] == [datetime(2024, 10, 27, 0, m, tzinfo=UTC) for m in range(0, 60, 10)]
    # After 02:50 CEST the next wall minute not yet run is 03:00 CET.
    assert runs[6] == datetime(2024, 10, 27, 2, 0, tzinfo=UTC)
    assert max(gaps - {timedelta(minutes=70)}) == timedelta(minutes=10)


async def _noop() -> None:
    return None
