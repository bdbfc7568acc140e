"""The nine RPC handlers, with the Go node's semantics and without its weaknesses.

Differences from Go that a Go peer can observe, each deliberate:

* The message's ``Sender.ID`` must be the identity the secure channel authenticated; a
  mismatch is a protocol error and the connection closes (Go never compares them).
* Stores are acknowledged after the local commit, not after queueing; a failed commit answers
  ``Failed`` instead of a silent loss.
* ``FindNode`` treats a 32-byte target as a point in routing space and hashes anything else
  (a node ID), like ``FindValue`` and ``BatchFindNode`` do. Go hashes every FindNode target
  again, so its own store path asks for nodes near BLAKE3(key) instead of near the key. Go
  clients re-sort the answer by their target, so they accept either; ours is the right region.
* Requests carrying too many keys or malformed keys are answered ``Failed`` (Go has no cap).
* Every ``Node`` we return carries a 32-byte ``HashedID`` computed by us.
* BatchGetValues and BatchFindValues are capped in all and per peer; over a cap a request
  waits for a slot, then is answered Failed ``Busy``. Their answers, and a FindValue of a
  large value, only carry the values that fit the request's memory reservation
  (``dht/answer_budget.py``): the rest is left out (absent, or ``done = false``), and when
  nothing fits the answer is Failed ``Busy`` rather than an empty "not here".
* Stores and Replicate announcements count against per-peer quotas (``dht/quotas.py``);
  over its quota a peer is answered Failed, and only a peer that keeps going is cut off.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

from lumera_p2p.b58 import encode as b58_encode
from lumera_p2p.content import digest, hex_to_bytes
from lumera_p2p.dht.answer_budget import fit_values
from lumera_p2p.dht.contacts import wire_node
from lumera_p2p.dht.counters import DHTCounters, ServingCounters
from lumera_p2p.dht.find_values_payload import compress_values
from lumera_p2p.dht.options import ServingLimits
from lumera_p2p.dht.quotas import Decision, PeerQuotas, Verdict
from lumera_p2p.dht.statuses import (
    BATCH_NODE_FULL,
    BATCH_NOT_STORE_ELIGIBLE,
    NODE_FULL,
    NOT_STORE_ELIGIBLE,
    failed,
    ok,
)
from lumera_p2p.errors import (
    InvalidContentKey,
    LumeraP2PError,
    OverBudget,
    ProtocolError,
    StorageFull,
    ValueTooLarge,
)
from lumera_p2p.kademlia import Contact, hash_id
from lumera_p2p.net.budget import current_reservation
from lumera_p2p.net.frames import LazyBytes
from lumera_p2p.net.slots import RequestSlots
from lumera_p2p.store.local import ReplicationKey
from lumera_p2p.wire.envelope import MAX_VALUE_SIZE
from lumera_p2p.wire.messages import (
    BatchFindNodeRequest,
    BatchFindNodeResponse,
    BatchFindValuesRequest,
    BatchFindValuesResponse,
    BatchGetValuesRequest,
    BatchGetValuesResponse,
    BatchStoreDataRequest,
    FindNodeRequest,
    FindNodeResponse,
    FindValueRequest,
    FindValueResponse,
    KeyValWithClosest,
    Message,
    MessageData,
    MessageType,
    ReplicateDataRequest,
    ReplicateDataResponse,
    StoreDataRequest,
    StoreDataResponse,
)
from lumera_p2p.wire.messages import Node as WireNode

if TYPE_CHECKING:
    from lumera_p2p.dht.node import Node

log = logging.getLogger(__name__)

#: Failed answers of a request that found no slot or no memory: the client may ask again
#: later, or ask another provider (Go's BatchFindValues says "Busy" when its slots are taken).
BUSY = "Busy"
NO_MEMORY = "Busy: no memory for the answer now"
#: Bytes a BatchFindValues answer holds per value byte while it is built: the values, then
#: the compressed payload they become.
ANSWER_COPIES = 2
#: ... and a FindValue or BatchGetValues answer: the values, which the frame references
#: (``net.frames.Frame``) instead of copying.
FRAME_COPIES = 1
#: Requesters remembered by ``RequestHandler._requester`` (then it starts again).
_REQUESTERS_KEPT = 4096
#: Message type names, for the handling counters.
_TYPE_NAMES: dict[int, str] = {t.value: t.name for t in MessageType}
#: FindValue answers up to this size need no reservation (the server's small requests).
SMALL_ANSWER = 64 * 1024
#: FindValue answers with a value at least this large are streamed from a store that can
#: read slices (``SliceReader``): never held whole, and started before the value is read.
STREAMED_VALUE = 16 * 1024 * 1024


@runtime_checkable
class SliceReader(Protocol):
    """A value store that reads part of a value (``LocalStore``; ``MemoryStore`` does not,
    so the simulator, whose transport passes messages as objects, never sees lazy values)."""

    async def value_sizes(self, keys: Sequence[bytes]) -> dict[bytes, int]: ...

    async def read_slice(self, key: bytes, offset: int, length: int) -> bytes: ...


def _hex_keys(keys: list[str]) -> list[bytes] | None:
    """Decode hex keys; None if any is malformed."""
    try:
        return [hex_to_bytes(key) for key in keys]
    except InvalidContentKey:
        return None


def ensure_hashed_target(target: bytes) -> bytes:
    """A lookup target in routing space: 32 bytes as is, anything else (a node ID) hashed."""
    return target if len(target) == 32 else hash_id(target)


class RequestHandler:
    """Answers requests for one node (``Node.handle`` calls :meth:`handle`)."""

    def __init__(self, node: Node, counters: DHTCounters, limits: ServingLimits) -> None:
        self._node = node
        self._counters = counters
        self._limits = limits
        self._find_values_slots = RequestSlots(
            limits.batch_find_values_slots, limits.batch_find_values_per_peer
        )
        self._get_values_slots = RequestSlots(
            limits.batch_get_values_slots, limits.batch_get_values_per_peer
        )
        self._quotas = PeerQuotas(limits.quotas)
        # Requesters by (id, ip, port, version) (see handle).
        self._requesters: dict[tuple[bytes, str, int, str], tuple[Contact, WireNode]] = {}
        # Whether large values are streamed from the store: asked once (a runtime-checkable
        # Protocol's isinstance walks its attributes every time).
        self._slices = isinstance(node.values, SliceReader)
        self._dispatch: dict[int, Callable[[Message, Contact], Awaitable[MessageData | None]]] = {
            MessageType.PING: self._ping,
            MessageType.STORE_DATA: self._store_data,
            MessageType.FIND_NODE: self._find_node,
            MessageType.FIND_VALUE: self._find_value,
            MessageType.REPLICATE: self._replicate,
            MessageType.BATCH_FIND_VALUES: self._batch_find_values,
            MessageType.BATCH_STORE_DATA: self._batch_store_data,
            MessageType.BATCH_FIND_NODE: self._batch_find_node,
            MessageType.BATCH_GET_VALUES: self._batch_get_values,
        }

    def serving_counters(self) -> ServingCounters:
        """The quota and slot refusals so far, and the slots in use now."""
        return ServingCounters(
            quota_refused=self._quotas.refused,
            quota_closed=self._quotas.closed,
            find_values_busy=self._find_values_slots.refused,
            get_values_busy=self._get_values_slots.refused,
            find_values_in_flight=self._find_values_slots.in_use,
            get_values_in_flight=self._get_values_slots.in_use,
        )

    async def handle(self, request: Message, peer_id: bytes) -> Message:
        """Answer ``request`` from the peer authenticated as ``peer_id``.

        Raises ``ProtocolError`` for a request that breaks the protocol (no sender, a sender
        other than the authenticated peer, an unknown type, a body of the wrong type); the
        caller closes the connection.
        """
        sender = request.sender
        if sender is None or not sender.id:
            raise ProtocolError("request without a sender")
        sender_id = bytes(sender.id)
        if sender_id != peer_id:
            raise ProtocolError(f"sender {sender_id!r} is not the authenticated peer {peer_id!r}")
        node = self._node
        if node.too_old(sender.version):
            # Go closes the connection of such a peer without answering; so do we.
            raise ProtocolError(
                f"peer version {sender.version!r} is below the minimum "
                f"{node.options.min_peer_version}"
            )
        mtype = request.message_type
        handler = self._dispatch.get(mtype)
        if handler is None:
            raise ProtocolError(f"unknown message type {mtype}")
        peer, receiver = self._requester(sender_id, sender.ip or "", sender.port, sender.version)
        counters = self._counters
        counters.requests_handled += 1
        # Counted by outcome and duration under the message's name (timed here rather than in
        # a wrapper coroutine: one frame less for every request).
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = "failure"
        try:
            data = await handler(request, peer)
            outcome = "success"
        except asyncio.CancelledError:
            outcome = "timeout"  # the server's handler budget, or shutdown
            raise
        finally:
            counters.observe_handled(_TYPE_NAMES[mtype], outcome, loop.time() - started)
        return Message(
            sender=node.wire_node(node.me),
            receiver=receiver,
            message_type=mtype,
            data=data,
            correlation_id=request.correlation_id,
        )

    def _requester(
        self, node_id: bytes, ip: str, port: int, version: str
    ) -> tuple[Contact, WireNode]:
        """The requester as a contact and as the answer's ``Receiver``, remembered: the same
        few peers ask again and again, and a contact costs a hash of its ID."""
        key = (node_id, ip, port, version)
        known = self._requesters.get(key)
        if known is None:
            if len(self._requesters) >= _REQUESTERS_KEPT:
                self._requesters.clear()
            contact = Contact(node_id, ip, int(port or 0), version)
            known = self._requesters[key] = (contact, wire_node(contact))
        return known

    def _learn(self, peer: Contact) -> None:
        """Add an authenticated requester to the routing table if its address is usable."""
        self._node.learn_requester(peer)

    def _closest_nodes(self, target: bytes, peer: Contact) -> list[WireNode]:
        # Banned contacts are not left out of answers, as in Go (they are only never asked).
        node = self._node
        nearest = node.closest(target, node.options.k, {peer.hashed_id}, include_banned=True)
        return node.wire_nodes(nearest)

    @staticmethod
    def _expect(request: Message, kind: type) -> object:
        if not isinstance(request.data, kind):
            raise ProtocolError(
                f"message type {request.message_type} carries {type(request.data).__name__}, "
                f"expected {kind.__name__}"
            )
        return request.data

    # --- handlers ------------------------------------------------------------------------

    async def _ping(self, request: Message, peer: Contact) -> MessageData | None:
        self._learn(peer)
        return None

    async def _store_data(self, request: Message, peer: Contact) -> MessageData | None:
        body = self._expect(request, StoreDataRequest)
        assert isinstance(body, StoreDataRequest)
        self._learn(peer)
        value = body.data or b""  # a large value is a view into the frame (net/frames.py)
        if len(value) > MAX_VALUE_SIZE:
            # It fits the frame only because its sender's envelope is small: not storable,
            # since it could never be sent on (wire/envelope.py).
            return StoreDataResponse(status=failed(str(ValueTooLarge(len(value), MAX_VALUE_SIZE))))
        node = self._node
        store = node.values
        datatype = int(body.type or 0)
        fast = node.self_store_eligible and self._quotas.would_admit_write(
            peer.address, len(value), 1, node.now()
        )
        # The common case reads nothing on the loop: the quota is charged, and the writer
        # looks for the key as it stores; a value held already costs nothing (refunded).
        # Otherwise a value held already is acknowledged before any refusal.
        if not fast and not await store.missing([digest(value)]):
            return StoreDataResponse(status=ok())  # already held: nothing to do (not read)
        if not node.self_store_eligible:
            return StoreDataResponse(status=failed(NOT_STORE_ELIGIBLE))
        quota = self._write_quota(peer, len(value), 1)
        if not quota.accepted:
            return StoreDataResponse(status=failed(quota.reason))
        try:
            if not await store.store_if_absent(value, datatype=datatype):
                self._quotas.refund_write(peer.address, len(value), 1, node.now())
        except StorageFull as exc:
            log.warning("refused a value from %s: %s", peer, exc)
            return StoreDataResponse(status=failed(NODE_FULL))
        except LumeraP2PError as exc:
            log.error("storing a value from %s failed: %s", peer, exc)
            return StoreDataResponse(status=failed(f"store failed: {exc}"))
        return StoreDataResponse(status=ok())

    async def _find_node(self, request: Message, peer: Contact) -> MessageData | None:
        body = self._expect(request, FindNodeRequest)
        assert isinstance(body, FindNodeRequest)
        self._learn(peer)
        target = ensure_hashed_target(bytes(body.target or b""))
        return FindNodeResponse(status=ok(), closest=self._closest_nodes(target, peer))

    async def _find_value(self, request: Message, peer: Contact) -> MessageData | None:
        body = self._expect(request, FindValueRequest)
        assert isinstance(body, FindValueRequest)
        self._learn(peer)
        target = bytes(body.target or b"")
        if len(target) != 32:
            return FindValueResponse(status=failed("invalid key: want 32 bytes"), closest=[])
        values = self._node.values
        # A small value comes with its size (it needs no room: see ``_room_for``).
        size, value = await values.sized_value(target, SMALL_ANSWER)
        if value is None and size:
            if size >= STREAMED_VALUE and self._slices:
                # Streamed from the store as it is sent: the header goes out now, and the
                # value is never held whole (net/frames.py's LazyBytes).
                read = functools.partial(cast(SliceReader, values).read_slice, target)
                return FindValueResponse(status=ok(), closest=[], value=LazyBytes(size, read))  # type: ignore[arg-type]
            if not await self._room_for(size):
                return FindValueResponse(
                    status=failed(NO_MEMORY), closest=self._closest_nodes(target, peer)
                )
            value = await values.retrieve(target)
        if value:
            return FindValueResponse(status=ok(), closest=[], value=value)
        return FindValueResponse(
            status=failed("value not found"), closest=self._closest_nodes(target, peer)
        )

    async def _replicate(self, request: Message, peer: Contact) -> MessageData | None:
        body = self._expect(request, ReplicateDataRequest)
        assert isinstance(body, ReplicateDataRequest)
        keys_text = list(body.keys or [])
        if len(keys_text) > self._limits.max_keys_per_request:
            return ReplicateDataResponse(status=failed("too many keys"))
        keys = _hex_keys(keys_text)
        if keys is None:
            return ReplicateDataResponse(status=failed("malformed key"))
        if not self._node.acceptable_endpoint(peer.ip, peer.port):
            return ReplicateDataResponse(status=failed("announcer has no reachable address"))
        quota = self._carry_out(
            self._quotas.admit_announcements(peer.address, len(keys), self._node.now()), peer
        )
        if not quota.accepted:
            return ReplicateDataResponse(status=failed(quota.reason))
        missing = await self._node.values.missing(keys)
        await self._node.values.add_replication_keys(
            [ReplicationKey(k, peer.address, peer.ip, peer.port) for k in missing]
        )
        self._node.announced(peer, len(missing))  # wakes the fetch workers
        return ReplicateDataResponse(status=ok())

    async def _batch_find_values(self, request: Message, peer: Contact) -> MessageData | None:
        body = self._expect(request, BatchFindValuesRequest)
        assert isinstance(body, BatchFindValuesRequest)
        keys_text = list(body.keys or [])
        keys = _hex_keys(keys_text) if len(keys_text) <= self._limits.max_keys_per_request else None
        if keys is None:
            return BatchFindValuesResponse(status=failed("malformed or too many keys"))
        limits = self._limits
        async with self._find_values_slots.slot(peer.address, limits.batch_find_values_wait) as got:
            if not got:
                return BatchFindValuesResponse(status=failed(BUSY))
            try:
                # Base64 makes the values a third larger in the JSON document; zstd rarely
                # shrinks stored values, so the cap on their bytes keeps the payload in bounds.
                fitted = await fit_values(
                    self._node.values,
                    keys,
                    cap=limits.batch_find_values_max_bytes * 3 // 4,
                    factor=ANSWER_COPIES,
                    wait=limits.memory_wait,
                )
            except OverBudget:
                return BatchFindValuesResponse(status=failed(NO_MEMORY))
            found = await self._node.values.retrieve_many(fitted.keys)
            payload, done = await asyncio.to_thread(
                compress_values, keys, found, limits.batch_find_values_max_bytes
            )
            del found
        return BatchFindValuesResponse(
            status=ok(), response=payload, done=done and not fitted.trimmed
        )

    async def _batch_store_data(self, request: Message, peer: Contact) -> MessageData | None:
        body = self._expect(request, BatchStoreDataRequest)
        assert isinstance(body, BatchStoreDataRequest)
        self._learn(peer)
        values = [v or b"" for v in (body.data or [])]  # large ones: views into the frame
        too_large = max((len(v) for v in values), default=0)
        if too_large > MAX_VALUE_SIZE:
            return StoreDataResponse(status=failed(str(ValueTooLarge(too_large, MAX_VALUE_SIZE))))
        if not self._node.self_store_eligible:
            keys = [digest(v) for v in values]
            if await self._node.values.missing(keys):
                return StoreDataResponse(status=failed(BATCH_NOT_STORE_ELIGIBLE))
        quota = self._write_quota(peer, sum(len(v) for v in values), len(values))
        if not quota.accepted:
            return StoreDataResponse(status=failed(quota.reason))
        try:
            # Go stores received values as datatype 1 whatever the request says; so do we.
            await self._node.values.store_batch(values, datatype=1)
        except StorageFull as exc:
            log.warning("refused %d values from %s: %s", len(values), peer, exc)
            return StoreDataResponse(status=failed(BATCH_NODE_FULL))
        except LumeraP2PError as exc:
            log.error("storing %d values from %s failed: %s", len(values), peer, exc)
            return StoreDataResponse(status=failed(f"store failed: {exc}"))
        self._counters.values_stored_remote += len(values)
        return StoreDataResponse(status=ok())

    async def _batch_find_node(self, request: Message, peer: Contact) -> MessageData | None:
        body = self._expect(request, BatchFindNodeRequest)
        assert isinstance(body, BatchFindNodeRequest)
        self._learn(peer)
        targets = list(body.hashed_target or [])
        if len(targets) > self._limits.max_keys_per_request:
            return BatchFindNodeResponse(status=failed("too many targets"), closest_nodes={})
        closest: dict[str, list[WireNode]] = {}
        for raw in targets:
            target = ensure_hashed_target(bytes(raw or b""))
            closest[b58_encode(target)] = self._closest_nodes(target, peer)
        return BatchFindNodeResponse(status=ok(), closest_nodes=closest)

    async def _batch_get_values(self, request: Message, peer: Contact) -> MessageData | None:
        body = self._expect(request, BatchGetValuesRequest)
        assert isinstance(body, BatchGetValuesRequest)
        self._learn(peer)
        requested = list((body.data or {}).keys())
        keys = _hex_keys(requested) if len(requested) <= self._limits.max_keys_per_request else None
        if keys is None:
            return BatchGetValuesResponse(data={}, status=failed("malformed or too many keys"))
        limits = self._limits
        async with self._get_values_slots.slot(peer.address, limits.batch_get_values_wait) as got:
            if not got:
                return BatchGetValuesResponse(data={}, status=failed(BUSY))
            try:
                fitted = await fit_values(
                    self._node.values,
                    keys,
                    cap=limits.max_response_value_bytes,
                    factor=FRAME_COPIES,
                    wait=limits.memory_wait,
                )
            except OverBudget:
                return BatchGetValuesResponse(data={}, status=failed(NO_MEMORY))
            found = await self._node.values.retrieve_many(fitted.keys)
        if fitted.trimmed:
            log.info(
                "answering %s with %d of the values it asked for (%d bytes): no room for more",
                peer,
                len(found),
                fitted.value_bytes,
            )
        # What does not fit is answered as absent, as Go answers a key it does not hold: the
        # client asks another provider, or this one again later.
        data = {
            hex_key: KeyValWithClosest(value=found.get(key, b""), closest=[])
            for hex_key, key in zip(requested, keys, strict=True)
        }
        return BatchGetValuesResponse(data=data, status=ok())

    # --- limits --------------------------------------------------------------------------

    def _write_quota(self, peer: Contact, nbytes: int, nvalues: int) -> Decision:
        """Charge a store of ``nvalues`` values, ``nbytes`` in all, to ``peer``'s quota."""
        decision = self._quotas.admit_write(peer.address, nbytes, nvalues, self._node.now())
        return self._carry_out(decision, peer)

    def _carry_out(self, decision: Decision, peer: Contact) -> Decision:
        """Log a refusal; close the connection of a peer that keeps going past its quota."""
        if decision.verdict is Verdict.CLOSE:
            raise ProtocolError(f"{peer} keeps going past its quota: {decision.reason}")
        if decision.verdict is Verdict.REFUSE:
            log.info("refused a request from %s: %s", peer, decision.reason)
        return decision

    async def _room_for(self, size: int) -> bool:
        """Reserve room for answering with a value of ``size`` bytes (if it is large); False
        if there is none within the wait."""
        reservation = current_reservation()
        if reservation is None or size <= SMALL_ANSWER:
            return True
        if not reservation.could_grow(FRAME_COPIES * size):
            return False
        try:
            await reservation.grow(FRAME_COPIES * size, self._limits.memory_wait)
        except OverBudget:
            return False
        return True
