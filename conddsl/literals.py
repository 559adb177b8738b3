"""Reading literal values: points in a cycle, durations and quoted strings.

The grammar hands over plain words; this module knows what each unit accepts and
says precisely what is wrong with a value, as a :class:`LiteralError` carrying the
0-based offsets of the bad word.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import NamedTuple

from conddsl.ast import (
    MillisecondOfSecond,
    MinuteOfHour,
    MonthDay,
    Point,
    SecondOfMinute,
    TimeOfDay,
    Weekday,
)
from conddsl.errors import LiteralError, Span, suggest
from conddsl.lalr_tables import terminal_regex
from conddsl.timeline.clock import (  # the time engine's units, read here too
    MICROS_PER_DAY,
    MICROS_PER_HOUR,
    MICROS_PER_MINUTE,
    MICROS_PER_SECOND,
)


class Word(NamedTuple):
    """One word of a value with its 0-based offsets in the source text."""

    # A named tuple, not a frozen dataclass: the parser makes one per word of every
    # point, and a tuple is built without a store per field.

    text: str
    start: int
    end: int


def better_unit(text: str) -> str | None:
    """``week`` for a weekday name, ``month`` for a day of the month, else None."""
    if text.lower() in _WEEKDAYS:
        return "week"
    if _MONTH_DAY.match(text) and not text.isdigit() or text.lower() == "last":
        return "month"
    return None


# What each unit expects, in words, for messages.
EXPECTED = {
    "second": "a millisecond of the second like 500 or 250.5",
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

# Every pattern is ASCII-only (re.A): \d is 0-9, never another script's digits.
# Fractions of a second take up to nine digits (Rocketry's "23:59:59.999999000");
# digits past the microsecond are dropped, as Rocketry drops them.
_CLOCK = re.compile(
    r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(am|pm|a\.m\.|p\.m\.)?$", re.I | re.A
)
_HOUR_MERIDIEM = re.compile(r"^(\d{1,2})(am|pm|a\.m\.|p\.m\.)$", re.I | re.A)
_MERIDIEM = re.compile(r"^(am|pm|a\.m\.|p\.m\.)$", re.I | re.A)
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$", re.A)
_MINUTE_SECOND = re.compile(r"^(\d{1,2}):(\d{2})(?:\.(\d{1,9}))?$", re.A)
# Rocketry writes a second of the minute as SS:00 too ("time of minute on 12:00").
_SECOND_COLON = re.compile(r"^(\d{1,2}):(\d{2})(?:\.(\d+))?$", re.A)
_QUARTER = re.compile(r"^(\d)(q|quarters?)?$", re.I | re.A)
_MONTH_DAY = re.compile(r"^(\d{1,2})(st|nd|rd|th|\.)?$", re.I | re.A)
_NON_ASCII_DIGIT = re.compile(r"[^\x00-\x7f]", re.A)


def _fraction(digits: str | None) -> int:
    """Microseconds of a fraction's digits (``5`` -> 500000); past six digits are dropped."""
    if not digits:
        return 0  # the usual case: no fraction written
    return int(digits[:6].ljust(6, "0"))


def check_ascii_digits(text: str, start: int) -> None:
    """Raise a LiteralError at the first digit of ``text`` that is not ASCII 0-9."""
    for index, char in enumerate(text):
        if char.isdigit() and not "0" <= char <= "9":
            raise LiteralError(
                f"{char!r} is not an ASCII digit",
                start + index,
                start + index + 1,
                ascii_digit_hint(text),
            )


def ascii_digit_hint(word: str) -> str:
    """The hint for a word with another script's digits: the word written with 0-9."""
    import unicodedata

    ascii_word = "".join(
        str(unicodedata.digit(c, "?")) if c.isdigit() and not "0" <= c <= "9" else c for c in word
    )
    return f"numbers are written with the digits 0-9: write {ascii_word!r}"


def parse_point(unit: str, words: list[Word], *, is_end: bool, span: Span | None = None) -> Point:
    """Read the value words of a window in a ``unit`` cycle (minute … month).

    ``span``: the point's place in the text (the parser's, of ``words``), set on it.
    """
    return _READERS[unit](words, is_end, span)


