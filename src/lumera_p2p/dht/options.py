"""Tunables of a DHT node, as typed values (the ``dht:`` and ``server:`` config sections).

Defaults are the Go node's constants (p2p-behaviour.md §9) unless a comment says why not.
Everything is frozen: a node's options are decided once, at construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lumera_p2p.dht.quotas import QuotaLimits
from lumera_p2p.wire.messages import MessageType

#: Per-RPC timeouts in seconds, as the Go client uses them (network.go:41-54; BatchFindValues
#: and Replicate are Go's "long" calls, 3 minutes).
GO_RPC_TIMEOUTS: Mapping[MessageType, float] = MappingProxyType(
    {
        MessageType.PING: 5.0,
        MessageType.FIND_NODE: 10.0,
        MessageType.BATCH_FIND_NODE: 5.0,
        MessageType.FIND_VALUE: 5.0,
        MessageType.STORE_DATA: 10.0,
        MessageType.BATCH_STORE_DATA: 75.0,
        MessageType.BATCH_FIND_VALUES: 180.0,
        MessageType.BATCH_GET_VALUES: 75.0,
        MessageType.REPLICATE: 180.0,
    }
)


@dataclass(frozen=True)
class ServingLimits:
    """What the RPC handlers (``dht/server.py``) accept and answer."""

    #: Most keys one Replicate, BatchGetValues, BatchFindValues or BatchFindNode may carry
    #: (Go has no cap).
    max_keys_per_request: int = 20_000
    #: Concurrent BatchFindValues served (Go: 25), and how long one waits for a slot (Go: 60 s).
    batch_find_values_slots: int = 25
    batch_find_values_wait: float = 60.0
    #: BatchFindValues answers are trimmed below this compressed size (Go: under 400 MiB).
    batch_find_values_max_bytes: int = 399 * 1024 * 1024
    #: Value bytes one BatchGetValues answer may carry: Go fills every requested value and
    #: fails to encode past the 400 MB frame limit; we leave the excess out (asked again).
    max_response_value_bytes: int = 256 * 1024 * 1024
    #: BatchFindValues one peer may have served at once (Go: no per-peer cap).
    batch_find_values_per_peer: int = 2
    #: Concurrent BatchGetValues served in all and per peer (Go: no cap), and how long one
    #: waits for a slot before the answer is Failed "busy".
    batch_get_values_slots: int = 8
    batch_get_values_per_peer: int = 2
    batch_get_values_wait: float = 10.0
    #: How long a handler waits for memory for a large answer (the server's ``memory_wait``).
    memory_wait: float = 10.0
    #: What one peer may make us store and announce (``dht/quotas.py``).
    quotas: QuotaLimits = field(default_factory=QuotaLimits)

    def __post_init__(self) -> None:
        _at_least_one(
            self,
            "max_keys_per_request",
            "batch_find_values_slots",
            "batch_find_values_max_bytes",
            "max_response_value_bytes",
            "batch_find_values_per_peer",
            "batch_get_values_slots",
            "batch_get_values_per_peer",
        )
        for name in ("batch_find_values_wait", "batch_get_values_wait", "memory_wait"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


@dataclass(frozen=True)
class DHTOptions:
    """How one node looks up, stores and retrieves."""

    #: Bucket size and lookup width (Go: K = 20).
    k: int = 20
    #: Requests a lookup keeps in flight (Go: α = 6).
    alpha: int = 6
    #: How many nodes hold each value besides the origin (Go stores to α = 6 nodes).
    replicas: int = 6
    #: Accept loopback and private addresses for peers (local networks and tests); the Go
    #: node's INTEGRATION_TEST switch.
    allow_private: bool = False
    #: A lookup gives up on a request after ``lookup_timeout`` s; after ``lookup_stall`` s it
    #: stops counting against α (so one slow peer never holds the others up).
    lookup_timeout: float = 5.0
    lookup_stall: float = 1.0
    #: A lookup asks a peer whose request failed again, this many times, before giving it up.
    lookup_retries: int = 2
    #: Consecutive failed requests after which a contact leaves the routing table.
    max_failures: int = 2
    #: Largest BatchStoreData payload sent in one request. Go puts all of a node's share in
    #: one message, which fails outright once it exceeds the 400 MB frame limit; we split.
    batch_store_bytes: int = 64 * 1024 * 1024
    #: Parallel BatchStoreData requests of one batch store (Go: min(16, nodes)).
    batch_store_concurrency: int = 16
    #: A batch store succeeds when at least this share of its requests do (Go: 75 %).
    min_batch_store_success: float = 0.75
    #: Keys asked of one node in one BatchGetValues (Go's ``perNodeRequestCap``).
    batch_get_keys: int = 600
    #: Parallel BatchGetValues requests of one batch retrieve.
    batch_get_concurrency: int = 8
    #: Parallel FIND_VALUE lookups for keys a batch retrieve's providers did not have.
    fallback_lookups: int = 8
    #: Parallel pings of the health check (Go: 32 workers).
    health_check_concurrency: int = 32
    #: A bucket not looked up for this long is refreshed (Go: 1 h).
    bucket_refresh_age: float = 3600.0
    #: Refuse peers that advertise a lower version, or none, as a Go node built with a minimum
    #: does (``kademlia.version``); empty admits every version. (Our own version is the
    #: node's contact's.)
    min_peer_version: str = ""
    #: Per-RPC timeouts by message type; types not listed get ``default_rpc_timeout``.
    rpc_timeouts: Mapping[MessageType, float] = field(default_factory=lambda: GO_RPC_TIMEOUTS)
    #: Go's ``defaultExecTimeout``.
    default_rpc_timeout: float = 15.0
    #: Limits of the request handlers.
    serving: ServingLimits = field(default_factory=ServingLimits)

    def __post_init__(self) -> None:
        _at_least_one(
            self,
            "k",
            "alpha",
            "replicas",
            "max_failures",
            "batch_store_bytes",
            "batch_store_concurrency",
            "batch_get_keys",
            "batch_get_concurrency",
            "fallback_lookups",
            "health_check_concurrency",
        )
        if self.lookup_retries < 0:
            raise ValueError("lookup_retries cannot be negative")
        if not 0.0 <= self.min_batch_store_success <= 1.0:
            raise ValueError("min_batch_store_success is a share between 0 and 1")
        times = [self.lookup_timeout, self.lookup_stall, self.bucket_refresh_age]
        times += [self.default_rpc_timeout, *self.rpc_timeouts.values()]
        if any(t <= 0 for t in times):
            raise ValueError("timeouts and ages must be positive")
        # Frozen means frozen: a caller's dict must not change the node's timeouts later.
        object.__setattr__(self, "rpc_timeouts", MappingProxyType(dict(self.rpc_timeouts)))

    def rpc_timeout(self, mtype: MessageType) -> float:
        """Seconds allowed for one request of type ``mtype``."""
        return self.rpc_timeouts.get(mtype, self.default_rpc_timeout)


def _at_least_one(options: object, *names: str) -> None:
    for name in names:
        value = getattr(options, name)
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")
