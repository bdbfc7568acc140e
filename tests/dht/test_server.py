"""The RPC handlers called directly: protocol errors, refusals, and Go-compatible answers."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from typing import cast

import base58
import pytest
import zstandard

from lumera_p2p.content import digest
from lumera_p2p.dht import DHTOptions, MemoryStore, Node, ServingLimits
from lumera_p2p.errors import ProtocolError, TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.kademlia.node import hash_id
from lumera_p2p.wire.messages import (
    BatchFindNodeRequest,
    BatchFindValuesRequest,
    BatchGetValuesRequest,
    BatchStoreDataRequest,
    FindNodeRequest,
    FindValueRequest,
    KeyValWithClosest,
    Message,
    MessageType,
    ReplicateDataRequest,
    StoreDataRequest,
)
from lumera_p2p.wire.messages import Node as WireNode


class NoTransport:
    async def call(
        self, peer: Contact, request: Message, timeout: float, *, on_answer: object = None
    ) -> Message:
        raise TransportError("offline")


def make_node(peers: int = 30, options: DHTOptions | None = None) -> Node:
    me = Contact(b"lumera1server", "10.0.0.1", 4445)
    node = Node(me, MemoryStore(), NoTransport(), options=options or DHTOptions(allow_private=True))
    for i in range(peers):
        node.learn(Contact(b"peer-%d" % i, f"10.0.1.{i}", 4445), now=0.0)
    assert node.peer_count == peers
    return node


def store_of(node: Node) -> MemoryStore:
    return cast(MemoryStore, node.values)


CLIENT = WireNode(id=b"lumera1client", ip="10.0.9.9", port=4445)


def req(mtype: MessageType, data: object, sender: WireNode | None = CLIENT) -> Message:
    return Message(sender=sender, receiver=None, message_type=int(mtype), data=data)  # type: ignore[arg-type]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_sender_must_be_the_authenticated_peer() -> None:
    node = make_node()
    with pytest.raises(ProtocolError, match="not the authenticated peer"):
        run(node.handle(req(MessageType.PING, None), b"lumera1someoneelse"))
    with pytest.raises(ProtocolError, match="without a sender"):
        run(node.handle(req(MessageType.PING, None, sender=None), b"lumera1client"))


def test_unknown_type_and_wrong_body_are_protocol_errors() -> None:
    node = make_node()
    with pytest.raises(ProtocolError, match="unknown message type"):
        run(node.handle(req(9, None), CLIENT.id))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="expected FindNodeRequest"):
        run(node.handle(req(MessageType.FIND_NODE, StoreDataRequest(data=b"x")), CLIENT.id))


def test_ping_echoes_type_and_learns_the_sender() -> None:
    node = make_node()
    response = run(node.handle(req(MessageType.PING, None), CLIENT.id))
    assert isinstance(response, Message)
    assert response.message_type == MessageType.PING
    assert response.sender is not None and response.sender.id == b"lumera1server"
    assert response.sender.hashed_id == hash_id(b"lumera1server")
    assert node.knows(hash_id(CLIENT.id))


def test_find_node_returns_k_closest_with_hashed_ids() -> None:
    node = make_node()
    # A node ID (not 32 bytes) is hashed; a 32-byte target is used as it is.
    for target, point in ((b"lumera1target", hash_id(b"lumera1target")), (bytes(32), bytes(32))):
        response = run(
            node.handle(req(MessageType.FIND_NODE, FindNodeRequest(target=target)), CLIENT.id)
        )
        closest = response.data.closest  # type: ignore[union-attr]
        t = int.from_bytes(point, "big")
        expected = sorted(
            (c for c in node.contacts() if c.id != CLIENT.id), key=lambda c: c.int_id ^ t
        )[:20]
        assert [n.id for n in closest] == [c.id for c in expected]
        assert all(n.hashed_id == hash_id(n.id) for n in closest)


def test_find_value_found_and_missing() -> None:
    node = make_node()
    key = digest(b"value")
    run(node.values.store_batch([b"value"]))
    hit = run(node.handle(req(MessageType.FIND_VALUE, FindValueRequest(target=key)), CLIENT.id))
    assert hit.data.value == b"value"  # type: ignore[union-attr]
    assert hit.data.status.result == 0  # type: ignore[union-attr]
    miss = run(
        node.handle(req(MessageType.FIND_VALUE, FindValueRequest(target=digest(b"no"))), CLIENT.id)
    )
    assert miss.data.status.result == 1  # type: ignore[union-attr]
    assert len(miss.data.closest) == 20  # type: ignore[union-attr]
    bad = run(
        node.handle(req(MessageType.FIND_VALUE, FindValueRequest(target=b"short")), CLIENT.id)
    )
    assert bad.data.status.result == 1  # type: ignore[union-attr]


def test_store_data_commits_and_respects_self_eligibility() -> None:
    node = make_node()
    ok = run(
        node.handle(req(MessageType.STORE_DATA, StoreDataRequest(data=b"a", type=1)), CLIENT.id)
    )
    assert ok.data.status.result == 0  # type: ignore[union-attr]
    assert store_of(node).values[digest(b"a")] == b"a"
    everyone = [c.hashed_id for c in node.contacts()] + [hash_id(CLIENT.id)]
    assert node.apply_allowlist(everyone, everyone, self_store_eligible=False)
    assert not node.self_store_eligible
    refused = run(node.handle(req(MessageType.STORE_DATA, StoreDataRequest(data=b"b")), CLIENT.id))
    assert refused.data.status.err_msg == "store rejected: self not store-eligible"  # type: ignore[union-attr]
    held = run(node.handle(req(MessageType.STORE_DATA, StoreDataRequest(data=b"a")), CLIENT.id))
    assert held.data.status.result == 0  # type: ignore[union-attr]
    batch = run(
        node.handle(
            req(MessageType.BATCH_STORE_DATA, BatchStoreDataRequest(data=[b"a", b"new"])),
            CLIENT.id,
        )
    )
    assert "self not store-eligible" in batch.data.status.err_msg  # type: ignore[union-attr]


def test_batch_store_and_batch_get_values() -> None:
    node = make_node()
    values = [b"v%d" % i for i in range(10)]
    stored = run(
        node.handle(
            req(MessageType.BATCH_STORE_DATA, BatchStoreDataRequest(data=values)), CLIENT.id
        )
    )
    assert stored.message_type == MessageType.BATCH_STORE_DATA
    assert stored.data.status.result == 0  # type: ignore[union-attr]
    asked = {digest(v).hex(): KeyValWithClosest() for v in values[:3]}
    asked[digest(b"missing").hex()] = KeyValWithClosest()
    got = run(
        node.handle(req(MessageType.BATCH_GET_VALUES, BatchGetValuesRequest(data=asked)), CLIENT.id)
    )
    data = got.data.data  # type: ignore[union-attr]
    assert set(data) == set(asked)
    assert data[digest(b"v1").hex()].value == b"v1"
    assert data[digest(b"missing").hex()].value == b""
    malformed = run(
        node.handle(
            req(
                MessageType.BATCH_GET_VALUES,
                BatchGetValuesRequest(data={"zz": KeyValWithClosest()}),
            ),
            CLIENT.id,
        )
    )
    assert malformed.data.status.result == 1  # type: ignore[union-attr]


def test_batch_find_values_is_zstd_json_base64() -> None:
    node = make_node()
    run(node.values.store_batch([b"one", b"two"]))
    keys = [digest(b"one").hex(), digest(b"two").hex(), digest(b"three").hex()]
    response = run(
        node.handle(
            req(MessageType.BATCH_FIND_VALUES, BatchFindValuesRequest(keys=keys)), CLIENT.id
        )
    )
    body = response.data
    assert body.done is True  # type: ignore[union-attr]
    doc = json.loads(zstandard.ZstdDecompressor().decompress(body.response))  # type: ignore[union-attr]
    assert base64.b64decode(doc[keys[0]]) == b"one"
    assert doc[keys[2]] is None


def test_batch_find_node_keys_are_base58_of_targets() -> None:
    node = make_node()
    targets = [bytes(32), b"lumera1x"]
    response = run(
        node.handle(
            req(MessageType.BATCH_FIND_NODE, BatchFindNodeRequest(hashed_target=targets)), CLIENT.id
        )
    )
    closest = response.data.closest_nodes  # type: ignore[union-attr]
    assert set(closest) == {
        base58.b58encode(bytes(32)).decode(),
        base58.b58encode(hash_id(b"lumera1x")).decode(),
    }


def test_replicate_records_missing_keys_with_the_announcer() -> None:
    node = make_node()
    heard: list[tuple[bytes, int]] = []
    node.watch_announcements(lambda peer, count: heard.append((peer.id, count)))
    run(node.values.store_batch([b"have"]))
    keys = [digest(b"have").hex(), digest(b"want").hex()]
    response = run(
        node.handle(req(MessageType.REPLICATE, ReplicateDataRequest(keys=keys)), CLIENT.id)
    )
    assert response.data.status.result == 0  # type: ignore[union-attr]
    pending = store_of(node).replication_rows
    assert list(pending) == [digest(b"want")]
    assert pending[digest(b"want")].id == "lumera1client"
    # The fetch workers are woken with the count of keys to fetch (the held one is not).
    assert heard == [(b"lumera1client", 1)]
    bad = run(
        node.handle(req(MessageType.REPLICATE, ReplicateDataRequest(keys=["xyz"])), CLIENT.id)
    )
    assert bad.data.status.result == 1  # type: ignore[union-attr]


def test_returned_nodes_never_include_unusable_peer_supplied_contacts() -> None:
    node = make_node(peers=0)
    rng = random.Random(1)
    forged = [
        WireNode(id=b"a", ip="0.0.0.0", port=1),
        WireNode(id=b"b", ip="", port=1),
        WireNode(id=b"c", ip="10.0.0.5", port=0),
        WireNode(id=b"lumera1server", ip="10.0.0.7", port=9),  # ourselves
        WireNode(id=b"d", ip="10.0.0.8", port=7, hashed_id=rng.randbytes(32)),  # forged HashedID
    ]
    contacts = node.contacts_from_wire(forged)
    assert [c.id for c in contacts] == [b"d"]
    assert contacts[0].hashed_id == hash_id(b"d")


def test_batch_get_values_answer_is_capped() -> None:
    capped = ServingLimits(max_response_value_bytes=25)
    node = make_node(options=DHTOptions(allow_private=True, serving=capped))
    values = [b"0123456789" for _ in range(1)] + [b"abcdefghij", b"ABCDEFGHIJ", b"klmnopqrst"]
    run(node.values.store_batch(values))
    asked = {digest(v).hex(): KeyValWithClosest() for v in values}
    got = run(
        node.handle(req(MessageType.BATCH_GET_VALUES, BatchGetValuesRequest(data=asked)), CLIENT.id)
    )
    filled = [e.value for e in got.data.data.values() if e.value]  # type: ignore[union-attr]
    assert len(filled) == 2  # 10 + 10 bytes fit in 25; the rest is left out
