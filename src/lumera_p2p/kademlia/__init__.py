"""Kademlia as pure logic: contacts and distance, the routing table, the ban list, lookups."""

from lumera_p2p.kademlia.banlist import BanList
from lumera_p2p.kademlia.lookup import Lookup, LookupStats, PeerState
from lumera_p2p.kademlia.node import Contact, bucket_index, distance, hash_id
from lumera_p2p.kademlia.routing import ALPHA, AddResult, AddStatus, K, RoutingTable

__all__ = [
    "ALPHA",
    "AddResult",
    "AddStatus",
    "BanList",
    "Contact",
    "K",
    "Lookup",
    "LookupStats",
    "PeerState",
    "RoutingTable",
    "bucket_index",
    "distance",
    "hash_id",
]
