"""Fetching many values from the network, streaming each to a consumer who may refuse it.

The node reads what it holds locally first and plans only for the missing keys, with the
``need`` values still wanted. Then, as Go's BatchRetrieveStream does:

* **Waves** over each key's providers (its nearest ``replicas`` routing-table nodes). In wave
  ``w`` every key still missing asks exactly one provider,
  ``providers[(fnv1a64(base58(key) + tx_id) % n + w) % n]``: the start point that ``tx_id`` seeds
  spreads the load of many retrievals over the replicas, and each wave moves one provider on.
  A node is asked for its keys in BatchGetValues of at most ``batch_get_keys`` keys, one at a
  time per node, at most ``concurrency`` at once in total. A wave ends when all its requests
  have; the next starts only if values are still needed.
* **Fallback**: keys no provider had get an iterative FIND_VALUE lookup each, at most
  ``fallback_lookups`` at once.

Every value is checked against its key before anyone sees it; a peer that sends one that does
not match is reported (and banned by the node), the rest of that answer is dropped, and the
peer is never asked in this retrieval's lookups. Each verified value is offered to the consumer
as a :class:`~lumera_p2p.dht.plans.events.ValueArrived`, one at a time; a refused value does not
count, so another provider (a later wave, or the fallback) may supply the key. The plan is done
once ``need`` values are accepted, or nothing is left to try.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import base58

from lumera_p2p.content import digest
from lumera_p2p.dht.contacts import ContactReader, answered_as
from lumera_p2p.dht.plans.base import Plan, Request, Routes
from lumera_p2p.dht.plans.events import Answered, Event, Poisoned, ValueArrived
from lumera_p2p.dht.plans.lookup import LookupKind, LookupParams, LookupPlan
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import (
    BatchGetValuesRequest,
    BatchGetValuesResponse,
    KeyValWithClosest,
    Message,
    MessageType,
)


def fnv1a64(data: bytes) -> int:
    """64-bit FNV-1a, Go's ``hash/fnv`` ``New64a``."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def provider_index(key: bytes, tx_id: str, wave: int, count: int) -> int:
    """Which of a key's ``count`` providers wave ``wave`` asks (Go's rotation)."""
    start = fnv1a64(base58.b58encode(key) + tx_id.encode()) % count
    return (start + wave) % count


@dataclass
class BatchRetrieveOutcome:
    """What the network part of a batch retrieve achieved."""

    #: Values the consumer accepted.
    delivered: int = 0
    #: Verified values the consumer refused.
    refused: int = 0
    waves: int = 0
    batch_requests: int = 0
    fallback_lookups: int = 0
    poisoners: list[Contact] = field(default_factory=list)


