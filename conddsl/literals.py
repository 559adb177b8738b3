"""Reading literal values: points in a cycle, durations and quoted strings.

The grammar hands over plain words; this module knows what each unit accepts and
says precisely what is wrong with a value, as a :class:`LiteralError` carrying the
0-based offsets of the bad word.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from conddsl.ast import MinuteOfHour, MonthDay, Point, SecondOfMinute, TimeOfDay, Weekday

MICROS_PER_SECOND = 1_000_000
MICROS_PER_MINUTE = 60 * MICROS_PER_SECOND
MICROS_PER_HOUR = 60 * MICROS_PER_MINUTE
MICROS_PER_DAY = 24 * MICROS_PER_HOUR


@dataclass(frozen=True, slots=True)
class Word:
    """One word of a value with its 0-based offsets in the source text."""

    text: str
    start: int
    end: int


class LiteralError(ValueError):
    """A value that is not valid where it stands."""

    def __init__(self, message: str, start: int, end: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.start = start
        self.end = end
        self.hint = hint


# What each unit expects, in words, for messages.
EXPECTED = {
    "second": "a point in a second",
    "minute": "a second of the minute like 15 or 15.5",
    "hour": "a minute of the hour like 15:00 (MM:SS) or '1 quarter'",
    "day": "a time like 08:00, 08:00:30 or 8am",
    "week": "a weekday like Mon, or a weekday and a time like Mon 08:00",
    "month": "a day of the month like 5th, last, 2nd Monday or 'last Friday'",
}

_WEEKDAYS = {
    name: index
    for index, names in enumerate(
        [
            ("mon", "monday"),
            ("tue", "tues", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thur", "thurs", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
            ("sun", "sunday"),
        ]
    )
    for name in names
}

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(am|pm|a\.m\.|p\.m\.)?$", re.I)
_HOUR_MERIDIEM = re.compile(r"^(\d{1,2})(am|pm|a\.m\.|p\.m\.)$", re.I)
_MERIDIEM = re.compile(r"^(am|pm|a\.m\.|p\.m\.)$", re.I)
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_MINUTE_SECOND = re.compile(r"^(\d{1,2}):(\d{2})(?:\.(\d{1,6}))?$")
_QUARTER = re.compile(r"^(\d)(q|quarters?)?$", re.I)
_MONTH_DAY = re.compile(r"^(\d{1,2})(st|nd|rd|th|\.)?$", re.I)


def parse_point(unit: str, words: list[Word], *, is_end: bool) -> Point:
    """Read the value words of a window in a ``unit`` cycle (minute … month)."""
    reader = _READERS[unit]
    return reader(words, is_end)


def _span_of(words: list[Word]) -> tuple[int, int]:
    return words[0].start, words[-1].end


def _fail(words: list[Word], message: str, hint: str | None = None) -> LiteralError:
    start, end = _span_of(words)
    return LiteralError(message, start, end, hint)


# ---------------------------------------------------------------- time of day


def _read_time_of_day(words: list[Word], is_end: bool) -> TimeOfDay:
    first = words[0]
    rest = words[1:]
    meridiem: str | None = None
    if rest and _MERIDIEM.match(rest[0].text):
        meridiem = rest[0].text
        rest = rest[1:]
    if rest:
        close = difflib.get_close_matches(rest[0].text.lower(), ["and", "or", "in"], n=1)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else "a time of day is one word like 08:00, or a time and am/pm"
        )
        raise LiteralError(
            f"unexpected {rest[0].text!r} after the time {first.text!r}",
            rest[0].start,
            rest[0].end,
            hint,
        )
    match = _CLOCK.match(first.text)
    if match:
        hour, minute = int(match[1]), int(match[2])
        second = int(match[3] or 0)
        micro = int((match[4] or "").ljust(6, "0") or 0)
        if match[5]:
            if meridiem:
                raise _fail(words, f"am/pm is given twice in {' '.join(w.text for w in words)!r}")
            meridiem = match[5]
    else:
        match = _HOUR_MERIDIEM.match(first.text)
        if match:
            if meridiem:
                raise _fail(words, "am/pm is given twice")
            hour, minute, second, micro, meridiem = int(match[1]), 0, 0, 0, match[2]
        elif re.fullmatch(r"\d{1,2}", first.text) and meridiem:
            hour, minute, second, micro = int(first.text), 0, 0, 0
        elif re.fullmatch(r"\d+(\.\d*)?", first.text):
            number = first.text.rstrip(".").split(".")[0]
            small = len(number) <= 2 and int(number) < 24
            suggestion = f"{int(number):02d}:00" if small else "08:00"
            raise LiteralError(
                f"{_shorten(first.text)!r} is a bare number, not a time of day",
                first.start,
                first.end,
                f"did you mean {suggestion}? (Rocketry reads a bare number here as a day "
                "of the month, which makes the window the whole day)",
            )
        else:
            raise LiteralError(
                f"{_shorten(first.text)!r} is not a time of day",
                first.start,
                first.end,
                f"expected {EXPECTED['day']}",
            )
    if meridiem:
        if not 1 <= hour <= 12:
            raise _fail(words, f"hour {hour} does not go with am/pm", "use 1-12 with am/pm")
        hour = hour % 12 + (12 if meridiem.lower().startswith("p") else 0)
    if minute > 59:
        raise _fail(words, f"minute {minute} is out of range 0-59")
    if second > 59:
        raise _fail(words, f"second {second} is out of range 0-59")
    if hour == 24 and (minute, second, micro) == (0, 0, 0):
        pass  # the end of the day, as in "between 22:00 and 24:00"
    elif hour > 23:
        raise _fail(words, f"hour {hour} is out of range 0-23", "a day runs from 00:00 to 24:00")
    return TimeOfDay(hour, minute, second, micro)


def _read_day_time(words: list[Word], is_end: bool) -> TimeOfDay | None:
    return _read_time_of_day(words, is_end) if words else None


# ---------------------------------------------------------------- time of minute / hour


def _read_second_of_minute(words: list[Word], is_end: bool) -> SecondOfMinute:
    if len(words) != 1 or not _NUMBER.match(words[0].text):
        raise _fail(
            words, f"{_shorten(_joined(words))!r} is not a second of the minute", EXPECTED["minute"]
        )
    micros = _decimal_micros(words[0], MICROS_PER_SECOND)
    limit = 60 * MICROS_PER_SECOND
    if micros > limit:
        raise _fail(words, f"second {words[0].text} is out of range 0-59", "a minute has 60 s")
    return SecondOfMinute(micros)


def _read_minute_of_hour(words: list[Word], is_end: bool) -> MinuteOfHour:
    text = _joined(words)
    match = _MINUTE_SECOND.match(words[0].text) if len(words) == 1 else None
    if match:
        minute, second = int(match[1]), int(match[2])
        micro = int((match[3] or "").ljust(6, "0") or 0)
        if second > 59:
            raise _fail(words, f"second {second} is out of range 0-59")
        micros = (minute * 60 + second) * MICROS_PER_SECOND + micro
    else:
        quarter = _QUARTER.match(words[0].text)
        if quarter and (quarter[2] or (len(words) == 2 and _is_quarter_word(words[1].text))):
            if len(words) > (1 if quarter[2] else 2):
                raise _fail(
                    words, f"{_shorten(text)!r} is not a minute of the hour", EXPECTED["hour"]
                )
            count = int(quarter[1])
            if count > 4:
                raise _fail(words, f"quarter {count} is out of range 0-4")
            micros = count * 15 * MICROS_PER_MINUTE
        elif len(words) == 1 and re.fullmatch(r"\d{1,2}", words[0].text):
            raise _fail(
                words,
                f"{text!r} is a bare number, not a minute of the hour",
                f"did you mean {int(words[0].text):02d}:00? (MM:SS)",
            )
        else:
            raise _fail(words, f"{_shorten(text)!r} is not a minute of the hour", EXPECTED["hour"])
    limit = MICROS_PER_HOUR
    if micros > limit:
        raise _fail(words, f"{text!r} is past the end of the hour", "minutes run 00:00 to 59:59")
    return MinuteOfHour(micros)


def _is_quarter_word(text: str) -> bool:
    return text.lower() in ("quarter", "quarters", "q")


# ---------------------------------------------------------------- week and month


def _weekday_index(word: Word) -> int:
    index = _WEEKDAYS.get(word.text.lower())
    if index is None:
        close = difflib.get_close_matches(word.text.lower(), list(_WEEKDAYS), n=1, cutoff=0.6)
        hint = f"did you mean {close[0].capitalize()}?" if close else EXPECTED["week"]
        raise LiteralError(f"{word.text!r} is not a weekday", word.start, word.end, hint)
    return index


def _read_weekday(words: list[Word], is_end: bool) -> Weekday:
    first = words[0]
    if first.text.lower() not in _WEEKDAYS and re.fullmatch(r"\d+", first.text):
        raise LiteralError(
            f"{first.text!r} is a number, not a weekday",
            first.start,
            first.end,
            "write the weekday's name: Mon, Tue, … Sun",
        )
    weekday = _weekday_index(first)
    return Weekday(weekday, _read_day_time(words[1:], is_end))


def _read_month_day(words: list[Word], is_end: bool) -> MonthDay:
    first = words[0]
    rest = words[1:]
    weekday: int | None = None
    if first.text.lower() == "last":
        day = -1
    else:
        match = _MONTH_DAY.match(first.text)
        if not match:
            if first.text.lower() in _WEEKDAYS:
                raise LiteralError(
                    f"{first.text!r} needs to say which one in the month",
                    first.start,
                    first.end,
                    f"write for example '1st {first.text}' or 'last {first.text}'",
                )
            close = difflib.get_close_matches(first.text.lower(), ["last"], n=1, cutoff=0.6)
            hint = "did you mean last?" if close else f"expected {EXPECTED['month']}"
            raise LiteralError(
                f"{first.text!r} is not a day of the month", first.start, first.end, hint
            )
        day = int(match[1])
    if rest and rest[0].text.lower() in _WEEKDAYS:
        weekday = _weekday_index(rest[0])
        rest = rest[1:]
        if day != -1 and not 1 <= day <= 5:
            raise _fail(words[:2], f"a month has no {first.text} {words[1].text}", "use 1st-5th")
    elif rest and re.fullmatch(r"[A-Za-z]+", rest[0].text) and not _MERIDIEM.match(rest[0].text):
        _weekday_index(rest[0])  # raises with a did-you-mean
    if weekday is None and day != -1 and not 1 <= day <= 31:
        raise LiteralError(
            f"day {day} is out of range 1-31", first.start, first.end, "use 'last' for the last day"
        )
    return MonthDay(day, weekday, _read_day_time(rest, is_end))


def _read_second_point(words: list[Word], is_end: bool) -> SecondOfMinute:
    raise _fail(words, "a 'secondly' cycle takes no window", "use 'secondly' alone")


_READERS = {
    "second": _read_second_point,
    "minute": _read_second_of_minute,
    "hour": _read_minute_of_hour,
    "day": _read_time_of_day,
    "week": _read_weekday,
    "month": _read_month_day,
}


def _joined(words: list[Word]) -> str:
    return " ".join(word.text for word in words)


def _decimal_micros(word: Word, unit_micros: int) -> int:
    try:
        value = Decimal(word.text) * unit_micros
    except InvalidOperation as exc:  # pragma: no cover - the token regex admits only numbers
        raise LiteralError(f"{word.text!r} is not a number", word.start, word.end) from exc
    return int(value.to_integral_value())


# ---------------------------------------------------------------- durations

_UNIT_MICROS = {
    "ms": 1_000,
    "s": MICROS_PER_SECOND,
    "m": MICROS_PER_MINUTE,
    "h": MICROS_PER_HOUR,
    "d": MICROS_PER_DAY,
    "w": 7 * MICROS_PER_DAY,
}
_UNIT_NAMES = {
    "ms": ("ms", "msec", "msecs", "millis", "millisecond", "milliseconds"),
    "s": ("s", "sec", "secs", "second", "seconds"),
    "m": ("m", "min", "mins", "minute", "minutes"),
    "h": ("h", "hr", "hrs", "hour", "hours"),
    "d": ("d", "day", "days"),
    "w": ("w", "wk", "wks", "week", "weeks"),
}
_UNIT_OF = {name: unit for unit, names in _UNIT_NAMES.items() for name in names}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]+)")
_CLOCK_DURATION = re.compile(r"^(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?$")


def parse_duration(text: str, start: int) -> timedelta:
    """Read a duration token (``1h30m``, ``1 hour, 30 minutes``, ``0.5 hours``, ``01:30:00``)."""
    clock = _CLOCK_DURATION.match(text)
    if clock:
        hours, minutes, seconds = int(clock[1]), int(clock[2]), int(clock[3])
        if minutes > 59 or seconds > 59:
            raise LiteralError(
                f"{text!r} is not a duration H:MM:SS",
                start,
                start + len(text),
                "minutes/seconds < 60",
            )
        micro = int((clock[4] or "").ljust(6, "0") or 0)
        try:
            return timedelta(hours=hours, minutes=minutes, seconds=seconds, microseconds=micro)
        except OverflowError:
            raise _too_long(text, start) from None
    total = 0
    for part in _DURATION_PART.finditer(text):
        unit = _UNIT_OF[part[2].lower()]
        total += int((Decimal(part[1]) * _UNIT_MICROS[unit]).to_integral_value())
    try:
        return timedelta(microseconds=total)
    except OverflowError:
        raise _too_long(text, start) from None


def _too_long(text: str, start: int) -> LiteralError:
    return LiteralError(
        f"the duration {_shorten(text)!r} is too long",
        start,
        start + len(text),
        "durations go up to 999,999,999 days",
    )


_BARE_NUMBER = re.compile(r"\d+\.?\d*|\.\d+")
DURATION_EXAMPLES = "'90 seconds', '10 minutes', '1h30m' or '01:30:00'"


def read_duration_text(text: str) -> timedelta:
    """A duration setting given as text, read exactly as conditions read durations.

    Raises LiteralError, with a hint, when the whole text is not one duration (the
    hints mention numbers: a setting may be a number of seconds instead).
    """
    from conddsl.ast import RunningFor
    from conddsl.errors import ConditionSyntaxError
    from conddsl.parse import parse

    stripped = text.strip()
    if _BARE_NUMBER.fullmatch(stripped):
        raise LiteralError(
            f"{text!r} needs a unit",
            0,
            len(text),
            f"write '{stripped} seconds' or '{stripped} minutes', or the number {stripped}",
        )
    # The grammar owns the duration syntax: the text is read as the duration of
    # "running for more than …", so settings and conditions accept the same words.
    try:
        node = parse(f"running for more than {stripped}") if stripped else None
    except ConditionSyntaxError as exc:
        if exc.code == "E110":  # a duration, but too long: say so
            message = f"{_shorten(text)!r} is too long a duration"
            raise LiteralError(message, 0, len(text), exc.hint) from None
        node = None
    # A comment would be read as one ("5 minutes # five"): not in a setting.
    if not isinstance(node, RunningFor) or "#" in text:
        raise LiteralError(
            f"{_shorten(text)!r} is not a duration",
            0,
            len(text),
            f"write {DURATION_EXAMPLES}, or a number of seconds",
        )
    return node.duration.value


def _shorten(text: str, limit: int = 40) -> str:
    """Long user text cut for a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- quoted strings

_ESCAPE = re.compile(r"\\(.)", re.S)
_ESCAPES = {"n": "\n", "t": "\t"}


def unquote(token: str) -> str:
    """The text inside a quoted string, with ``\\'``, ``\\"``, ``\\\\``, ``\\n``, ``\\t`` undone."""
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m[1], m[1]), token[1:-1])
