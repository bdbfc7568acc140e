"""The DHT's counters, kept in one place so stats and metrics read them from there.

Names are stable (a later issue exports them as Prometheus metrics): add fields, never rename.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field


@dataclass
class DHTCounters:
    """Monotonic counters of one node since it was made."""

    #: Requests we sent (and those that failed: no answer, or an answer of the wrong type).
    rpc_sent: int = 0
    rpc_failed: int = 0
    #: The same by message name (``"PING"``, ``"BATCH_STORE_DATA"``, ...).
    rpc_sent_by_type: dict[str, int] = field(default_factory=dict)
    rpc_failed_by_type: dict[str, int] = field(default_factory=dict)
    #: Values a peer served that did not hash to their key (the peer is banned each time).
    poisoned_values: int = 0
    #: Requests we answered.
    requests_handled: int = 0
    #: Values peers stored on us with BatchStoreData.
    values_stored_remote: int = 0
    #: Peers kept out of the routing table or not answered: below ``min_peer_version``.
    peers_too_old: int = 0
    #: Routing-table upkeep: LRU probes of full buckets, contacts evicted, peers banned.
    probes: int = 0
    evictions: int = 0
    bans: int = 0
    #: Banned peers kept out of the routing table (they answered a ping or sent a request).
    banned_kept_out: int = 0
    #: Background rounds run by the node's owner.
    health_checks: int = 0
    bucket_refreshes: int = 0
    #: Operations run (each counts once, however many requests it took); ``lookups`` counts
    #: every iterative lookup, those inside stores, refreshes and batch retrieves included.
    stores: int = 0
    batch_stores: int = 0
    retrieves: int = 0
    batch_retrieves: int = 0
    lookups: int = 0

    def snapshot(self) -> DHTCounters:
        """An independent copy (the dicts included)."""
        return copy.deepcopy(self)
