"""The node's operations over a simulated network: store, retrieve, batches, safety.

These run the real plans and driver on the virtual-time loop; the public base58 API on top
(``P2P``) is tested against real nodes in ``tests/integration``.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from lumera_p2p.content import content_key, digest, key_from_bytes
from lumera_p2p.dht import DHTOptions, MemoryStore, Node
from lumera_p2p.dht.node import COMMIT_FIRST
from lumera_p2p.errors import KeyDisabled, NotFound, StoreFailed, TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.net.virtual_time import run_virtual
from lumera_p2p.sim.network import SimulatedNetwork
from lumera_p2p.wire.messages import (
    BatchGetValuesResponse,
    FindValueResponse,
    Message,
    MessageType,
)

from .conftest import Runner, collect, in_network


def holders(sim: SimulatedNetwork, key: bytes) -> list[Node]:
    return [n for n, store in zip(sim.nodes, sim.stores, strict=True) if key in store.values]


def test_store_replicates_to_the_closest_nodes_and_any_node_retrieves(
    shared_network: Runner,
) -> None:
    async def body(sim: SimulatedNetwork) -> None:
        origin, other = sim.nodes[3], sim.nodes[27]
        outcome = await origin.store(b"hello, lumera")
        key = outcome.key
        assert key_from_bytes(key) == content_key(b"hello, lumera")
        assert outcome.replicas == 6
        held = holders(sim, key)
        assert origin in held
        remote = [n for n in held if n is not origin]
        assert len(remote) == 6
        # The replicas are the 6 nodes nearest the key (other than the origin).
        t = int.from_bytes(key, "big")
        nearest = sorted((n for n in sim.nodes if n is not origin), key=lambda n: n.me.int_id ^ t)
        assert set(id(n) for n in remote) == set(id(n) for n in nearest[:6])
        assert {c.hashed_id for c in outcome.stored_on} == {n.me.hashed_id for n in remote}
        assert await other.retrieve(key) == b"hello, lumera"

    shared_network(body)


def test_local_only_retrieve_and_misses(shared_network: Runner) -> None:
    async def body(sim: SimulatedNetwork) -> None:
        a, b = sim.nodes[0], sim.nodes[1]
        key = (await a.store(b"only here and replicas")).key
        non_holder = next(n for n in sim.nodes if n not in holders(sim, key))
        with pytest.raises(NotFound):
            await non_holder.retrieve(key, local_only=True)
        assert await non_holder.retrieve(key) == b"only here and replicas"
        assert await a.retrieve(key, local_only=True) == b"only here and replicas"
        absent = digest(b"never stored")
        assert await b.retrieve(absent) is None  # a network miss is not an error, as in Go

    shared_network(body)


def test_disabled_key_is_refused_for_single_retrieval_only(shared_network: Runner) -> None:
    async def body(sim: SimulatedNetwork) -> None:
        node = sim.nodes[5]
        key = (await node.store(b"v")).key
        await node.values.disable_key(key)
        with pytest.raises(KeyDisabled, match=content_key(b"v")):
            await node.retrieve(key)
        # Go disables single-key retrieval only: a batch still returns it.
        assert await collect(node, [key], local_only=True) == {key: b"v"}
        await node.values.enable_key(key)
        assert await node.retrieve(key, local_only=True) == b"v"

    shared_network(body)


def test_closest_is_the_routing_table_by_distance(shared_network: Runner) -> None:
    async def body(sim: SimulatedNetwork) -> None:
        node = sim.nodes[0]
        key = digest(b"where")
        got = node.closest(key, 6)
        t = int.from_bytes(key, "big")
        assert got == sorted(node.contacts(), key=lambda c: c.int_id ^ t)[:6]
        assert node.me not in got
        without = node.closest(key, 6, [got[0].hashed_id])
        assert got[0] not in without
        assert without[:5] == got[1:]

    shared_network(body)


def test_store_batch_and_batch_retrieve(shared_network: Runner) -> None:
    async def body(sim: SimulatedNetwork) -> None:
        origin, reader = sim.nodes[2], sim.nodes[33]
        values = [os.urandom(300) for _ in range(500)]
        report = await origin.store_batch(values, task_id="task-7")
        assert report.success_rate == 1.0
        assert report.task_id == "task-7"
        keys = [digest(v) for v in values]
        assert report.keys == keys
        for key in keys[:20]:
            assert len(holders(sim, key)) >= 6
        found = await collect(reader, keys)
        assert found == dict(zip(keys, values, strict=True))
        # `required` stops early: the reader already holds some as a replica, asks for the rest.
        some = await collect(sim.nodes[34], keys, required=50)
        assert len(some) >= 50
        assert all(digest(v) == k for k, v in some.items())

    shared_network(body)


def test_batch_retrieve_local_only_shortfall(shared_network: Runner) -> None:
    async def body(sim: SimulatedNetwork) -> None:
        node = sim.nodes[1]
        key = (await node.store(b"x")).key
        found = await collect(node, [key, digest(b"absent")], 2, local_only=True)
        assert found == {key: b"x"}

    shared_network(body)


def test_batch_retrieve_stream_redelivers_refused_values(shared_network: Runner) -> None:
    async def body(sim: SimulatedNetwork) -> None:
        values = [os.urandom(100) for _ in range(40)]
        await sim.nodes[0].store_batch(values)
        keys = [digest(v) for v in values]
        refused_once: set[bytes] = set()
        got: dict[bytes, bytes] = {}

        async def on_value(key: bytes, value: bytes) -> bool:
            if key == keys[0] and key not in refused_once:
                refused_once.add(key)
                return False  # disk hiccup: refuse it this time
            got[key] = value
            return True

        reader = next(n for n in sim.nodes if n not in holders(sim, keys[0]))
        count = await reader.batch_retrieve_stream(keys, len(keys), "tx-1", on_value)
        assert count == len(keys)
        assert got == dict(zip(keys, values, strict=True))
        assert keys[0] in refused_once

    shared_network(body)


class Offline:
    async def call(
        self, peer: Contact, request: Message, timeout: float, *, on_answer: object = None
    ) -> Message:
        raise TransportError("offline")


def test_store_batch_without_peers_fails_loudly() -> None:
    async def main() -> None:
        store = MemoryStore()
        lonely = Node(Contact(b"lonely", "10.0.0.1", 4445), store, Offline())
        with pytest.raises(StoreFailed, match="no store-eligible peers"):
            await lonely.store_batch([b"a", b"b"], task_id="t-1")
        # ...but the values are committed locally.
        assert await lonely.retrieve(digest(b"a"), local_only=True) == b"a"
        assert store.values[digest(b"b")] == b"b"

    run_virtual(main())


def _poison(sim: SimulatedNetwork, bad: Node) -> None:
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
        key = (await sim.nodes[0].store(b"the real value")).key
        t = int.from_bytes(key, "big")
        reader = sim.nodes[-1]
        # Poison every node nearer the key than the honest replicas, reader excluded.
        liars = sorted(
            (n for n in sim.nodes if n is not reader and n is not sim.nodes[0]),
            key=lambda n: n.me.int_id ^ t,
        )[:3]
        for liar in liars:
            _poison(sim, liar)
            sim.store_of(liar).values[key] = b"whatever"
        got = await reader.retrieve(key)
        assert got == b"the real value"
        assert reader.snapshot_counters().poisoned_values >= 1
        assert any(reader.is_banned(liar.me.hashed_id) for liar in liars)
        assert not any(
            reader.knows(liar.me.hashed_id) for liar in liars if reader.is_banned(liar.me.hashed_id)
        )
        # Batch path: values from liars are dropped, honest replicas supply the key.
        batch_reader = sim.nodes[-2]
        found = await collect(batch_reader, [key])
        assert found == {key: b"the real value"}

    in_network(nodes=40)(body)


def test_large_batch_is_split_into_several_requests() -> None:
    async def body(sim: SimulatedNetwork) -> None:
        values = [os.urandom(1000) for _ in range(60)]
        assert sim.nodes[0].options.batch_store_bytes == 5000
        report = await sim.nodes[0].store_batch(values)
        nodes_used = len(report.per_node)
        assert report.requests > nodes_used  # several requests per node
        assert report.success_rate == 1.0
        found = await collect(sim.nodes[1], [digest(v) for v in values])
        assert len(found) == 60

    small = DHTOptions(allow_private=True, batch_store_bytes=5000)
    in_network(nodes=25, node_options={0: small})(body)


def test_store_commits_locally_while_the_replicas_store_and_fails_with_the_commit() -> None:
    async def body(sim: SimulatedNetwork) -> None:
        origin, store = sim.nodes[2], sim.stores[2]
        held_when_committed: list[int] = []
        key = digest(b"slow disk")

        async def slow_commit(items: object, **_: object) -> list[bytes]:
            await asyncio.sleep(30.0)  # virtual: far longer than the lookup and the wave
            held_when_committed.append(len(holders(sim, key)))
            raise OSError("disk full")

        store.store_batch = slow_commit  # type: ignore[method-assign]
        with pytest.raises(OSError, match="disk full"):
            await origin.store(b"slow disk")
        # The replicas stored it while the commit ran, and the failed commit was not hidden.
        assert held_when_committed == [6]
        assert key not in store.values

    in_network(nodes=20, seed=11)(body)


def test_a_large_value_is_committed_locally_before_it_is_sent() -> None:
    # Not while: SQLite's two copies during the insert plus every replica's send buffers
    # would pass three copies of the value on the origin.
    async def body(sim: SimulatedNetwork) -> None:
        origin, store = sim.nodes[2], sim.stores[2]
        value = os.urandom(COMMIT_FIRST)
        key = digest(value)
        held_when_committed: list[int] = []
        commit = store.store_batch

        async def slow_commit(items: list[bytes], **kwargs: bool | int) -> list[bytes]:
            await asyncio.sleep(30.0)  # virtual: far longer than the lookup and the wave
            held_when_committed.append(len(holders(sim, key)))
            return await commit(items, **kwargs)  # type: ignore[arg-type]

        store.store_batch = slow_commit  # type: ignore[method-assign]
        outcome = await origin.store(value)
        assert held_when_committed == [0]  # nobody had it before the commit ended
        assert outcome.replicas == 6
        assert len(holders(sim, key)) == 7

    in_network(nodes=20, seed=11)(body)