def _span_of(words: list[Word]) -> tuple[int, int]:
    return words[0].start, words[-1].end


def _fail(words: list[Word], message: str, hint: str | None = None) -> LiteralError:
    start, end = _span_of(words)
    return LiteralError(message, start, end, hint)


# ---------------------------------------------------------------- time of day


def _read_time_of_day(words: list[Word], is_end: bool, span: Span | None = None) -> TimeOfDay:
    first = words[0]
    meridiem: str | None = None
    # The usual time is one word ("08:00"): no words after it to look at.
    rest = words[1:] if len(words) > 1 else ()
    if rest and _MERIDIEM.match(rest[0].text):
        meridiem = rest[0].text
        rest = rest[1:]
    if rest:
        close = suggest(rest[0].text.lower(), ["and", "or", "in"])
        hint = (
            f"did you mean '{close}'?"
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
        hour_digits, minute_digits, second_digits, fraction, written = match.groups()
        hour, minute = int(hour_digits), int(minute_digits)
        second = int(second_digits) if second_digits else 0
        micro = _fraction(fraction)
        if written:
            if meridiem:
                raise _fail(words, f"am/pm is given twice in {' '.join(w.text for w in words)!r}")
            meridiem = written
    else:
        match = _HOUR_MERIDIEM.match(first.text)
        if match:
            if meridiem:
                raise _fail(words, "am/pm is given twice")
            hour, minute, second, micro, meridiem = int(match[1]), 0, 0, 0, match[2]
        elif re.fullmatch(r"[0-9]{1,2}", first.text) and meridiem:
            hour, minute, second, micro = int(first.text), 0, 0, 0
        elif re.fullmatch(r"[0-9]+(\.[0-9]*)?", first.text):
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
                better_unit=better_unit(first.text),
            )
    if meridiem:
        if not 1 <= hour <= 12:
            raise _fail(words, f"hour {hour} does not go with am/pm", "use 1-12 with am/pm")
        hour = hour % 12 + (12 if meridiem.lower().startswith("p") else 0)
    if minute > 59:
        raise _fail(words, f"minute {minute} is out of range 0-59")
    if second > 59:
        raise _fail(words, f"second {second} is out of range 0-59")
    if hour > 23 and not (hour == 24 and minute == second == micro == 0):
        # (24:00 is the end of the day, as in "between 22:00 and 24:00")
        raise _fail(words, f"hour {hour} is out of range 0-23", "a day runs from 00:00 to 24:00")
    return TimeOfDay(hour, minute, second, micro, span)


def _read_day_time(words: list[Word], is_end: bool) -> TimeOfDay | None:
    return _read_time_of_day(words, is_end) if words else None


# ---------------------------------------------------------------- time of minute / hour


def _read_second_of_minute(
    words: list[Word], is_end: bool, span: Span | None = None
) -> SecondOfMinute:
    colon = _SECOND_COLON.match(words[0].text) if len(words) == 1 else None
    if colon:
        # Rocketry reads "SS:.." as SS seconds ("45:00" is second 45) and drops the
        # rest; a non-zero rest would be dropped silently, so it is an error here.
        if int(colon[2]) or int(colon[3] or 0):
            seconds = int(colon[1])
            raise _fail(
                words,
                f"{words[0].text!r} is not a second of the minute",
                f"did you mean {seconds}? Rocketry reads {words[0].text} here as second"
                f" {seconds} and drops the rest; for a fraction write {seconds}.5",
            )
        micros = int(colon[1]) * MICROS_PER_SECOND
    elif len(words) != 1 or not _NUMBER.match(words[0].text):
        error = _fail(
            words, f"{_shorten(_joined(words))!r} is not a second of the minute", EXPECTED["minute"]
        )
        error.better_unit = better_unit(words[0].text)
        raise error
    else:
        micros = _decimal_micros(words[0], MICROS_PER_SECOND)
    limit = 60 * MICROS_PER_SECOND
    if micros > limit:
        raise _fail(words, f"second {words[0].text} is out of range 0-59", "a minute has 60 s")
    return SecondOfMinute(micros, span)


