"""A log line at most once per interval, with a count of the ones held back.

For events a peer can cause at will (refused connections, failed handshakes): each is worth a
warning, but a flood of them must not become a flood of lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class LogThrottle:
    """Logs through ``logger`` at most once every ``interval`` seconds of ``clock``."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        *,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._level = level
        self._clock = clock
        self._last: float | None = None
        self._held = 0

    @property
    def held(self) -> int:
        """Records held back since the last one logged."""
        return self._held

    def log(self, message: str, *args: object) -> bool:
        """Log ``message % args`` unless one was logged less than ``interval`` ago; say so."""
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            self._held += 1
            return False
        if self._held:
            message += f" ({self._held} more in the last {self._interval:g} s)"
        self._logger.log(self._level, message, *args)
        self._last = now
        self._held = 0
        return True
