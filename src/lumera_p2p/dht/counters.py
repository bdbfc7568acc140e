"""The DHT's counters, kept in one place so stats and metrics read them from there.

Names are stable (a later issue exports them as Prometheus metrics): add fields, never rename.
"""

from __future__ import annotations

import bisect
import copy
from dataclasses import dataclass, field

#: Upper bounds (seconds) of the latency buckets: a ping on loopback (~1 ms) to Go's longest
#: RPC timeout (180 s). Fixed, so a histogram is a few integers and merges across nodes.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    75.0,
    180.0,
)


@dataclass
class LatencyHistogram:
    """Durations counted into :data:`LATENCY_BUCKETS` (not cumulative; one more for +Inf)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    count: int = 0
    sum: float = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration."""
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.count += 1
        self.sum += seconds


@dataclass
class HandleCounters:
    """How the requests of one type that peers sent us ended (Go's ``HandleCounters``).

    ``success`` counts answers, Failed statuses included (as in Go); ``failure`` handlers that
    raised (a protocol error or a bug); ``timeout`` handlers cut off (``server.handler_timeout``
    or shutdown).
    """

    total: int = 0
    success: int = 0
    failure: int = 0
    timeout: int = 0


@dataclass(frozen=True)
class ServingCounters:
    """How the handlers' own limits refused peers since start (see ``P2PStats.serving``)."""

    #: Stores and Replicate announcements over a peer's quota: answered Failed, and (a peer
    #: that keeps going) its connection closed.
    quota_refused: int = 0
    quota_closed: int = 0
    #: BatchFindValues and BatchGetValues that got no request slot in time (answered Busy).
    find_values_busy: int = 0
    get_values_busy: int = 0
    #: Those slots in use now.
    find_values_in_flight: int = 0
    get_values_in_flight: int = 0


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
    #: Remote nodes that acknowledged single stores (``/ stores``: replicas per store), and
    #: a batch store's node requests and those that succeeded.
    store_replicas: int = 0
    batch_store_requests: int = 0
    batch_store_requests_succeeded: int = 0
    #: Seconds from sending a request to its answer or failure, by message name.
    rpc_latency: dict[str, LatencyHistogram] = field(default_factory=dict)
    #: Requests peers sent us, by message name: outcomes, and seconds spent answering.
    handled_by_type: dict[str, HandleCounters] = field(default_factory=dict)
    handle_latency: dict[str, LatencyHistogram] = field(default_factory=dict)

    def count_sent(self, name: str) -> None:
        """One request of type ``name`` sent."""
        self.rpc_sent += 1
        self.rpc_sent_by_type[name] = self.rpc_sent_by_type.get(name, 0) + 1

    def observe_rpc(self, name: str, seconds: float) -> None:
        """One request we sent ended (answered or failed) after ``seconds``."""
        histogram = self.rpc_latency.get(name)
        if histogram is None:
            histogram = self.rpc_latency[name] = LatencyHistogram()
        histogram.observe(seconds)

    def observe_handled(self, name: str, outcome: str, seconds: float) -> None:
        """One request a peer sent ended ``outcome`` (success, failure, timeout)."""
        counts = self.handled_by_type.get(name)
        if counts is None:
            counts = self.handled_by_type[name] = HandleCounters()
        counts.total += 1
        if outcome == "success":
            counts.success += 1
        else:
            setattr(counts, outcome, getattr(counts, outcome) + 1)
        histogram = self.handle_latency.get(name)
        if histogram is None:
            histogram = self.handle_latency[name] = LatencyHistogram()
        histogram.observe(seconds)

    def snapshot(self) -> DHTCounters:
        """An independent copy (the dicts included)."""
        return copy.deepcopy(self)
