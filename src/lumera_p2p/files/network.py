"""What files need of the node: store values on their replicas (again, to those that did not
acknowledge), count the replicas a key can have, and fetch values by key.

:class:`NodeValues` adapts a :class:`~lumera_p2p.dht.Node` to that. A store runs the node's own
batch-store plan (:class:`~lumera_p2p.dht.plans.BatchStorePlan`) through ``Node.run``, so the
put learns exactly which node acknowledged which value (``store_batch`` only says whether the
batch as a whole did well enough), and can send a value again to just the nodes that did not.
Each store first waits, if need be, until every receiver's share fits under its write quota
(:mod:`.pacing`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from lumera_p2p.dht import Node
from lumera_p2p.dht.plans import BatchStorePlan
from lumera_p2p.files.pacing import Share, WritePacer
from lumera_p2p.kademlia import Contact

#: ``accept(key, value)``: the value arrived (already checked against its key); False refuses it.
Accept = Callable[[bytes, bytes], Awaitable[bool]]
#: Per key, the addresses of the nodes that acknowledged storing it.
Acked = dict[bytes, set[str]]


class FileNetwork(Protocol):
    """The DHT as the file drivers use it (keys are raw 32-byte digests)."""

    async def store_values(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        task_id: str,
        acked: Mapping[bytes, set[str]] | None = None,
    ) -> Acked:
        """Send each value (``keys[i]`` is the key of ``values[i]``) to its replica nodes, but
        not to those in ``acked[key]``; return who acknowledged. Without ``acked`` the values
        are first committed here. Never raises for a node that fails."""
        ...

    def replica_count(self, key: bytes) -> int:
        """How many store-eligible nodes a key has now (at most ``dht.replicas``)."""
        ...

    async def fetch(self, keys: Sequence[bytes], tx_id: str, accept: Accept) -> int:
        """Hand each key's value to ``accept`` (local first, then the network); return how
        many were accepted."""
        ...


class NodeValues:
    """:class:`FileNetwork` over one node; ``local_only`` fetches from its own store only.

    ``pacer`` paces stores to the receivers' write quotas (one per node, shared by its puts,
    since a receiver's quota spans them); None sends at once.
    """

    def __init__(
        self, node: Node, *, local_only: bool = False, pacer: WritePacer | None = None
    ) -> None:
        self._node = node
        self._local_only = local_only
        self._pacer = pacer

    async def store_values(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        task_id: str,
        acked: Mapping[bytes, set[str]] | None = None,
    ) -> Acked:
        if acked is None:
            await self._node.values.store_batch(values, datatype=0, is_original=True)
        done: Mapping[bytes, set[str]] = acked or {}
        targets: list[list[Contact]] = [
            [c for c in self._node.store_targets(key) if c.address not in done.get(key, set())]
            for key in keys
        ]
        # A key with no node left to ask is not sent (the plan would refuse the whole batch).
        sent = [i for i, t in enumerate(targets) if t]
        result: Acked = {key: set() for key in keys}
        if not sent:
            return result
        await self._pace([values[i] for i in sent], [targets[i] for i in sent])
        opts = self._node.options
        plan = BatchStorePlan(
            [keys[i] for i in sent],
            [values[i] for i in sent],
            [targets[i] for i in sent],
            task_id=task_id,
            chunk_bytes=opts.batch_store_bytes,
            concurrency=opts.batch_store_concurrency,
            min_success=opts.min_batch_store_success,
        )
        report = await self._node.run(plan)
        ok = {address for address, fine in report.per_node.items() if fine}
        for i in sent:
            result[keys[i]] = {c.address for c in targets[i] if c.address in ok}
        return result

    def replica_count(self, key: bytes) -> int:
        return len(self._node.store_targets(key))

    async def _pace(self, values: Sequence[bytes], targets: Sequence[Sequence[Contact]]) -> None:
        pacer = self._pacer
        if pacer is None:
            return
        nbytes: dict[str, int] = {}
        nvalues: dict[str, int] = {}
        for value, nodes in zip(values, targets, strict=True):
            for contact in nodes:
                nbytes[contact.address] = nbytes.get(contact.address, 0) + len(value)
                nvalues[contact.address] = nvalues.get(contact.address, 0) + 1
        shares = {a: Share(nbytes[a], nvalues[a]) for a in nbytes}
        # Charged before the wait, which comes to the same as charging when it ends (the
        # pacer's time only moves on), so another put of this node queues behind this one.
        delay = pacer.delay(shares, self._node.now())
        pacer.charge(shares, self._node.now())
        if delay > 0:
            await asyncio.sleep(delay)

    async def fetch(self, keys: Sequence[bytes], tx_id: str, accept: Accept) -> int:
        return await self._node.batch_retrieve_stream(
            list(keys), len(set(keys)), tx_id, accept, local_only=self._local_only
        )
