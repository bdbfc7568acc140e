"""Storing many values on the network, after one local transaction (Go's IterateBatchStore).

Each key goes to its ``replicas`` nearest store-eligible nodes in the routing table (chosen by
the node before the plan starts); each node gets its share in BatchStoreData requests of at
most ``chunk_bytes`` (Go sends one message per node, which fails past the 400 MB frame limit),
at most ``concurrency`` at once, spread over the nodes: the next request goes to the node with
the fewest in flight (of those, the one with the most left to send), so every receiver (its
connection, its decoder, its disk writer) has work while the others commit, rather than one
node taking a run of requests while the rest wait. The batch succeeds when at least
``min_success`` of the requests do; requests a node refused as "not store-eligible" are left
out of that count, as in Go, and the node is sent nothing more until the next allowlist.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from lumera_p2p.dht.plans.base import Plan, Request
from lumera_p2p.dht.plans.events import RefusedStore, Struck
from lumera_p2p.dht.statuses import is_ok, refuses_store
from lumera_p2p.errors import RpcTimeout, TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import (
    BatchStoreDataRequest,
    Message,
    MessageType,
    StoreDataResponse,
)

#: A node's first request carries at most 1/RAMP_START of ``chunk_bytes``, and no less than
#: RAMP_MIN_BYTES (or ``chunk_bytes`` if smaller): see :func:`_index_chunks`.
RAMP_START = 8
RAMP_MIN_BYTES = 1024 * 1024


@dataclass
class BatchStoreReport:
    """What a batch store achieved; ``failure`` says why it did not succeed, if it did not."""

    keys: list[bytes]
    task_id: str = ""
    requests: int = 0
    succeeded: int = 0
    refused_not_eligible: int = 0
    #: Per node address: did every request to it succeed?
    per_node: dict[str, bool] = field(default_factory=dict)
    #: Per key (in ``keys`` order): how many peers acknowledged it.
    replicas: list[int] = field(default_factory=list)
    timeouts: int = 0
    failure: str | None = None

    @property
    def min_replicas(self) -> int:
        """The fewest peers any one key reached (0 for an empty batch)."""
        return min(self.replicas, default=0)

    @property
    def success_rate(self) -> float:
        """Succeeded ÷ counted requests (refusals by non-eligible peers are not counted)."""
        counted = self.requests - self.refused_not_eligible
        return self.succeeded / counted if counted else 0.0


def chunks_by_size(values: Sequence[bytes], limit: int) -> list[list[bytes]]:
    """Split ``values`` into runs of at most ``limit`` bytes (a larger value goes alone)."""
    chunks: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for value in values:
        if current and size + len(value) > limit:
            chunks.append(current)
            current, size = [], 0
        current.append(value)
        size += len(value)
    if current:
        chunks.append(current)
    return chunks


def _index_chunks(indices: list[int], values: Sequence[bytes], limit: int) -> list[list[int]]:
    """``indices`` split as :func:`chunks_by_size` splits their values, except that a node's
    first chunks are smaller: 1/:data:`RAMP_START` of ``limit`` (but at least
    :data:`RAMP_MIN_BYTES`), doubling up to ``limit``.

    Requests sent together finish their transfers together (the loop serves their streams
    in turn); a small first request reaches its node's disk writer early, so the writers
    commit while the larger requests are still on the wire instead of all waiting for
    the first full-size wave.
    """
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    cap = max(min(limit, RAMP_MIN_BYTES), limit // RAMP_START)
    for i in indices:
        if current and size + len(values[i]) > cap:
            chunks.append(current)
            current, size = [], 0
            cap = min(limit, cap * 2)
        current.append(i)
        size += len(values[i])
    if current:
        chunks.append(current)
    return chunks


class BatchStorePlan(Plan[BatchStoreReport]):
    """Send each key's value to its targets (see the module docstring).

    ``targets[i]`` are the nodes for ``keys[i]`` / ``values[i]``, nearest first.
    """

    def __init__(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        targets: Sequence[Sequence[Contact]],
        *,
        datatype: int = 0,
        task_id: str = "",
        chunk_bytes: int = 8 * 1024 * 1024,
        concurrency: int = 16,
        min_success: float = 0.75,
    ) -> None:
        super().__init__()
        if not len(keys) == len(values) == len(targets):
            raise ValueError("keys, values and targets must have one entry per value")
        self._datatype = datatype
        self._concurrency = concurrency
        self._min_success = min_success
        self._report = BatchStoreReport(keys=list(keys), task_id=task_id, replicas=[0] * len(keys))
        self._values = values
        #: Per node (by hashed id): its chunks not sent yet, and its requests in flight.
        self._queues: dict[bytes, deque[list[int]]] = {}
        self._busy: dict[bytes, int] = {}
        self._contacts: dict[bytes, Contact] = {}
        self._in_flight: dict[int, tuple[Contact, list[int]]] = {}
        self._finished = False
        by_node: dict[bytes, list[int]] = {}
        nodes: dict[bytes, Contact] = {}
        orphans = 0
        for index, peers in enumerate(targets):
            if not peers:
                orphans += 1
            for contact in peers:
                by_node.setdefault(contact.hashed_id, []).append(index)
                nodes[contact.hashed_id] = contact
        if not keys:
            self._finished = True
        elif not by_node:
            self._fail("no store-eligible peers for any key: stored locally only")
        elif orphans:
            self._fail(f"no eligible store peers for {orphans}/{len(keys)} keys")
        else:
            for hashed, indices in by_node.items():
                self._queues[hashed] = deque(_index_chunks(indices, values, chunk_bytes))
                self._busy[hashed] = 0
            self._contacts = nodes

    # --- Plan -------------------------------------------------------------------------

    def poll(self, now: float) -> list[Request]:
        out: list[Request] = []
        queues = self._queues
        while queues and len(self._in_flight) < self._concurrency:
            # The least busy node with work left; on a tie the one with the most left, so
            # the nodes with the larger shares do not finish alone at the end.
            hashed = min(queues, key=lambda h: (self._busy[h], -len(queues[h])))
            pending = queues[hashed]
            chunk = pending.popleft()
            if not pending:
                del queues[hashed]
            self._busy[hashed] += 1
            peer = self._contacts[hashed]
            token = self._token()
            self._in_flight[token] = (peer, chunk)
            values = [self._values[i] for i in chunk]
            data = BatchStoreDataRequest(data=values, type=self._datatype)
            out.append(Request(token, peer, MessageType.BATCH_STORE_DATA, data))
        return out

    @property
    def done(self) -> bool:
        return self._finished

    def result(self) -> BatchStoreReport:
        return self._report

    def on_response(self, token: int, message: Message, now: float) -> None:
        sent = self._in_flight.pop(token, None)
        if sent is None:
            return
        peer, chunk = sent
        self._busy[peer.hashed_id] -= 1
        body = message.data
        status = body.status if isinstance(body, StoreDataResponse) else None
        ok = is_ok(status)
        refused = not ok and refuses_store(status)
        if refused:
            self._emit(RefusedStore(peer))
        if ok:
            for i in chunk:
                self._report.replicas[i] += 1
        self._count(peer, ok, refused)

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        sent = self._in_flight.pop(token, None)
        if sent is None:
            return
        peer, _ = sent
        self._busy[peer.hashed_id] -= 1
        self._report.timeouts += isinstance(error, RpcTimeout)
        self._emit(Struck(peer))  # Go counts a failed BatchStoreData on the ban list
        self._count(peer, False, False)

    # --- inside -----------------------------------------------------------------------

    def _count(self, peer: Contact, ok: bool, refused: bool) -> None:
        report = self._report
        report.requests += 1
        report.succeeded += ok
        report.refused_not_eligible += refused
        report.per_node[peer.address] = report.per_node.get(peer.address, True) and ok
        if self._queues or self._in_flight:
            return
        self._finished = True
        if report.requests == report.refused_not_eligible:
            report.failure = "no store operations were performed"
        elif report.success_rate < self._min_success:
            report.failure = (
                f"batch store reached {report.succeeded}/{report.requests} nodes "
                f"({report.success_rate:.0%} < {self._min_success:.0%})"
            )

    def _fail(self, reason: str) -> None:
        self._report.failure = reason
        self._finished = True
