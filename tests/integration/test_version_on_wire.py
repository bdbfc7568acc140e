"""Every ``Node`` our node sends carries a ``Version``, read back from the frames it sent.

Three full nodes on 127.0.0.1 advertise three different versions. The node under test (N)
sends every request type it has (Ping, FindNode, BatchFindNode, FindValue, StoreData,
BatchStoreData, BatchGetValues) and answers all nine request types. Its requests are decoded by
the real TCP servers of the two other nodes, its answers by their real TCP transports: both are
wrapped to keep what they decoded from N's bytes. Each sender, receiver and node in a
``Closest`` list must carry a version, and the right one: N's own in ``Sender``, a peer's as that
peer advertised it everywhere else.

A peer's version is known once it has spoken to N; the two peers do so first (their own
bootstrap). Before any contact, as for a seed fresh from the registry, no version is known and
``Receiver.Version`` is empty, as in Go.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from lumera_p2p.chain.registry import Supernode, SupernodeState
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.config import config_from_mapping
from lumera_p2p.content import content_key, digest
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.kademlia import Contact
from lumera_p2p.localnet import free_ports
from lumera_p2p.service import P2P
from lumera_p2p.wire.messages import (
    BatchFindNodeRequest,
    BatchFindNodeResponse,
    BatchFindValuesRequest,
    BatchGetValuesRequest,
    BatchGetValuesResponse,
    BatchStoreDataRequest,
    FindNodeRequest,
    FindNodeResponse,
    FindValueRequest,
    FindValueResponse,
    KeyValWithClosest,
    Message,
    MessageType,
    Node,
    ReplicateDataRequest,
    StoreDataRequest,
)

pytestmark = pytest.mark.timeout(120)

HOST = "127.0.0.1"
VERSIONS = {"n": "v2.6.2", "p": "v2.6.3", "q": "v2.7.0-rc1"}
#: Request types our client code sends (it never sends Replicate or BatchFindValues).
WE_SEND = {
    MessageType.PING,
    MessageType.FIND_NODE,
    MessageType.BATCH_FIND_NODE,
    MessageType.FIND_VALUE,
    MessageType.STORE_DATA,
    MessageType.BATCH_STORE_DATA,
    MessageType.BATCH_GET_VALUES,
}


class Recorded:
    """What the other nodes decoded from N's frames."""

    def __init__(self, n_id: bytes) -> None:
        self.n_id = n_id
        self.requests: list[Message] = []
        self.answers: list[Message] = []

    def wrap_server(self, node: P2P) -> None:
        """Keep the requests ``node``'s TCP server decodes from N (before it starts)."""
        handle = node.node.handle

        async def recording(request: Message, peer_id: bytes) -> Message:
            if peer_id == self.n_id:
                self.requests.append(request)
            return await handle(request, peer_id)

        node.node.handle = recording  # type: ignore[method-assign]

    def wrap_transport(self, node: P2P) -> None:
        """Keep the answers ``node``'s TCP transport decodes from N."""
        call: Callable[[Contact, Message, float], Awaitable[Message]] = node.transport.call

        async def recording(peer: Contact, request: Message, timeout: float) -> Message:
            answer = await call(peer, request, timeout)
            if peer.id == self.n_id:
                self.answers.append(answer)
            return answer

        node.transport.call = recording  # type: ignore[method-assign]


def nodes_in(message: Message) -> Iterator[tuple[str, Node | None]]:
    """Every ``Node`` a message carries, with where it sits."""
    yield "Sender", message.sender
    yield "Receiver", message.receiver
    data = message.data
    if isinstance(data, FindNodeResponse | FindValueResponse):
        for i, n in enumerate(data.closest):
            yield f"Closest[{i}]", n
    if isinstance(data, BatchFindNodeResponse):
        for target, nodes in (data.closest_nodes or {}).items():
            for i, n in enumerate(nodes):
                yield f"ClosestNodes[{target}][{i}]", n
    if isinstance(data, BatchGetValuesRequest | BatchGetValuesResponse):
        for key, entry in (data.data or {}).items():
            for i, n in enumerate(entry.closest):
                yield f"Data[{key}].Closest[{i}]", n


