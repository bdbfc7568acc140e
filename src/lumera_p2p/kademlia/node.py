"""Contacts and XOR distance.

A contact's *ID* is its node ID (the ``lumera1…`` address as ASCII bytes); its *hashed ID* is
BLAKE3-256 of that, the 256-bit point in Kademlia's XOR space where every distance, bucket and
comparison is computed. The hashed ID is always recomputed here from the ID, never taken from a
peer: a peer could otherwise place a node anywhere in the key space it liked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import blake3

#: Bits in an ID, and so the number of k-buckets.
ID_BITS = 256
ID_BYTES = ID_BITS // 8


@lru_cache(maxsize=65536)
def hash_id(node_id: bytes) -> bytes:
    """The 32-byte routing ID of a node ID: BLAKE3-256 (memoised: the same few thousand IDs
    arrive in every lookup response)."""
    return blake3.blake3(node_id).digest()


def distance(a: bytes, b: bytes) -> int:
    """XOR distance between two 32-byte IDs, as an integer (big-endian byte order)."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def bucket_index(self_hash: bytes, other_hash: bytes) -> int:
    """The k-bucket of ``other`` in ``self``'s table: 255 − (first differing bit from the top).

    Bucket 255 holds the half of the space farthest from us (first bit differs), bucket 0 the
    single ID that differs only in its last bit. An identical ID also maps to 0, as in Go.
    """
    d = distance(self_hash, other_hash)
    return d.bit_length() - 1 if d else 0


@dataclass(frozen=True, slots=True)
class Contact:
    """A peer as the routing table knows it: identity, endpoint and routing ID.

    Slotted: its fields sit in the object itself, not in a dict beside it. Lookups and
    answers read the routing IDs of dozens of contacts each, and in a process of many nodes
    every one of those reads was another fetch from memory.
    """

    id: bytes
    ip: str
    port: int
    version: str = ""
    hashed_id: bytes = field(default=b"", compare=False)
    int_id: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        hashed = hash_id(self.id)
        object.__setattr__(self, "hashed_id", hashed)
        object.__setattr__(self, "int_id", int.from_bytes(hashed, "big"))

    @property
    def address(self) -> str:
        """The node ID as text (a ``lumera1…`` address for real nodes)."""
        return self.id.decode("ascii", errors="replace")

    @property
    def endpoint(self) -> str:
        """``ip:port`` (IPv6 in brackets)."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}"

    @property
    def pool_key(self) -> str:
        """``id@ip:port``, the connection-pool key the Go node uses."""
        return f"{self.address}@{self.endpoint}"

    def with_endpoint(self, ip: str, port: int) -> Contact:
        """The same identity at another address."""
        return Contact(self.id, ip, port, self.version)

    def __str__(self) -> str:
        return self.pool_key
