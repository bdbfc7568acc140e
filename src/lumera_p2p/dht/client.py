"""The DHT operations over a :class:`~lumera_p2p.dht.core.Transport`.

Each operation drives the pure :class:`~lumera_p2p.kademlia.Lookup` with real requests:
ask it whom to query, send, feed back answers and failures, and wake for its deadlines.
Every value that arrives from a peer is checked against its key before anyone sees it; a peer
that sends a value that does not hash to its key is banned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import base58

from lumera_p2p.content import digest
from lumera_p2p.dht.core import DHTCore
from lumera_p2p.dht.server import BATCH_NOT_STORE_ELIGIBLE, NOT_STORE_ELIGIBLE
from lumera_p2p.errors import LumeraP2PError, TransportError
from lumera_p2p.kademlia import Contact, Lookup
from lumera_p2p.kademlia.node import hash_id
from lumera_p2p.wire.messages import (
    BatchFindNodeRequest,
    BatchFindNodeResponse,
    BatchGetValuesRequest,
    BatchGetValuesResponse,
    BatchStoreDataRequest,
    FindNodeRequest,
    FindNodeResponse,
    FindValueRequest,
    FindValueResponse,
    KeyValWithClosest,
    MessageType,
    ResultType,
    StoreDataRequest,
    StoreDataResponse,
)

log = logging.getLogger(__name__)

#: What one lookup step learned: the peer as its answer describes it (advertised version),
#: the contacts it returned, and the value if it had one.
Answer: TypeAlias = tuple[Contact, list[Contact], bytes | None]

#: A batch store succeeds when at least this share of per-node requests succeed (Go: 75 %).
MIN_BATCH_STORE_SUCCESS = 0.75
#: Parallel BatchStoreData requests (Go: min(16, nodes)).
BATCH_STORE_CONCURRENCY = 16
#: Keys asked of one node in one BatchGetValues (Go's per-node wave cap).
BATCH_GET_KEYS = 600
#: Parallel BatchGetValues requests in a batch retrieve.
BATCH_GET_CONCURRENCY = 8
#: Parallel single-key lookups for keys a batch retrieve found nowhere in the routing table.
FALLBACK_LOOKUPS = 8


class StoreFailed(LumeraP2PError):
    """A network store did not reach enough nodes."""


class PoisonedValue(TransportError):
    """A peer served a value that does not hash to its key."""


@dataclass
class LookupOutcome:
    """The result of an iterative lookup."""

    closest: list[Contact]
    value: bytes | None = None
    value_from: Contact | None = None
    messages: int = 0
    rounds: int = 0
    failures: int = 0


@dataclass
class BatchStoreReport:
    """What a batch store achieved."""

    keys: list[bytes]
    requests: int = 0
    succeeded: int = 0
    refused_not_eligible: int = 0
    per_node: dict[str, bool] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        """Succeeded ÷ counted requests (refusals by non-eligible peers are not counted)."""
        counted = self.requests - self.refused_not_eligible
        return self.succeeded / counted if counted else 0.0


def _by_distance(contacts: list[Contact], target: bytes) -> list[Contact]:
    t = int.from_bytes(target, "big")

    def dist(c: Contact) -> int:
        return c.int_id ^ t

    return sorted(contacts, key=dist)


def _chunks_by_size(values: list[bytes], limit: int) -> list[list[bytes]]:
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


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class DHTClient:
    """Lookups, stores and retrievals of one node."""

    def __init__(self, core: DHTCore) -> None:
        self.core = core

    # --- the lookup driver ---------------------------------------------------------------

    async def _drive(
        self,
        lookup: Lookup,
        ask: Callable[[Contact], Awaitable[Answer]],
    ) -> LookupOutcome:
        """Run ``lookup`` to completion, asking peers with ``ask``."""
        core = self.core
        pending: dict[asyncio.Task[Answer], Contact] = {}
        try:
            while True:
                for peer in lookup.poll(core.now()):
                    # A retry supersedes an attempt the lookup already gave up on: its late
                    # failure must not count against the new one.
                    for stale in [t for t, p in pending.items() if p.hashed_id == peer.hashed_id]:
                        stale.cancel()
                        del pending[stale]
                    pending[asyncio.ensure_future(ask(peer))] = peer
                if lookup.done or not pending:
                    break
                deadline = lookup.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - core.now())
                done, _ = await asyncio.wait(
                    pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    peer = pending.pop(task)
                    error = None if task.cancelled() else task.exception()
                    if task.cancelled() or error is not None:
                        lookup.on_failure(
                            peer, core.now(), retry=not isinstance(error, PoisonedValue)
                        )
                        core.table.failed(peer.hashed_id, core.options.max_failures)
                        continue
                    answered, contacts, value = task.result()
                    core.seen(answered)
                    lookup.on_response(peer, contacts, core.now(), value=value)
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        stats = lookup.stats
        return LookupOutcome(
            closest=lookup.closest(),
            value=lookup.value,
            value_from=lookup.value_from,
            messages=stats.messages,
            rounds=stats.rounds,
            failures=stats.failures,
        )

    def _new_lookup(self, target: bytes, *, find_value: bool = False) -> Lookup:
        core = self.core
        banned = core.banned_set()
        seeds = core.table.closest(target, core.options.k, banned)
        core.table.touch(target, core.now())
        return Lookup(
            target,
            seeds,
            k=core.options.k,
            alpha=core.options.alpha,
            timeout=core.options.lookup_timeout,
            stall_timeout=core.options.lookup_stall,
            find_value=find_value,
            exclude=banned | {core.me.hashed_id},
            retries=core.options.lookup_retries,
        )

    async def find_node(self, target: bytes) -> LookupOutcome:
        """The ``k`` nodes nearest a 32-byte routing-space ``target``, by iterative lookup.

        Asks with BatchFindNode, whose server side (Go's included) takes a 32-byte target as
        it is; Go's FindNode server would hash it once more and answer for the wrong region.
        """
        core = self.core

        async def ask(peer: Contact) -> Answer:
            response = await core.call(
                peer, MessageType.BATCH_FIND_NODE, BatchFindNodeRequest(hashed_target=[target])
            )
            body = response.data
            if not isinstance(body, BatchFindNodeResponse):
                raise TransportError(f"{peer}: BatchFindNode answered {type(body).__name__}")
            nodes = (body.closest_nodes or {}).get(base58.b58encode(target).decode(), [])
            return core.answered(peer, response), core.contacts_from_wire(nodes), None

        return await self._drive(self._new_lookup(target), ask)

    async def find_node_id(self, node_id: bytes) -> LookupOutcome:
        """The nodes nearest a node ID, asked with FindNode as Go does (bootstrap, self-lookup)."""
        core = self.core
        target = hash_id(node_id)

        async def ask(peer: Contact) -> Answer:
            response = await core.call(peer, MessageType.FIND_NODE, FindNodeRequest(target=node_id))
            body = response.data
            if not isinstance(body, FindNodeResponse):
                raise TransportError(f"{peer}: FindNode answered {type(body).__name__}")
            return core.answered(peer, response), core.contacts_from_wire(body.closest), None

        return await self._drive(self._new_lookup(target), ask)

    async def find_value(self, key: bytes) -> LookupOutcome:
        """Iterative FIND_VALUE of a 32-byte key; the value, if found, is hash-checked."""
        core = self.core

        async def ask(peer: Contact) -> Answer:
            response = await core.call(peer, MessageType.FIND_VALUE, FindValueRequest(target=key))
            body = response.data
            if not isinstance(body, FindValueResponse):
                raise TransportError(f"{peer}: FindValue answered {type(body).__name__}")
            value = bytes(body.value) if body.value else None
            if value is not None and digest(value) != key:
                self.penalise_poisoner(peer, key)
                raise PoisonedValue(f"{peer}: sent a value that does not hash to its key")
            return core.answered(peer, response), core.contacts_from_wire(body.closest), value

        return await self._drive(self._new_lookup(key, find_value=True), ask)

    def penalise_poisoner(self, peer: Contact, key: bytes) -> None:
        """Ban a peer that served a value not matching its key, and count it."""
        core = self.core
        core.counters.poisoned_values += 1
        core.bans.ban(peer.hashed_id, core.now(), peer.address, hard=True)
        core.table.remove(peer.hashed_id)
        log.warning("%s served a value that does not hash to %s: banned", peer, key.hex())

    # --- store ---------------------------------------------------------------------------

    def _store_targets(self, candidates: Iterable[Contact]) -> list[Contact]:
        """The first ``replicas`` store-eligible candidates."""
        out: list[Contact] = []
        for contact in candidates:
            if self.core.eligibility.store(contact.hashed_id):
                out.append(contact)
                if len(out) >= self.core.options.replicas:
                    break
        return out

    async def store(self, data: bytes, datatype: int = 0) -> tuple[bytes, int]:
        """Store locally (committed), then on the nearest store-eligible nodes.

        Returns the key and how many remote nodes acknowledged it. Nodes that fail are
        replaced by the next nearest until ``replicas`` have it or candidates run out.
        """
        core = self.core
        (key,) = await core.store.store_batch([data], datatype=datatype, is_original=True)
        outcome = await self.find_node(key)
        candidates = [c for c in outcome.closest if core.eligibility.store(c.hashed_id)]
        stored = 0
        index = 0
        replicas = core.options.replicas
        while stored < replicas and index < len(candidates):
            wave = candidates[index : index + replicas - stored]
            index += len(wave)
            results = await asyncio.gather(*(self._store_one(c, data, datatype) for c in wave))
            stored += sum(results)
        return key, stored

    async def _store_one(self, peer: Contact, data: bytes, datatype: int) -> bool:
        core = self.core
        try:
            response = await core.call(
                peer, MessageType.STORE_DATA, StoreDataRequest(data=data, type=datatype)
            )
        except TransportError as exc:
            log.debug("store to %s failed: %s", peer, exc)
            return False
        body = response.data
        if not isinstance(body, StoreDataResponse) or body.status is None:
            return False
        if body.status.result != int(ResultType.OK):
            if NOT_STORE_ELIGIBLE in (body.status.err_msg or ""):
                core.eligibility.refused_store(peer.hashed_id)
            return False
        return True

    async def store_batch(self, values: Sequence[bytes], datatype: int = 0) -> BatchStoreReport:
        """Store values locally in one transaction, then send each node its share.

        Keys are grouped by their ``replicas`` nearest store-eligible nodes in the routing
        table; each node gets one BatchStoreData. Raises ``StoreFailed`` when no node is
        eligible for some key, or fewer than 75 % of the per-node requests succeed (requests
        refused because the peer is not store-eligible are left out of the count, as in Go).
        """
        core = self.core
        keys = await core.store.store_batch(values, datatype=datatype, is_original=True)
        report = BatchStoreReport(keys=keys)
        if not values:
            return report
        banned = core.banned_set()
        eligible = [c for c in core.table if c.hashed_id not in banned]
        by_node: dict[bytes, list[int]] = {}
        nodes: dict[bytes, Contact] = {}
        orphans = 0
        for index, key in enumerate(keys):
            targets = self._store_targets(_by_distance(eligible, key))
            if not targets:
                orphans += 1
            for contact in targets:
                by_node.setdefault(contact.hashed_id, []).append(index)
                nodes[contact.hashed_id] = contact
        if not by_node:
            raise StoreFailed("no store-eligible peers for any key: stored locally only")
        if orphans:
            raise StoreFailed(f"no eligible store peers for {orphans}/{len(keys)} keys")
        gate = asyncio.Semaphore(BATCH_STORE_CONCURRENCY)

        async def send(hashed: bytes, payload: list[bytes]) -> None:
            peer = nodes[hashed]
            async with gate:
                ok, refused = await self._batch_store_one(peer, payload, datatype)
            report.requests += 1
            report.succeeded += ok
            report.refused_not_eligible += refused
            report.per_node[peer.address] = report.per_node.get(peer.address, True) and ok

        await asyncio.gather(
            *(
                send(h, chunk)
                for h, indices in by_node.items()
                for chunk in _chunks_by_size(
                    [values[i] for i in indices], core.options.batch_store_bytes
                )
            )
        )
        if report.requests == report.refused_not_eligible:
            raise StoreFailed("no store operations were performed")
        if report.success_rate < MIN_BATCH_STORE_SUCCESS:
            raise StoreFailed(
                f"batch store reached {report.succeeded}/{report.requests} nodes "
                f"({report.success_rate:.0%} < {MIN_BATCH_STORE_SUCCESS:.0%})"
            )
        return report

    async def _batch_store_one(
        self, peer: Contact, values: list[bytes], datatype: int
    ) -> tuple[bool, bool]:
        """One BatchStoreData; returns (succeeded, refused as not store-eligible)."""
        core = self.core
        try:
            response = await core.call(
                peer,
                MessageType.BATCH_STORE_DATA,
                BatchStoreDataRequest(data=values, type=datatype),
            )
        except TransportError as exc:
            core.bans.increment(peer.hashed_id, core.now(), peer.address)
            log.info("batch store to %s failed: %s", peer, exc)
            return False, False
        body = response.data
        if not isinstance(body, StoreDataResponse) or body.status is None:
            return False, False
        if body.status.result == int(ResultType.OK):
            return True, False
        if BATCH_NOT_STORE_ELIGIBLE in (body.status.err_msg or "") or NOT_STORE_ELIGIBLE in (
            body.status.err_msg or ""
        ):
            core.eligibility.refused_store(peer.hashed_id)
            return False, True
        return False, False

    # --- retrieve ------------------------------------------------------------------------

    async def retrieve_network(self, key: bytes) -> bytes | None:
        """FIND_VALUE over the network (the local store is not consulted)."""
        outcome = await self.find_value(key)
        return outcome.value

    async def batch_retrieve_stream(
        self,
        keys: Sequence[bytes],
        required: int,
        tx_id: str,
        on_value: Callable[[bytes, bytes], Awaitable[bool]],
        *,
        local_only: bool = False,
    ) -> int:
        """Deliver values to ``on_value(key, value)`` until ``required`` have been delivered.

        Local values first; then each missing key is asked of its nearest nodes in the routing
        table with BatchGetValues (one provider per key per wave, rotating from a start point
        that ``tx_id`` seeds, as Go's stream does), then, for keys no known node had, a
        FIND_VALUE lookup. ``on_value`` returns False to refuse a value (another provider is
        then asked). Returns how many were delivered.
        """
        core = self.core
        if required <= 0 or not keys:
            return 0
        wanted = list(dict.fromkeys(keys))
        delivered: set[bytes] = set()
        local = await core.store.retrieve_many(wanted)
        for key in wanted:
            if key in local and len(delivered) < required and await on_value(key, local[key]):
                delivered.add(key)
        if len(delivered) >= required or local_only:
            return len(delivered)
        missing = [k for k in wanted if k not in delivered]
        banned = core.banned_set()
        providers: dict[bytes, list[Contact]] = {
            k: core.table.closest(k, core.options.replicas, banned) for k in missing
        }
        waves = max((len(p) for p in providers.values()), default=0)
        gate = asyncio.Semaphore(BATCH_GET_CONCURRENCY)
        for wave in range(waves):
            if len(delivered) >= required:
                break
            asks: dict[bytes, list[bytes]] = {}
            contacts: dict[bytes, Contact] = {}
            for key in missing:
                if key in delivered or not providers[key]:
                    continue
                nodes = providers[key]
                start = _fnv1a64(base58.b58encode(key) + tx_id.encode()) % len(nodes)
                peer = nodes[(start + wave) % len(nodes)]
                asks.setdefault(peer.hashed_id, []).append(key)
                contacts[peer.hashed_id] = peer

            async def ask(peer: Contact, batch: list[bytes]) -> None:
                for start in range(0, len(batch), BATCH_GET_KEYS):
                    if len(delivered) >= required:
                        return
                    chunk = batch[start : start + BATCH_GET_KEYS]
                    async with gate:
                        found = await self._batch_get(peer, chunk)
                    for key, value in found.items():
                        if key in delivered or len(delivered) >= required:
                            continue
                        if await on_value(key, value):
                            delivered.add(key)

            await asyncio.gather(*(ask(contacts[h], ks) for h, ks in asks.items()))
        remaining = [k for k in missing if k not in delivered]
        if remaining and len(delivered) < required:
            lookups = asyncio.Semaphore(FALLBACK_LOOKUPS)

            async def look(key: bytes) -> None:
                if len(delivered) >= required:
                    return
                async with lookups:
                    if len(delivered) >= required:
                        return
                    value = await self.retrieve_network(key)
                if value is not None and len(delivered) < required and await on_value(key, value):
                    delivered.add(key)

            await asyncio.gather(*(look(k) for k in remaining))
        return len(delivered)

    async def _batch_get(self, peer: Contact, keys: list[bytes]) -> dict[bytes, bytes]:
        """One BatchGetValues; returns only values that hash to their keys."""
        core = self.core
        request = BatchGetValuesRequest(
            data={k.hex(): KeyValWithClosest(value=b"", closest=[]) for k in keys}
        )
        try:
            response = await core.call(peer, MessageType.BATCH_GET_VALUES, request)
        except TransportError as exc:
            log.debug("batch get from %s failed: %s", peer, exc)
            return {}
        body = response.data
        if not isinstance(body, BatchGetValuesResponse):
            return {}
        core.seen(core.answered(peer, response))
        asked = {k.hex(): k for k in keys}
        out: dict[bytes, bytes] = {}
        for hex_key, entry in (body.data or {}).items():
            key = asked.get(hex_key)
            if key is None or entry is None or not entry.value:
                continue
            value = bytes(entry.value)
            if digest(value) != key:
                self.penalise_poisoner(peer, key)
                return out  # nothing more from this peer is trusted
            out[key] = value
        return out


def closest_target(key: str) -> bytes:
    """``NClosestNodes``'s target: the base58-decoded key if it is 32 bytes, else BLAKE3 of it."""
    try:
        raw = base58.b58decode(key)
    except ValueError:
        raw = b""
    return raw if len(raw) == 32 else hash_id(key.encode())
