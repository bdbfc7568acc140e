"""The routing table: 256 k-buckets by shared prefix with our routing ID.

Each bucket holds at most ``k`` contacts in least-recently-seen order (head = oldest). A full
bucket follows classic Kademlia, not the Go node: the newcomer waits in the bucket's replacement
cache and the table asks its owner to ping the oldest entry; only if that ping fails is the
oldest evicted and the freshest replacement promoted. (Go simply drops the newcomer, so a bucket
of dead peers stays dead until a separate health loop notices.) A banned head is replaced at
once, as in Go. Re-seeing a contact moves it to the tail and, unlike Go, records a changed
address. The oldest entry is pinged only if it was last seen ``probe_after`` seconds ago or
more: one heard from more recently is alive, and the newcomer just waits in the cache.

Pure logic: no I/O, no clock; callers pass ``now``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from enum import Enum

from lumera_p2p.kademlia.node import ID_BITS, Contact, bucket_index

K = 20
ALPHA = 6


class AddStatus(Enum):
    """What ``RoutingTable.add`` did with a contact."""

    ADDED = "added"
    UPDATED = "updated"
    PENDING = "pending"  # bucket full: waiting in the replacement cache
    REJECTED = "rejected"  # ourselves


@dataclass(frozen=True)
class AddResult:
    """The outcome of ``add``; ``ping`` is a contact the caller should ping now, if any."""

    status: AddStatus
    ping: Contact | None = None


# The outcomes without a contact to ping (immutable, so shared).
_ADDED = AddResult(AddStatus.ADDED)
_UPDATED = AddResult(AddStatus.UPDATED)
_PENDING = AddResult(AddStatus.PENDING)
_REJECTED = AddResult(AddStatus.REJECTED)


class RoutingTable:
    """256 k-buckets with replacement caches around our 32-byte routing ID."""

    __slots__ = (
        "_buckets",
        "_by_hash",
        "_by_int",
        "_cache_seen",
        "_failures",
        "_last_lookup",
        "_pinging",
        "_replacements",
        "_seen",
        "_self_int",
        "k",
        "probe_after",
        "replacement_size",
        "self_hash",
    )

    def __init__(
        self,
        self_hash: bytes,
        k: int = K,
        replacements: int | None = None,
        *,
        probe_after: float = 0.0,
    ) -> None:
        if len(self_hash) != 32:
            raise ValueError("the routing ID has 32 bytes")
        self.self_hash = self_hash
        self.k = k
        self.replacement_size = k if replacements is None else replacements
        self.probe_after = probe_after
        self._seen: dict[bytes, float] = {}  # when each contact was last seen alive
        self._cache_seen: dict[bytes, float] = {}  # ... and each replacement
        # Each bucket maps routing ID -> contact in least-recently-seen order (a dict keeps
        # insertion order): moving a contact to the tail is O(1), and no contact is compared.
        self._buckets: list[dict[bytes, Contact]] = [{} for _ in range(ID_BITS)]
        self._self_int = int.from_bytes(self_hash, "big")
        self._replacements: list[list[Contact]] = [[] for _ in range(ID_BITS)]
        self._pinging: dict[int, bytes] = {}
        self._by_hash: dict[bytes, Contact] = {}
        self._by_int: dict[int, Contact] = {}  # the same contacts by ``Contact.int_id``
        self._failures: dict[bytes, int] = {}
        self._last_lookup: list[float] = [0.0] * ID_BITS

    # --- queries -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, hashed_id: object) -> bool:
        return hashed_id in self._by_hash

    def __iter__(self) -> Iterator[Contact]:
        for bucket in self._buckets:
            yield from bucket.values()

    def get(self, hashed_id: bytes) -> Contact | None:
        """The contact with this routing ID, if in the table."""
        return self._by_hash.get(hashed_id)

    def bucket(self, index: int) -> list[Contact]:
        """A copy of bucket ``index`` (oldest first)."""
        return list(self._buckets[index].values())

    def replacements(self, index: int) -> list[Contact]:
        """A copy of bucket ``index``'s replacement cache (freshest last)."""
        return list(self._replacements[index])

    def closest(
        self, target: bytes, n: int, exclude: Container[bytes] = frozenset()
    ) -> list[Contact]:
        """The ``n`` contacts nearest ``target`` by XOR, nearest first, minus ``exclude``."""
        out: list[Contact] = []
        if n <= 0:
            return out
        t = int.from_bytes(target, "big")
        by_int = self._by_int
        if not isinstance(exclude, (set, frozenset, dict)):
            # A container we cannot list: rank everyone, ask it about each in turn.
            for d in sorted(map(t.__xor__, by_int)):
                contact = by_int[d ^ t]
                if contact.hashed_id not in exclude:
                    out.append(contact)
                    if len(out) >= n:
                        break
            return out
        # Ranked by distance alone: the distances are computed and sorted in C, and only the
        # contacts returned are touched (in a table of many nodes' contacts, most of the cost
        # of ranking them was fetching each from memory). Excluded IDs become the distances
        # to skip (a routing ID is 32 bytes: nothing else can name a contact).
        skip = {
            int.from_bytes(h, "big") ^ t
            for h in exclude
            if isinstance(h, (bytes, memoryview)) and len(h) == 32
        }
        want = n + len(skip)
        distances = map(t.__xor__, by_int)
        # A table of a few buckets: one C sort beats the heap's bookkeeping.
        big = len(by_int) > 4 * want
        ranked = heapq.nsmallest(want, distances) if big else sorted(distances)
        for d in ranked:
            if d not in skip:
                out.append(by_int[d ^ t])
                if len(out) >= n:
                    break
        return out

    # --- updates -------------------------------------------------------------------------

    def add(
        self,
        contact: Contact,
        now: float,
        is_banned: Callable[[bytes], bool] | None = None,
    ) -> AddResult:
        """Record that ``contact`` was seen alive (it answered, or it sent us a request)."""
        hashed = contact.hashed_id
        if hashed == self.self_hash:
            return _REJECTED
        d = self._self_int ^ contact.int_id  # ``_index``, inline: every answer and request
        index = d.bit_length() - 1 if d else 0
        bucket = self._buckets[index]
        if self._failures:
            self._failures.pop(hashed, None)
        known = self._by_hash.get(hashed)
        if known is not None:
            self._seen[hashed] = now
            del bucket[hashed]
            bucket[hashed] = contact  # most recently seen; the address may have changed
            if known is not contact:
                self._by_hash[hashed] = contact
                self._by_int[contact.int_id] = contact
            if self._pinging and self._pinging.get(index) == hashed:
                del self._pinging[index]  # it answered: it stays
            return _UPDATED
        if len(bucket) < self.k:
            self._insert(index, contact, now)
            return _ADDED
        head = next(iter(bucket.values()))
        if is_banned is not None and is_banned(head.hashed_id):
            self._evict(index, head)
            self._insert(index, contact, now)
            return _ADDED
        self._remember_replacement(index, contact, now)
        if index in self._pinging or now - self._seen[head.hashed_id] < self.probe_after:
            return _PENDING
        self._pinging[index] = head.hashed_id
        return AddResult(AddStatus.PENDING, ping=head)

    def ping_succeeded(self, contact: Contact, now: float) -> None:
        """The oldest entry we were asked to ping answered: keep it (move it to the tail)."""
        self.add(contact, now)

    def remove(self, hashed_id: bytes) -> Contact | None:
        """Drop a contact (it failed a ping, or left the allowlist); promote a replacement.

        Returns the promoted replacement, if any.
        """
        contact = self._by_hash.get(hashed_id)
        if contact is None:
            for index, cache in enumerate(self._replacements):
                self._replacements[index] = [c for c in cache if c.hashed_id != hashed_id]
            self._cache_seen.pop(hashed_id, None)
            return None
        index = self._index(contact.int_id)
        self._evict(index, contact)
        cache = self._replacements[index]
        if cache and len(self._buckets[index]) < self.k:
            promoted = cache.pop()
            self._insert(index, promoted, self._cache_seen.pop(promoted.hashed_id, 0.0))
            return promoted
        return None

    ping_failed = remove

    def failed(self, hashed_id: bytes, max_failures: int = 2) -> bool:
        """A request to this contact failed; evict it after ``max_failures`` in a row.

        Returns True if it was evicted. Any sign of life (``add``) resets the count. Go leaves
        dead peers in the table until its 5-minute ping loop notices; counting failures here
        lets lookups clean the table as they go.
        """
        if hashed_id not in self._by_hash:
            return False
        count = self._failures.get(hashed_id, 0) + 1
        if count < max_failures:
            self._failures[hashed_id] = count
            return False
        self._failures.pop(hashed_id, None)
        self.remove(hashed_id)
        return True

    def _index(self, int_id: int) -> int:
        """``bucket_index`` of a routing ID given as an integer (``Contact.int_id``)."""
        d = self._self_int ^ int_id
        return d.bit_length() - 1 if d else 0

    def _insert(self, index: int, contact: Contact, now: float) -> None:
        self._buckets[index][contact.hashed_id] = contact
        self._by_hash[contact.hashed_id] = contact
        self._by_int[contact.int_id] = contact
        self._seen[contact.hashed_id] = now
        self._cache_seen.pop(contact.hashed_id, None)
        cache = self._replacements[index]
        self._replacements[index] = [c for c in cache if c.hashed_id != contact.hashed_id]

    def _evict(self, index: int, contact: Contact) -> None:
        del self._buckets[index][contact.hashed_id]
        del self._by_hash[contact.hashed_id]
        del self._by_int[contact.int_id]
        self._seen.pop(contact.hashed_id, None)
        self._failures.pop(contact.hashed_id, None)
        if self._pinging.get(index) == contact.hashed_id:
            del self._pinging[index]

    def _remember_replacement(self, index: int, contact: Contact, now: float) -> None:
        cache = [c for c in self._replacements[index] if c.hashed_id != contact.hashed_id]
        cache.append(contact)
        surplus = max(0, len(cache) - self.replacement_size)
        for dropped in cache[:surplus]:
            self._cache_seen.pop(dropped.hashed_id, None)
        del cache[:surplus]
        self._replacements[index] = cache
        self._cache_seen[contact.hashed_id] = now

    # --- refresh -------------------------------------------------------------------------

    def touch(self, target: bytes, now: float) -> None:
        """A lookup for ``target`` ran: its bucket counts as refreshed at ``now``."""
        self._last_lookup[bucket_index(self.self_hash, target)] = now

    def stale_buckets(self, now: float, max_age: float) -> list[int]:
        """Buckets not looked up within ``max_age`` that a lookup could fill.

        Only buckets from the nearest non-empty one outwards count: buckets nearer than any
        known peer are empty in any network of realistic size, and refreshing all 256 of them
        (as the Go node ends up doing) costs ~250 lookups an hour for nothing.
        """
        nonempty = [i for i, b in enumerate(self._buckets) if b]
        if not nonempty:
            return []
        return [i for i in range(nonempty[0], ID_BITS) if now - self._last_lookup[i] >= max_age]

    def random_id_in_bucket(self, index: int, rng: random.Random) -> bytes:
        """A random 32-byte ID that falls in bucket ``index`` of this table."""
        d = (1 << index) | rng.getrandbits(index) if index else 1
        value = int.from_bytes(self.self_hash, "big") ^ d
        return value.to_bytes(32, "big")
