"""What the store plans count: replicas per key, timeouts apart from other failures, and the
candidates a store could use."""

from __future__ import annotations

from lumera_p2p.content import digest
from lumera_p2p.dht.plans import BatchStorePlan, LookupKind, LookupParams, LookupPlan, StorePlan
from lumera_p2p.errors import RpcTimeout, TransportError
from lumera_p2p.kademlia import Contact, RoutingTable
from lumera_p2p.wire.messages import BatchStoreDataRequest, MessageType

from .world import ME, ScriptedPeer, World, drive, reader


def nodes(n: int) -> list[Contact]:
    return [Contact(b"lumera-count-%d" % i, f"10.6.0.{i + 1}", 4445) for i in range(n)]


def world_of(contacts: list[Contact]) -> World:
    return World(ScriptedPeer(c, RoutingTable(c.hashed_id)) for c in contacts)


def test_a_batch_store_counts_each_key_s_acknowledged_replicas() -> None:
    a, b, c = nodes(3)
    values = [b"zero", b"one", b"two"]
    keys = [digest(v) for v in values]
    world = world_of([a, b, c])
    world.peers[c.hashed_id].behaviour = lambda p, r: TransportError("reset")
    plan = BatchStorePlan(keys, values, [[a, b], [a, b, c], [c]])
    drive(plan, world)
    report = plan.result()
    assert report.replicas == [2, 2, 0] and report.min_replicas == 0
    assert report.timeouts == 0


def test_a_batch_store_counts_timeouts_apart_from_other_failures() -> None:
    a, b, c, d = nodes(4)
    values = [b"v%d" % i for i in range(4)]
    world = world_of([a, b, c, d])
    world.peers[a.hashed_id].behaviour = lambda p, r: RpcTimeout("no answer in 15 s")
    world.peers[b.hashed_id].behaviour = lambda p, r: RpcTimeout("no answer in 15 s")
    world.peers[c.hashed_id].behaviour = lambda p, r: TransportError("reset")
    plan = BatchStorePlan([digest(v) for v in values], values, [[a], [b], [c], [d]])
    drive(plan, world)
    assert plan.result().timeouts == 2 and plan.result().replicas == [0, 0, 0, 1]


def test_a_batch_store_chunk_may_fill_the_limit_exactly_each_time() -> None:
    [a] = nodes(1)
    values = [b"x" * 6, b"y" * 4, b"z" * 6, b"w" * 4]
    plan = BatchStorePlan([digest(v) for v in values], values, [[a]] * 4, chunk_bytes=10)
    trace = drive(plan, world_of([a]))
    sent = [r.data.data for _, r in trace.sent if isinstance(r.data, BatchStoreDataRequest)]
    assert sent == [values[:2], values[2:]]
    assert plan.result().replicas == [1, 1, 1, 1]


def test_a_store_counts_its_candidates_and_its_timeouts() -> None:
    world = World.random(12, 7)
    value = b"counted"
    key = digest(value)
    near = world.nearest(key, 12)
    slow = {near[0].hashed_id, near[2].hashed_id}
    for hashed in slow:
        world.peers[hashed].behaviour = lambda peer, request: (
            RpcTimeout("no answer")
            if request.mtype is MessageType.STORE_DATA
            else peer.honest(request)
        )
    world.peers[near[1].hashed_id].behaviour = lambda peer, request: (
        TransportError("reset") if request.mtype is MessageType.STORE_DATA else peer.honest(request)
    )
    barred = near[11].hashed_id
    lookup = LookupPlan(
        LookupKind.NODES, key, near[:4], reader(), LookupParams(), exclude={ME.hashed_id}
    )
    plan = StorePlan(
        key, value, 0, lookup, replicas=6, store_eligible=lambda c: c.hashed_id != barred
    )
    drive(plan, world)
    outcome = plan.result()
    assert outcome.candidates == 11  # every node but the barred one
    assert outcome.timeouts == 2 and len(outcome.failed) == 3
    assert outcome.replicas == 6
