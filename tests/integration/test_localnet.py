"""Real nodes on 127.0.0.1: bootstrap through a static registry, store and retrieve, admission,
and abuse. Every node runs the full stack: secure channel, gob frames, SQLite."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from lumera_p2p.chain.registry import SupernodeState
from lumera_p2p.config import load_config
from lumera_p2p.content import content_key, key_to_bytes
from lumera_p2p.dht import DHT, DHTOptions, MemoryStore
from lumera_p2p.errors import NotFound
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.kademlia import Contact
from lumera_p2p.localnet import create_localnet, free_ports, load_configs, start_nodes
from lumera_p2p.net.tcp import TcpTransport
from lumera_p2p.secure import StaticPeerVerifier
from lumera_p2p.service import P2P
from lumera_p2p.wire.messages import Node

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
async def sixteen(tmp_path: Path) -> AsyncIterator[list[P2P]]:
    local = create_localnet(tmp_path, 16)
    nodes = await start_nodes(load_configs(local))
    try:
        yield nodes
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


async def test_sixteen_nodes_fill_their_tables_and_share_values(sixteen: list[P2P]) -> None:
    nodes = sixteen
    for node in nodes:
        assert len(node.dht.core.table) == 15, node.address
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


async def test_local_only_semantics(sixteen: list[P2P]) -> None:
    nodes = sixteen
    key = await nodes[0].store(b"replicated to six")
    holders = [n for n in nodes if await n.db.retrieve(key_to_bytes(key))]
    assert nodes[0] in holders
    assert len(holders) == 7  # the origin and six replicas
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
        rogue = DHT(stranger, MemoryStore(), transport, options=DHTOptions(allow_private=True))
        assert not await rogue.ping(Contact(target.address.encode(), "127.0.0.1", target.port))
        await transport.close()
        # And a registered node never routes to it even if told about it.
        learned = target.dht.core.contacts_from_wire(
            [Node(id=stranger.id, ip="127.0.0.1", port=stranger.port)]
        )
        assert learned == []
        assert stranger.hashed_id not in target.dht.core.table
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
        assert len(lazy.dht.core.table) > 0  # it is routing-eligible
        values = [os.urandom(200) for _ in range(300)]
        await nodes[0].store_batch(values)
        for i in range(10):
            await nodes[i % 4].store(b"single %d" % i)
        assert await lazy.db.count() == 0
        assert lazy.dht.core.counters.values_stored_remote == 0
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


async def test_abuse_does_not_stop_serving(sixteen: list[P2P]) -> None:
    nodes = sixteen
    victim = nodes[0]
    key = await nodes[1].store(b"still here")

    async def junk() -> None:
        _, w = await asyncio.open_connection("127.0.0.1", victim.port)
        w.write(os.urandom(4096))
        await w.drain()
        await asyncio.sleep(0.5)
        w.close()

    async def half_open() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", victim.port)

    async def slow_sender(stop: asyncio.Event) -> None:
        _, w = await asyncio.open_connection("127.0.0.1", victim.port)
        try:
            while not stop.is_set():
                w.write(b"\x00")
                await w.drain()
                await asyncio.sleep(0.2)
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
            assert await victim.dht.ping(node.me)
        assert await nodes[5].retrieve(key) == b"still here"
        assert await victim.retrieve(key) == b"still here"
        assert victim.dht.core.counters.requests_handled > 0
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
        for i, key in enumerate(keys):
            assert await again.dht.retrieve(key, local_only=True) == b"durable %d" % i
    finally:
        await again.stop()
