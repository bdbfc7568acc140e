"""The last few stores and batch retrieves, as the node saw them end (Go's ``DHTMetrics``).

Go keeps the 48 newest of each (``StoreSuccessRecent``, ``BatchRetrieveRecent``) for its status
API; so do we. Counters say how much happened since start; these say how the last ones went
(how many replicas a store reached, how long a retrieve took), which a rate cannot.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

#: Points kept of each kind (Go: 48).
RECENT_POINTS = 48


@dataclass(frozen=True)
class StorePoint:
    """One store or batch store.

    ``requests`` are the node requests it sent and ``successful`` those acknowledged; for a
    single store ``replicas`` is how many remote nodes hold the value now (a batch store
    reports none: each key has its own).
    """

    time: float
    kind: str
    keys: int
    requests: int
    successful: int
    replicas: int | None = None

    @property
    def success_rate(self) -> float:
        """Acknowledged share of the requests (0 without requests)."""
        return self.successful / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class RetrievePoint:
    """One batch retrieve: keys asked, required, found, and seconds taken."""

    time: float
    keys: int
    required: int
    found: int
    duration: float


class RecentOps:
    """Ring buffers of the newest :class:`StorePoint` and :class:`RetrievePoint`."""

    def __init__(self, size: int = RECENT_POINTS) -> None:
        self._stores: deque[StorePoint] = deque(maxlen=size)
        self._retrieves: deque[RetrievePoint] = deque(maxlen=size)

    def add_store(self, point: StorePoint) -> None:
        """Record a finished store."""
        self._stores.append(point)

    def add_retrieve(self, point: RetrievePoint) -> None:
        """Record a finished batch retrieve."""
        self._retrieves.append(point)

    def stores(self) -> tuple[StorePoint, ...]:
        """Newest first, as Go lists them."""
        return tuple(reversed(self._stores))

    def retrieves(self) -> tuple[RetrievePoint, ...]:
        """Newest first."""
        return tuple(reversed(self._retrieves))
