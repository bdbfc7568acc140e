"""Timestamps as the Go node writes them into SQLite.

go-sqlite3 binds a ``time.Time`` as ``"2006-01-02 15:04:05.999999999-07:00"``: UTC, the
fraction trimmed of trailing zeros (and dropped when zero), offset ``+00:00``. Range queries
compare these strings lexicographically, so a Python node sharing a Go node's database must
write exactly this shape. Python has microseconds, so at most six fraction digits appear.
SQLite's own ``CURRENT_TIMESTAMP`` default (``YYYY-MM-DD HH:MM:SS``) is read too.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    """Format an aware (or UTC-naive) datetime the way go-sqlite3 stores ``time.Time``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "+00:00"


def parse_time(text: str) -> datetime:
    """Parse a stored timestamp (Go layout, SQLite ``CURRENT_TIMESTAMP``, or ISO 8601)."""
    value = text.strip().replace("T", " ")
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    # Go may write nanoseconds; Python parses at most microseconds.
    head, dot, tail = value.partition(".")
    if dot:
        digits = ""
        rest = ""
        for i, ch in enumerate(tail):
            if not ch.isdigit():
                rest = tail[i:]
                break
            digits += ch
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class NowText:
    """``format_time(utcnow())``, cheaply: the date and time of day are formatted once a
    second, and only the fraction each time (a store stamps every row it writes)."""

    __slots__ = ("_head", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._head = ""

    def now(self) -> str:
        """The current time as :func:`format_time` writes it."""
        stamp = time.time()
        second = int(stamp)
        if second != self._second:
            self._head = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S")
            self._second = second
        micro = int((stamp - second) * 1_000_000)
        if micro:
            return f"{self._head}.{micro:06d}".rstrip("0") + "+00:00"
        return self._head + "+00:00"
