"""Time zones, and the policy that maps wall-clock intervals to real instants.

Clock conditions are evaluated on *wall-clock* time: naive datetimes read in the
condition's zone. Only the final interval set is mapped to real instants, by
``wall_to_real``, under this DST policy (the set of real instants whose wall time
lies in the interval, with nothing invented for wall times that never happen):

* spring forward (a gap of wall times that never happen): an interval starting in
  the gap opens at the transition, the first real instant after the gap; one lying
  entirely in the gap is empty; one ending in the gap closes at the transition.
* fall back (a fold of wall times that happen twice): the interval holds during every
  real pass of its wall times, so one inside the repeated hour yields two real
  intervals, and one starting inside the fold (say [01:30, 03:00) with 01:00-02:00
  repeated) yields 01:30-02:00 of the first pass, then 01:30 of the second pass
  to 03:00.

Results are exact to the microsecond: transitions are found by probing ``utcoffset``
near the ends of each wall interval (bisecting only when an end falls in a gap or
fold), which assumes a zone's transitions lie further apart than its offset changes,
as they do in practice. ``datetime.min`` and ``datetime.max`` as wall-time bounds are
read as "since ever" and "forever" and come back as the same sentinels.

To bound the wall-clock computation for a span of real time, use
``real_to_wall_bound`` or ``wall_span``: in a fold the clock goes back, so the wall
time at the start of a span is not always its lowest.

Aware results are expressed in the zone by default, with ``fold`` set so each one
names the right instant. Mind PEP 495: two datetimes sharing a tzinfo are compared and
subtracted by their wall values, ignoring fold, so around a fold the second pass's
01:10 compares equal to the first pass's 01:10. Before combining results with the
interval algebra (or comparing them at all), express them in UTC: pass
``tz=timezone.utc`` to ``wall_to_real``, or convert with ``.astimezone(timezone.utc)``.
"""

from __future__ import annotations

import functools
import heapq
import os
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone, tzinfo

from conddsl.timeline.intervals import complement, intersect, normalize

__all__ = [
    "local_zone",
    "real_to_wall_bound",
    "resolve_zone",
    "to_wall",
    "wall_edges",
    "wall_span",
    "wall_to_real",
    "zone_names_like",
]

_UTC = timezone.utc
_UTC_NAMES = frozenset({"UTC", "utc", "Z"})
# IANA names are path-like words of letters, digits, "_", "-" and "+". Checking the
# shape first keeps "..", absolute paths, NUL bytes and other filesystem tricks away
# from zoneinfo, which would otherwise treat the name as a path.
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*\Z")
_MAX_NAME_LENGTH = 128
_LOCALTIME = "/etc/localtime"

