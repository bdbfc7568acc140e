"""The DHT operations over a simulated network: store, retrieve, batches, keys, safety."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from lumera_p2p.content import content_key, key_to_bytes
from lumera_p2p.dht import DHT, KeyDisabled, NotEnoughValues, StoreFailed
from lumera_p2p.dht.client import _chunks_by_size
from lumera_p2p.errors import InvalidContentKey, NotFound, ValueMismatch
from lumera_p2p.sim.network import SimulatedNetwork
from lumera_p2p.store.timefmt import utcnow
from lumera_p2p.wire.messages import (
    BatchGetValuesResponse,
    FindValueResponse,
    Message,
    MessageType,
)

from .conftest import in_network


def holders(sim: SimulatedNetwork, key: str) -> list[DHT]:
    raw = key_to_bytes(key)
    return [n for n in sim.nodes if raw in n.core.store.values]  # type: ignore[attr-defined]


def test_store_replicates_to_the_closest_nodes_and_any_node_retrieves() -> None:
    async def body(sim: SimulatedNetwork) -> None:
        origin, other = sim.nodes[3], sim.nodes[27]
        key = await origin.store(b"hello, lumera")
        assert key == content_key(b"hello, lumera")
        held = holders(sim, key)
        assert origin in held
        remote = [n for n in held if n is not origin]
        assert len(remote) == 6
        # The replicas are the 6 nodes nearest the key (other than the origin).
        t = int.from_bytes(key_to_bytes(key), "big")
        nearest = sorted((n for n in sim.nodes if n is not origin), key=lambda n: n.me.int_id ^ t)
        assert set(id(n) for n in remote) == set(id(n) for n in nearest[:6])
        assert await other.retrieve(key) == b"hello, lumera"

    in_network()(body)


def test_local_only_retrieve_and_misses() -> None:
    async def body(sim: SimulatedNetwork) -> None:
        a, b = sim.nodes[0], sim.nodes[1]
        key = await a.store(b"only here and replicas")
        non_holder = next(n for n in sim.nodes if n not in holders(sim, key))
        with pytest.raises(NotFound):
            await non_holder.retrieve(key, local_only=True)
        assert await non_holder.retrieve(key) == b"only here and replicas"
        assert await a.retrieve(key, local_only=True) == b"only here and replicas"
        absent = content_key(b"never stored")
        assert await b.retrieve(absent) is None  # a network miss is not an error, as in Go
        with pytest.raises(InvalidContentKey):
            await b.retrieve("not-a-key")

    in_network()(body)


def test_disable_enable_delete_local_store_and_local_keys() -> None:
    async def body(sim: SimulatedNetwork) -> None:
        node = sim.nodes[5]
        start = utcnow() - timedelta(seconds=1)
        key = await node.local_store(content_key(b"v"), b"v")
        await node.disable_key(key)
        with pytest.raises(KeyDisabled):
            await node.retrieve(key)
        await node.enable_key(key)
        assert await node.retrieve(key, local_only=True) == b"v"
        assert key in await node.get_local_keys(start, utcnow() + timedelta(seconds=1))
        assert await node.delete(key) is True
        assert await node.delete(key) is False
        with pytest.raises(ValueMismatch):
            await node.local_store(content_key(b"v"), b"not v")

    in_network(nodes=25)(body)


def test_n_closest_nodes() -> None:
    async def body(sim: SimulatedNetwork) -> None:
        node = sim.nodes[0]
        key = content_key(b"where")
        got = node.n_closest_nodes(6, key)
        t = int.from_bytes(key_to_bytes(key), "big")
        expected = sorted(node.core.table, key=lambda c: c.int_id ^ t)[:6]
        assert got == [c.address for c in expected]
        assert node.me.address not in got
        without = node.n_closest_nodes(6, key, ignores=[got[0]])
        assert got[0] not in without
        assert len(node.n_closest_nodes(3, "short-non-base58-0OIl")) == 3

    in_network(nodes=30)(body)


def test_store_batch_and_batch_retrieve() -> None:
    async def body(sim: SimulatedNetwork) -> None:
        origin, reader = sim.nodes[2], sim.nodes[33]
        values = [os.urandom(300) for _ in range(500)]
        report = await origin.store_batch(values)
        assert report.success_rate == 1.0
        keys = [content_key(v) for v in values]
        for key in keys[:20]:
            assert len(holders(sim, key)) >= 6
        found = await reader.batch_retrieve(keys)
        assert found == dict(zip(keys, values, strict=True))
        # `required` stops early: the reader already holds some as a replica, asks for the rest.
        some = await sim.nodes[34].batch_retrieve(keys, required=50)
        assert len(some) >= 50
        assert all(content_key(v) == k for k, v in some.items())

    in_network()(body)


def test_batch_retrieve_local_only_shortfall() -> None:
    async def body(sim: SimulatedNetwork) -> None:
        node = sim.nodes[1]
        key = await node.local_store(content_key(b"x"), b"x")
        with pytest.raises(NotEnoughValues) as info:
            await node.batch_retrieve([key, content_key(b"absent")], local_only=True)
        assert info.value.found == {key: b"x"}

    in_network(nodes=25)(body)


def test_batch_retrieve_stream_redelivers_refused_values() -> None:
    async def body(sim: SimulatedNetwork) -> None:
        values = [os.urandom(100) for _ in range(40)]
        await sim.nodes[0].store_batch(values)
        keys = [content_key(v) for v in values]
        refused_once: set[str] = set()
        got: dict[str, bytes] = {}

        async def on_value(key: str, value: bytes) -> None:
            if key == keys[0] and key not in refused_once:
                refused_once.add(key)
                raise RuntimeError("disk hiccup")
            got[key] = value

        reader = next(n for n in sim.nodes if key_to_bytes(keys[0]) not in n.core.store.values)  # type: ignore[attr-defined]
        count = await reader.batch_retrieve_stream(keys, len(keys), "tx-1", on_value)
        assert count == len(keys)
        assert got == dict(zip(keys, values, strict=True))
        assert keys[0] in refused_once

    in_network(nodes=30)(body)


def test_store_batch_without_peers_fails_loudly() -> None:
    async def body(sim: SimulatedNetwork) -> None:
        lonely = sim.nodes[0]
        for contact in list(lonely.core.table):
            lonely.core.table.remove(contact.hashed_id)
        with pytest.raises(StoreFailed, match="no store-eligible peers"):
            await lonely.store_batch([b"a", b"b"])
        # ...but the values are committed locally.
        assert await lonely.retrieve(content_key(b"a"), local_only=True) == b"a"

    in_network(nodes=25)(body)


def _poison(sim: SimulatedNetwork, bad: DHT) -> None:
    """Make ``bad`` answer every value request with a value that does not match the key."""
    honest = sim.network.handlers[bad.me.id]

    async def handler(request: Message, peer: bytes) -> Message:
        response = await honest(request, peer)
        data = response.data
        if request.message_type == MessageType.FIND_VALUE and isinstance(data, FindValueResponse):
            data.value = b"forged value"
            data.status.result = 0
        if request.message_type == MessageType.BATCH_GET_VALUES and isinstance(
            data, BatchGetValuesResponse
        ):
            for entry in (data.data or {}).values():
                entry.value = b"forged value"
        return response

    sim.network.handlers[bad.me.id] = handler


def test_poisoned_value_never_reaches_the_caller_and_sender_is_banned() -> None:
    async def body(sim: SimulatedNetwork) -> None:
        key = await sim.nodes[0].store(b"the real value")
        raw = key_to_bytes(key)
        t = int.from_bytes(raw, "big")
        reader = sim.nodes[-1]
        # Poison every node nearer the key than the honest replicas, reader excluded.
        liars = sorted(
            (n for n in sim.nodes if n is not reader and n is not sim.nodes[0]),
            key=lambda n: n.me.int_id ^ t,
        )[:3]
        for liar in liars:
            _poison(sim, liar)
            liar.core.store.values[raw] = b"whatever"  # type: ignore[attr-defined]
        got = await reader.retrieve(key)
        assert got == b"the real value"
        assert reader.core.counters.poisoned_values >= 1
        banned = reader.core.banned_set()
        assert any(liar.me.hashed_id in banned for liar in liars)
        # Batch path: values from liars are dropped, honest replicas supply the key.
        found = await sim.nodes[-2].batch_retrieve([key])
        assert found == {key: b"the real value"}

    in_network()(body)


def test_chunks_by_size() -> None:
    values = [b"a" * 40, b"b" * 40, b"c" * 40, b"d" * 200, b"e" * 10]
    assert _chunks_by_size(values, 100) == [values[0:2], values[2:3], values[3:4], values[4:5]]
    assert _chunks_by_size([], 100) == []
    assert [v for chunk in _chunks_by_size(values, 10**6) for v in chunk] == values


def test_large_batch_is_split_into_several_requests() -> None:
    async def body(sim: SimulatedNetwork) -> None:
        values = [os.urandom(1000) for _ in range(60)]
        sim.nodes[0].core.options.batch_store_bytes = 5000
        report = await sim.nodes[0].store_batch(values)
        nodes_used = len(report.per_node)
        assert report.requests > nodes_used  # several requests per node
        assert report.success_rate == 1.0
        found = await sim.nodes[1].batch_retrieve([content_key(v) for v in values])
        assert len(found) == 60

    in_network(nodes=25)(body)
