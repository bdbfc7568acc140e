"""The wire ``Node`` of each contact, built once: every answer to a lookup names ``k`` of the
same few contacts again, and every request names us and its receiver.

A contact is immutable and nothing changes a wire ``Node`` once it is built (the encoder only
reads it), so one may go into many messages. The cache is per node and bounded: contacts from
peers' answers come and go, and when it is full it starts again.
"""

from __future__ import annotations

from lumera_p2p.dht.contacts import wire_node
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import Node as WireNode

#: Contacts remembered at once (a full routing table holds at most 256 × k).
MAX_WIRE_NODES = 8192


class WireNodes:
    """``of(contact)``: its wire ``Node`` (see the module docstring)."""

    __slots__ = ("_built", "limit")

    def __init__(self, limit: int = MAX_WIRE_NODES) -> None:
        self.limit = limit
        self._built: dict[bytes, tuple[Contact, WireNode]] = {}

    def __len__(self) -> int:
        return len(self._built)

    def of(self, contact: Contact) -> WireNode:
        """The wire ``Node`` of ``contact`` (with its HashedID, as Go needs it)."""
        built = self._built.get(contact.hashed_id)
        # The same object, not an equal one: identity is one comparison, and the routing
        # table and the contact reader hand out the same objects again.
        if built is not None and built[0] is contact:
            return built[1]
        node = wire_node(contact)
        if len(self._built) >= self.limit:
            self._built.clear()
        self._built[contact.hashed_id] = (contact, node)
        return node

    def of_all(self, contacts: list[Contact]) -> list[WireNode]:
        """The wire ``Node`` of each of ``contacts``, in order."""
        get = self._built.get
        of = self.of
        return [
            hit[1] if (hit := get(c.hashed_id)) is not None and hit[0] is c else of(c)
            for c in contacts
        ]