@pytest.fixture
async def three(tmp_path: Path) -> AsyncIterator[tuple[P2P, P2P, P2P, Recorded]]:
    keys = {
        name: PrivateKey(hashlib.sha256(f"version {name}".encode()).digest()) for name in VERSIONS
    }
    ports = dict(zip(VERSIONS, free_ports(len(VERSIONS)), strict=True))
    registry = StaticRegistry(
        Supernode(keys[n].address, SupernodeState.ACTIVE, HOST, ports[n], state_height=1)
        for n in VERSIONS
    )
    nodes: dict[str, P2P] = {}
    for name, version in VERSIONS.items():
        p2p = {"listen_address": HOST, "port": ports[name], "data_dir": f"data-{name}"}
        p2p |= {"allow_private_peers": True, "version": version}
        config = config_from_mapping({"key_name": name, "p2p": p2p}, tmp_path)
        nodes[name] = await P2P.create(config, registry=registry, key=keys[name])
    n, p, q = nodes["n"], nodes["p"], nodes["q"]
    recorded = Recorded(n.address.encode())
    for other in (p, q):
        recorded.wrap_server(other)
        recorded.wrap_transport(other)
    try:
        await asyncio.gather(*(node.start(bootstrap=False) for node in nodes.values()))
        # The peers speak to N first (their bootstrap), so N knows their versions.
        await p.sync_peers()
        await q.sync_peers()
        yield n, p, q, recorded
    finally:
        await asyncio.gather(*(node.stop() for node in nodes.values()), return_exceptions=True)


def request(sender: P2P, mtype: MessageType, data: object) -> Message:
    me = sender.me
    return Message(
        sender=Node(id=me.id, ip=me.ip, port=me.port, version=me.version),
        message_type=int(mtype),
        data=data,  # type: ignore[arg-type]
    )


async def test_every_node_we_send_carries_its_version(
    three: tuple[P2P, P2P, P2P, Recorded],
) -> None:
    n, p, q, recorded = three
    # N as a client: bootstrap (Ping, FindNode, BatchFindNode), store, batch store, and reads
    # of values only P holds (FindValue, BatchGetValues), then a health round (Ping).
    await n.sync_peers()
    await n.store(os.urandom(100))
    report = await n.store_batch([os.urandom(200) for _ in range(5)])
    assert report.success_rate == 1.0
    only_p = [os.urandom(300) for _ in range(3)]
    for value in only_p:
        await p.local_store(content_key(value), value)
    assert await n.retrieve(content_key(only_p[0])) == only_p[0]
    found = await n.batch_retrieve([content_key(v) for v in only_p[1:]])
    assert set(found.values()) == set(only_p[1:])
    await n.node.check_peers()

    # N as a server: P asks it every request type there is.
    held = os.urandom(64)
    await n.local_store(content_key(held), held)
    target = Contact(n.me.id, HOST, n.port, n.me.version)
    asks = [
        (MessageType.PING, None),
        (MessageType.STORE_DATA, StoreDataRequest(data=os.urandom(50))),
        (MessageType.FIND_NODE, FindNodeRequest(target=b"anything")),
        (MessageType.FIND_VALUE, FindValueRequest(target=digest(held))),
        (MessageType.FIND_VALUE, FindValueRequest(target=digest(b"nowhere"))),  # Closest
        (MessageType.REPLICATE, ReplicateDataRequest(keys=[digest(b"x").hex()])),
        (MessageType.BATCH_FIND_VALUES, BatchFindValuesRequest(keys=[digest(held).hex()])),
        (MessageType.BATCH_STORE_DATA, BatchStoreDataRequest(data=[os.urandom(40)])),
        (MessageType.BATCH_FIND_NODE, BatchFindNodeRequest(hashed_target=[bytes(32)])),
        (
            MessageType.BATCH_GET_VALUES,
            BatchGetValuesRequest(data={digest(held).hex(): KeyValWithClosest()}),
        ),
    ]
    for mtype, data in asks:
        answer = await p.transport.call(target, request(p, mtype, data), timeout=10)
        assert answer.message_type == mtype

    sent_types = {m.message_type for m in recorded.requests}
    assert sent_types >= WE_SEND, f"N never sent {WE_SEND - sent_types}"
    assert {m.message_type for m in recorded.answers} == set(MessageType)

    version_of = {
        node.address.encode(): version
        for node, version in zip((n, p, q), VERSIONS.values(), strict=True)
    }
    checked = 0
    described = 0
    for message in recorded.requests + recorded.answers:
        for where, node in nodes_in(message):
            what = f"{MessageType(message.message_type).name} {where}"
            assert node is not None, f"{what} is missing"
            assert node.version, f"{what} ({node.id!r}) carries no Version"
            assert node.version == version_of[bytes(node.id)], what
            checked += 1
            described += where.startswith(("Closest", "ClosestNodes"))
        assert message.sender is not None and message.sender.version == VERSIONS["n"]
    assert described > 0  # the Closest lists were not all empty: Q was listed to P
    assert checked >= 3 * len(recorded.requests + recorded.answers) // 2
