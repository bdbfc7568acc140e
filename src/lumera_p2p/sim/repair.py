"""Repair in a simulated network: kill a third of the nodes, then add fresh ones.

The real node and replication code (:class:`~lumera_p2p.dht.Node`,
:class:`~lumera_p2p.dht.replication.Replicator`, over :class:`~lumera_p2p.dht.MemoryStore`) on
the in-memory transport and the virtual clock. A run:

1. ``nodes`` nodes join; ``values`` values are stored in batches from random nodes; every
   node's replication rounds start (staggered, as nodes started at different times are); the
   network settles until each value is on its ``replicas`` nearest nodes.
2. **kill**: a third of the nodes stop answering at once. From then on, the time until every
   value is back on its ``replicas`` nearest live nodes is measured, in virtual seconds and in
   push cycles (``interval``), with the value bytes fetched against the least that had to
   move (each missing replica once).
3. **fresh**: ``fresh`` new nodes join (through random live nodes), and the same is measured
   until each value is on its nearest nodes, newcomers included.

A value none of whose holders survived the kill cannot be repaired by anyone; it is counted
(``unrecoverable``) and left out of the targets. ``lost`` counts values that had a live
holder and ended with none: the repair must keep it at 0.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from lumera_p2p.content import digest
from lumera_p2p.dht import DHTOptions, Node
from lumera_p2p.dht.replication import ReplicationOptions, Replicator
from lumera_p2p.net.virtual_time import run_virtual
from lumera_p2p.sim.network import SimConfig, SimulatedNetwork, virtual_now
from lumera_p2p.wire.messages import MessageType


def sim_replication_options() -> ReplicationOptions:
    """Go's intervals scaled down tenfold: a one-minute push cycle, the activity check twice
    a cycle (Go: 10 and 5 min), and a peer gone half a cycle after its last answer."""
    return ReplicationOptions(
        interval=60.0,
        activity_interval=30.0,
        offline_deadline=30.0,
        fetch_interval=60.0,
        fetch_delay=1.0,
        failed_fetch_interval=60.0,
        disabled_key_cleanup_interval=120.0,
        redundant_scan_interval=3600.0,
    )


@dataclass
class RepairSimConfig:
    """What to simulate."""

    nodes: int = 1000
    values: int = 10_000
    kill_fraction: float = 1 / 3
    fresh: int = 300
    seed: int = 1
    value_size: int = 256
    #: ``placed``: the network starts converged (complete routing tables, each value on its
    #: ``replicas`` nearest nodes); ``stored``: nodes join one by one and values are stored
    #: in batches of ``batch`` from random nodes, then the network settles by replication.
    start: str = "placed"
    batch: int = 100
    #: Fresh nodes join with a full bootstrap, or only ping a seed and look themselves up.
    full_join: bool = False
    #: Push cycles each phase may take before it counts as failed.
    cycles: float = 2.0
    #: Virtual seconds between checks of where the values are.
    check_every: float = 5.0
    #: The Replicate timeout: dead simulated nodes are silent, so a cycle that announces to
    #: one not yet found dead waits this long (Go's 180 s would stretch the cycle).
    replicate_timeout: float = 10.0
    replication: ReplicationOptions = field(default_factory=sim_replication_options)


@dataclass
class PhaseResult:
    """One phase (kill or fresh) from its start."""

    #: Values that must end on their nearest live nodes, and those that did in time.
    targets: int
    complete: int
    #: Virtual seconds, and push cycles, until every target was complete (None: not in time).
    seconds: float | None
    cycles: float | None
    #: Replicas that had to be created (value bytes: the least that could move), and the
    #: value bytes actually fetched; ``bytes_ratio`` = minimum ÷ fetched (1.0 at best).
    missing_replicas: int
    minimum_bytes: int
    fetched_bytes: int
    bytes_ratio: float
    #: All repair traffic: compressed fetch payloads, and 64-byte hex keys in Replicate and
    #: BatchFindValues requests; ``wire_ratio`` = minimum ÷ that.
    wire_bytes: int
    wire_ratio: float
    #: Values with no live holder left (after the kill: beyond any repair) and values lost
    #: by the repair (a live holder at the start, none at the end).
    unrecoverable: int
    lost: int
    #: Replicate and BatchFindValues requests sent during the phase.
    replicate_requests: int
    fetch_requests: int


@dataclass
class RepairSimResult:
    """A whole run (``as_json`` gives the flat object the benchmark prints)."""

    nodes: int
    values: int
    killed: int
    fresh: int
    seed: int
    interval: float
    settle_seconds: float
    kill: PhaseResult
    #: Virtual seconds the fresh nodes took to join (the join phase counts from its start).
    join_seconds: float
    join: PhaseResult
    virtual_seconds: float

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the phases as nested objects)."""
        return asdict(self)


