"""Client times (a reaction's optional ``ts``): pure functions from what a client sent to Unix
milliseconds. Kept for analytics only; windows are assigned by the server's receive time.

Every form shares one range: from 1970-01-01T00:00:00Z up to, not including,
10000-01-01T00:00:00Z (the years RFC 3339 can write, from the Unix epoch on).

- v1 (``parse_client_ts``, strict; anything else is a 422): an RFC 3339 date-time exactly as
  §5.6 writes it (``T`` or ``t`` between date and time, a zone ``Z``, ``z`` or ``±hh:mm``, any
  number of fraction digits, truncated to ms; a leap second 60 is the next second), or Unix
  seconds as an int or a float. v1 does not read millisecond epochs: a number is seconds, so
  Date.now() (about 1.8e12) is refused as beyond the year 9999 rather than misread.
- The seed alias (``read_seed_ts``, lenient; what cannot be read is dropped, never refused):
  also ISO 8601 without a zone, taken as UTC (Python's ``datetime.now().isoformat()``), a space
  instead of the ``T`` (``str(datetime)``), and numbers (or numeric strings) from 1e11 on read
  as Unix milliseconds: 1e11 s would be the year 5138, 1e11 ms is 1973-03-03.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from itertools import repeat
from operator import mul
from typing import Any

from ..errors import InvalidField

# 10000-01-01T00:00:00Z in Unix ms: the end (excluded) of the one range of every form.
END_MS = 253_402_300_800_000
END_UNIX_SECONDS = END_MS // 1000
# The seed alias reads a number from here on as Unix milliseconds.
SEED_MS_FROM = 100_000_000_000
# Longer strings are not times (RFC 3339 with nanoseconds and an offset is 35 characters).
MAX_TEXT = 64

_EPOCH_DAY = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)
# ASCII digits only: \d would also take other scripts' digits.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_NUMBER = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?")
V1_RULE = (
    "an RFC 3339 date-time with a zone (2026-11-22T12:00:00.250Z) or Unix seconds, "
    "from 1970 through 9999"
)


def rfc3339_ms(text: str) -> int | None:
    """Unix ms of an RFC 3339 date-time (§5.6), or None if ``text`` is not one."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    fraction, sign, offset_hours, offset_minutes = match.group(7, 8, 9, 10)
    if hour > 23 or minute > 59 or second > 60:
        return None
    try:
        days = date(year, month, day).toordinal() - _EPOCH_DAY
    except ValueError:  # year 0000, February 30th, ...
        return None
    offset_s = 0
    if sign is not None:
        if int(offset_hours) > 23 or int(offset_minutes) > 59:
            return None
        offset_s = int(offset_hours) * 3600 + int(offset_minutes) * 60
        offset_s = -offset_s if sign == "-" else offset_s
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_s
    return seconds * 1000 + int(((fraction or "") + "000")[:3])


def parse_client_ts(value: Any, field: str) -> int | None:
    """v1's ``ts`` in Unix ms; None when absent; InvalidField for anything else."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 0 <= value < END_UNIX_SECONDS:
            return int(value * 1000)
    elif isinstance(value, str) and len(value) <= MAX_TEXT:
        ms = rfc3339_ms(value)
        if ms is not None and 0 <= ms < END_MS:
            return ms
    raise InvalidField(field, f"{field} must be {V1_RULE}")


_NUMBERS = frozenset({int, float})


def client_times_ms(stamps: list[Any]) -> list[int | None] | None:
    """A column of v1 ``ts`` values in Unix ms (the column itself when every one is absent);
    None if any is not a v1 client time (then the check per reaction decides, and names it).
    Unix seconds (what the page sends) are converted in C; RFC 3339 strings or a mix with
    absent ones, one at a time."""
    if stamps.count(None) == len(stamps):
        return stamps
    if _NUMBERS.issuperset(map(type, stamps)):
        if 0 <= min(stamps) and max(stamps) < END_UNIX_SECONDS:
            return list(map(int, map(mul, stamps, repeat(1000))))
        return None
    try:
        return [parse_client_ts(stamp, "ts") for stamp in stamps]
    except InvalidField:
        return None


def read_seed_ts(value: Any) -> tuple[int | None, bool]:
    """The seed alias's ``timestamp``: (Unix ms or None, whether a value was dropped as
    unreadable)."""
    if value is None:
        return None, False
    ms: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        ms = _epoch_ms(value)
    elif isinstance(value, str) and len(value) <= MAX_TEXT:
        ms = rfc3339_ms(value)
        if ms is None:
            ms = _iso_ms(value) if not _NUMBER.fullmatch(value) else _epoch_ms(float(value))
    if ms is not None and 0 <= ms < END_MS:
        return int(ms), False
    return None, True


def _epoch_ms(number: float) -> float:
    return number if number >= SEED_MS_FROM else number * 1000


def _iso_ms(text: str) -> int | None:
    """What Python's ``datetime.fromisoformat`` reads, a time without a zone taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    offset = parsed.utcoffset() or timedelta(0)
    # Naive arithmetic, so the years near 1 and 9999 cannot overflow a conversion to UTC.
    return (parsed.replace(tzinfo=None) - _EPOCH - offset) // _ONE_MS
