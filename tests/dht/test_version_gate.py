"""The minimum-version gate where Go applies it, and peers' versions as they advertise them.

Go (p2p-behaviour.md §4.5): a request whose ``Sender.Version`` is below the minimum gets no
answer (the connection closes) and ``addNode`` refuses such a peer, whichever way it was met:
as a requester, as the sender of an answer, or answering a ping. Peers named in someone else's
``Closest`` list are still asked during a lookup; what counts is what each peer says of itself.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

import base58
import pytest

from lumera_p2p.dht import DHTOptions, MemoryStore
from lumera_p2p.dht import Node as DHTNode
from lumera_p2p.errors import ProtocolError, TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import (
    BatchFindNodeRequest,
    BatchFindNodeResponse,
    FindNodeRequest,
    FindNodeResponse,
    Message,
    MessageType,
    Node,
)

MINIMUM = "v2.6.0"
ME = Contact(b"lumera1me", "10.0.0.1", 4445, "v2.6.2")


def node(minimum: str = MINIMUM, transport: object = None) -> DHTNode:
    options = DHTOptions(allow_private=True, min_peer_version=minimum)
    return DHTNode(ME, MemoryStore(), transport or Scripted({}), options=options)  # type: ignore[arg-type]


def peer(n: int, version: str = "") -> Node:
    return Node(id=b"lumera1peer%d" % n, ip=f"10.0.1.{n}", port=4445, version=version)


def contact(n: int, version: str = "") -> Contact:
    p = peer(n, version)
    return Contact(p.id, p.ip, p.port, version)


def known(dht: DHTNode) -> dict[bytes, str]:
    """ID → version of every routing-table peer, as we would tell a third party (FindNode)."""
    asker = peer(99, "v9.9.9")
    request = Message(
        sender=asker, message_type=int(MessageType.FIND_NODE), data=FindNodeRequest(target=b"x")
    )
    response = asyncio.run(dht.handle(request, asker.id))  # v9.9.9 passes any gate here
    assert isinstance(response.data, FindNodeResponse)
    return {bytes(n.id): n.version for n in response.data.closest if n.id != asker.id}


class Scripted:
    """A transport whose peers answer with a given version and ``Closest`` list."""

    def __init__(self, peers: Mapping[bytes, tuple[str, list[Node]]]) -> None:
        self.peers = dict(peers)
        self.asked: list[bytes] = []

    async def call(
        self, to: Contact, request: Message, timeout: float, *, on_answer: object = None
    ) -> Message:
        self.asked.append(to.id)
        if to.id not in self.peers:
            raise TransportError(f"{to}: refused")
        version, closest = self.peers[to.id]
        data: object = None
        if request.message_type == MessageType.BATCH_FIND_NODE:
            body = request.data
            assert isinstance(body, BatchFindNodeRequest)
            target = base58.b58encode(body.hashed_target[0]).decode()
            data = BatchFindNodeResponse(closest_nodes={target: closest})
        elif request.message_type == MessageType.FIND_NODE:
            data = FindNodeResponse(closest=closest)
        sender = Node(id=to.id, ip=to.ip, port=to.port, version=version)
        return Message(
            sender=sender,
            receiver=request.sender,
            message_type=request.message_type,
            data=data,  # type: ignore[arg-type]
        )


# --- as a server -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "answered"),
    [("", False), ("dev", False), ("v2.5.9", False), ("v2.6.0", True), ("v2.6.2-testnet", True)],
)
def test_requests_from_old_peers_are_not_answered(version: str, answered: bool) -> None:
    dht = node()
    sender = peer(1, version)
    ping = Message(sender=sender, message_type=int(MessageType.PING))
    if answered:
        response = asyncio.run(dht.handle(ping, sender.id))
        assert response.sender is not None and response.sender.version == "v2.6.2"
        assert response.receiver is not None and response.receiver.version == version
        assert known(dht) == {sender.id: version}  # learned, with the version it advertised
    else:
        with pytest.raises(ProtocolError, match=re.escape("below the minimum v2.6.0")):
            asyncio.run(dht.handle(ping, sender.id))
        assert known(dht) == {}
        assert dht.snapshot_counters().peers_too_old >= 1


def test_without_a_minimum_every_version_is_served() -> None:
    dht = node(minimum="")
    for n, version in enumerate(["", "dev", "v0.0.1"]):
        sender = peer(n, version)
        asyncio.run(dht.handle(Message(sender=sender, message_type=0), sender.id))
    assert known(dht) == {peer(0).id: "", peer(1).id: "dev", peer(2).id: "v0.0.1"}
    assert dht.snapshot_counters().peers_too_old == 0


# --- as a client -------------------------------------------------------------------------------


def test_ping_records_the_version_the_peer_answers_with() -> None:
    transport = Scripted({peer(1).id: ("v2.7.1", []), peer(2).id: ("v2.5.0", [])})
    dht = node(transport=transport)
    # Seeds come without a version (bootstrap lists, the registry): the answer tells it.
    assert asyncio.run(dht.ping(contact(1))) is True
    assert asyncio.run(dht.ping(contact(2))) is True  # it answered; Go still refuses to add it
    assert known(dht) == {peer(1).id: "v2.7.1"}


def test_ping_without_a_minimum_keeps_any_version() -> None:
    dht = node(minimum="", transport=Scripted({peer(1).id: ("", []), peer(2).id: ("v1", [])}))
    asyncio.run(dht.ping(contact(1, "v9.9.9")))  # what a third party claimed is replaced
    asyncio.run(dht.ping(contact(2)))
    assert known(dht) == {peer(1).id: "", peer(2).id: "v1"}


def test_lookup_asks_listed_peers_but_adds_each_by_its_own_version() -> None:
    """A good peer vouching for an old one does not get it in; the old one's answer decides."""
    transport = Scripted(
        {
            peer(1).id: ("v2.6.2", [peer(2, "v9.0.0"), peer(3, "v1.0.0")]),
            peer(2).id: ("v2.0.0", []),  # claimed v9 by peer 1, says v2.0.0 itself
            peer(3).id: ("v2.6.1", []),  # claimed v1 by peer 1, says v2.6.1 itself
        }
    )
    dht = node(transport=transport)
    asyncio.run(dht.bootstrap([contact(1)]))
    assert {peer(2).id, peer(3).id} <= set(transport.asked)  # Go's shortlist is not gated
    assert known(dht) == {peer(1).id: "v2.6.2", peer(3).id: "v2.6.1"}
