"""Counters kept in step with committed rows, so limits are checked without ``COUNT``/``SUM``.

Only the writer thread changes a :class:`Tally`. A job reads ``current`` (committed plus what
earlier jobs of the open transaction added), checks its limit, writes, and as its last step
``add``s its change. The writer calls ``committed`` after COMMIT and ``rolled_back`` when the
transaction is undone, so the counters never include a row that is not on disk. (A job that
raises has added nothing: ``add`` comes after its last statement that can fail.)
"""

from __future__ import annotations

from collections.abc import Mapping


class Tally:
    """Named integer counters: committed values plus the open transaction's changes."""

    def __init__(self, initial: Mapping[str, int] | None = None) -> None:
        self._committed: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self.reset(initial or {})

    def reset(self, values: Mapping[str, int]) -> None:
        """Replace every value (at open, before any write)."""
        self._committed = {k: v for k, v in values.items() if v}
        self._pending = {}

    def current(self, name: str) -> int:
        """The value as the open transaction sees it (writer thread)."""
        return self._committed.get(name, 0) + self._pending.get(name, 0)

    def value(self, name: str) -> int:
        """The committed value (any thread: a dict read is atomic)."""
        return self._committed.get(name, 0)

    def add(self, name: str, delta: int) -> None:
        """Count ``delta`` in the open transaction."""
        if delta:
            self._pending[name] = self._pending.get(name, 0) + delta

    def committed(self) -> None:
        """The transaction committed: fold its changes in (counters at zero are dropped)."""
        for name, delta in self._pending.items():
            total = self._committed.get(name, 0) + delta
            if total:
                self._committed[name] = total
            else:
                self._committed.pop(name, None)
        self._pending.clear()

    def rolled_back(self) -> None:
        """The transaction was undone: forget its changes."""
        self._pending.clear()
