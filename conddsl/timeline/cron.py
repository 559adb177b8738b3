"""A standalone cron engine: parse five-field cron text and find fire times.

Times are NAIVE wall-clock datetimes at minute granularity; time zones and DST
are handled elsewhere. (An aware datetime is read by its wall-clock fields and
its ``tzinfo`` is carried onto the result unchanged.)

Syntax
------
``minute hour day-of-month month day-of-week``, separated by any whitespace.

=============== ======= ===========================================
field           values  names
=============== ======= ===========================================
minute          0-59
hour            0-23
day of month    1-31    ``L`` = the last day of the month
month           1-12    ``jan`` .. ``dec``
day of week     0-7     ``sun`` .. ``sat``; 0 and 7 are both Sunday
=============== ======= ===========================================

Each field is a comma-separated list of items; an item is

* ``*`` -- every value of the field;
* ``N`` -- one value (a number, or a name where the field has names);
* ``A-B`` -- every value from A to B inclusive.  A range whose start is past
  its end wraps around the field: minute ``50-10`` is 50-59 and 0-10, month
  ``nov-mar`` is November to March, day of week ``6-1`` is Saturday, Sunday,
  Monday (croniter's reading).  Sunday as an end closes the week, so
  ``mon-sun`` and ``fri-sun`` (``5-0``) end on Sunday, like ``5-7``, and
  ``sun-sun`` (``0-0``, ``7-7``) is the whole week.  In day of month, ``L`` may
  end a range: ``29-L`` is the 29th to the last day.  Any other ``A-A`` is just
  ``A``;
* ``*/S``, ``A-B/S`` -- every S-th value of the field or range, starting at its
  start and counting on through a wrap (hour ``22-2/2`` is 22, 0, 2; day of week
  ``thu-tue/2`` is Thursday, Saturday, Monday);
* ``N/S`` -- **from N up to the field's maximum, every S** (so minute ``0/20``
  is 0, 20, 40 and hour ``5/8`` is 5, 13, 21).  This is the common reading and
  croniter's.  In day of week the maximum is 6 (Saturday), so ``1/2`` is
  Monday, Wednesday, Friday; ``7/S`` is an error, as 7 is already the end of
  the week (write ``0/S``);
* day of month only: ``L``, the last day of the month (also in a list, ``1,L``);
* day of week only: ``W#K``, the K-th (1-5) weekday W of the month (``fri#2``,
  ``5#2``; ``mon-fri#1`` is the first Monday, the first Tuesday, ... the first
  Friday, as in croniter), and ``WL``, the last weekday W of the month
  (``friL``, ``5L``).

A step S runs from 1 up to the number of values in the field (60, 24, 31, 12,
7): a larger step could only ever give the start value and is most likely a
typo.  Names and ``L`` are case-insensitive.

Aliases stand alone: ``@yearly``/``@annually`` (``0 0 1 1 *``), ``@monthly``
(``0 0 1 * *``), ``@weekly`` (``0 0 * * 0``), ``@daily``/``@midnight``
(``0 0 * * *``), ``@hourly`` (``0 * * * *``).

Day of month and day of week (the classic Vixie rule): when BOTH fields are
restricted -- neither field's text starts with ``*`` -- a day matches when
EITHER field matches it; otherwise it must match both.  So ``0 0 1 * mon``
fires on the 1st and on every Monday, while ``0 0 */2 * mon`` fires on Mondays
that fall on an odd day of the month.

Every malformed text raises :class:`CronError`, which names the field, the
0-based span of the offending text, what was expected, and often a hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from conddsl.errors import CronError, suggest

__all__ = ["CronError", "CronSpec", "parse_cron"]


MINUTE, HOUR, DOM, MONTH, DOW = range(5)
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
# Inclusive bounds of the values that may be written in each field.
_LOW = (0, 0, 1, 1, 0)
_HIGH = (59, 23, 31, 12, 7)
# Upper end of ``*`` and ``N/S``.  Day of week stops at 6: 7 is only a second
# spelling of Sunday, and croniter reads it the same way.
_TOP = (59, 23, 31, 12, 6)
# Largest step: the number of distinct values in the field.
_MAX_STEP = (60, 24, 31, 12, 7)

_MONTH_NAMES = {
    name: i + 1
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_DOW_NAMES = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_NAMES: tuple[dict[str, int] | None, ...] = (None, None, None, _MONTH_NAMES, _DOW_NAMES)

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_WORD = re.compile(r"\S+")
# Only these characters can appear in a field; anything else is reported by
# position before the finer parsing, which then may rely on ASCII text (so
# ``str.lower`` keeps every offset).
_ALLOWED = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ*/,-#")
_DIGITS = frozenset("0123456789")

_ONE_MINUTE = timedelta(minutes=1)
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# The Gregorian calendar repeats every 400 years, so a spec that can match at
# all matches within 400 years of any instant.  The first, short scan covers
# every ordinary spec (including Feb 29, whose gap is at most 8 years); only if
# it finds nothing do we ask whether the spec can ever match before going on.
_QUICK_YEARS = 8
_CYCLE_YEARS = 400
_MIN_YEAR, _MAX_YEAR = 1, 9999
_ZERO_HINT = {DOM: "days of the month start at 1", MONTH: "months start at 1"}
_SEVEN_WEEKS = sum(1 << (7 * i) for i in range(7))


def _low_bit(x: int) -> int:
    """Index of the lowest set bit of ``x`` (> 0)."""
    return (x & -x).bit_length() - 1


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


@dataclass(frozen=True, slots=True, repr=False)
class CronSpec:
    """A parsed cron expression; build it with :func:`parse_cron`.

    Each field is precomputed as a bitmask so a search can jump straight to the
    next allowed value (lowest set bit of ``mask >> start``) instead of stepping
    minute by minute.
    """

    text: str  # canonical text, see __str__
    minutes: int  # bit m set: minute m allowed
    hours: int  # bit h: hour h
    days: int  # bit d-1: day of month d
    last_day: bool  # ``L`` in day of month
    months: int  # bit m: month m (1-12)
    weekdays: int  # bit w: weekday w, 0 = Sunday
    nth_weekdays: tuple[tuple[int, int], ...]  # (weekday, k): ``w#k``
    last_weekdays: int  # bit w: ``wL``
    day_or: bool  # both day fields restricted: a day matches if either does
    # Derived: bit k set iff weekday k % 7 is in ``weekdays``; shifted right by
    # the weekday of the 1st it gives that month's day-of-week days at once.
    week_pattern: int

    def __str__(self) -> str:
        """The canonical text (fields joined by one space, names in lower case)."""
        return self.text

    def __repr__(self) -> str:
        return f"CronSpec({self.text!r})"

    # -- day arithmetic --------------------------------------------------------

    def _mask(self, dim: int, first_weekday: int) -> int:
        """Days (bit d-1) matching in a month of ``dim`` days whose 1st is ``first_weekday``."""
        dom = self.days
        if self.last_day:
            dom |= 1 << (dim - 1)
        dow = self.week_pattern >> first_weekday
        for weekday, k in self.nth_weekdays:
            index = (weekday - first_weekday) % 7 + 7 * (k - 1)
            if index < dim:
                dow |= 1 << index
        if self.last_weekdays:
            for weekday in range(7):
                if self.last_weekdays >> weekday & 1:
                    dow |= 1 << (dim - 1 - (first_weekday + dim - 1 - weekday) % 7)
        return ((dom | dow) if self.day_or else (dom & dow)) & ((1 << dim) - 1)

    def _day_mask(self, year: int, month: int) -> int:
        dim = 29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month]
        # date.weekday() has Monday = 0; cron has Sunday = 0.
        return self._mask(dim, (date(year, month, 1).weekday() + 1) % 7)

    def _can_ever_match(self) -> bool:
        """Whether some date ever matches: the calendar check behind ``None`` answers."""
        dims: set[int] = set()
        for month in range(1, 13):
            if self.months >> month & 1:
                dims.add(_DAYS_IN_MONTH[month])
                if month == 2:
                    dims.add(29)
        # Over the 400-year cycle, every month length of an allowed month starts
        # on every weekday, so trying all pairs is exact.
        return any(self._mask(dim, w) for dim in dims for w in range(7))

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        return bool(self.months >> month & 1 and self._day_mask(year, month) >> (day - 1) & 1)

    def _next_day(self, year: int, month: int, day: int) -> tuple[int, int, int] | None:
        """The first matching date strictly after the given one."""
        quick_limit = min(year + _QUICK_YEARS, _MAX_YEAR)
        limit = quick_limit
        day += 1
        while True:
            later = self.months >> month
            if later:
                skip = _low_bit(later)
                if skip:
                    month += skip
                    day = 1
                found = self._day_mask(year, month) >> (day - 1)
                if found:
                    return year, month, day + _low_bit(found)
                month += 1
                day = 1
                if month <= 12:
                    continue
            year += 1
            month = 1
            day = 1
            if year > limit:
                if limit != quick_limit or not self._can_ever_match():
                    return None
                limit = min(year + _CYCLE_YEARS, _MAX_YEAR)
                if year > limit:
                    return None

    def _prev_day(self, year: int, month: int, day: int) -> tuple[int, int, int] | None:
        """The last matching date strictly before the given one."""
        quick_limit = max(year - _QUICK_YEARS, _MIN_YEAR)
        limit = quick_limit
        day -= 1
        while True:
            earlier = self.months & ((2 << month) - 1)
            if earlier:
                top = earlier.bit_length() - 1
                if top != month:
                    month = top
                    day = 31
                found = self._day_mask(year, month) & ((1 << day) - 1)
                if found:
                    return year, month, found.bit_length()
                month -= 1
                day = 31
                if month >= 1:
                    continue
            year -= 1
            month = 12
            day = 31
            if year < limit:
                if limit != quick_limit or not self._can_ever_match():
                    return None
                limit = max(year - _CYCLE_YEARS, _MIN_YEAR)
                if year < limit:
                    return None

    # -- public API ------------------------------------------------------------

    def matches(self, at: datetime) -> bool:
        """Whether the minute containing ``at`` matches (seconds are ignored)."""
        return bool(
            self.minutes >> at.minute & 1
            and self.hours >> at.hour & 1
            and self._day_matches(at.year, at.month, at.day)
        )

    def next_fire(self, after: datetime) -> datetime | None:
        """The first matching minute start strictly later than ``after``; None if never."""
        try:
            t = after.replace(second=0, microsecond=0) + _ONE_MINUTE
        except OverflowError:
            return None
        year, month, day, hour, minute = t.year, t.month, t.day, t.hour, t.minute
        if self._day_matches(year, month, day):
            # Later today: this hour from `minute` on, else a later hour.
            if self.hours >> hour & 1:
                rest = self.minutes >> minute
                if rest:
                    return datetime(
                        year, month, day, hour, minute + _low_bit(rest), tzinfo=t.tzinfo
                    )
            rest = self.hours >> (hour + 1)
            if rest:
                return datetime(
                    year,
                    month,
                    day,
                    hour + 1 + _low_bit(rest),
                    _low_bit(self.minutes),
                    tzinfo=t.tzinfo,
                )
        found = self._next_day(year, month, day)
        if found is None:
            return None
        return datetime(*found, _low_bit(self.hours), _low_bit(self.minutes), tzinfo=t.tzinfo)

    def prev_fire(self, at: datetime) -> datetime | None:
        """The latest matching minute start at or before ``at``; None if never."""
        t = at.replace(second=0, microsecond=0)
        year, month, day, hour, minute = t.year, t.month, t.day, t.hour, t.minute
        if self._day_matches(year, month, day):
            if self.hours >> hour & 1:
                rest = self.minutes & ((2 << minute) - 1)
                if rest:
                    return datetime(year, month, day, hour, rest.bit_length() - 1, tzinfo=t.tzinfo)
            rest = self.hours & ((1 << hour) - 1)
            if rest:
                return datetime(
                    year,
                    month,
                    day,
                    rest.bit_length() - 1,
                    self.minutes.bit_length() - 1,
                    tzinfo=t.tzinfo,
                )
        found = self._prev_day(year, month, day)
        if found is None:
            return None
        return datetime(
            *found,
            self.hours.bit_length() - 1,
            self.minutes.bit_length() - 1,
            tzinfo=t.tzinfo,
        )


# -- parsing -------------------------------------------------------------------


class _Field:
    """What one field contributes while it is being parsed."""

    __slots__ = ("bits", "last_day", "nth", "last_weekdays")

    def __init__(self) -> None:
        self.bits = 0
        self.last_day = False
        self.nth: set[tuple[int, int]] = set()
        self.last_weekdays = 0


def _name_hint(word: str, index: int) -> str | None:
    """A 'did you mean' for a word that is not a name of field ``index``."""
    names = _NAMES[index]
    other = _DOW_NAMES if index == MONTH else _MONTH_NAMES if index == DOW else None
    if word == "l":
        if index == DOM:
            return "L can end a range (29-L) but cannot start one or take a step"
        if index == DOW:
            return "write WL for the last weekday W of the month, as in friL"
        return "L (last day of the month) is only allowed in day of month"
    if names is None:
        if word == "w" or word.endswith("w"):
            return "W (nearest weekday) is not supported"
        if word in _MONTH_NAMES or word in _DOW_NAMES:
            kind = "month" if word in _MONTH_NAMES else "day-of-week"
            return f"'{word}' is a {kind} name; {_FIELD_NAMES[index]} takes numbers only"
        return f"{_FIELD_NAMES[index]} takes numbers {_LOW[index]}-{_HIGH[index]}"
    if other is not None and word in other:
        kind = "day-of-week" if index == MONTH else "month"
        return f"'{word}' is a {kind} name, not a {_FIELD_NAMES[index]} name"
    if word[:3] in names:
        return f"did you mean '{word[:3]}'?"
    close = suggest(word, names, cutoff=0.5)
    if close:
        return f"did you mean '{close}'?"
    first, last = next(iter(names)), list(names)[-1]
    return f"names are {first}..{last}"


def _separator_span(text: str, at: int) -> tuple[int, int]:
    """Where to point for a value missing at ``at``: the '-', '/' or '#' next to it."""
    if at > 0 and text[at - 1] in "-/#":
        return at - 1, at
    return at, min(at + 1, len(text))


def _value(text: str, index: int, start: int, end: int) -> int:
    """The number or name ``text[start:end]`` in field ``index``, range-checked."""
    word = text[start:end].lower()
    field = _FIELD_NAMES[index]
    if not word:
        raise CronError(
            f"{field} is missing a value",
            *_separator_span(text, start),
            field,
            "negative numbers are not allowed" if text[start : start + 1] == "-" else None,
        )
    if _DIGITS.issuperset(word):
        # Very long digit strings would trip int()'s digit limit; they are out
        # of range anyway.
        number = int(word) if len(word) <= 6 else _HIGH[index] + 1
        if not _LOW[index] <= number <= _HIGH[index]:
            hint = _ZERO_HINT.get(index) if number == 0 else None
            raise CronError(
                f"{field} {word} is out of range {_LOW[index]}-{_HIGH[index]}",
                start,
                end,
                field,
                hint,
            )
        return number
    names = _NAMES[index]
    if names is not None and word in names:
        return names[word]
    expected = "a number" if names is None else "a number or a name"
    raise CronError(
        f"{field} '{text[start:end]}' is not {expected}",
        start,
        end,
        field,
        _name_hint(word, index),
    )


def _step(text: str, index: int, start: int, end: int) -> int:
    field = _FIELD_NAMES[index]
    word = text[start:end]
    if not word or not _DIGITS.issuperset(word):
        raise CronError(
            f"{field} step '{word}' is not a whole number" if word else f"{field} step is missing",
            *((start, end) if word else _separator_span(text, start)),
            field,
            "write a step as */15 or 0-30/5",
        )
    step = int(word) if len(word) <= 6 else _MAX_STEP[index] + 1
    if step == 0:
        raise CronError(
            f"{field} step must be at least 1", start, end, field, "use 1 for every value"
        )
    if step > _MAX_STEP[index]:
        raise CronError(
            f"{field} step {word} is too large; at most {_MAX_STEP[index]}",
            start,
            end,
            field,
            "a step that large can only give its first value",
        )
    return step


def _range(text: str, index: int, start: int, end: int, step: int) -> list[int]:
    """The values of the range ``text[start:end]`` (``A-B``) in field ``index``, every ``step``.

    A range whose start is past its end wraps around the field (``fri-mon``,
    ``22-2``, ``nov-mar``), and a step keeps counting through the wrap (``22-2/2``
    is 22, 0, 2). Sunday as an end is the end of the week (``mon-sun`` and ``sun-sun``
    are the whole week), and ``L`` as an end in day of month is the month's last day (``29-L``).
    """
    field = _FIELD_NAMES[index]
    dash = text.index("-", start, end)
    if "-" in text[dash + 1 : end]:
        raise CronError(
            f"{field} range '{text[start:end]}' has more than one '-'",
            start,
            end,
            field,
            "negative numbers are not allowed",
        )
    if text[start:dash].lower() == "l" and index == DOM:
        raise CronError(
            "L cannot start a range",
            start,
            dash,
            field,
            "L, the last day of the month, can only end a range, as in 29-L",
        )
    low = _value(text, index, start, dash)
    if index == DOM and text[dash + 1 : end].lower() == "l":
        # Days past the month's end never match, so the 31st stands for its last day.
        high = _HIGH[DOM]
    else:
        high = _value(text, index, dash + 1, end)
    cycle = _MAX_STEP[index]
    if index == DOW and high % 7 == 0:
        # Sunday as an end closes the week, whatever the start: sun-sun and 7-7 are the
        # whole week, as croniter's own tests have them (a start of 7 is Sunday too).
        low, high = low % 7, 7
    if high < low:
        high += cycle
    return [_LOW[index] + (value - _LOW[index]) % cycle for value in range(low, high + 1, step)]


def _parse_item(text: str, index: int, start: int, end: int, acc: _Field) -> str:
    """Parse one list item ``text[start:end]`` into ``acc``; return its canonical text."""
    field = _FIELD_NAMES[index]
    item = text[start:end].lower()
    slash = item.find("/")
    base_end = end if slash < 0 else start + slash
    base = text[start:base_end].lower()
    step = 1
    if slash >= 0:
        second = item.find("/", slash + 1)
        if second >= 0:
            raise CronError(
                f"{field} item '{text[start:end]}' has more than one '/'",
                start + second,
                start + second + 1,
                field,
            )
        step = _step(text, index, base_end + 1, end)

    def no_step(what: str) -> None:
        if slash >= 0:
            raise CronError(f"{what} cannot take a step", base_end, end, field)

    if base == "*":
        low, high = _LOW[index], _TOP[index]
    elif index == DOM and base == "l":
        no_step("L")
        acc.last_day = True
        return "L"
    elif index == DOW and "#" in base:
        hash_at = start + base.index("#")
        no_step("W#K")
        if "#" in text[hash_at + 1 : end]:
            raise CronError(
                f"{field} item '{text[start:end]}' has more than one '#'", start, end, field
            )
        k_text = text[hash_at + 1 : end]
        if not k_text or not _DIGITS.issuperset(k_text) or not 1 <= int(k_text[:6]) <= 5:
            raise CronError(
                f"{field} #{k_text} is out of range 1-5"
                if k_text
                else f"{field} '#' needs 1-5 after it",
                hash_at + 1 if k_text else hash_at,
                end if k_text else hash_at + 1,
                field,
                "write W#K with K from 1 to 5: a month has at most five of any weekday",
            )
        # croniter's reading of a range before '#': mon-fri#1 is the first Monday,
        # the first Tuesday, ... the first Friday of the month.
        if "-" in text[start:hash_at]:
            weekdays = _range(text, index, start, hash_at, 1)
        else:
            weekdays = [_value(text, index, start, hash_at)]
        for weekday in weekdays:
            acc.nth.add((weekday % 7, int(k_text)))
        return item
    elif index == DOW and len(base) > 1 and base.endswith("l") and "-" not in base:
        no_step("WL")
        weekday = _value(text, index, start, base_end - 1) % 7
        acc.last_weekdays |= 1 << weekday
        return item[:-1] + "L"
    elif "-" in base:
        for value in _range(text, index, start, base_end, step):
            acc.bits |= 1 << value
        return item.replace("-l", "-L") if index == DOM else item
    else:
        low = _value(text, index, start, base_end)
        high = low
        if slash >= 0:
            if index == DOW and low == 7:
                raise CronError(
                    f"{field} 7/{step} is ambiguous: 7 is Sunday at the end of the week",
                    start,
                    end,
                    field,
                    f"write 0/{step} to start from Sunday",
                )
            # N/S: from N to the top of the field, every S.
            high = _TOP[index]
    for value in range(low, high + 1, step):
        acc.bits |= 1 << value
    return item


def _parse_field(text: str, index: int, start: int, end: int) -> tuple[_Field, str]:
    acc = _Field()
    canon: list[str] = []
    item_start = start
    while True:
        comma = text.find(",", item_start, end)
        item_end = end if comma < 0 else comma
        if item_end == item_start:
            # Point at the comma next to the empty item.
            at = item_start - 1 if item_start > start else item_start
            raise CronError(
                f"{_FIELD_NAMES[index]} has an empty list item",
                at,
                at + 1,
                _FIELD_NAMES[index],
                "list items are separated by single commas, as in 1,15,30",
            )
        canon.append(_parse_item(text, index, item_start, item_end, acc))
        if comma < 0:
            break
        item_start = comma + 1
    return acc, ",".join(canon)


def _check_chars(text: str, index: int | None, start: int, end: int) -> None:
    for pos in range(start, end):
        char = text[pos]
        if char not in _ALLOWED:
            field = None if index is None else _FIELD_NAMES[index]
            hint = None
            if char == "?":
                hint = "'?' is not supported; use '*'"
            elif char == "@":
                hint = "an alias such as @daily must be the whole text"
            raise CronError(
                f"unexpected character {char!r}" + (f" in {field}" if field else ""),
                pos,
                pos + 1,
                field,
                hint,
            )


def parse_cron(text: str) -> CronSpec:
    """Parse cron text into a :class:`CronSpec`; raise :class:`CronError` if it is bad."""
    if not isinstance(text, str):
        raise CronError(f"cron text must be a string, not {type(text).__name__}", 0, 0)
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not words:
        raise CronError(
            "cron text is empty", 0, len(text), None, "expected 5 fields, such as '0 * * * *'"
        )
    first_start, first_end = words[0]
    source = text
    canon_alias: str | None = None
    if text[first_start] == "@":
        alias = text[first_start:first_end].lower()
        if len(words) > 1:
            raise CronError(
                f"alias {text[first_start:first_end]} must stand alone",
                words[1][0],
                words[-1][1],
                None,
                "remove the text after the alias",
            )
        if alias not in _ALIASES:
            close = suggest(alias, _ALIASES, cutoff=0.5)
            if alias == "@reboot":
                hint = "@reboot has no fire times and is not supported"
            elif close:
                hint = f"did you mean '{close}'?"
            else:
                hint = "aliases are " + ", ".join(_ALIASES)
            raise CronError(
                f"unknown alias '{text[first_start:first_end]}'", first_start, first_end, None, hint
            )
        canon_alias = alias
        source = _ALIASES[alias]
        words = [(m.start(), m.end()) for m in _WORD.finditer(source)]
    elif len(words) != 5:
        found = len(words)
        message = f"expected 5 fields (minute hour day-of-month month day-of-week), found {found}"
        if found > 5:
            hint = (
                "a seconds or year field is not supported"
                if found in (6, 7)
                else "fields are separated by whitespace; lists use commas without spaces"
            )
            raise CronError(message, words[5][0], words[-1][1], None, hint)
        missing = ", ".join(_FIELD_NAMES[found:])
        raise CronError(message, first_start, words[-1][1], None, f"missing: {missing}")

    fields: list[_Field] = []
    canon: list[str] = []
    for index, (start, end) in enumerate(words):
        _check_chars(source, index, start, end)
        acc, field_canon = _parse_field(source, index, start, end)
        fields.append(acc)
        canon.append(field_canon)

    minute, hour, dom, month, dow = fields
    weekdays = (dow.bits | dow.bits >> 7) & 0x7F  # fold 7 onto Sunday
    day_or = source[words[DOM][0]] != "*" and source[words[DOW][0]] != "*"
    return CronSpec(
        text=canon_alias if canon_alias is not None else " ".join(canon),
        minutes=minute.bits,
        hours=hour.bits,
        days=dom.bits >> 1,  # stored as bit d-1 for day d
        last_day=dom.last_day,
        months=month.bits,
        weekdays=weekdays,
        nth_weekdays=tuple(sorted(dow.nth)),
        last_weekdays=dow.last_weekdays,
        day_or=day_or,
        # Seven copies of the 7-bit week side by side: 49 bits, enough for any
        # weekday offset (< 7) plus 31 days.
        week_pattern=weekdays * _SEVEN_WEEKS,
    )
