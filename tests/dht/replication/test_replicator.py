"""The replication rounds of ``Replicator`` on a small simulated network (real node code, the
in-memory transport, the virtual clock), one round at a time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta

from lumera_p2p.content import digest
from lumera_p2p.dht.replication import ReplicationOptions, Replicator
from lumera_p2p.net.virtual_time import run_virtual
from lumera_p2p.sim.network import SimConfig, SimulatedNetwork, virtual_now

REPLICAS = 6


def build(nodes: int, **options: object) -> tuple[SimulatedNetwork, list[Replicator]]:
    sim = SimulatedNetwork(SimConfig(nodes=nodes, seed=5))
    sim.seed_tables()
    opts = ReplicationOptions(**options)  # type: ignore[arg-type]
    replicators = [
        Replicator(n, sim.store_of(n), opts, clock=virtual_now, rng=random.Random(i))
        for i, n in enumerate(sim.nodes)
    ]
    return sim, replicators


def nearest(sim: SimulatedNetwork, key: bytes, n: int = REPLICAS) -> list[int]:
    t = int.from_bytes(key, "big")
    order = sorted(range(len(sim.nodes)), key=lambda i: sim.nodes[i].me.int_id ^ t)
    return order[:n]


def run(
    nodes: int, body: Callable[[SimulatedNetwork, list[Replicator]], Awaitable[None]], **o: object
) -> None:
    async def main() -> None:
        sim, replicators = build(nodes, **o)
        try:
            await body(sim, replicators)
        finally:
            await asyncio.gather(*(r.stop() for r in replicators))
            await asyncio.gather(*(n.close() for n in sim.nodes))

    run_virtual(main())


async def register_all(sim: SimulatedNetwork, replicator: Replicator) -> None:
    await replicator.register_peers(n.me for n in sim.nodes)
    await replicator.check_activity()


def test_a_push_cycle_tells_each_responsible_peer_and_moves_only_acknowledged_cursors() -> None:
    async def body(sim: SimulatedNetwork, replicators: list[Replicator]) -> None:
        values = [random.Random(i).randbytes(300) for i in range(40)]
        await sim.stores[0].store_batch(values)
        keys = [digest(v) for v in values]
        await asyncio.sleep(1)  # a scan takes keys created before its start
        await register_all(sim, replicators[0])
        silent = next(i for i in nearest(sim, keys[0]) if i != 0)
        sim.network.kill(sim.nodes[silent].me.id)  # dies after the activity check
        report = await replicators[0].replicate()
        assert report.failed_peers == [sim.nodes[silent].me.id.decode()]
        rows = {r.id: r for r in await sim.stores[0].replication_infos()}
        for i, node in enumerate(sim.nodes[1:], start=1):
            cursor = rows[node.me.id.decode()].last_replicated_at
            assert (cursor is None) == (i == silent), i
        # Every live responsible peer was told of each of its keys, and fetches them.
        for i in range(1, len(sim.nodes)):
            if i != silent:
                await replicators[i].fetch_pending()
        for key in keys:
            for i in nearest(sim, key):
                assert (key in sim.stores[i].values) == (i != silent), (key.hex(), i)
        # A second cycle tells the live peers nothing new; the silent one, back, gets its keys.
        sim.network.revive(sim.nodes[silent].me.id)
        again = await replicators[0].replicate()
        owed = sum(silent in nearest(sim, k) for k in keys)
        assert again.keys_announced == owed > 0
        await replicators[silent].fetch_pending()
        assert all(k in sim.stores[silent].values for k in keys if silent in nearest(sim, k))

    run(10, body)


def test_keys_we_are_not_responsible_for_are_counted_and_deleted_only_when_switched_on() -> None:
    async def body(sim: SimulatedNetwork, replicators: list[Replicator]) -> None:
        values = [random.Random(i).randbytes(100) for i in range(60)]
        keys = [digest(v) for v in values]
        await sim.stores[0].store_batch(values)
        await asyncio.sleep(1)  # a scan takes keys created before its start
        extra = {k for k in keys if 0 not in nearest(sim, k)}
        assert extra and len(extra) < len(keys)
        replicator = replicators[0]
        assert await replicator.classify_redundant() == len(extra)
        assert set(sim.stores[0].del_keys) == extra
        assert await replicator.classify_redundant() == len(extra)
        assert set(sim.stores[0].del_keys.values()) == {2}  # counted once per scan
        assert await replicator.delete_redundant() == 0  # off by default, as in Go
        assert len(sim.stores[0].values) == len(keys)

        def deleter(free: int) -> Replicator:
            opts = ReplicationOptions(delete_redundant=True, delete_min_count=2)
            return Replicator(
                sim.nodes[0], sim.stores[0], opts, clock=virtual_now, free_bytes=lambda: free
            )

        assert await deleter(10**15).delete_redundant() == 0  # plenty of disk: keep them
        assert await deleter(0).delete_redundant() == len(extra)
        assert set(sim.stores[0].values) == set(keys) - extra
        assert sim.stores[0].del_keys == {}

    run(12, body)


def test_expired_disabled_keys_are_purged() -> None:
    async def body(sim: SimulatedNetwork, replicators: list[Replicator]) -> None:
        store = sim.stores[0]
        store.disabled_key_ttl = timedelta(seconds=60)
        await store.disable_key(b"\x01" * 32)
        await asyncio.sleep(30)
        await store.disable_key(b"\x02" * 32)
        assert await replicators[0].purge_disabled() == 0
        await asyncio.sleep(31)
        assert await replicators[0].purge_disabled() == 1
        assert not await store.is_disabled(b"\x01" * 32)
        assert await store.is_disabled(b"\x02" * 32)

    run(2, body)


def test_a_silent_peer_turns_inactive_and_its_keys_move_on_after_the_deadline() -> None:
    async def body(sim: SimulatedNetwork, replicators: list[Replicator]) -> None:
        values = [random.Random(i).randbytes(200) for i in range(40)]
        keys = [digest(v) for v in values]
        for key, value in zip(keys, values, strict=True):
            for i in nearest(sim, key):
                await sim.stores[i].store_batch([(key, value)])
        await asyncio.sleep(1)
        for r in replicators:
            await register_all(sim, r)
            await r.replicate()  # every cursor set: nothing more to push
        victim = 3
        assert any(victim in nearest(sim, k) for k in keys)
        sim.network.kill(sim.nodes[victim].me.id)
        await replicators[0].check_activity()  # one failure: not yet (Go's rule)
        rows = {r.id: r for r in await sim.stores[0].replication_infos()}
        assert rows[sim.nodes[victim].me.id.decode()].is_active
        await replicators[0].check_activity()  # the second: banned, so inactive
        rows = {r.id: r for r in await sim.stores[0].replication_infos()}
        assert not rows[sim.nodes[victim].me.id.decode()].is_active
        assert (await replicators[0].stats()).peers_inactive == 1
        # Before the deadline nothing is repaired: the peer may come back.
        early = await replicators[0].replicate()
        assert early.keys_repaired == 0 and early.adjusted == []
        await asyncio.sleep(31)  # past offline_deadline
        live = [i for i in range(len(sim.nodes)) if i != victim]
        for i in live:
            await replicators[i].check_activity()
            await replicators[i].check_activity()
        reports = [await replicators[i].replicate() for i in live]
        # Only the repair can have told anyone: every cursor was past every key already.
        assert sum(r.keys_repaired for r in reports) > 0
        assert sum(r.keys_announced for r in reports) == sum(r.keys_repaired for r in reports)
        for i in live:
            await replicators[i].fetch_pending()
        ids = [n.me.int_id for n in sim.nodes]
        for key in keys:
            t = int.from_bytes(key, "big")
            want = sorted(live, key=lambda i: ids[i] ^ t)[:REPLICAS]
            assert all(key in sim.stores[i].values for i in want), key.hex()
        rows = {r.id: r for r in await sim.stores[0].replication_infos()}
        assert rows[sim.nodes[victim].me.id.decode()].is_adjusted

    run(10, body, offline_deadline=30.0)
