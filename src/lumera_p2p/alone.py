"""The warning a node logs while it has no peers: when it is due (sans I/O, fed with ``now``).

A node without peers keeps running (the registry may come back, peers may dial it), but it
stores and serves nothing for the network, and before this warning it said so nowhere. It is
logged as soon as a peer sync leaves the node alone, then at most every ``every`` seconds while
it stays alone, and again at once if it is alone again after having had peers.
"""

from __future__ import annotations

#: Seconds between repeats of the warning while the node stays alone.
DEFAULT_EVERY = 300.0


class AloneWarning:
    """Says when to warn that the node has no peers (see the module docstring)."""

    def __init__(self, every: float = DEFAULT_EVERY) -> None:
        if every <= 0:
            raise ValueError("every must be positive")
        self._every = every
        self._last: float | None = None

    def due(self, peers: int, now: float) -> bool:
        """Whether to warn now, with ``peers`` in the routing table; records the warning."""
        if peers:
            self._last = None  # the next time alone is news again
            return False
        if self._last is not None and now - self._last < self._every:
            return False
        self._last = now
        return True
