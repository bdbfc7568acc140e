"""``DHT``: one node's public operations, with content keys in their base58 spelling.

This is the Go client's API (``p2p/client.go``) in Python: ``store``, ``retrieve``,
``store_batch``, ``batch_retrieve``, ``batch_retrieve_stream``, ``delete``, ``local_store``,
``disable_key`` / ``enable_key``, ``get_local_keys``, ``n_closest_nodes``; plus ``bootstrap``
and ``refresh`` for the service's background loops, and ``handle`` for the transports.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from lumera_p2p.content import digest, key_from_bytes, key_to_bytes
from lumera_p2p.dht.client import BatchStoreReport, DHTClient, closest_target
from lumera_p2p.dht.core import DHTCore, DHTOptions, Transport
from lumera_p2p.dht.eligibility import Eligibility
from lumera_p2p.dht.server import RequestHandler
from lumera_p2p.dht.valuestore import ValueStore
from lumera_p2p.errors import NotFound, TransportError, ValueMismatch
from lumera_p2p.kademlia import Contact
from lumera_p2p.kademlia.node import hash_id
from lumera_p2p.wire.messages import Message, MessageType

log = logging.getLogger(__name__)


class KeyDisabled(NotFound):
    """The key was disabled on this node (``disable_key``)."""


class NotEnoughValues(NotFound):
    """A local-only batch retrieve found fewer values than required; ``found`` has them."""

    def __init__(self, message: str, found: dict[str, bytes]) -> None:
        super().__init__(message)
        self.found = found


@dataclass(frozen=True)
class DHTStats:
    """A snapshot for ``stats``."""

    peers: int
    banned: int
    records: int
    rpc_sent: int
    rpc_failed: int
    poisoned_values: int
    requests_handled: int


class DHT:
    """A Kademlia node: routing, storage and the operations over a transport."""

    def __init__(
        self,
        me: Contact,
        store: ValueStore,
        transport: Transport,
        *,
        options: DHTOptions | None = None,
        eligibility: Eligibility | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.core = DHTCore(me, store, transport, options=options, eligibility=eligibility, rng=rng)
        self.client = DHTClient(self.core)
        self.handler = RequestHandler(self.core)

    @property
    def me(self) -> Contact:
        """This node's contact."""
        return self.core.me

    async def handle(self, request: Message, peer_id: bytes) -> Message:
        """Answer a request from an authenticated peer (transports call this)."""
        return await self.handler.handle(request, peer_id)

    # --- membership ----------------------------------------------------------------------

    async def ping(self, peer: Contact) -> bool:
        """Ping ``peer``; on an answer add it to the routing table and clear its failures."""
        try:
            response = await self.core.call(peer, MessageType.PING, None)
        except TransportError:
            self.core.bans.increment(peer.hashed_id, self.core.now(), peer.address)
            return False
        answered = self.core.contact_from_wire(response.sender) or peer
        if answered.id != peer.id:
            return False
        self.core.bans.clear(peer.hashed_id)
        self.core.seen(self.core.answered(peer, response))
        return True

    async def check_peers(self, concurrency: int = 32) -> tuple[int, int]:
        """Ping every routing-table contact; failures count toward eviction (the Go node's
        5-minute activity loop, without its dependence on the public internet).

        Returns (answered, failed).
        """
        gate = asyncio.Semaphore(concurrency)
        contacts = list(self.core.table)

        async def one(contact: Contact) -> bool:
            async with gate:
                ok = await self.ping(contact)
            if not ok:
                self.core.table.failed(contact.hashed_id, self.core.options.max_failures)
            return ok

        results = await asyncio.gather(*(one(c) for c in contacts))
        answered = sum(results)
        return answered, len(results) - answered

    async def bootstrap(self, seeds: Iterable[Contact]) -> int:
        """Join through ``seeds``: ping them, look ourselves up, refresh farther buckets.

        Returns the size of the routing table afterwards.
        """
        seeds = [s for s in seeds if s.hashed_id != self.me.hashed_id]
        await asyncio.gather(*(self.ping(s) for s in seeds))
        if len(self.core.table) == 0:
            return 0
        await self.client.find_node_id(self.me.id)
        await self.refresh(force=True)
        return len(self.core.table)

    async def refresh(self, *, force: bool = False) -> int:
        """Look up a random ID in every stale bucket (all from the nearest occupied one when
        ``force``); return how many lookups ran."""
        core = self.core
        age = 0.0 if force else core.options.bucket_refresh_age
        stale = core.table.stale_buckets(core.now(), age)
        targets = [core.table.random_id_in_bucket(i, core.rng) for i in stale]
        await asyncio.gather(*(self.client.find_node(t) for t in targets))
        return len(targets)

    # --- the client API ------------------------------------------------------------------

    async def store(self, data: bytes, datatype: int = 0) -> str:
        """Store ``data`` locally and on the nearest nodes; return its base58 key."""
        key, replicas = await self.client.store(bytes(data), datatype)
        if replicas < self.core.options.replicas and len(self.core.table):
            log.info(
                "stored %s on %d of %d replicas",
                key_from_bytes(key),
                replicas,
                self.core.options.replicas,
            )
        return key_from_bytes(key)

    async def retrieve(self, key: str, local_only: bool = False) -> bytes | None:
        """The value of ``key``: local first, then the network (None if nowhere).

        Raises ``KeyDisabled`` for a disabled key, ``NotFound`` for a local-only miss, and
        ``InvalidContentKey`` for a malformed key.
        """
        raw = key_to_bytes(key)
        store = self.core.store
        if await store.is_disabled(raw):
            raise KeyDisabled(f"key is disabled: {key}")
        value = await store.retrieve(raw)
        if value is not None:
            return value
        if local_only:
            raise NotFound(f"not stored locally: {key}")
        return await self.client.retrieve_network(raw)

    async def store_batch(
        self, values: Sequence[bytes], datatype: int = 0, task_id: str = ""
    ) -> BatchStoreReport:
        """Store values locally (one transaction), then across the network (see client)."""
        return await self.client.store_batch([bytes(v) for v in values], datatype)

    async def batch_retrieve(
        self,
        keys: Sequence[str],
        required: int | None = None,
        tx_id: str = "",
        local_only: bool = False,
    ) -> dict[str, bytes]:
        """Values of ``keys`` (base58 → bytes), stopping once ``required`` are in hand.

        ``required`` defaults to all keys. A local-only call that finds fewer raises
        ``NotEnoughValues`` carrying what it found; over the network a shortfall is not an
        error (the result is simply smaller), as in Go.
        """
        raw = [key_to_bytes(k) for k in keys]
        need = len(set(raw)) if required is None else required
        found: dict[str, bytes] = {}

        async def collect(key: bytes, value: bytes) -> bool:
            found[key_from_bytes(key)] = value
            return True

        await self.client.batch_retrieve_stream(raw, need, tx_id, collect, local_only=local_only)
        if local_only and len(found) < need:
            raise NotEnoughValues(f"local-only: found {len(found)}, required {need}", found)
        return found

    async def batch_retrieve_stream(
        self,
        keys: Sequence[str],
        required: int,
        tx_id: str,
        on_value: Callable[[str, bytes], Awaitable[object]],
        local_only: bool = False,
    ) -> int:
        """Like ``batch_retrieve`` but hands each value to ``on_value(key, value)``.

        If ``on_value`` raises, the key is not counted and another provider may supply it.
        Returns how many values were delivered.
        """
        raw = [key_to_bytes(k) for k in keys]

        async def deliver(key: bytes, value: bytes) -> bool:
            try:
                await on_value(key_from_bytes(key), value)
            except Exception as exc:  # the caller refused this value; try another provider
                log.info("on_value refused %s: %s", key_from_bytes(key), exc)
                return False
            return True

        count = await self.client.batch_retrieve_stream(
            raw, required, tx_id, deliver, local_only=local_only
        )
        if local_only and count < required:
            raise NotEnoughValues(f"local-only: found {count}, required {required}", {})
        return count

    async def delete(self, key: str) -> bool:
        """Delete the local copy of ``key`` (nothing remote); return whether it was here."""
        return await self.core.store.delete(key_to_bytes(key))

    async def local_store(self, key: str, data: bytes) -> str:
        """Store ``data`` locally only, under ``key``, which it must hash to."""
        raw = key_to_bytes(key)
        if digest(data) != raw:
            raise ValueMismatch(f"data does not hash to key {key}")
        await self.core.store.store_batch([(raw, bytes(data))], is_original=True)
        return key

    async def disable_key(self, key: str) -> None:
        """Refuse single-key retrieval of ``key`` on this node for a while."""
        await self.core.store.disable_key(key_to_bytes(key))

    async def enable_key(self, key: str) -> None:
        """Undo ``disable_key``."""
        await self.core.store.enable_key(key_to_bytes(key))

    async def get_local_keys(self, start: datetime | None, end: datetime) -> list[str]:
        """Base58 keys stored locally with ``createdAt`` in (start, end)."""
        keys = await self.core.store.get_local_keys(start, end)
        return [key_from_bytes(k) for k in keys]

    def n_closest_nodes(self, n: int, key: str, ignores: Iterable[str] = ()) -> list[str]:
        """Addresses of the ``n`` routing-table nodes nearest ``key`` (no network call).

        ``key`` is base58; if it does not decode to 32 bytes it is hashed. Banned nodes and
        ``ignores`` (addresses) are left out; we are never included.
        """
        target = closest_target(key)
        skip = {hash_id(i.encode()) for i in ignores}
        return [c.address for c in self.core.closest(target, n, skip)]

    async def stats(self) -> DHTStats:
        """Counters and sizes."""
        core = self.core
        return DHTStats(
            peers=len(core.table),
            banned=len(core.banned_set()),
            records=await core.store.count(),
            rpc_sent=core.counters.rpc_sent,
            rpc_failed=core.counters.rpc_failed,
            poisoned_values=core.counters.poisoned_values,
            requests_handled=core.counters.requests_handled,
        )

    async def close(self) -> None:
        """Stop background probes."""
        await self.core.stop_background()


__all__ = ["DHT", "DHTStats", "KeyDisabled", "NotEnoughValues"]
