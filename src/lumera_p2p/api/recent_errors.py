"""A ring buffer of the newest WARNING+ log records, for the status page and ``status``."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

#: Records kept.
RECENT_ERRORS = 50
_MAX_MESSAGE = 500


@dataclass(frozen=True)
class LoggedError:
    """One record: when (Unix time), its level, logger and message (one line, cut)."""

    time: float
    level: str
    logger: str
    message: str


class RecentErrors(logging.Handler):
    """A logging handler keeping the last :data:`RECENT_ERRORS` records at WARNING or above."""

    def __init__(self, capacity: int = RECENT_ERRORS) -> None:
        super().__init__(level=logging.WARNING)
        self._records: deque[LoggedError] = deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record (its message flattened to one line)."""
        try:
            message = " ".join(record.getMessage().split())
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message += f" ({type(exc).__name__}: {' '.join(str(exc).split())})"
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 1] + "…"
        self._records.append(LoggedError(record.created, record.levelname, record.name, message))

    def snapshot(self) -> list[LoggedError]:
        """Newest first."""
        return list(reversed(self._records))