class _Census:
    """Where each value is, against where it should be (global knowledge, for measuring)."""

    def __init__(self, sim: SimulatedNetwork, keys: list[bytes], replicas: int) -> None:
        self.sim = sim
        self.keys = keys
        self.replicas = replicas
        self.nearest: dict[bytes, list[int]] = {}

    def aim(self) -> None:
        """Fix the targets: each key's ``replicas`` nearest live nodes, by index."""
        live = [i for i, n in enumerate(self.sim.nodes) if n.me.id not in self.sim.network.dead]
        ids = [(self.sim.nodes[i].me.int_id, i) for i in live]
        self.nearest = {}
        for key in self.keys:
            t = int.from_bytes(key, "big")
            ordered = sorted(ids, key=lambda p: p[0] ^ t)[: self.replicas]
            self.nearest[key] = [i for _, i in ordered]

    def holders(self, key: bytes) -> list[int]:
        dead = self.sim.network.dead
        return [
            i
            for i, store in enumerate(self.sim.stores)
            if key in store.values and self.sim.nodes[i].me.id not in dead
        ]

    def complete(self, key: bytes) -> bool:
        stores = self.sim.stores
        return all(key in stores[i].values for i in self.nearest[key])

    def missing(self, key: bytes) -> int:
        stores = self.sim.stores
        return sum(key not in stores[i].values for i in self.nearest[key])


def _traffic(sim: SimulatedNetwork, replicators: list[Replicator]) -> dict[str, int]:
    fetched = sum(r._counters.bytes_fetched for r in replicators)
    payload = sum(r._counters.payload_bytes for r in replicators)
    announced = sum(r._counters.keys_announced for r in replicators)
    requests = sum(r._counters.fetch_requests for r in replicators)
    by_type = sim.network.counters.by_type
    return {
        "fetched": fetched,
        "payload": payload,
        "announced_keys": announced,
        "fetch_requests": requests,
        "replicate_requests": by_type.get(int(MessageType.REPLICATE), 0),
        "find_values_requests": by_type.get(int(MessageType.BATCH_FIND_VALUES), 0),
    }


async def _phase(
    sim: SimulatedNetwork,
    census: _Census,
    replicators: list[Replicator],
    config: RepairSimConfig,
    targets: list[bytes],
    value_size: int,
    started: float,
    had_holder: set[bytes],
    cycles: float,
    *,
    before: dict[str, int] | None = None,
    missing: int | None = None,
) -> PhaseResult:
    """Watch until every target is complete or ``cycles`` push cycles have passed since
    ``started``; ``before`` and ``missing``: the traffic and the missing replicas when the
    phase began (taken now if not given)."""
    loop = asyncio.get_running_loop()
    if before is None:
        before = _traffic(sim, replicators)
    if missing is None:
        missing = sum(census.missing(k) for k in targets)
    limit = started + cycles * config.replication.interval
    done_at: float | None = None
    while True:
        if all(census.complete(k) for k in targets):
            done_at = loop.time()
            break
        if loop.time() >= limit:
            break
        await asyncio.sleep(config.check_every)
    after = _traffic(sim, replicators)
    fetched = after["fetched"] - before["fetched"]
    request_keys = (after["announced_keys"] - before["announced_keys"]) + (
        after["fetch_requests"] - before["fetch_requests"]
    ) * config.replication.fetch_batch_keys
    wire = (after["payload"] - before["payload"]) + 64 * request_keys
    minimum = missing * value_size
    complete = sum(census.complete(k) for k in targets)
    lost = sum(1 for k in had_holder if not census.holders(k))
    seconds = None if done_at is None else round(done_at - started, 3)
    return PhaseResult(
        targets=len(targets),
        complete=complete,
        seconds=seconds,
        cycles=None if seconds is None else round(seconds / config.replication.interval, 3),
        missing_replicas=missing,
        minimum_bytes=minimum,
        fetched_bytes=fetched,
        bytes_ratio=round(minimum / fetched, 4) if fetched else (1.0 if not minimum else 0.0),
        wire_bytes=wire,
        wire_ratio=round(minimum / wire, 4) if wire else (1.0 if not minimum else 0.0),
        unrecoverable=len(census.keys) - len(had_holder),
        lost=lost,
        replicate_requests=after["replicate_requests"] - before["replicate_requests"],
        fetch_requests=after["find_values_requests"] - before["find_values_requests"],
    )