# Real instants are handled internally as naive UTC datetimes; these two stand for
# minus and plus infinity in the interval algebra.
_DAWN = datetime.min
_FOREVER = datetime.max
_MIDDLE = datetime(5000, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def resolve_zone(name: str) -> tzinfo | None:
    """The zone an IANA name (or "UTC"/"utc"/"Z") denotes, or None if unknown; never raises."""
    if not isinstance(name, str):
        return None
    if name in _UTC_NAMES:
        return _UTC
    if len(name) > _MAX_NAME_LENGTH or not _ZONE_NAME.match(name):
        # Rejected before the cache so hostile input cannot crowd it out.
        return None
    return _load_zone(name)


@functools.lru_cache(maxsize=512)
def _load_zone(name: str) -> tzinfo | None:
    # zoneinfo (and the sysconfig it reads) loads with the first named zone: a program in
    # UTC never needs it (~0.4 MiB of RSS, issue 21).
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(name)
    except (ValueError, OSError, LookupError):
        # ZoneInfoNotFoundError is a KeyError; a non-TZif file gives ValueError; a
        # directory or unreadable file gives OSError.
        return None


@functools.cache
def _zone_names() -> dict[str, str]:
    # Scanning the zone database takes tens of milliseconds: do it once, on demand.
    from zoneinfo import available_timezones

    names = set(available_timezones()) | {"UTC"}
    return {n.lower(): n for n in sorted(names)}


def zone_names_like(name: str, n: int = 3) -> list[str]:
    """Up to ``n`` known zone names close to ``name``, best first, for a did-you-mean hint."""
    if not isinstance(name, str) or not name or n <= 0:
        return []
    names = _zone_names()
    wanted = name.strip().lower()[:_MAX_NAME_LENGTH]
    if wanted in names:
        return [names[wanted]]
    import difflib  # only on the way to an error: kept out of every scheduler's memory

    scored: dict[str, float] = {}
    for lowered, real in names.items():
        # People often type just the city ("helsinki", "new york"), so also compare
        # against the last component, with spaces read as underscores.
        city = lowered.rsplit("/", 1)[-1]
        score = max(
            difflib.SequenceMatcher(None, wanted, lowered).ratio(),
            difflib.SequenceMatcher(None, wanted.replace(" ", "_"), city).ratio(),
        )
        if score >= 0.6:
            scored[real] = score
    return sorted(scored, key=lambda k: (-scored[k], k))[:n]


def local_zone() -> tzinfo:
    """The system's local zone: ``TZ``, else /etc/localtime, else a fixed-offset fallback."""
    tz_env = os.environ.get("TZ")
    if tz_env:
        # POSIX allows a leading ":" before a zone file name.
        zone = resolve_zone(tz_env[1:] if tz_env.startswith(":") else tz_env)
        if zone is not None:
            return zone
        # A POSIX rule string such as "EST5EDT4,M3.2.0,M11.1.0": only libc can read
        # it, and /etc/localtime would be the wrong answer, so ask libc below.
    else:
        zone = _system_zone()
        if zone is not None:
            return zone
    # Fixed offset of the current moment: loses DST rules, but is never wrong now.
    return datetime.now().astimezone().tzinfo or _UTC


def _system_zone() -> tzinfo | None:
    try:
        target = os.path.realpath(_LOCALTIME)
    except OSError:
        return None
    marker = "/zoneinfo/"
    if marker in target:
        key = target.rsplit(marker, 1)[1]
        for prefix in ("posix/", "right/"):
            key = key.removeprefix(prefix)
        zone = resolve_zone(key)
        if zone is not None:
            return zone
    try:
        with open("/etc/timezone", encoding="utf-8") as f:
            zone = resolve_zone(f.read().strip())
        if zone is not None:
            return zone
    except (OSError, UnicodeDecodeError):
        pass
    try:
        stat = os.stat(target)
    except OSError:
        return None
    return _zone_from_file(target, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _zone_from_file(path: str, mtime_ns: int) -> tzinfo | None:
    # Cached (per file version) so repeated calls return the same tzinfo object.
    from zoneinfo import ZoneInfo

    try:
        with open(path, "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return None


def to_wall(at: datetime, zone: tzinfo) -> datetime:
    """The naive wall-clock time in ``zone`` of the aware instant ``at`` (fold kept)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"to_wall needs an aware datetime, got {at!r}")
    try:
        return at.astimezone(zone).replace(tzinfo=None)
    except OverflowError:
        # Within a day of the calendar's ends the wall time of a zone east (west) of the
        # instant's own may lie past year 9999 (before year 1): clamp to the calendar.
        return datetime.max if at.year == 9999 else datetime.min


def wall_to_real(
    intervals: Iterable[tuple[datetime, datetime]], zone: tzinfo, *, tz: tzinfo | None = None
) -> Iterator[tuple[datetime, datetime]]:
    """Map naive wall-clock intervals in ``zone`` to maximal aware real intervals (in ``tz``)."""
    # Results are expressed in ``zone`` unless ``tz`` says otherwise. Pass
    # tz=timezone.utc before doing interval algebra on the results: datetimes sharing
    # a tzinfo compare by wall value (PEP 495), which misorders the two passes of a fold.
    out = zone if tz is None else tz
    if isinstance(zone, timezone):
        return _wall_to_real_fixed(intervals, zone, out)
    return _wall_to_real(intervals, zone, out)


def _wall_to_real_fixed(
    intervals: Iterable[tuple[datetime, datetime]], zone: timezone, out: tzinfo
) -> Iterator[tuple[datetime, datetime]]:
    # A fixed offset has no gaps or folds: wall time and real time differ by a constant,
    # so a well-formed stream maps pair by pair.
    for start, end in intervals:
        _check_naive(start, end)
        if start < end:
            yield (_fixed_to(start, zone, out), _fixed_to(end, zone, out))


def _fixed_to(wall: datetime, zone: timezone, out: tzinfo) -> datetime:
    if wall in (_FOREVER, _DAWN) or out is zone:
        return wall.replace(tzinfo=out)  # the sentinels stay sentinels
    return _convert(wall.replace(tzinfo=zone), out)


def _wall_to_real(
    intervals: Iterable[tuple[datetime, datetime]], zone: tzinfo, out: tzinfo
) -> Iterator[tuple[datetime, datetime]]:
    # Pieces of neighbouring wall intervals can touch (both ends in one gap) and must be
    # joined: normalize does that, with one piece of look-ahead.
    for start, end in normalize(_real_pieces(intervals, zone)):
        yield (_from_utc(start, out), _from_utc(end, out))


def _real_pieces(
    intervals: Iterable[tuple[datetime, datetime]], zone: tzinfo
) -> Iterator[tuple[datetime, datetime]]:
    """Real (naive UTC) pieces of each wall interval, yielded in order of start."""
    # Around a fold the pieces of consecutive wall intervals interleave in real time
    # ([01:10, 01:20) and [01:40, 01:50) each happen twice), so pieces wait in a heap
    # until no later wall interval can produce an earlier piece. Every piece of a wall
    # interval [a, b) starts at or after the first real instant whose wall time reaches
    # a, which grows with a; later intervals start after b, so once [a, b) is done the
    # pieces starting no later than that instant for b are final.
    pending: list[tuple[datetime, datetime]] = []
    for start, end in intervals:
        _check_naive(start, end)
        if not start < end:
            continue
        reached_start = _reached_or_edge(start, zone)
        reached_end = _reached_or_edge(end, zone)
        # Wall time in [a, b) = wall time has reached a, and has not reached b.
        for piece in intersect(reached_start, complement(reached_end, _DAWN, _FOREVER)):
            heapq.heappush(pending, piece)
        watermark = reached_end[0][0] if reached_end else _FOREVER
        while pending and pending[0][0] <= watermark:
            yield heapq.heappop(pending)
    while pending:
        yield heapq.heappop(pending)


def _reached_or_edge(wall: datetime, zone: tzinfo) -> list[tuple[datetime, datetime]]:
    """``_reached``, with wall times at the ends of datetime's range (sentinels such as
    ``datetime.max`` used for "forever") read as minus or plus infinity."""
    if wall == _FOREVER:
        return []
    if wall == _DAWN:
        return [(_DAWN, _FOREVER)]
    try:
        return _reached(wall, zone)
    except OverflowError:
        # Only wall times within a day of year 1 or year 9999 get here.
        return [] if wall > _MIDDLE else [(_DAWN, _FOREVER)]


def _reached(wall: datetime, zone: tzinfo) -> list[tuple[datetime, datetime]]:
    """The real instants (naive UTC) whose wall time is at or after ``wall``, as intervals.

    Wall time runs with real time except at transitions: it jumps forward over a gap
    and back over a fold. So "wall time >= x" becomes true once and stays true, unless
    x lies strictly inside a fold, where it turns false at the transition (the clock is
    set back below x) and true again when the second pass reaches x.
    """
    # The two folds only disagree when the wall time is in a gap or a fold, so the
    # common case costs two utcoffset() calls.
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    if first is None or second is None:
        raise ValueError(f"{zone!r} gives no UTC offset for {wall}")
    if first == second:
        return [(wall - first, _FOREVER)]
    # Real instants at the larger and smaller offset. The transition lies in
    # (early, late]: for a fold they are the first and second pass of the wall time;
    # for a gap, neither reads back as the wall time, and they bracket the jump.
    early = wall - max(first, second)
    late = wall - min(first, second)
    before = _offset_at(early, zone)
    after = _offset_at(late, zone)
    if before == after:
        # A tzinfo that disagrees with itself; trust its offset at the real instant.
        return [(wall - before, _FOREVER)]
    jump = _transition(early, late, after, zone)
    if before < after:
        # Gap: the wall time never happens; the first instant past it is the jump.
        return [(jump, _FOREVER)]
    # Fold: true on the first pass up to the jump, then from the second pass on. When
    # the wall time is the very start of the fold the two touch, and normalize joins them.
    return list(normalize([(early, jump), (late, _FOREVER)]))


def wall_edges(wall: datetime, zone: tzinfo) -> list[datetime]:
    """The real instants (aware UTC) at which the wall time in ``zone`` reaches ``wall``.

    Usually one; in a gap, the transition; in a fold, the first pass, the transition
    (the clock goes back below ``wall``) and the second pass. A value that depends on
    the wall time can only change at these instants of its boundaries.
    """
    edges = []
    for start, end in _reached_or_edge(wall.replace(fold=0), zone):
        edges.extend(edge for edge in (start, end) if edge not in (_DAWN, _FOREVER))
    return [edge.replace(tzinfo=_UTC) for edge in edges]


def _offset_at(real: datetime, zone: tzinfo) -> timedelta:
    """The UTC offset of ``zone`` at the real instant ``real`` (naive UTC)."""
    offset = real.replace(tzinfo=_UTC).astimezone(zone).utcoffset()
    if offset is None:
        raise ValueError(f"{zone!r} gives no UTC offset at {real} UTC")
    return offset


def _transition(lo: datetime, hi: datetime, offset_hi: timedelta, zone: tzinfo) -> datetime:
    """The first real instant in (lo, hi] with offset ``offset_hi`` (naive UTC), exact."""
    # Bisection to the microsecond: about 32 probes for an hour-wide bracket, and only
    # needed for wall times that fall in a gap or fold.
    while hi - lo > _MICROSECOND:
        mid = lo + (hi - lo) // 2
        if _offset_at(mid, zone) == offset_hi:
            hi = mid
        else:
            lo = mid
    return hi


def _from_utc(real: datetime, zone: tzinfo) -> datetime:
    # The infinities come back as the ends of datetime's range, read as wall times.
    if real == _FOREVER:
        return datetime.max.replace(tzinfo=zone)
    if real == _DAWN:
        return datetime.min.replace(tzinfo=zone)
    return _convert(real.replace(tzinfo=_UTC), zone)


def _convert(at: datetime, zone: tzinfo) -> datetime:
    try:
        return at.astimezone(zone)
    except OverflowError:
        # Past what datetime can show in this zone: the ends of the range stand in.
        edge = datetime.max if at.replace(tzinfo=None) > _MIDDLE else datetime.min
        return edge.replace(tzinfo=zone)


def _check_naive(start: datetime, end: datetime) -> None:
    if start.tzinfo is not None or end.tzinfo is not None:
        raise ValueError(f"wall-clock intervals must be naive datetimes, got ({start!r}, {end!r})")


def real_to_wall_bound(after: datetime, zone: tzinfo) -> datetime:
    """The earliest wall time (naive) read at any real instant at or after ``after``."""
    wall = to_wall(after, zone)
    jump = _fold_jump_after(after, wall, zone)
    if jump is None:
        return wall
    # On the first pass of a fold, the clock is about to be set back: the second pass
    # starts at the bottom of the fold, below the current wall time.
    return (jump + _offset_at(jump, zone)).replace(fold=1)


def wall_span(start: datetime, end: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """Naive wall bounds [lo, hi) holding the wall time of every real instant in [start, end)."""
    if not start < end:
        raise ValueError(f"wall_span needs start < end, got {start!r} and {end!r}")
    lo = to_wall(start, zone)
    jump = _fold_jump_after(start, lo, zone)
    if jump is not None and jump < _naive_utc(end):
        lo = (jump + _offset_at(jump, zone)).replace(fold=1)
    hi = to_wall(end, zone)
    jump = _fold_jump_before(end, hi, zone)
    if jump is not None and _naive_utc(start) < jump:
        # Just before the clock was set back it read nearly the top of the fold.
        hi = (jump + _offset_at(jump - _MICROSECOND, zone)).replace(fold=0)
    return lo, hi


def _naive_utc(at: datetime) -> datetime:
    return at.astimezone(_UTC).replace(tzinfo=None)


def _fold_offsets(wall: datetime, zone: tzinfo) -> tuple[timedelta, timedelta] | None:
    """(larger, smaller) offsets if ``wall`` is in a fold or gap of ``zone``, else None."""
    if isinstance(zone, timezone):
        return None
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    if first is None or second is None or first == second:
        return None
    return max(first, second), min(first, second)


def _fold_jump_after(at: datetime, wall: datetime, zone: tzinfo) -> datetime | None:
    """If ``at`` is on the first pass of a fold, the real instant (naive UTC) it ends."""
    offsets = _fold_offsets(wall, zone)
    if offsets is None:
        return None
    real = _naive_utc(at)
    if _offset_at(real, zone) != offsets[0]:
        return None  # already on the second pass
    return _transition(real, wall - offsets[1], offsets[1], zone)


def _fold_jump_before(at: datetime, wall: datetime, zone: tzinfo) -> datetime | None:
    """If ``at`` is on the second pass of a fold, the real instant (naive UTC) it began."""
    offsets = _fold_offsets(wall, zone)
    if offsets is None:
        return None
    real = _naive_utc(at)
    if _offset_at(real, zone) != offsets[1]:
        return None  # still on the first pass
    return _transition(wall - offsets[0], real, offsets[1], zone)