def _read_minute_of_hour(words: list[Word], is_end: bool, span: Span | None = None) -> MinuteOfHour:
    match = _MINUTE_SECOND.match(words[0].text) if len(words) == 1 else None
    text = words[0].text if match else _joined(words)
    if match:
        minute_digits, second_digits, fraction = match.groups()
        minute, second = int(minute_digits), int(second_digits)
        micro = _fraction(fraction)
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
        elif len(words) == 1 and re.fullmatch(r"[0-9]{1,2}", words[0].text):
            raise _fail(
                words,
                f"{text!r} is a bare number, not a minute of the hour",
                f"did you mean {int(words[0].text):02d}:00? (MM:SS)",
            )
        else:
            error = _fail(
                words, f"{_shorten(text)!r} is not a minute of the hour", EXPECTED["hour"]
            )
            error.better_unit = better_unit(words[0].text)
            raise error
    limit = MICROS_PER_HOUR
    if micros > limit:
        raise _fail(words, f"{text!r} is past the end of the hour", "minutes run 00:00 to 59:59")
    return MinuteOfHour(micros, span)


def _is_quarter_word(text: str) -> bool:
    return text.lower() in ("quarter", "quarters", "q")


# ---------------------------------------------------------------- week and month


def _weekday_index(word: Word) -> int:
    index = _WEEKDAYS.get(word.text.lower())
    if index is None:
        close = suggest(word.text.lower(), _WEEKDAYS)
        hint = f"did you mean {close.capitalize()}?" if close else EXPECTED["week"]
        raise LiteralError(f"{word.text!r} is not a weekday", word.start, word.end, hint)
    return index


def _read_weekday(words: list[Word], is_end: bool, span: Span | None = None) -> Weekday:
    first = words[0]
    weekday = _WEEKDAYS.get(first.text.lower())
    if weekday is None:
        if re.fullmatch(r"[0-9]+", first.text):
            raise LiteralError(
                f"{first.text!r} is a number, not a weekday",
                first.start,
                first.end,
                "write the weekday's name: Mon, Tue, … Sun",
            )
        weekday = _weekday_index(first)  # raises, with a did-you-mean
    time = _read_time_of_day(words[1:], is_end) if len(words) > 1 else None
    return Weekday(weekday, time, span)


def _read_month_day(words: list[Word], is_end: bool, span: Span | None = None) -> MonthDay:
    first = words[0]
    rest = words[1:] if len(words) > 1 else ()
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
            close = suggest(first.text.lower(), ["last"])
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
    return MonthDay(day, weekday, _read_day_time(rest, is_end), span)


def _read_millisecond_of_second(
    words: list[Word], is_end: bool, span: Span | None = None
) -> MillisecondOfSecond:
    # Rocketry's points in a second are milliseconds: "secondly starting 500" is 0.5 s in.
    if len(words) != 1 or not _NUMBER.match(words[0].text):
        raise _fail(words, f"{_shorten(_joined(words))!r} is not a millisecond", EXPECTED["second"])
    micros = _decimal_micros(words[0], 1_000)
    if micros > MICROS_PER_SECOND:
        raise _fail(
            words, f"millisecond {words[0].text} is out of range 0-999", "a second has 1000 ms"
        )
    return MillisecondOfSecond(micros, span)


_READERS = {
    "second": _read_millisecond_of_second,
    "minute": _read_second_of_minute,
    "hour": _read_minute_of_hour,
    "day": _read_time_of_day,
    "week": _read_weekday,
    "month": _read_month_day,
}


def _joined(words: list[Word]) -> str:
    return " ".join(word.text for word in words)


def _decimal_micros(word: Word, unit_micros: int) -> int:
    if word.text.isascii() and word.text.isdigit():
        return int(word.text) * unit_micros  # exact without decimal
    from decimal import Decimal, InvalidOperation  # a fraction: see _times

    try:
        value = Decimal(word.text) * unit_micros
    except InvalidOperation as exc:  # pragma: no cover - the token regex admits only numbers
        raise LiteralError(f"{word.text!r} is not a number", word.start, word.end) from exc
    return int(value.to_integral_value())


# ---------------------------------------------------------------- durations