async def _run(config: RepairSimConfig) -> RepairSimResult:
    loop = asyncio.get_running_loop()
    base = SimConfig(nodes=config.nodes, seed=config.seed, value_size=config.value_size)
    options = DHTOptions(
        allow_private=True,
        rpc_timeouts={
            **DHTOptions().rpc_timeouts,
            MessageType.REPLICATE: config.replicate_timeout,
        },
    )
    sim = SimulatedNetwork(base, {i: options for i in range(config.nodes + config.fresh)})
    rng = random.Random(config.seed + 2)
    replicators: list[Replicator] = []

    def replicate(node: Node) -> None:
        r = Replicator(
            node,
            sim.store_of(node),
            config.replication,
            clock=virtual_now,
            rng=random.Random(rng.getrandbits(64)),
        )
        replicators.append(r)
        r.start(stagger=True)

    try:
        if config.start == "stored":
            await sim.join_all()
            for first in range(0, config.values, config.batch):
                count = min(config.batch, config.values - first)
                origin = rng.choice(sim.nodes)
                await origin.store_batch([rng.randbytes(config.value_size) for _ in range(count)])
            keys = sorted({k for s in sim.stores for k in s.values})
        else:
            sim.seed_tables()
            values = [rng.randbytes(config.value_size) for _ in range(config.values)]
            keys = [digest(v) for v in values]
            census = _Census(sim, keys, options.replicas)
            census.aim()
            for key, value in zip(keys, values, strict=True):
                for i in census.nearest[key]:
                    await sim.stores[i].store_batch([(key, value)])
            keys.sort()
        for node in sim.nodes:
            replicate(node)
        census = _Census(sim, keys, options.replicas)
        census.aim()
        settle_from = loop.time()
        everyone = set(keys)
        settled = await _phase(
            sim, census, replicators, config, keys, config.value_size, settle_from, everyone, 6.0
        )
        if settled.seconds is None:
            raise RuntimeError(f"the network did not settle: {settled}")
        # Until every node has run a push cycle and an activity check, so the kill meets a
        # network in its steady state (peers known and seen, cursors set).
        while not all(r._counters.cycles and r._counters.activity_checks for r in replicators):
            await asyncio.sleep(config.check_every)
        settle = loop.time() - settle_from

        victims = sim.kill(config.kill_fraction)
        killed_at = loop.time()
        census.aim()
        survivors = {k for k in keys if census.holders(k)}
        kill = await _phase(
            sim,
            census,
            replicators,
            config,
            sorted(survivors),
            config.value_size,
            killed_at,
            survivors,
            config.cycles,
        )

        fresh = sim.make_nodes(config.fresh)
        census.aim()
        alive = {k for k in keys if census.holders(k)}
        before = _traffic(sim, replicators)
        missing = sum(census.missing(k) for k in alive)
        join_from = loop.time()
        for node in fresh:
            replicate(node)
        await sim.join_nodes(fresh, full_join=config.full_join)
        joined = loop.time() - join_from
        join = await _phase(
            sim,
            census,
            replicators,
            config,
            sorted(alive),
            config.value_size,
            join_from,
            alive,
            config.cycles,
            before=before,
            missing=missing,
        )
        return RepairSimResult(
            nodes=config.nodes,
            values=len(keys),
            killed=len(victims),
            fresh=len(fresh),
            seed=config.seed,
            interval=config.replication.interval,
            settle_seconds=round(settle, 3),
            kill=kill,
            join_seconds=round(joined, 3),
            join=join,
            virtual_seconds=round(loop.time(), 3),
        )
    finally:
        await asyncio.gather(*(r.stop() for r in replicators))
        await asyncio.gather(*(n.close() for n in sim.nodes))


def run_repair_simulation(config: RepairSimConfig) -> RepairSimResult:
    """Run the repair scenario on a fresh virtual-time loop."""
    return run_virtual(_run(config))
