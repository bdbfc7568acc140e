"""What ``P2P.stats()`` reports: typed, with stable names (metrics are exported from them).

Each part is a snapshot taken from the component that keeps it: the DHT's counters
(:class:`~lumera_p2p.dht.DHTCounters`), the TCP server's (``ServerStats``), the client
transport's (``TransportStats``) and its pool's (:class:`PoolCounters`), the server's memory
budget (:class:`MemoryBudgetCounters`), the handlers' quota and slot refusals
(:class:`~lumera_p2p.dht.counters.ServingCounters`), and the store's sizes. Add fields; never
rename one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lumera_p2p.dht.counters import DHTCounters, ServingCounters
from lumera_p2p.net.tcp import ServerStats, TransportStats
from lumera_p2p.recent_ops import RetrievePoint, StorePoint
from lumera_p2p.store.local import StoreStats


@dataclass(frozen=True)
class PoolCounters:
    """The connection pool's counters (Go's ``conn_pool`` metrics, plus ``dead``) and gauges."""

    adds: int
    reuse_hits: int
    misses: int
    evictions: int
    pruned: int
    dead: int
    discarded: int
    #: Connections held now (idle or in use), idle now, and the most the pool keeps.
    open: int
    idle: int
    capacity: int


@dataclass(frozen=True)
class MemoryBudgetCounters:
    """The server's memory budget (``server.memory_budget``): its size, use and refusals."""

    #: Bytes the whole node, and one peer, may hold in flight.
    capacity: int
    per_peer: int
    #: Bytes reserved now, and the most ever reserved at once.
    used: int
    peak: int
    #: Reservations granted (``waited`` of them after waiting for room), and refused: too
    #: large to ever fit, or not granted within ``server.memory_wait``.
    granted: int
    waited: int
    refused: int
    #: Requests waiting for room now.
    waiting: int


@dataclass(frozen=True)
class DiskUsage:
    """The file system holding ``data_dir``, in bytes (Go's ``DiskInfo``, there in MB)."""

    total: int
    used: int
    free: int


@dataclass(frozen=True)
class P2PStats:
    """A snapshot of one node."""

    address: str
    listen: str
    #: Contacts in the routing table, peers banned now, and routing-eligible supernodes on
    #: the chain's last list (0 before the first).
    peers: int
    banned: int
    registry_routing: int
    store: StoreStats
    dht: DHTCounters
    #: Zeros before ``start``.
    server: ServerStats
    transport: TransportStats
    pool: PoolCounters
    #: This package's version, and seconds since ``start`` (0 before).
    version: str = ""
    uptime: float = 0.0
    #: ``None`` when ``data_dir``'s file system cannot be asked.
    disk: DiskUsage | None = None
    #: The newest stores and batch retrieves, newest first (at most 48 each).
    recent_stores: tuple[StorePoint, ...] = ()
    recent_retrieves: tuple[RetrievePoint, ...] = ()
    #: The server's memory budget (``None`` before ``start``), and what the handlers' quotas
    #: and request slots refused. Admission refusals (handshake slots, first-byte deadline,
    #: unlisted addresses) are in ``server``.
    memory: MemoryBudgetCounters | None = None
    serving: ServingCounters = field(default_factory=ServingCounters)

    @property
    def records(self) -> int:
        """Values stored here."""
        return self.store.records

    @property
    def data_bytes(self) -> int:
        """Bytes of those values."""
        return self.store.data_bytes

    @property
    def rpc_sent(self) -> int:
        """Requests this node sent."""
        return self.dht.rpc_sent

    @property
    def rpc_failed(self) -> int:
        """Requests that got no usable answer."""
        return self.dht.rpc_failed

    @property
    def requests_handled(self) -> int:
        """Requests this node answered."""
        return self.dht.requests_handled
