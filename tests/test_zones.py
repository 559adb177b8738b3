"""Tests for conddsl.timeline.zones: zone lookup and the wall-clock to real-time DST policy."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conddsl.timeline.intervals import union
from conddsl.timeline.zones import (
    local_zone,
    real_to_wall_bound,
    resolve_zone,
    to_wall,
    wall_span,
    wall_to_real,
    zone_names_like,
)

UTC = timezone.utc
HELSINKI = ZoneInfo("Europe/Helsinki")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # half-hour DST, for variety

D = datetime
US = timedelta(microseconds=1)


def utc(*args: int) -> datetime:
    """A naive UTC datetime (how expectations are written)."""
    return datetime(*args)  # type: ignore[arg-type]


def real(wall: list[tuple[datetime, datetime]], zone: tzinfo) -> list[tuple[datetime, datetime]]:
    """wall_to_real as naive UTC pairs, after checking each result is aware and in ``zone``."""
    out = []
    for start, end in wall_to_real(wall, zone):
        assert start.tzinfo is zone and end.tzinfo is zone
        out.append(
            (
                start.astimezone(UTC).replace(tzinfo=None),
                end.astimezone(UTC).replace(tzinfo=None),
            )
        )
    return out


# --- resolve_zone, zone_names_like, local_zone, to_wall -----------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Europe/Helsinki",
        "America/New_York",
        "Australia/Sydney",
        "Etc/GMT+5",
        "America/Port-au-Prince",
    ],
)
def test_resolve_zone_iana(name: str) -> None:
    zone = resolve_zone(name)
    assert isinstance(zone, ZoneInfo)
    assert zone.key == name
    assert resolve_zone(name) is zone  # cached


@pytest.mark.parametrize("name", ["UTC", "utc", "Z"])
def test_resolve_zone_utc(name: str) -> None:
    assert resolve_zone(name) is timezone.utc


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        "Nowhere/City",
        "Europe",  # a directory
        "zone.tab",  # a data file, not a zone
        "leapseconds",
        "..",
        ".",
        "../etc/passwd",
        "Europe/../Europe/Helsinki",
        "/etc/localtime",
        "/usr/share/zoneinfo/Europe/Helsinki",
        "Europe/Helsinki/",
        "Europe//Helsinki",
        " Europe/Helsinki",
        "Europe\\Helsinki",
        "C:\\Windows\\System32",
        "Europe/Helsinki\x00",
        "\x00",
        "~root",
        "$HOME",
        "a" * 10_000,
        "Europe/" * 500,
        "Z ",
        "UTC\n",
    ],
)
def test_resolve_zone_unknown_or_hostile(name: str) -> None:
    assert resolve_zone(name) is None
    assert resolve_zone(name) is None  # and again, from whichever path answered


@pytest.mark.parametrize("name", [None, 42, b"UTC", ["UTC"]])
def test_resolve_zone_wrong_type_is_unknown(name: object) -> None:
    assert resolve_zone(name) is None  # type: ignore[arg-type]


def test_zone_names_like() -> None:
    assert zone_names_like("Europe/Helsnki")[0] == "Europe/Helsinki"
    assert zone_names_like("europe/helsinki") == ["Europe/Helsinki"]
    assert "Europe/Helsinki" in zone_names_like("helsinki")
    assert "America/New_York" in zone_names_like("new york")
    assert len(zone_names_like("Europe/Helsnki", n=1)) == 1
    assert len(zone_names_like("Amrica/Chicgo", n=5)) <= 5
    assert zone_names_like("qqqqqqqqqqqqqqqqqqqqqqqq") == []
    assert zone_names_like("") == []
    assert zone_names_like("\x00../" * 1000) == []


def test_local_zone_from_tz_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Helsinki")
    assert local_zone() is HELSINKI
    monkeypatch.setenv("TZ", ":America/New_York")
    assert local_zone() is NEW_YORK
    monkeypatch.setenv("TZ", "UTC")
    assert local_zone() is timezone.utc


def test_local_zone_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    # A POSIX rule string zoneinfo cannot read: still some usable zone.
    monkeypatch.setenv("TZ", "EET-2EEST,M3.5.0/3,M10.5.0/4")
    zone = local_zone()
    assert zone.utcoffset(datetime.now()) is not None
    monkeypatch.delenv("TZ")
    zone = local_zone()
    assert isinstance(zone, tzinfo)
    assert zone.utcoffset(datetime.now()) is not None


def test_to_wall() -> None:
    # 01:30 UTC on 2024-10-27 is the second 03:30 in Helsinki.
    wall = to_wall(D(2024, 10, 27, 1, 30, tzinfo=UTC), HELSINKI)
    assert wall == D(2024, 10, 27, 3, 30) and wall.tzinfo is None and wall.fold == 1
    wall = to_wall(D(2024, 10, 27, 0, 30, tzinfo=UTC), HELSINKI)
    assert wall == D(2024, 10, 27, 3, 30) and wall.fold == 0
    assert to_wall(D(2024, 1, 1, 12, tzinfo=UTC), timezone(timedelta(hours=2))) == D(2024, 1, 1, 14)
    with pytest.raises(ValueError):
        to_wall(D(2024, 1, 1), HELSINKI)


# --- wall_to_real: the DST policy -----------------------------------------------------

# Transitions used below (all 2024):
#   Helsinki   gap 03:00-04:00 on 03-31 at 01:00 UTC; fold 03:00-04:00 on 10-27 at 01:00 UTC
#   New York   gap 02:00-03:00 on 03-10 at 07:00 UTC; fold 01:00-02:00 on 11-03 at 06:00 UTC
#   Sydney     fold 02:00-03:00 on 04-07 at 16:00 UTC (04-06); gap 02:00-03:00 on 10-06 at
#              16:00 UTC (10-05)
DST_CASES = [
    # --- spring forward ---
    pytest.param(
        HELSINKI,
        [(D(2024, 3, 31, 3, 30), D(2024, 3, 31, 6))],
        [(utc(2024, 3, 31, 1), utc(2024, 3, 31, 3))],
        id="helsinki-starts-in-gap",
    ),
    pytest.param(
        HELSINKI, [(D(2024, 3, 31, 3, 10), D(2024, 3, 31, 3, 50))], [], id="helsinki-in-gap"
    ),
    pytest.param(
        HELSINKI,
        [(D(2024, 3, 31, 2), D(2024, 3, 31, 3, 30))],
        [(utc(2024, 3, 31, 0), utc(2024, 3, 31, 1))],
        id="helsinki-ends-in-gap",
    ),
    pytest.param(
        HELSINKI,
        [(D(2024, 3, 31, 2), D(2024, 3, 31, 5))],
        [(utc(2024, 3, 31, 0), utc(2024, 3, 31, 2))],
        id="helsinki-spans-gap",
    ),
    pytest.param(
        NEW_YORK,
        [(D(2024, 3, 10, 2, 30), D(2024, 3, 10, 5))],
        [(utc(2024, 3, 10, 7), utc(2024, 3, 10, 9))],
        id="new-york-starts-in-gap",
    ),
    pytest.param(NEW_YORK, [(D(2024, 3, 10, 2), D(2024, 3, 10, 3))], [], id="new-york-is-gap"),
    pytest.param(
        NEW_YORK,
        [(D(2024, 3, 10, 1), D(2024, 3, 10, 2, 30))],
        [(utc(2024, 3, 10, 6), utc(2024, 3, 10, 7))],
        id="new-york-ends-in-gap",
    ),
    pytest.param(
        NEW_YORK,
        # Both wall intervals touch the gap: in real time they meet at the transition.
        [(D(2024, 3, 10, 1), D(2024, 3, 10, 2, 15)), (D(2024, 3, 10, 2, 45), D(2024, 3, 10, 4))],
        [(utc(2024, 3, 10, 6), utc(2024, 3, 10, 8))],
        id="new-york-joined-across-gap",
    ),
    pytest.param(
        SYDNEY,
        [(D(2024, 10, 6, 2, 30), D(2024, 10, 6, 4))],
        [(utc(2024, 10, 5, 16), utc(2024, 10, 5, 17))],
        id="sydney-starts-in-gap",
    ),
    pytest.param(SYDNEY, [(D(2024, 10, 6, 2, 1), D(2024, 10, 6, 2, 59))], [], id="sydney-in-gap"),
    # --- fall back ---
    pytest.param(
        HELSINKI,
        [(D(2024, 10, 27, 3, 10), D(2024, 10, 27, 3, 40))],
        [
            (utc(2024, 10, 27, 0, 10), utc(2024, 10, 27, 0, 40)),
            (utc(2024, 10, 27, 1, 10), utc(2024, 10, 27, 1, 40)),
        ],
        id="helsinki-inside-fold",
    ),
    pytest.param(
        HELSINKI,
        [(D(2024, 10, 27, 2), D(2024, 10, 27, 5))],
        [(utc(2024, 10, 26, 23), utc(2024, 10, 27, 3))],
        id="helsinki-spans-fold",
    ),
    pytest.param(
        HELSINKI,
        [(D(2024, 10, 27, 3), D(2024, 10, 27, 4))],
        [(utc(2024, 10, 27, 0), utc(2024, 10, 27, 2))],
        id="helsinki-is-fold",
    ),
    pytest.param(
        HELSINKI,
        [(D(2024, 10, 27, 3, 30), D(2024, 10, 27, 5))],
        [
            (utc(2024, 10, 27, 0, 30), utc(2024, 10, 27, 1)),
            (utc(2024, 10, 27, 1, 30), utc(2024, 10, 27, 3)),
        ],
        id="helsinki-starts-in-fold",
    ),
    pytest.param(
        HELSINKI,
        [(D(2024, 10, 27, 2), D(2024, 10, 27, 3, 30))],
        [
            (utc(2024, 10, 26, 23), utc(2024, 10, 27, 0, 30)),
            (utc(2024, 10, 27, 1), utc(2024, 10, 27, 1, 30)),
        ],
        id="helsinki-ends-in-fold",
    ),
    pytest.param(
        NEW_YORK,
        # The example of the policy: 01:30 of the first pass to the clock change, then
        # 01:30 of the second pass to 03:00.
        [(D(2024, 11, 3, 1, 30), D(2024, 11, 3, 3))],
        [
            (utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6)),
            (utc(2024, 11, 3, 6, 30), utc(2024, 11, 3, 8)),
        ],
        id="new-york-starts-in-fold",
    ),
    pytest.param(
        NEW_YORK,
        [
            (D(2024, 11, 3, 1, 10), D(2024, 11, 3, 1, 20)),
            (D(2024, 11, 3, 1, 40), D(2024, 11, 3, 1, 50)),
        ],
        [
            (utc(2024, 11, 3, 5, 10), utc(2024, 11, 3, 5, 20)),
            (utc(2024, 11, 3, 5, 40), utc(2024, 11, 3, 5, 50)),
            (utc(2024, 11, 3, 6, 10), utc(2024, 11, 3, 6, 20)),
            (utc(2024, 11, 3, 6, 40), utc(2024, 11, 3, 6, 50)),
        ],
        id="new-york-two-inside-fold-interleave",
    ),
    pytest.param(
        NEW_YORK,
        [(D(2024, 11, 3, 1), D(2024, 11, 3, 1, 30))],
        [
            (utc(2024, 11, 3, 5), utc(2024, 11, 3, 5, 30)),
            (utc(2024, 11, 3, 6), utc(2024, 11, 3, 6, 30)),
        ],
        id="new-york-from-fold-start",
    ),
    pytest.param(
        NEW_YORK,
        [(D(2024, 11, 3, 0), D(2024, 11, 3, 3))],
        [(utc(2024, 11, 3, 4), utc(2024, 11, 3, 8))],
        id="new-york-spans-fold",
    ),
    pytest.param(
        SYDNEY,
        [(D(2024, 4, 7, 2, 15), D(2024, 4, 7, 2, 45))],
        [
            (utc(2024, 4, 6, 15, 15), utc(2024, 4, 6, 15, 45)),
            (utc(2024, 4, 6, 16, 15), utc(2024, 4, 6, 16, 45)),
        ],
        id="sydney-inside-fold",
    ),
    pytest.param(
        SYDNEY,
        [(D(2024, 4, 7, 1), D(2024, 4, 7, 4))],
        [(utc(2024, 4, 6, 14), utc(2024, 4, 6, 18))],
        id="sydney-spans-fold",
    ),
    pytest.param(
        LORD_HOWE,
        # Lord Howe sets its clock back half an hour: 01:30-02:00 happens twice.
        [(D(2024, 4, 7, 1, 45), D(2024, 4, 7, 3))],
        [
            (utc(2024, 4, 6, 14, 45), utc(2024, 4, 6, 15)),
            (utc(2024, 4, 6, 15, 15), utc(2024, 4, 6, 16, 30)),
        ],
        id="lord-howe-starts-in-half-hour-fold",
    ),
    # --- no transition ---
    pytest.param(
        HELSINKI,
        [(D(2024, 1, 1, 8), D(2024, 1, 1, 18)), (D(2024, 7, 1, 8), D(2024, 7, 1, 18))],
        [(utc(2024, 1, 1, 6), utc(2024, 1, 1, 16)), (utc(2024, 7, 1, 5), utc(2024, 7, 1, 15))],
        id="helsinki-winter-and-summer",
    ),
    pytest.param(
        NEW_YORK,
        # A year-long wall interval crosses both transitions and stays one real interval.
        [(D(2024, 1, 1), D(2025, 1, 1))],
        [(utc(2024, 1, 1, 5), utc(2025, 1, 1, 5))],
        id="new-york-whole-year",
    ),
    pytest.param(NEW_YORK, [], [], id="empty"),
]


@pytest.mark.parametrize(("zone", "wall", "expected"), DST_CASES)
def test_wall_to_real_dst_policy(
    zone: tzinfo,
    wall: list[tuple[datetime, datetime]],
    expected: list[tuple[datetime, datetime]],
) -> None:
    assert real(wall, zone) == expected


def test_wall_to_real_names_the_right_pass() -> None:
    # Around a fold, the aware results carry fold=1 on the second pass.
    (first_start, first_end), (second_start, second_end) = wall_to_real(
        [(D(2024, 10, 27, 3, 10), D(2024, 10, 27, 3, 40))], HELSINKI
    )
    assert (first_start.fold, first_start.utcoffset()) == (0, timedelta(hours=3))
    assert (second_start.fold, second_start.utcoffset()) == (1, timedelta(hours=2))
    assert second_end.replace(tzinfo=None) == D(2024, 10, 27, 3, 40) and second_end.fold == 1
    # The gap closes at the transition, which reads 04:00 summer time.
    ((_, end),) = wall_to_real([(D(2024, 3, 31, 2), D(2024, 3, 31, 3, 30))], HELSINKI)
    assert end.replace(tzinfo=None) == D(2024, 3, 31, 4) and end.utcoffset() == timedelta(hours=3)


def test_wall_to_real_is_exact_to_the_microsecond() -> None:
    got = real([(D(2024, 3, 10, 2, 0, 0, 1), D(2024, 3, 10, 3, 0, 0, 1))], NEW_YORK)
    assert got == [(utc(2024, 3, 10, 7), utc(2024, 3, 10, 7, 0, 0, 1))]
    got = real([(D(2024, 3, 10, 1, 59, 59, 999999), D(2024, 3, 10, 2, 59, 59, 999999))], NEW_YORK)
    assert got == [(utc(2024, 3, 10, 6, 59, 59, 999999), utc(2024, 3, 10, 7))]
    got = real([(D(2024, 11, 3, 1, 59, 59, 999999), D(2024, 11, 3, 2))], NEW_YORK)
    assert got == [
        (utc(2024, 11, 3, 5, 59, 59, 999999), utc(2024, 11, 3, 6)),
        (utc(2024, 11, 3, 6, 59, 59, 999999), utc(2024, 11, 3, 7)),
    ]


@pytest.mark.parametrize("zone", [timezone.utc, timezone(timedelta(hours=2)), ZoneInfo("UTC")])
def test_wall_to_real_fixed_offsets(zone: tzinfo) -> None:
    offset = zone.utcoffset(None) or timedelta(0)
    wall = [(D(2024, 3, 31, 3, 30), D(2024, 3, 31, 6)), (D(2024, 10, 27, 3), D(2024, 10, 27, 4))]
    assert real(wall, zone) == [(s - offset, e - offset) for s, e in wall]


@pytest.mark.parametrize("zone", [HELSINKI, NEW_YORK, timezone(timedelta(hours=2))])
def test_wall_to_real_keeps_range_sentinels(zone: tzinfo) -> None:
    # datetime.min and datetime.max as "since ever" and "forever" must not overflow.
    ((start, end),) = wall_to_real([(D(2024, 1, 1), D.max)], zone)
    assert start.replace(tzinfo=None) == D(2024, 1, 1) and end.replace(tzinfo=None) == D.max
    ((start, end),) = wall_to_real([(D.min, D(2024, 1, 1))], zone)
    assert start.replace(tzinfo=None) - D.min < timedelta(hours=1)
    assert end.replace(tzinfo=None) == D(2024, 1, 1)


@pytest.mark.parametrize("zone", [NEW_YORK, timezone(timedelta(hours=-5))])
def test_wall_to_real_in_utc_for_interval_algebra(zone: tzinfo) -> None:
    # In UTC the two passes of a fold order correctly, so results can be combined.
    a = list(wall_to_real([(D(2024, 11, 3, 1, 10), D(2024, 11, 3, 1, 20))], zone, tz=UTC))
    b = list(wall_to_real([(D(2024, 11, 3, 1, 40), D(2024, 11, 3, 1, 50))], zone, tz=UTC))
    both = list(wall_to_real([(D(2024, 11, 3, 1, 10), D(2024, 11, 3, 1, 20))], zone))
    assert all(s.tzinfo is UTC and e.tzinfo is UTC for s, e in a + b)
    assert list(union(a, b)) == sorted(a + b)
    assert [(s.astimezone(UTC), e.astimezone(UTC)) for s, e in both] == a
    assert len(list(union(a, b))) == (4 if zone is NEW_YORK else 2)
    # The sentinels survive too.
    ((_, end),) = wall_to_real([(D(2024, 1, 1), D.max)], zone, tz=UTC)
    assert end == D.max.replace(tzinfo=UTC)


def test_wall_to_real_rejects_aware_input() -> None:
    aware = [(D(2024, 1, 1, tzinfo=UTC), D(2024, 1, 2, tzinfo=UTC))]
    for zone in (HELSINKI, timezone.utc):
        with pytest.raises(ValueError, match="naive"):
            list(wall_to_real(aware, zone))


def test_wall_to_real_is_lazy_over_an_infinite_stream() -> None:
    # 03:30-04:30 every day, forever: once a year the start is in the gap, and once the
    # whole hour is repeated, which splits the fold day into two real intervals.
    days = (D(2024, 1, 1) + timedelta(days=k) for k in itertools.count())
    wall = ((d.replace(hour=3, minute=30), d.replace(hour=4, minute=30)) for d in days)
    got = list(itertools.islice(wall_to_real(wall, HELSINKI), 368))
    by_day: dict[datetime, list[tuple[datetime, datetime]]] = {}
    for s, e in got:
        by_day.setdefault(to_wall(s, HELSINKI).replace(hour=0, minute=0), []).append((s, e))
    assert len(by_day[D(2024, 3, 31)]) == 1
    ((s, e),) = by_day[D(2024, 3, 31)]
    assert (s.astimezone(UTC), e.astimezone(UTC)) == (
        D(2024, 3, 31, 1, tzinfo=UTC),
        D(2024, 3, 31, 1, 30, tzinfo=UTC),
    )
    # On the fold day: first-pass 03:30-04:00 then second-pass 03:30-04:30.
    fold_day = [(s.astimezone(UTC), e.astimezone(UTC)) for s, e in by_day[D(2024, 10, 27)]]
    assert fold_day == [
        (D(2024, 10, 27, 0, 30, tzinfo=UTC), D(2024, 10, 27, 1, tzinfo=UTC)),
        (D(2024, 10, 27, 1, 30, tzinfo=UTC), D(2024, 10, 27, 2, 30, tzinfo=UTC)),
    ]
    # Every other day of 2024 (366 days) has exactly one interval of an hour.
    plain = [v for k, v in by_day.items() if k not in (D(2024, 3, 31), D(2024, 10, 27))]
    assert all(len(v) == 1 and v[0][1] - v[0][0] == timedelta(hours=1) for v in plain)


# --- wall_to_real against sampling every real minute ---------------------------------

# (zone, the real instant of a transition)
TRANSITIONS = [
    (HELSINKI, D(2024, 3, 31, 1, tzinfo=UTC)),
    (HELSINKI, D(2024, 10, 27, 1, tzinfo=UTC)),
    (NEW_YORK, D(2024, 3, 10, 7, tzinfo=UTC)),
    (NEW_YORK, D(2024, 11, 3, 6, tzinfo=UTC)),
    (SYDNEY, D(2024, 4, 6, 16, tzinfo=UTC)),
    (SYDNEY, D(2024, 10, 5, 16, tzinfo=UTC)),
    (LORD_HOWE, D(2024, 4, 6, 15, tzinfo=UTC)),
    (LORD_HOWE, D(2024, 10, 5, 15, 30, tzinfo=UTC)),
]
WINDOW = 180  # minutes of wall time either side of the transition


def in_wall(wall: datetime, intervals: list[tuple[datetime, datetime]]) -> bool:
    return any(s <= wall < e for s, e in intervals)


def in_real(at: datetime, intervals: list[tuple[datetime, datetime]]) -> bool:
    return any(s <= at < e for s, e in intervals)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(TRANSITIONS),
    st.lists(st.integers(-WINDOW, WINDOW), unique=True, max_size=8),
    st.integers(0, 59),
)
def test_wall_to_real_matches_minute_sampling(
    transition: tuple[ZoneInfo, datetime], marks: list[int], seconds: int
) -> None:
    zone, jump = transition
    # Wall intervals cut from sorted distinct minute marks around the transition's wall
    # time, ends shifted by under a minute: disjoint and non-adjacent.
    centre = to_wall(jump, zone).replace(fold=0)
    marks.sort()
    wall = [
        (
            centre + timedelta(minutes=a),
            centre + timedelta(minutes=b, seconds=seconds),
        )
        for a, b in zip(marks[::2], marks[1::2], strict=False)
    ]
    got = [(s.astimezone(UTC), e.astimezone(UTC)) for s, e in wall_to_real(wall, zone)]
    # Well formed in real time.
    for s, e in got:
        assert s < e
    for (_, e1), (s2, _) in itertools.pairwise(got):
        assert e1 < s2
    # Every real minute around the transition agrees with its own wall time.
    for minute in range(-WINDOW - 120, WINDOW + 120):
        at = jump + timedelta(minutes=minute)
        assert in_real(at, got) == in_wall(to_wall(at, zone), wall), at
    # Boundaries are exact: inside at the start and just before the end, outside just
    # before the start and at the end.
    for s, e in got:
        assert in_wall(to_wall(s, zone), wall) and in_wall(to_wall(e - US, zone), wall)
        assert not in_wall(to_wall(s - US, zone), wall) and not in_wall(to_wall(e, zone), wall)


# --- wall bounds of real instants -------------------------------------------------------


def test_real_to_wall_bound() -> None:
    # First pass of the New York fold: the clock will read 01:00 again.
    assert real_to_wall_bound(D(2024, 11, 3, 5, 30, tzinfo=UTC), NEW_YORK) == D(2024, 11, 3, 1)
    # Second pass: nothing lower is coming.
    assert real_to_wall_bound(D(2024, 11, 3, 6, 30, tzinfo=UTC), NEW_YORK) == D(2024, 11, 3, 1, 30)
    # Before the fold, and in ordinary times: the wall time itself.
    assert real_to_wall_bound(D(2024, 11, 3, 4, 30, tzinfo=UTC), NEW_YORK) == D(2024, 11, 3, 0, 30)
    assert real_to_wall_bound(D(2024, 3, 10, 7, tzinfo=UTC), NEW_YORK) == D(2024, 3, 10, 3)
    assert real_to_wall_bound(D(2024, 1, 1, tzinfo=UTC), timezone.utc) == D(2024, 1, 1)


def test_wall_span() -> None:
    def span(a: datetime, b: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
        return wall_span(a.replace(tzinfo=UTC), b.replace(tzinfo=UTC), zone)

    # Across the whole New York fold.
    assert span(D(2024, 11, 3, 4), D(2024, 11, 3, 8), NEW_YORK) == (
        D(2024, 11, 3),
        D(2024, 11, 3, 3),
    )
    # From the first pass into the second: 01:30 EDT .. 02:00, then 01:00 EST .. 01:30.
    assert span(D(2024, 11, 3, 5, 30), D(2024, 11, 3, 6, 30), NEW_YORK) == (
        D(2024, 11, 3, 1),
        D(2024, 11, 3, 2),
    )
    # Entirely within the first pass, and entirely within the second.
    assert span(D(2024, 11, 3, 5, 10), D(2024, 11, 3, 5, 20), NEW_YORK) == (
        D(2024, 11, 3, 1, 10),
        D(2024, 11, 3, 1, 20),
    )
    assert span(D(2024, 11, 3, 6, 10), D(2024, 11, 3, 6, 20), NEW_YORK) == (
        D(2024, 11, 3, 1, 10),
        D(2024, 11, 3, 1, 20),
    )
    # Across a gap: wall time just skips.
    assert span(D(2024, 3, 10, 6), D(2024, 3, 10, 8), NEW_YORK) == (
        D(2024, 3, 10, 1),
        D(2024, 3, 10, 4),
    )
    with pytest.raises(ValueError):
        span(D(2024, 1, 2), D(2024, 1, 1), NEW_YORK)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(TRANSITIONS), st.integers(-150, 150), st.integers(1, 200))
def test_wall_span_holds_every_minute(
    transition: tuple[ZoneInfo, datetime], a: int, length: int
) -> None:
    zone, jump = transition
    start = jump + timedelta(minutes=a)
    end = start + timedelta(minutes=length)
    lo, hi = wall_span(start, end, zone)
    walls = [to_wall(start + timedelta(minutes=m), zone) for m in range(length)]
    walls.append(to_wall(end - US, zone))
    if start <= jump - US < end:
        walls.append(to_wall(jump - US, zone))  # the top of a fold's first pass
    assert all(lo <= w < hi for w in walls)
    # Tight: the lowest wall time is reached, and the top is within a microsecond.
    assert min(walls) == lo
    # hi is a safe bound; it may sit past the top reading when the span ends at a gap.
    assert max(walls) <= hi - US
