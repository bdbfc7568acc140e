"""What files need of the node: store values and count their replicas, fetch values by key.

:class:`NodeValues` adapts a :class:`~lumera_p2p.dht.Node` to that; the put and get drivers
see only these two calls, so they never reach into the node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from lumera_p2p.dht import Node
from lumera_p2p.files.ledger import Acks

#: ``accept(key, value)``: the value arrived (already checked against its key); False refuses it.
Accept = Callable[[bytes, bytes], Awaitable[bool]]


class FileNetwork(Protocol):
    """The DHT as the file drivers use it (keys are raw 32-byte digests)."""

    async def store_values(
        self, keys: Sequence[bytes], values: Sequence[bytes], task_id: str
    ) -> dict[bytes, Acks]:
        """Store values (``keys[i]`` is the key of ``values[i]``) here and on their replicas;
        return each key's acknowledgements. Raises ``StoreFailed`` as ``store_batch`` does."""
        ...

    async def fetch(self, keys: Sequence[bytes], tx_id: str, accept: Accept) -> int:
        """Hand each key's value to ``accept`` (local first, then the network); return how
        many were accepted."""
        ...


class NodeValues:
    """:class:`FileNetwork` over one node; ``local_only`` fetches from its own store only."""

    def __init__(self, node: Node, *, local_only: bool = False) -> None:
        self._node = node
        self._local_only = local_only

    async def store_values(
        self, keys: Sequence[bytes], values: Sequence[bytes], task_id: str
    ) -> dict[bytes, Acks]:
        # The nodes the batch store will choose, asked just before it runs: if the routing table
        # changes in between, a node counted here and not sent to (or the other way round) is
        # simply not counted, which only ever under-counts replicas.
        targets = {key: [c.address for c in self._node.store_targets(key)] for key in keys}
        report = await self._node.store_batch(values, task_id=task_id)
        ok = {address for address, fine in report.per_node.items() if fine}
        return {
            key: Acks(sum(address in ok for address in nodes), len(nodes))
            for key, nodes in targets.items()
        }

    async def fetch(self, keys: Sequence[bytes], tx_id: str, accept: Accept) -> int:
        return await self._node.batch_retrieve_stream(
            list(keys), len(set(keys)), tx_id, accept, local_only=self._local_only
        )
