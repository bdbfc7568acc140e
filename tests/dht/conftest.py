"""A small simulated network for DHT tests (virtual time: waits cost nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import pytest

from lumera_p2p.dht import DHTOptions, Node
from lumera_p2p.net.virtual_time import VirtualTimeLoop, run_virtual
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


Runner = Callable[[Callable[[SimulatedNetwork], Coroutine[Any, Any, None]]], None]


@pytest.fixture(scope="module")
def shared_network() -> Iterator[Runner]:
    """One joined 40-node network on one virtual-time loop for the tests of a module that
    only store and read (each with values of its own): joining is most of their cost. Tests
    that change how nodes behave (poisoners, options) build their own with ``in_network``."""
    loop = VirtualTimeLoop()
    sim = SimulatedNetwork(SimConfig(nodes=40, seed=7))

    async def close() -> None:
        await asyncio.gather(*(n.close() for n in sim.nodes))
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)

    def run(body: Callable[[SimulatedNetwork], Coroutine[Any, Any, None]]) -> None:
        asyncio.set_event_loop(loop)  # other tests' loops come and go in between
        try:
            loop.run_until_complete(body(sim))
        finally:
            asyncio.set_event_loop(None)

    run(lambda sim: sim.join_all())
    try:
        yield run
    finally:
        run(lambda sim: close())
        loop.close()