class BatchRetrievePlan(Plan[BatchRetrieveOutcome]):
    """Retrieve up to ``need`` of ``keys`` (see the module docstring).

    ``nearest[key]`` are the routing-table contacts nearest each key, nearest first (``k`` of
    them): the first ``replicas`` are its providers, all of them seed its fallback lookup.
    ``exclude`` holds routing IDs never to ask in a lookup (ourselves, banned peers).
    """

    def __init__(
        self,
        keys: Sequence[bytes],
        need: int,
        tx_id: str,
        nearest: Mapping[bytes, Sequence[Contact]],
        reader: ContactReader,
        params: LookupParams,
        *,
        replicas: int = 6,
        batch_get_keys: int = 600,
        concurrency: int = 8,
        fallback_lookups: int = 8,
        exclude: frozenset[bytes] = frozenset(),
    ) -> None:
        super().__init__()
        self._keys = list(dict.fromkeys(keys))
        self._need = need
        self._tx_id = tx_id
        self._nearest = nearest
        self._reader = reader
        self._params = params
        self._providers = {k: list(nearest.get(k, ()))[:replicas] for k in self._keys}
        self._batch_get_keys = batch_get_keys
        self._concurrency = concurrency
        self._fallback_limit = fallback_lookups
        self._exclude = set(exclude)
        self._outcome = BatchRetrieveOutcome()
        self._delivered: set[bytes] = set()
        self._offers: deque[tuple[bytes, bytes, Contact]] = deque()
        self._offered: bytes | None = None
        # Waves: per node, the chunks of keys still to ask, one request in flight per node.
        self._waves = max((len(p) for p in self._providers.values()), default=0)
        self._wave = -1
        self._chunks: dict[bytes, deque[list[bytes]]] = {}
        self._peers: dict[bytes, Contact] = {}
        self._ready: deque[bytes] = deque()
        self._asked: dict[int, tuple[Contact, list[bytes]]] = {}
        # Fallback: FIND_VALUE lookups, started lazily.
        self._routes = Routes(self)
        self._pending_lookups: deque[bytes] | None = None
        self._lookups: list[tuple[bytes, LookupPlan]] = []
        self._finished = False
        self._advance()

    # --- Plan -------------------------------------------------------------------------

    def poll(self, now: float) -> list[Request]:
        out: list[Request] = []
        polled: set[int] = set()
        while not self._finished:
            # A lookup that ends here (its last requests timed out) frees a slot for the next,
            # which must be polled now too: nothing else would wake the plan for it.
            fresh = [p for _, p in self._lookups if id(p) not in polled]
            for lookup in fresh:
                polled.add(id(lookup))
                out += self._routes.pump(lookup, now)
                self._lookup_progress(lookup)
            while self._ready and len(self._asked) < self._concurrency:
                out.append(self._ask_next())
            self._advance()
            if all(id(p) in polled for _, p in self._lookups):
                break
        return out

    def next_deadline(self) -> float | None:
        times = [d for _, p in self._lookups if (d := p.next_deadline()) is not None]
        return min(times) if times else None

    def next_event(self) -> Event | None:
        event = super().next_event()
        if event is not None or self._offered is not None:
            return event
        while self._offers and not self._satisfied:
            key, value, peer = self._offers.popleft()
            if key not in self._delivered:
                self._offered = key
                return ValueArrived(key, value, peer)
        return None

    @property
    def done(self) -> bool:
        return self._finished

    def result(self) -> BatchRetrieveOutcome:
        return self._outcome

    def on_response(self, token: int, message: Message, now: float) -> None:
        route = self._routes.take(token)
        if route is not None:
            plan, inner = route
            plan.on_response(inner, message, now)
            self._routes.settle(plan)
            self._lookup_progress(plan)
            self._advance()
            return
        asked = self._asked.pop(token, None)
        if asked is None:
            return
        peer, chunk = asked
        body = message.data
        if isinstance(body, BatchGetValuesResponse):
            self._emit(Answered(answered_as(peer, message)))
            self._take_values(peer, chunk, body)
        self._chunk_done(peer)

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        route = self._routes.take(token)
        if route is not None:
            plan, inner = route
            plan.on_failure(inner, error, now)
            self._routes.settle(plan)
            self._lookup_progress(plan)
            self._advance()
            return
        asked = self._asked.pop(token, None)
        if asked is not None:
            self._chunk_done(asked[0])  # as Go does: no penalty, the next chunk still goes

    def on_verdict(self, key: bytes, accepted: bool, now: float) -> None:
        if key != self._offered:
            raise ValueError("a verdict for a value that was not offered")
        self._offered = None
        if accepted:
            self._delivered.add(key)
            self._outcome.delivered += 1
        else:
            self._outcome.refused += 1
        self._advance()

    # --- inside -----------------------------------------------------------------------

    def _ask_next(self) -> Request:
        """A BatchGetValues for the next chunk of the node first in line."""
        hashed = self._ready.popleft()
        peer, chunk = self._peers[hashed], self._chunks[hashed].popleft()
        token = self._token()
        self._asked[token] = (peer, chunk)
        self._outcome.batch_requests += 1
        request = BatchGetValuesRequest(
            data={k.hex(): KeyValWithClosest(value=b"", closest=[]) for k in chunk}
        )
        return Request(token, peer, MessageType.BATCH_GET_VALUES, request)

    @property
    def _satisfied(self) -> bool:
        return len(self._delivered) >= self._need

    def _take_values(self, peer: Contact, chunk: list[bytes], body: BatchGetValuesResponse) -> None:
        asked = {k.hex(): k for k in chunk}
        for hex_key, entry in (body.data or {}).items():
            key = asked.get(hex_key)
            if key is None or entry is None or not entry.value:
                continue
            value = bytes(entry.value)
            if digest(value) != key:
                self._poisoned(peer, key)
                return  # nothing more from this peer is trusted
            self._offers.append((key, value, peer))

    def _poisoned(self, peer: Contact, key: bytes) -> None:
        self._outcome.poisoners.append(peer)
        self._exclude.add(peer.hashed_id)
        self._emit(Poisoned(peer, key))

    def _chunk_done(self, peer: Contact) -> None:
        if self._chunks.get(peer.hashed_id):
            self._ready.append(peer.hashed_id)  # its next chunk queues behind the others
        self._advance()

    def _lookup_progress(self, plan: Plan[object]) -> None:
        for key, lookup in self._lookups:
            if lookup is plan and lookup.done:
                self._lookups.remove((key, lookup))
                outcome = lookup.result()
                self._outcome.poisoners += outcome.poisoners
                self._exclude.update(p.hashed_id for p in outcome.poisoners)
                if outcome.value is not None and outcome.value_from is not None:
                    self._offers.append((key, outcome.value, outcome.value_from))
                return

    def _advance(self) -> None:
        """Start the next wave, the fallback, or finish, when the current step is over."""
        if self._finished:
            return
        if self._satisfied:
            self._finish()
            return
        if self._offers or self._offered is not None:
            return  # the consumer's answers may be all we need
        if self._asked or self._ready:
            return
        while self._pending_lookups is None and self._wave + 1 < self._waves:
            self._wave += 1
            if self._plan_wave():
                return
        if self._pending_lookups is None:
            self._pending_lookups = deque(k for k in self._keys if k not in self._delivered)
        while self._pending_lookups and len(self._lookups) < self._fallback_limit:
            self._start_lookup(self._pending_lookups.popleft())
        if not self._lookups and not self._pending_lookups:
            self._finish()

    def _plan_wave(self) -> bool:
        """Group the missing keys by the provider this wave asks; False if none is left."""
        by_peer: dict[bytes, list[bytes]] = {}
        for key in self._keys:
            nodes = self._providers[key]
            if key in self._delivered or not nodes:
                continue
            peer = nodes[provider_index(key, self._tx_id, self._wave, len(nodes))]
            by_peer.setdefault(peer.hashed_id, []).append(key)
            self._peers[peer.hashed_id] = peer
        if not by_peer:
            return False
        self._outcome.waves += 1
        step = self._batch_get_keys
        for hashed, keys in by_peer.items():
            self._chunks[hashed] = deque(keys[i : i + step] for i in range(0, len(keys), step))
            self._ready.append(hashed)
        return True

    def _start_lookup(self, key: bytes) -> None:
        lookup = LookupPlan(
            LookupKind.VALUE,
            key,
            self._nearest.get(key, ()),
            self._reader,
            self._params,
            exclude=self._exclude,
        )
        self._outcome.fallback_lookups += 1
        self._routes.settle(lookup)  # its LookupStarted event
        if not lookup.done:  # without seeds there is nobody to ask
            self._lookups.append((key, lookup))

    def _finish(self) -> None:
        self._finished = True
        self._abandon(list(self._asked))
        self._asked.clear()
        self._ready.clear()
        for _, lookup in self._lookups:
            self._routes.drop(lookup)
        self._lookups.clear()
        self._offers.clear()
