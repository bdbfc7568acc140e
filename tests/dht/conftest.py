"""A small simulated network for DHT tests (virtual time: waits cost nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from lumera_p2p.dht import DHTOptions, Node
from lumera_p2p.net.virtual_time import run_virtual
from lumera_p2p.sim.network import SimConfig, SimulatedNetwork

T = TypeVar("T")


def in_network(
    nodes: int = 30,
    seed: int = 7,
    node_options: Mapping[int, DHTOptions] | None = None,
    **conditions: Any,
) -> Callable[[Callable[[SimulatedNetwork], Coroutine[Any, Any, T]]], T]:
    """Run ``body(sim)`` on a joined network of ``nodes`` nodes; return its result."""

    def runner(body: Callable[[SimulatedNetwork], Awaitable[T]]) -> T:
        async def main() -> T:
            sim = SimulatedNetwork(SimConfig(nodes=nodes, seed=seed, **conditions), node_options)
            await sim.join_all()
            try:
                return await body(sim)
            finally:
                await asyncio.gather(*(n.close() for n in sim.nodes))

        return run_virtual(main())  # type: ignore[arg-type]

    return runner  # type: ignore[return-value]


async def collect(
    node: Node,
    keys: Sequence[bytes],
    required: int | None = None,
    tx_id: str = "",
    *,
    local_only: bool = False,
) -> dict[bytes, bytes]:
    """A batch retrieve through ``node`` that accepts every value."""
    found: dict[bytes, bytes] = {}

    async def take(key: bytes, value: bytes) -> bool:
        found[key] = value
        return True

    need = len(set(keys)) if required is None else required
    count = await node.batch_retrieve_stream(keys, need, tx_id, take, local_only=local_only)
    assert count == len(found)
    return found
