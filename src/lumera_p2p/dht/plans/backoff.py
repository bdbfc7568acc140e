"""Retry delays as Go's ``cenkalti/backoff`` computes them, from a seeded ``random.Random``.

Go retries a ``Replicate`` batch with ``NewExponentialBackOff()`` and ``MaxElapsedTime = 45 s``
(replication.go) and a ``BatchFindValues`` fetch with an initial interval of 10 s, multiplier
1 and ``MaxElapsedTime = 30 s`` (fetch_and_store.go). A retry is given up when the time spent
on the operation so far plus the next delay would pass ``max_elapsed``, which is also how the
library decides. Pure: the caller passes the elapsed time and the random source.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """An exponential backoff with jitter (the library's defaults unless set)."""

    initial: float = 0.5
    multiplier: float = 1.5
    randomization: float = 0.5
    max_interval: float = 60.0
    max_elapsed: float = 45.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.multiplier < 1 or self.max_interval <= 0:
            raise ValueError("a backoff needs a positive interval and a multiplier of at least 1")
        if not 0 <= self.randomization < 1 or self.max_elapsed < 0:
            raise ValueError("randomization is a share below 1 and max_elapsed is not negative")

    def next_delay(self, failures: int, elapsed: float, rng: random.Random) -> float | None:
        """The wait before the next try after ``failures`` failed ones (≥ 1), ``elapsed``
        seconds after the first began; None when the operation should give up."""
        interval = min(self.initial * self.multiplier ** (failures - 1), self.max_interval)
        spread = self.randomization * interval
        delay = interval - spread + rng.random() * 2 * spread
        if elapsed + delay > self.max_elapsed:
            return None
        return delay


#: Go's ``Replicate`` sends (replication.go: ``maxBackOff``).
REPLICATE_BACKOFF = Backoff(max_elapsed=45.0)
#: Go's ``GetBatchValuesFromNode`` (fetch_and_store.go).
FETCH_BACKOFF = Backoff(initial=10.0, multiplier=1.0, max_elapsed=30.0)
