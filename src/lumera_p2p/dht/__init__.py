"""The DHT: one :class:`Node` that owns its state, operations as plans, one driver, the handlers."""

from lumera_p2p.dht.counters import DHTCounters
from lumera_p2p.dht.driver import Consumer, Driver, Transport
from lumera_p2p.dht.eligibility import Eligibility
from lumera_p2p.dht.node import Node
from lumera_p2p.dht.options import GO_RPC_TIMEOUTS, DHTOptions, ServingLimits
from lumera_p2p.dht.plans import BatchStoreReport, LookupOutcome, StoreOutcome
from lumera_p2p.dht.valuestore import MemoryStore, ValueStore

__all__ = [
    "GO_RPC_TIMEOUTS",
    "BatchStoreReport",
    "Consumer",
    "DHTCounters",
    "DHTOptions",
    "Driver",
    "Eligibility",
    "LookupOutcome",
    "MemoryStore",
    "Node",
    "ServingLimits",
    "StoreOutcome",
    "Transport",
    "ValueStore",
]
