"""The DHT: RPC handlers and operations over a transport."""

from lumera_p2p.dht.client import BatchStoreReport, LookupOutcome, StoreFailed
from lumera_p2p.dht.core import DHTOptions, Transport
from lumera_p2p.dht.eligibility import Eligibility
from lumera_p2p.dht.node import DHT, DHTStats, KeyDisabled, NotEnoughValues
from lumera_p2p.dht.options import ServingLimits
from lumera_p2p.dht.valuestore import MemoryStore, ValueStore
from lumera_p2p.errors import TransportError

__all__ = [
    "DHT",
    "BatchStoreReport",
    "DHTOptions",
    "DHTStats",
    "Eligibility",
    "KeyDisabled",
    "LookupOutcome",
    "MemoryStore",
    "NotEnoughValues",
    "ServingLimits",
    "StoreFailed",
    "Transport",
    "TransportError",
    "ValueStore",
]
