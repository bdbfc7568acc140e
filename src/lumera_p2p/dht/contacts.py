"""Between the wire's ``Node`` and the routing table's :class:`~lumera_p2p.kademlia.Contact`.

A peer-supplied ``Node`` becomes a contact only if we would dial it (the Go node's address
hygiene), it is not ourselves, and the chain allowlist lets it route. The HashedID a peer sends
is ignored and recomputed from the ID: trusting it would let a peer place any node anywhere in
the key space (a Go weakness). Pure logic; the plans read responses with it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from enum import Enum
from functools import lru_cache
from typing import Final

from lumera_p2p.dht.eligibility import Eligibility
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.envelope import MAX_HOST, MAX_NODE_ID, MAX_VERSION
from lumera_p2p.wire.messages import Message
from lumera_p2p.wire.messages import Node as WireNode

# The longest node ID, host and version accepted from a peer (MAX_NODE_ID, MAX_HOST,
# MAX_VERSION) come from ``wire/envelope.py``: the largest value's envelope is computed with
# them, so that value fits any message to any peer we know.


class EndpointKind(Enum):
    """Whether we would dial a host."""

    PUBLIC = "public"
    PRIVATE = "private"  # loopback or private: only on local networks
    UNUSABLE = "unusable"  # unspecified, link-local, multicast, not a hostname


@lru_cache(maxsize=65536)
def endpoint_kind(host: str) -> EndpointKind:
    """Classify a peer's host. Memoised: parsing IP text is the costliest step of reading a
    lookup response."""
    if len(host) > MAX_HOST:
        return EndpointKind.UNUSABLE
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        # A fully qualified hostname is public; a bare word is not an address.
        return EndpointKind.PUBLIC if "." in host else EndpointKind.UNUSABLE
    if addr.is_unspecified or addr.is_link_local or addr.is_multicast:
        return EndpointKind.UNUSABLE
    if addr.is_loopback or addr.is_private:
        return EndpointKind.PRIVATE
    return EndpointKind.PUBLIC


@lru_cache(maxsize=65536)
def _contact(node_id: bytes, ip: str, port: int, version: str) -> Contact:
    """A contact, memoised: every lookup answer names the same few thousand peers again, and
    building one (hashing its ID) is most of the cost of reading an answer. Contacts are
    immutable, so one may be shared by every node of a process."""
    return Contact(node_id, ip, port, version)


def wire_node(contact: Contact) -> WireNode:
    """A wire ``Node`` for ``contact``, always carrying its 32-byte HashedID (Go needs it)."""
    # Positional: a dataclass call with keywords costs twice as much, and every message
    # carries two of these, a lookup answer twenty more per target.
    return WireNode(contact.id, contact.ip, contact.port, contact.version, contact.hashed_id)


def answered_as(peer: Contact, response: Message) -> Contact:
    """``peer`` with the version its answer advertises in ``Sender`` (Go records it so: what
    a peer says of itself counts, not what a third party's ``Closest`` list claimed)."""
    sender = response.sender
    if sender is None or bytes(sender.id) != peer.id or sender.version == peer.version:
        return peer
    if len(sender.version or "") > MAX_VERSION:
        return peer
    return Contact(peer.id, peer.ip, peer.port, sender.version or "")


#: How many distinct nodes a reader remembers its verdict on (it forgets them all when full).
READER_MEMO_ENTRIES: Final = 4096


class ContactReader:
    """Turns peer-supplied nodes into routable contacts for one node (see the module doc).

    The verdict on a node's fields (lengths, endpoint, not ourselves) and the contact they
    make never change, so they are remembered per node ID with the IP, port and version they
    were given with (a node named at another address is judged afresh), for at most
    :data:`READER_MEMO_ENTRIES` nodes; the allowlist, which a chain refresh changes, is asked
    every time.
    """

    __slots__ = (
        "_allow_private",
        "_eligibility",
        "_memo",
        "_memo_entries",
        "_self_hash",
    )

    def __init__(
        self,
        self_hash: bytes,
        eligibility: Eligibility,
        *,
        allow_private: bool,
        memo_entries: int = READER_MEMO_ENTRIES,
    ) -> None:
        self._self_hash = self_hash
        self._eligibility = eligibility
        self._allow_private = allow_private
        self._memo_entries = memo_entries
        # Node ID -> (IP, port, version, verdict). Keyed by the ID alone and the rest
        # compared: one hash per node read, not four (a decoded node's fields are fresh
        # objects, whose hashes are computed anew every time).
        self._memo: dict[bytes, tuple[str, int, str, Contact | None]] = {}

    def acceptable_endpoint(self, ip: str, port: int) -> bool:
        """Is this an address we would dial?"""
        if not ip or not 0 < port < 65536:
            return False
        kind = endpoint_kind(ip)
        return kind is EndpointKind.PUBLIC or (kind is EndpointKind.PRIVATE and self._allow_private)

    def contact(self, node: WireNode | None) -> Contact | None:
        """A routable contact from a peer-supplied ``Node``, or None if it is unusable."""
        if node is None:
            return None
        found = self._verdict(node)
        if found is None or not self._eligibility.routing(found.hashed_id):
            return None
        return found

    def each(self, nodes: Iterable[WireNode | None] | None) -> list[Contact]:
        """The routable contact of each of ``nodes`` that makes one, in order, repeats kept
        (``contact`` of each, in one loop: a lookup reads twenty nodes per answer)."""
        verdict = self._verdict
        routing = self._eligibility.routing
        out: list[Contact] = []
        for node in nodes or ():
            if node is None:
                continue
            found = verdict(node)
            if found is not None and routing(found.hashed_id):
                out.append(found)
        return out

    def _verdict(self, node: WireNode) -> Contact | None:
        """The contact ``node``'s fields make, or None (everything but the allowlist),
        remembered."""
        try:
            known = self._memo.get(node.id)
        except TypeError:  # an unhashable field (a bytearray ID): judged afresh
            return self._judge(node, remember=False)
        if (
            known is not None
            and known[0] == node.ip
            and known[1] == node.port
            and known[2] == node.version
        ):
            return known[3]
        return self._judge(node, remember=True)

    def _judge(self, node: WireNode, *, remember: bool) -> Contact | None:
        """The contact ``node``'s fields make, or None: everything but the allowlist. Only
        nodes whose fields are within the lengths are remembered (the memo stays small; only
        a remembered node is ever found there, so a hit needs no length check)."""
        if not node.id or len(node.id) > MAX_NODE_ID:
            return None
        if len(node.version or "") > MAX_VERSION or len(node.ip or "") > MAX_HOST:
            return None
        contact: Contact | None = None
        if self.acceptable_endpoint(node.ip, node.port):
            contact = _contact(bytes(node.id), node.ip, int(node.port), node.version or "")
            if contact.hashed_id == self._self_hash:
                contact = None
        if remember:
            memo = self._memo
            if len(memo) >= self._memo_entries:
                memo.clear()
            memo[node.id] = (node.ip, node.port, node.version, contact)
        return contact

    def contacts(self, nodes: Iterable[WireNode | None] | None) -> list[Contact]:
        """Usable contacts among peer-supplied nodes (duplicates dropped, order kept)."""
        out: dict[bytes, Contact] = {}
        for found in self.each(nodes):
            out.setdefault(found.hashed_id, found)
        return list(out.values())
