"""Real nodes on 127.0.0.1: bootstrap through a static registry, store and retrieve, admission,
and abuse. Every node runs the full stack: secure channel, gob frames, SQLite."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from lumera_p2p.chain.registry import SupernodeState
from lumera_p2p.config import load_config
from lumera_p2p.content import content_key, key_to_bytes
from lumera_p2p.dht import DHTOptions, MemoryStore, Node
from lumera_p2p.errors import NotFound
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.kademlia import Contact
from lumera_p2p.localnet import create_localnet, free_ports, load_configs, start_nodes
from lumera_p2p.net.tcp import TcpTransport
from lumera_p2p.secure import StaticPeerVerifier
from lumera_p2p.service import P2P
from lumera_p2p.wire.messages import Node as WireNode
from tests.support import eventually, full_tables, peer_closed

# One event loop for the module, so the sixteen-node network is started once and shared.
pytestmark = [pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sixteen(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[P2P]]:
    """Sixteen nodes, shared by the tests that only store, read and abuse (each with keys of
    its own): starting them is most of the cost of a test."""
    local = create_localnet(tmp_path_factory.mktemp("sixteen"), 16)
    nodes = await start_nodes(load_configs(local))
    try:
        await full_tables(nodes, timeout=180.0)
        yield nodes
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


async def test_sixteen_nodes_fill_their_tables_and_share_values(sixteen: list[P2P]) -> None:
    nodes = sixteen
    await full_tables(nodes, timeout=180.0)
    for node in nodes:
        assert node.node.peer_count == 15, node.address
        assert node.me not in node.node.contacts()
    key = await nodes[0].store(b"Hello, world!")
    assert key == content_key(b"Hello, world!")
    for node in nodes[1:]:
        assert await node.retrieve(key) == b"Hello, world!"

    values = [os.urandom(1000 + i) for i in range(500)]
    report = await nodes[3].store_batch(values)
    assert report.success_rate == 1.0
    keys = [content_key(v) for v in values]
    expected = dict(zip(keys, values, strict=True))
    for node in nodes[::3]:
        assert await node.batch_retrieve(keys) == expected

    # The stream hands values one by one; one that on_value refuses (raises) is not counted
    # and comes again from another provider.
    got: dict[str, bytes] = {}
    refused: list[str] = []

    async def on_value(k: str, v: bytes) -> None:
        if k == keys[0] and not refused:
            refused.append(k)
            raise OSError("disk hiccup")
        got[k] = v

    holds_first = [await n.db.retrieve(key_to_bytes(keys[0])) is not None for n in nodes]
    reader = nodes[holds_first.index(False)]
    count = await reader.batch_retrieve_stream(keys[:50], 50, "tx-9", on_value)
    assert count == 50
    assert got == {k: expected[k] for k in keys[:50]}
    assert refused == [keys[0]]

    # n_closest_nodes: the routing table by distance, never ourselves, minus what it ignores;
    # a key that is not base58 of 32 bytes is hashed.
    t = int.from_bytes(key_to_bytes(key), "big")
    truth = sorted(nodes[0].node.contacts(), key=lambda c: c.int_id ^ t)
    near = nodes[0].n_closest_nodes(6, key)
    assert near == [c.address for c in truth[:6]]
    assert nodes[0].address not in near
    without = nodes[0].n_closest_nodes(6, key, ignores=[near[0]])
    assert near[0] not in without
    assert without[:5] == near[1:]
    assert len(nodes[0].n_closest_nodes(3, "short-non-base58-0OIl")) == 3

    # stats(): the node's and its server's, transport's and pool's counters, as snapshots.
    stats = await nodes[3].stats()
    assert stats.address == nodes[3].address and stats.peers == 15
    assert stats.dht.batch_stores == 1 and stats.dht.rpc_sent_by_type["BATCH_STORE_DATA"] >= 1
    assert stats.dht.rpc_sent == sum(stats.dht.rpc_sent_by_type.values())
    assert stats.store.records >= 500 and stats.records == stats.store.records
    assert stats.server.sessions >= 1 and stats.server.requests >= 1
    assert stats.transport.calls >= stats.dht.rpc_sent - stats.dht.rpc_failed
    assert stats.pool.adds >= 1 and stats.pool.capacity == 256
    assert stats.pool.open <= stats.pool.capacity
    before = stats.dht.rpc_sent
    await nodes[3].store(b"one more")
    assert stats.dht.rpc_sent == before  # a snapshot does not move
    assert (await nodes[3].stats()).dht.rpc_sent > before


async def test_local_only_semantics(sixteen: list[P2P]) -> None:
    nodes = sixteen
    await full_tables(nodes, timeout=180.0)
    key = await nodes[0].store(b"replicated to six")
    holders = [n for n in nodes if await n.db.retrieve(key_to_bytes(key))]
    assert nodes[0] in holders
    # The origin and six replicas that acknowledged. Not exactly 7: under load a StoreData
    # that timed out may still have been committed by its node, and counts here too (the
    # exact set is asserted on the virtual clock, in tests/dht/test_operations.py).
    assert len(holders) >= 7
    outsider = next(n for n in nodes if n not in holders)
    with pytest.raises(NotFound):
        await outsider.retrieve(key, local_only=True)
    assert await outsider.retrieve(key) == b"replicated to six"
    assert await holders[1].retrieve(key, local_only=True) == b"replicated to six"


async def test_unregistered_node_cannot_connect_or_be_routed_to(tmp_path: Path) -> None:
    local = create_localnet(tmp_path / "net", 4)
    nodes = await start_nodes(load_configs(local))
    try:
        stranger_key = PrivateKey.generate()[0]
        target = nodes[0]
        # Its handshake is refused: the registry does not list it.
        transport = TcpTransport(stranger_key, StaticPeerVerifier([target.address]))
        stranger = Contact(stranger_key.address.encode(), "127.0.0.1", free_ports(1)[0])
        rogue = Node(stranger, MemoryStore(), transport, options=DHTOptions(allow_private=True))
        assert not await rogue.ping(Contact(target.address.encode(), target.me.ip, target.port))
        await transport.close()
        # And a registered node never routes to it even if told about it.
        learned = target.node.contacts_from_wire(
            [WireNode(id=stranger.id, ip="127.0.0.1", port=stranger.port)]
        )
        assert learned == []
        assert not target.node.knows(stranger.hashed_id)
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


async def test_not_store_eligible_node_is_never_sent_a_store(tmp_path: Path) -> None:
    local = create_localnet(tmp_path, 8)
    registry_path = tmp_path / "registry.yml"
    doc = yaml.safe_load(registry_path.read_text())
    entries = doc["supernodes"] if isinstance(doc, dict) else doc
    postponed = local[5].address
    for entry in entries:
        if entry["address"] == postponed:
            entry["state"] = SupernodeState.POSTPONED.name
    registry_path.write_text(yaml.safe_dump(doc))
    nodes = await start_nodes(load_configs(local))
    try:
        lazy = next(n for n in nodes if n.address == postponed)
        await eventually(lambda: lazy.node.peer_count > 0, what="the POSTPONED node routing")
        values = [os.urandom(200) for _ in range(300)]
        await nodes[0].store_batch(values)
        for i in range(10):
            await nodes[i % 4].store(b"single %d" % i)
        assert await lazy.db.count() == 0
        assert lazy.node.snapshot_counters().values_stored_remote == 0
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


async def test_abuse_does_not_stop_serving(sixteen: list[P2P]) -> None:
    nodes = sixteen
    victim = nodes[0]
    key = await nodes[1].store(b"still here")

    async def junk() -> None:
        r, w = await asyncio.open_connection(victim.me.ip, victim.port)
        w.write(os.urandom(4096))
        await w.drain()
        assert await peer_closed(r, 60.0)  # the victim hangs up on garbage
        w.close()

    async def half_open() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(victim.me.ip, victim.port)

    async def slow_sender(stop: asyncio.Event) -> None:
        _, w = await asyncio.open_connection(victim.me.ip, victim.port)
        try:
            while not stop.is_set():
                w.write(b"\x00")
                await w.drain()
                await asyncio.sleep(0.2)  # the abuser's pace: a byte every 0.2 s
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    stop = asyncio.Event()
    trickle = asyncio.create_task(slow_sender(stop))
    idle = [await half_open() for _ in range(20)]
    await asyncio.gather(*(junk() for _ in range(10)))
    try:
        for node in nodes[2:8]:
            assert await victim.node.ping(node.me)
        assert await nodes[5].retrieve(key) == b"still here"
        assert await victim.retrieve(key) == b"still here"
        assert victim.node.snapshot_counters().requests_handled > 0
    finally:
        stop.set()
        await trickle
        for _, w in idle:
            w.close()


async def test_graceful_stop_keeps_acknowledged_writes(tmp_path: Path) -> None:
    local = create_localnet(tmp_path, 3)
    configs = load_configs(local)
    nodes = await start_nodes(configs)
    keys = [await nodes[0].store(b"durable %d" % i) for i in range(20)]
    await asyncio.gather(*(n.stop() for n in nodes))
    again = await P2P.create(load_config(local[0].config_path))
    try:
        await again.start()  # its peers are gone: the peer sync finds nobody, and says so
        for i, key in enumerate(keys):
            assert await again.retrieve(key, local_only=True) == b"durable %d" % i
    finally:
        await again.stop()
