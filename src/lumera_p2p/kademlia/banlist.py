"""The ban (ignore) list: peers that failed repeatedly are left out of lookups for a while.

Rules, as the Go node applies them (banlist.go): a peer is *banned* once its failure count
exceeds ``threshold`` (1, so from the second failure); a ban lasts ``duration`` (1 h) counted
from the *first* failure; a successful ping clears the entry. Unlike Go, expiry is checked on
every query rather than only by the 15-minute purge, so a ban lasts exactly ``duration``.

A ban for misbehaviour (``ban(..., hard=True)``: a peer that served a poisoned value) is *hard*:
it lasts ``duration`` from the ban and a successful ping does not lift it. Answering pings is
easy for a poisoner; in Go, the ping clears the entry and the peer is back in the routing
table at once. Entries are keyed by hashed ID. No clock is read here: callers pass ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

BAN_DURATION = 3600.0
BAN_THRESHOLD = 1


@dataclass
class BanEntry:
    """Failures recorded for one peer."""

    key: bytes
    label: str
    count: int
    first_failure: float
    #: Banned for misbehaviour: :meth:`BanList.clear` leaves it in place.
    hard: bool = False


class BanList:
    """Failure counts and bans, keyed by a peer's 32-byte hashed ID."""

    __slots__ = (
        "_entries",
        "duration",
        "threshold",
    )

    def __init__(self, threshold: int = BAN_THRESHOLD, duration: float = BAN_DURATION) -> None:
        self.threshold = threshold
        self.duration = duration
        self._entries: dict[bytes, BanEntry] = {}

    def _live(self, key: bytes, now: float) -> BanEntry | None:
        entry = self._entries.get(key)
        if entry is not None and now >= entry.first_failure + self.duration:
            del self._entries[key]
            return None
        return entry

    def increment(self, key: bytes, now: float, label: str = "", by: int = 1) -> int:
        """Record ``by`` failures of a peer; return its new count."""
        entry = self._live(key, now)
        if entry is None:
            entry = self._entries[key] = BanEntry(key, label, 0, now)
        entry.count += by
        return entry.count

    def ban(self, key: bytes, now: float, label: str = "", *, hard: bool = False) -> None:
        """Ban a peer outright.

        By default as Go seeds inactive peers at start-up: just over the threshold, from the
        first failure, lifted by a successful ping. ``hard`` (misbehaviour) bans last
        ``duration`` from ``now`` and survive :meth:`clear`.
        """
        if not hard:
            self.increment(key, now, label, by=self.threshold + 1)
            return
        entry = self._live(key, now)
        count = (entry.count if entry is not None else 0) + self.threshold + 1
        self._entries[key] = BanEntry(key, label, count, now, hard=True)

    def is_banned(self, key: bytes, now: float) -> bool:
        """Whether the peer is banned at ``now``."""
        if key not in self._entries:
            return False  # most peers, asked on every answer and request: no entry to expire
        entry = self._live(key, now)
        return entry is not None and entry.count > self.threshold

    def count(self, key: bytes, now: float) -> int:
        """The peer's current failure count (0 if none or expired)."""
        entry = self._live(key, now)
        return 0 if entry is None else entry.count

    def clear(self, key: bytes) -> None:
        """Forget a peer's failures (it answered a ping); a hard ban stays."""
        entry = self._entries.get(key)
        if entry is not None and not entry.hard:
            del self._entries[key]

    def is_hard_banned(self, key: bytes, now: float) -> bool:
        """Whether the peer is banned for misbehaviour at ``now``."""
        entry = self._live(key, now)
        return entry is not None and entry.hard

    def purge(self, now: float) -> int:
        """Drop expired entries; return how many."""
        expired = [k for k, e in self._entries.items() if now >= e.first_failure + self.duration]
        for key in expired:
            del self._entries[key]
        return len(expired)

    def banned(self, now: float) -> set[bytes]:
        """The hashed IDs banned at ``now``."""
        self.purge(now)
        return {k for k, e in self._entries.items() if e.count > self.threshold}

    def snapshot(self, now: float) -> list[BanEntry]:
        """Entries by count (highest first), then oldest first, as Go's ``Snapshot``."""
        self.purge(now)
        return sorted(self._entries.values(), key=lambda e: (-e.count, e.first_failure))

    def __len__(self) -> int:
        return len(self._entries)
