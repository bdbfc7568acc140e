"""Who may be routed to and who may be sent data: the chain allowlists.

Two sets of routing IDs, filled from the registry: *routing-eligible* supernodes (ACTIVE,
POSTPONED, STORAGE_FULL) and *store-eligible* ones (ACTIVE). As in the Go node, until the first
non-empty list arrives every peer is allowed (a node must be able to bootstrap before it has
heard from the chain), and an empty refresh later is ignored rather than locking everyone out.
Unlike Go, a peer answering "self not store-eligible" is not deleted from the store set one by
one (which could empty it until the next chain refresh); it is marked for this node only until
the next refresh replaces the sets.
"""

from __future__ import annotations

from collections.abc import Iterable


class Eligibility:
    """Routing and store allowlists keyed by 32-byte routing ID."""

    def __init__(self) -> None:
        self._routing: frozenset[bytes] = frozenset()
        self._store: frozenset[bytes] = frozenset()
        self._refused: set[bytes] = set()
        self.ready = False
        self.self_store_eligible = True

    def update(self, routing: Iterable[bytes], store: Iterable[bytes]) -> bool:
        """Replace the sets from a chain refresh; return False if it was empty and ignored."""
        routing_set = frozenset(routing)
        if not routing_set:
            return False
        self._routing = routing_set
        self._store = frozenset(store) & routing_set
        self._refused.clear()
        self.ready = True
        return True

    def routing(self, hashed_id: bytes) -> bool:
        """May this peer be in the routing table and answer lookups?"""
        return not self.ready or hashed_id in self._routing

    def store(self, hashed_id: bytes) -> bool:
        """May this peer be sent values to store?"""
        if hashed_id in self._refused:
            return False
        return not self.ready or hashed_id in self._store

    def refused_store(self, hashed_id: bytes) -> None:
        """The peer said it is not store-eligible: send it nothing until the next refresh."""
        self._refused.add(hashed_id)

    @property
    def routing_count(self) -> int:
        """Size of the routing allowlist (0 while not ready)."""
        return len(self._routing)