def _times(number: str, unit_micros: int) -> int:
    """``number`` (digits, maybe with a fraction) units of ``unit_micros``, rounded as
    Decimal rounds (half to even)."""
    if number.isascii() and number.isdigit():
        return int(number) * unit_micros
    # Only a fraction needs decimal (loaded then: a program whose durations are whole
    # numbers never loads it, ~0.3 MiB of RSS, issue 21).
    from decimal import Decimal

    return int((Decimal(number) * unit_micros).to_integral_value())


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
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]+)", re.A)
_CLOCK_DURATION = re.compile(r"(\d+):(\d\d):(\d\d)(?:\.(\d+))?$", re.A)
_SIGNS = re.compile(r"[+-]*")


def parse_duration(text: str, start: int) -> timedelta:
    """Read a duration token (``1h30m``, ``1 hour, 30 minutes``, ``0.5 hours``, ``01:30:00``).

    Number-unit parts may be followed by H:MM:SS (``1 days 16:05:01.00003``). Leading
    signs (``-1 days``, ``--1 days``, ``+1 days``) are Rocketry's; a duration in a
    condition is a length of time, so Rocketry counts it without its sign, and so
    does conddsl.
    """
    signs = _SIGNS.match(text)
    body_start = signs.end() if signs else 0
    total = 0
    clock = _CLOCK_DURATION.search(text, body_start)
    parts_end = len(text)
    if clock:
        hours, minutes, seconds = int(clock[1]), int(clock[2]), int(clock[3])
        if minutes > 59 or seconds > 59:
            raise LiteralError(
                f"{text[clock.start() :]!r} is not a duration H:MM:SS",
                start + clock.start(),
                start + len(text),
                "minutes/seconds < 60",
            )
        total = ((hours * 60 + minutes) * 60 + seconds) * MICROS_PER_SECOND + _fraction(clock[4])
        parts_end = clock.start()
    for part in _DURATION_PART.finditer(text, body_start, parts_end):
        unit = _UNIT_OF[part[2].lower()]
        total += _times(part[1], _UNIT_MICROS[unit])
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


_BARE_NUMBER = re.compile(r"\d+\.?\d*|\.\d+", re.A)
DURATION_EXAMPLES = "'90 seconds', '10 minutes', '1h30m' or '01:30:00'"


def read_duration_text(text: str) -> timedelta:
    """A duration setting given as text, read exactly as conditions read durations.

    Raises LiteralError, with a hint, when the whole text is not one duration (the
    hints mention numbers: a setting may be a number of seconds instead).
    """
    stripped = text.strip()
    check_ascii_digits(text, 0)
    if stripped[:1] in ("+", "-"):
        # Conditions read Rocketry's signed durations without the sign; a setting is
        # new text, and a signed one is a mistake.
        raise LiteralError(
            f"{_shorten(text)!r} has a sign", 0, len(text), "a duration setting is never negative"
        )
    if _BARE_NUMBER.fullmatch(stripped):
        raise LiteralError(
            f"{text!r} needs a unit",
            0,
            len(text),
            f"write '{stripped} seconds' or '{stripped} minutes', or the number {stripped}",
        )
    # The grammar owns the duration syntax: the text is read as conditions read it,
    # one DURATION token between comments and spaces, so both accept the same words.
    tokens = [piece for piece in terminal_regex("COMMENT").split(stripped) if piece.strip()]
    if len(tokens) == 1 and terminal_regex("DURATION").fullmatch(tokens[0].strip()):
        try:
            value = parse_duration(tokens[0].strip(), 0)
        except LiteralError as exc:  # a duration, but too long: say so
            message = f"{_shorten(text)!r} is too long a duration"
            raise LiteralError(message, 0, len(text), exc.hint) from None
        # A comment would be read as one ("5 minutes # five"): not in a setting.
        if "#" not in text:
            return value
    raise LiteralError(
        f"{_shorten(text)!r} is not a duration",
        0,
        len(text),
        f"write {DURATION_EXAMPLES}, or a number of seconds",
    )


def _shorten(text: str, limit: int = 40) -> str:
    """Long user text cut for a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- quoted strings

_ESCAPE = re.compile(r"\\(.)", re.S)
_ESCAPES = {"n": "\n", "t": "\t"}


def unquote(token: str) -> str:
    """The text inside a quoted string, with ``\\'``, ``\\"``, ``\\\\``, ``\\n``, ``\\t`` undone."""
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m[1], m[1]), token[1:-1])
