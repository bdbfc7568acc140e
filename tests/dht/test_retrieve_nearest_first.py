"""A retrieve's first FindValue, sent before its lookup exists, changes nothing it observes.

Every scenario runs twice on twin simulated networks (same seed, a fixed latency so the order
of random draws cannot matter): once through ``Node.retrieve`` (the nearest asked first, the
lookup built only if that answer is not a verified value) and once through the lookup alone
(``Node.find_value``). Both must return the same value, send the same FindValue requests to the
same peers at the same (virtual) times, and leave the same counters, routing table and bans.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from lumera_p2p.content import digest
from lumera_p2p.dht import Node
from lumera_p2p.dht.handover import Watch
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.net.virtual_time import run_virtual
from lumera_p2p.sim.network import SimConfig, SimulatedNetwork
from lumera_p2p.wire.messages import FindValueResponse, Message, MessageType

VALUE = b"the value asked for" * 10
LATENCY = 0.01

#: ``setup(sim, reader, nearest_first)`` prepares a scenario (stores, handlers) for one key.
Setup = Callable[[SimulatedNetwork, Node, list[Node]], Awaitable[None]]


@dataclass
class Trace:
    value: bytes | None
    asked: list[tuple[float, int]]  # (virtual time since the retrieve, peer index)
    before: dict[str, object]
    counters: dict[str, object]
    table: list[tuple[bytes, str]]
    banned: int
    leftover_tasks: int
    nearest: int


def _observed(node: Node) -> dict[str, object]:
    c = node.snapshot_counters()
    return {
        "lookups": c.lookups,
        "rpc_sent": c.rpc_sent,
        "rpc_failed": c.rpc_failed,
        "sent_by_type": dict(c.rpc_sent_by_type),
        "failed_by_type": dict(c.rpc_failed_by_type),
        "poisoned": c.poisoned_values,
        "bans": c.bans,
        "evictions": c.evictions,
        "probes": c.probes,
        "rpcs_timed": {name: h.count for name, h in c.rpc_latency.items()},
    }


def _run(setup: Setup, *, nearest_first: bool, seed: int) -> Trace:
    async def main() -> Trace:
        config = SimConfig(nodes=30, seed=seed, min_latency=LATENCY, max_latency=LATENCY)
        sim = SimulatedNetwork(config)
        await sim.join_all()
        try:
            reader = sim.nodes[3]
            key = digest(VALUE)
            nearest = reader.closest(key, 30)
            by_id = {n.me.id: i for i, n in enumerate(sim.nodes)}
            await setup(sim, reader, [sim.nodes[by_id[c.id]] for c in nearest])
            asked: list[tuple[float, int]] = []
            loop = asyncio.get_running_loop()
            started = loop.time()
            send = reader._transport.call  # type: ignore[attr-defined]

            async def logged(peer: Contact, request: Message, timeout: float, **kw: Any) -> Message:
                if request.message_type == MessageType.FIND_VALUE:
                    asked.append((round(loop.time() - started, 6), by_id[peer.id]))
                return await send(peer, request, timeout, **kw)

            # The node's only transport (its driver's too), as seen from the reader.
            reader._transport.call = logged  # type: ignore[attr-defined]
            before = _observed(reader)
            if nearest_first:
                value = await reader.retrieve(key)
            else:
                value = (await reader.find_value(key)).value
            after = _observed(reader)
            await asyncio.sleep(30)  # whatever the retrieve left running ends by now
            leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            return Trace(
                value,
                asked,
                before,
                after,
                sorted((c.hashed_id, c.version) for c in reader.contacts()),
                reader.banned_count(),
                len(leftover),
                by_id[nearest[0].id],
            )
        finally:
            await asyncio.gather(*(n.close() for n in sim.nodes))

    return run_virtual(main())


async def _stored_normally(sim: SimulatedNetwork, reader: Node, nearest: list[Node]) -> None:
    origin = next(n for n in sim.nodes if n is not reader and n not in nearest[:10])
    await origin.store(VALUE)
    for node in (reader, *nearest[:1]):
        assert sim.store_of(node).values.get(digest(VALUE)) == (None if node is reader else VALUE)


async def _only_on(sim: SimulatedNetwork, nodes: list[Node]) -> None:
    for store in sim.stores:
        store.values.pop(digest(VALUE), None)
    for node in nodes:
        await sim.store_of(node).store_batch([VALUE])


async def nearest_holds(sim: SimulatedNetwork, reader: Node, nearest: list[Node]) -> None:
    await _stored_normally(sim, reader, nearest)


async def nearest_lacks(sim: SimulatedNetwork, reader: Node, nearest: list[Node]) -> None:
    await _only_on(sim, [nearest[1]])


async def nobody_has_it(sim: SimulatedNetwork, reader: Node, nearest: list[Node]) -> None:
    await _only_on(sim, [])


async def nearest_poisons(sim: SimulatedNetwork, reader: Node, nearest: list[Node]) -> None:
    await _stored_normally(sim, reader, nearest)
    honest = sim.network.handlers[nearest[0].me.id]

    async def forge(request: Message, peer: bytes) -> Message:
        response = await honest(request, peer)
        if isinstance(response.data, FindValueResponse):
            response.data.value = b"forged value"
        return response

    sim.network.handlers[nearest[0].me.id] = forge


def _slow(sim: SimulatedNetwork, node: Node, seconds: float) -> None:
    honest = sim.network.handlers[node.me.id]

    async def slow(request: Message, peer: bytes) -> Message:
        await asyncio.sleep(seconds)
        return await honest(request, peer)

    sim.network.handlers[node.me.id] = slow


async def nearest_stalls(sim: SimulatedNetwork, reader: Node, nearest: list[Node]) -> None:
    # Past the lookup's stall (1 s), within its timeout (5 s): the others are asked meanwhile.
    await _stored_normally(sim, reader, nearest)
    _slow(sim, nearest[0], 2.5)


async def only_the_stalled_nearest_has_it(
    sim: SimulatedNetwork, reader: Node, nearest: list[Node]
) -> None:
    # Its late answer, to the request sent before the lookup existed, ends the lookup.
    await _only_on(sim, [nearest[0]])
    _slow(sim, nearest[0], 3.0)


async def nearest_is_dead(sim: SimulatedNetwork, reader: Node, nearest: list[Node]) -> None:
    # Silent until the request's timeout: stalled at 1 s, failed at 5 s, retried.
    await _stored_normally(sim, reader, nearest)
    sim.network.kill(nearest[0].me.id)


async def nearest_refuses(sim: SimulatedNetwork, reader: Node, nearest: list[Node]) -> None:
    # A failure at once (the connection refused): the lookup retries it and moves on.
    await _stored_normally(sim, reader, nearest)
    del sim.network.handlers[nearest[0].me.id]


async def nearest_answers_another_type(
    sim: SimulatedNetwork, reader: Node, nearest: list[Node]
) -> None:
    # An answer of the wrong type carrying the right value is no answer.
    await _stored_normally(sim, reader, nearest)
    honest = sim.network.handlers[nearest[0].me.id]

    async def wrong(request: Message, peer: bytes) -> Message:
        response = await honest(request, peer)
        response.message_type = int(MessageType.FIND_NODE)
        return response

    sim.network.handlers[nearest[0].me.id] = wrong


def _large_answer(reader: Node, nearest: Node, *, arrives: float, then_fails: bool) -> None:
    """The nearest's answer starts after 0.5 s (``on_answer``: 4 s more), whole ``arrives``
    s later, or the connection then breaks (as TCP reports a large answer)."""
    send = reader._transport.call  # type: ignore[attr-defined]
    state = {"first": True}

    async def call(peer: Contact, request: Message, timeout: float, **kw: Any) -> Message:
        on_answer = kw.get("on_answer")
        if peer.id != nearest.me.id or not state["first"] or on_answer is None:
            return await send(peer, request, timeout, **kw)
        state["first"] = False
        await asyncio.sleep(0.5)
        on_answer(4.0)
        await asyncio.sleep(arrives)
        if then_fails:
            raise TransportError(f"{peer}: connection closed mid-answer")
        return await send(peer, request, timeout, **kw)

    reader._transport.call = call  # type: ignore[attr-defined]


async def large_answer_arrives(sim: SimulatedNetwork, reader: Node, nearest: list[Node]) -> None:
    # While it arrives the lookup neither stalls nor asks anyone else.
    await _stored_normally(sim, reader, nearest)
    _large_answer(reader, nearest[0], arrives=3.0, then_fails=False)


async def large_answer_breaks(sim: SimulatedNetwork, reader: Node, nearest: list[Node]) -> None:
    # The lookup takes over with the deadline the started answer gave that request.
    await _stored_normally(sim, reader, nearest)
    _large_answer(reader, nearest[0], arrives=2.0, then_fails=True)


SCENARIOS: dict[str, tuple[Setup, bool]] = {
    # name: (setup, whether the value is found)
    "nearest holds it": (nearest_holds, True),
    "nearest lacks it": (nearest_lacks, True),
    "nobody has it": (nobody_has_it, False),
    "nearest poisons": (nearest_poisons, True),
    "nearest stalls": (nearest_stalls, True),
    "only the stalled nearest has it": (only_the_stalled_nearest_has_it, True),
    "nearest is dead": (nearest_is_dead, True),
    "nearest refuses": (nearest_refuses, True),
    "nearest answers another type": (nearest_answers_another_type, True),
    "a large answer arrives": (large_answer_arrives, True),
    "a large answer breaks": (large_answer_breaks, True),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_nearest_first_observes_what_the_lookup_alone_does(name: str) -> None:
    setup, found = SCENARIOS[name]
    for seed in (5, 11):
        first = _run(setup, nearest_first=True, seed=seed)
        alone = _run(setup, nearest_first=False, seed=seed)
        assert first.value == alone.value == (VALUE if found else None)
        assert first.asked == alone.asked
        assert first.asked[0] == (0.0, first.nearest)  # the nearest, asked at once
        assert first.counters == alone.counters
        assert first.table == alone.table
        assert first.banned == alone.banned
        assert first.leftover_tasks == alone.leftover_tasks == 0


def test_a_verified_value_from_the_nearest_takes_one_request() -> None:
    trace = _run(nearest_holds, nearest_first=True, seed=5)
    assert trace.value == VALUE
    assert len(trace.asked) == 1
    sent, before = trace.counters["sent_by_type"], trace.before["sent_by_type"]
    assert isinstance(sent, dict) and isinstance(before, dict)
    assert sent["FIND_VALUE"] == before.get("FIND_VALUE", 0) + 1
    assert trace.counters["lookups"] == trace.before["lookups"] + 1  # type: ignore[operator]


def test_a_cancelled_retrieve_cancels_its_first_request() -> None:
    async def main() -> None:
        config = SimConfig(nodes=12, seed=3, min_latency=LATENCY, max_latency=LATENCY)
        sim = SimulatedNetwork(config)
        await sim.join_all()
        try:
            reader = sim.nodes[2]
            key = digest(VALUE)
            nearest = reader.closest(key, 1)[0]
            sim.network.kill(nearest.id)
            task = asyncio.ensure_future(reader.retrieve(key))
            await asyncio.sleep(0.5)  # the first request is out, not yet stalled
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0)
            leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert leftover == []
        finally:
            await asyncio.gather(*(n.close() for n in sim.nodes))

    run_virtual(main())


def test_a_start_seen_before_the_handover_reaches_the_lookup_once() -> None:
    async def main() -> None:
        started: list[tuple[float, float]] = []
        watch = Watch(lambda extra, now: started.append((extra, now)))
        watch(4.0)  # before any plan exists
        assert started == [(4.0, asyncio.get_running_loop().time())]
        assert watch.take() == started[0]  # replayed into the plan polled as of the send
        forwarded: list[float] = []
        watch.forward_to(forwarded.append)
        assert forwarded == []  # taken already: not told twice
        watch(2.0)
        assert forwarded == [2.0] and len(started) == 1
        late = Watch(lambda extra, now: None)
        late(3.0)  # after the plan was polled, before the driver adopted the call
        late.forward_to(forwarded.append)
        assert forwarded == [2.0, 3.0]

    run_virtual(main())
