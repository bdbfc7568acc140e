"""What ``P2P.stats()`` reports: typed, with stable names (metrics are exported from them).

Each part is a snapshot taken from the component that keeps it: the DHT's counters
(:class:`~lumera_p2p.dht.DHTCounters`), the TCP server's (``ServerStats``), the client
transport's (``TransportStats``) and its pool's (:class:`PoolCounters`), and the store's sizes.
Add fields; never rename one.
"""

from __future__ import annotations

from dataclasses import dataclass

from lumera_p2p.dht.counters import DHTCounters
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
