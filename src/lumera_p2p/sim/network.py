"""A simulated network of DHT nodes in one process, deterministic from a seed.

Every node is a real :class:`~lumera_p2p.dht.Node` (the code the TCP node runs) with a
:class:`~lumera_p2p.dht.MemoryStore`, connected through a
:class:`~lumera_p2p.net.memory.MemoryNetwork`, all on a
:class:`~lumera_p2p.net.virtual_time.VirtualTimeLoop`. A run:

1. nodes join one after another, each bootstrapping from a random earlier node;
2. values are stored from random nodes;
3. a fraction of nodes die (their routing-table entries stay behind, as in life) and message
   loss is switched on;
4. more values are stored; FIND_NODE lookups from random live nodes are compared with the true
   ``k`` closest live nodes; every stored value is retrieved from a random live node.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lumera_p2p.content import digest, key_from_bytes, key_to_bytes
from lumera_p2p.dht import DHTOptions, MemoryStore, Node
from lumera_p2p.errors import StoreFailed
from lumera_p2p.kademlia import Contact
from lumera_p2p.net.memory import MemoryNetwork, NetworkConditions
from lumera_p2p.net.virtual_time import run_virtual


@dataclass
class SimConfig:
    """What to simulate."""

    nodes: int = 1000
    lookups: int = 200
    values: int = 100
    dead_fraction: float = 0.0
    loss: float = 0.0
    seed: int = 1
    min_latency: float = 0.005
    max_latency: float = 0.050
    value_size: int = 256
    #: Concurrent joins (1 = strictly one after another).
    join_concurrency: int = 8
    encode: bool = False


def _percentile(values: list[int] | list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[index])


@dataclass
class SimResult:
    """What a run measured (``as_json`` gives the CLI's object)."""

    nodes: int
    live_nodes: int
    lookups: int
    accuracy: float
    rounds_median: float
    rounds_p95: float
    messages_median: float
    messages_p95: float
    store_success_rate: float
    retrieve_success_rate: float
    values: int
    dead_fraction: float
    loss: float
    seed: int
    virtual_seconds: float
    total_messages: int
    mean_routing_table: float
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A flat JSON-ready dict."""
        out = asdict(self)
        out.update(out.pop("extra"))
        return out


class SimulatedNetwork:
    """The nodes of one simulation and the medium between them.

    Every node gets ``DHTOptions(allow_private=True)`` unless ``node_options`` names others
    for its index. ``stores[i]`` is node ``i``'s store, for tests to look into.
    """

    def __init__(
        self, config: SimConfig, node_options: Mapping[int, DHTOptions] | None = None
    ) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.network = MemoryNetwork(
            random.Random(config.seed + 1),
            NetworkConditions(config.min_latency, config.max_latency, 0.0),
            encode=config.encode,
        )
        self.nodes: list[Node] = []
        self.stores: list[MemoryStore] = []
        #: Stores whose replicas were exactly the nearest live nodes (``store_values``).
        self.exact_stores = 0
        default = DHTOptions(allow_private=True)
        for i in range(config.nodes):
            contact = Contact(
                b"lumera-sim-%06d" % i, f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", 4445
            )
            store = MemoryStore()
            node = Node(
                contact,
                store,
                self.network.attach(contact.id),
                options=(node_options or {}).get(i, default),
                rng=random.Random(self.rng.getrandbits(64)),
            )
            self.network.serve(contact.id, node.handle)
            self.nodes.append(node)
            self.stores.append(store)

    def store_of(self, node: Node) -> MemoryStore:
        """The in-memory store ``node`` was built with."""
        return self.stores[self.nodes.index(node)]

    def live(self) -> list[Node]:
        """Nodes still answering."""
        return [n for n in self.nodes if n.me.id not in self.network.dead]

    async def join_all(self) -> None:
        """Bootstrap every node from a random node that joined before it."""
        gate = asyncio.Semaphore(self.config.join_concurrency)

        async def join(index: int) -> None:
            async with gate:
                seed = self.nodes[self.rng.randrange(index)]
                await self.nodes[index].bootstrap([seed.me])

        first = self.config.join_concurrency
        for i in range(1, min(first, len(self.nodes))):
            await join(i)
        await asyncio.gather(*(join(i) for i in range(first, len(self.nodes))))

    def kill(self, fraction: float) -> None:
        """Kill a random ``fraction`` of the nodes."""
        count = round(fraction * len(self.nodes))
        for node in self.rng.sample(self.nodes, count):
            self.network.kill(node.me.id)

    async def maintain(self, rounds: int = 2) -> None:
        """Let time pass as in a running network: every live node pings its contacts (dead
        ones are evicted after repeated failures) and refreshes its buckets."""
        for _ in range(rounds):
            await asyncio.gather(*(n.check_peers() for n in self.live()))
        await asyncio.gather(*(n.refresh(force=True) for n in self.live()))

    async def store_values(self, count: int) -> list[tuple[str, bytes, bool]]:
        """Store ``count`` random values from random live nodes: (key, value, replicated).

        Each store's replicas are compared with the true ``replicas`` nearest live nodes
        (brute force): :attr:`exact_stores` counts the stores that found exactly them.
        """
        out: list[tuple[str, bytes, bool]] = []

        async def one() -> None:
            origin = self.rng.choice(self.live())
            value = self.rng.randbytes(self.config.value_size)
            try:
                outcome = await origin.store(value)
            except StoreFailed:
                out.append((key_from_bytes(digest(value)), value, False))
                return
            out.append((key_from_bytes(outcome.key), value, outcome.replicas > 0))
            t = int.from_bytes(outcome.key, "big")
            others = (n.me for n in self.live() if n is not origin)
            truth = sorted(others, key=lambda c: c.int_id ^ t)[: origin.options.replicas]
            if {c.hashed_id for c in outcome.stored_on} == {c.hashed_id for c in truth}:
                self.exact_stores += 1

        await asyncio.gather(*(one() for _ in range(count)))
        return out

    async def measure_lookups(self, count: int) -> tuple[float, list[int], list[int]]:
        """Accuracy, rounds and messages of ``count`` FIND_NODE lookups."""
        live = self.live()
        correct = 0
        rounds: list[int] = []
        messages: list[int] = []

        async def one() -> None:
            nonlocal correct
            origin = self.rng.choice(live)
            target = self.rng.randbytes(32)
            outcome = await origin.find_node(target)
            t = int.from_bytes(target, "big")
            truth = sorted((n.me for n in live if n is not origin), key=lambda c: c.int_id ^ t)[
                : origin.options.k
            ]
            if [c.hashed_id for c in outcome.closest] == [c.hashed_id for c in truth]:
                correct += 1
            rounds.append(outcome.rounds)
            messages.append(outcome.messages)

        await asyncio.gather(*(one() for _ in range(count)))
        return (correct / count if count else 1.0), rounds, messages

    async def retrieve_all(self, stored: list[tuple[str, bytes, bool]]) -> float:
        """Fraction of stored values retrieved intact from a random live node (not the origin's
        local copy: the retriever is asked to go to the network)."""
        live = self.live()
        ok = 0

        async def one(key: str, value: bytes) -> None:
            nonlocal ok
            node = self.rng.choice(live)
            raw = key_to_bytes(key)
            local = await node.values.retrieve(raw)
            got = local if local is not None else (await node.find_value(raw)).value
            if got == value:
                ok += 1

        await asyncio.gather(*(one(k, v) for k, v, _ in stored))
        return ok / len(stored) if stored else 1.0


async def _run(config: SimConfig) -> SimResult:
    sim = SimulatedNetwork(config)
    loop = asyncio.get_running_loop()
    await sim.join_all()
    before = await sim.store_values(config.values // 2)
    # Sequential stores for a per-store message count (the concurrent ones overlap).
    store_messages: list[int] = []
    for _ in range(min(10, config.values - len(before))):
        requests = sim.network.counters.requests
        before += await sim.store_values(1)
        store_messages.append(sim.network.counters.requests - requests)
    exact_before = sim.exact_stores
    sim.kill(config.dead_fraction)
    sim.network.conditions.loss = config.loss
    if config.dead_fraction > 0:
        await sim.maintain()
    after = await sim.store_values(config.values - len(before))
    stored = before + after
    accuracy, rounds, messages = await sim.measure_lookups(config.lookups)
    retrieved = await sim.retrieve_all(stored)
    live = sim.live()
    poisoned = sum(n.snapshot_counters().poisoned_values for n in sim.nodes)
    for node in sim.nodes:
        await node.close()
    return SimResult(
        nodes=config.nodes,
        live_nodes=len(live),
        lookups=config.lookups,
        accuracy=round(accuracy, 4),
        rounds_median=statistics.median(rounds) if rounds else 0.0,
        rounds_p95=_percentile(rounds, 0.95),
        messages_median=statistics.median(messages) if messages else 0.0,
        messages_p95=_percentile(messages, 0.95),
        store_success_rate=round(sum(r for _, _, r in stored) / len(stored), 4) if stored else 1.0,
        retrieve_success_rate=round(retrieved, 4),
        values=len(stored),
        dead_fraction=config.dead_fraction,
        loss=config.loss,
        seed=config.seed,
        virtual_seconds=round(loop.time(), 3),
        total_messages=sim.network.counters.requests,
        mean_routing_table=round(statistics.mean(n.peer_count for n in live), 1) if live else 0.0,
        extra={
            "poisoned_values": poisoned,
            "lost_messages": sim.network.counters.lost,
            # Stores before any fault, whose replicas were exactly the nearest live nodes.
            "store_exactness": round(exact_before / len(before), 4) if before else 1.0,
            "store_messages_median": statistics.median(store_messages) if store_messages else 0,
        },
    )


def run_simulation(config: SimConfig) -> SimResult:
    """Run one simulation on a fresh virtual-time loop."""
    return run_virtual(_run(config))
