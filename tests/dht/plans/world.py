"""A world of scripted peers and a synchronous driver for plans: no event loop, no clock.

:func:`drive` is a discrete-event loop: requests a plan sends are answered by the
:class:`World` after a latency drawn from a seeded ``random.Random``, or, from a silent peer,
fail when their timeout passes. Time jumps from one event (an answer, a failure, the plan's
deadline) to the next. The same seed gives the same run, request for request.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import base58

from lumera_p2p.content import digest
from lumera_p2p.dht.contacts import ContactReader, wire_node
from lumera_p2p.dht.eligibility import Eligibility
from lumera_p2p.dht.options import GO_RPC_TIMEOUTS
from lumera_p2p.dht.plans import Event, Plan, Request, ValueArrived
from lumera_p2p.dht.statuses import failed, ok
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact, RoutingTable, hash_id
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
    Message,
    MessageData,
    MessageType,
    StoreDataRequest,
    StoreDataResponse,
)

ME = Contact(b"lumera-me", "10.9.9.9", 4445)


class _Bodyless:
    """Marker: answer with a message that has no body (Ping)."""


BODYLESS = _Bodyless()

#: What a peer does with a request: answer with a body (or ``BODYLESS``), fail, or stay
#: silent (None: the request times out).
Reply = MessageData | _Bodyless | TransportError | None
Behaviour = Callable[["ScriptedPeer", Request], Reply]


class Fixed(random.Random):
    """A random source whose every draw is ``value``: a backoff's jitter, pinned."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def reader(self_hash: bytes = ME.hashed_id) -> ContactReader:
    """A contact reader for plans, on private addresses (the world's)."""
    return ContactReader(self_hash, Eligibility(), allow_private=True)


@dataclass
class ScriptedPeer:
    """One peer: a routing table to answer lookups from, values, and how it behaves."""

    contact: Contact
    #: Its routing table, or how to build it when first needed (a lookup asks dozens of the
    #: world's peers, not all of them).
    known: RoutingTable | Callable[[], RoutingTable]
    values: dict[bytes, bytes] = field(default_factory=dict)
    alive: bool = True
    #: Overrides the honest answer when set (return ``...``-free: a Reply).
    behaviour: Behaviour | None = None
    requests: list[Request] = field(default_factory=list)

    @property
    def table(self) -> RoutingTable:
        if not isinstance(self.known, RoutingTable):
            self.known = self.known()
        return self.known

    def honest(self, request: Request, k: int = 20) -> Reply:
        data = request.data
        if isinstance(data, BatchFindNodeRequest):
            target = bytes(data.hashed_target[0])
            near = [wire_node(c) for c in self.table.closest(target, k)]
            return BatchFindNodeResponse(
                status=ok(), closest_nodes={base58.b58encode(target).decode(): near}
            )
        if isinstance(data, FindNodeRequest):
            raw = bytes(data.target)
            target = raw if len(raw) == 32 else hash_id(raw)
            return FindNodeResponse(
                status=ok(), closest=[wire_node(c) for c in self.table.closest(target, k)]
            )
        if isinstance(data, FindValueRequest):
            key = bytes(data.target)
            if key in self.values:
                return FindValueResponse(status=ok(), closest=[], value=self.values[key])
            near = [wire_node(c) for c in self.table.closest(key, k)]
            return FindValueResponse(status=failed("value not found"), closest=near)
        if isinstance(data, StoreDataRequest):
            value = bytes(data.data)
            self.values[digest(value)] = value
            return StoreDataResponse(status=ok())
        if isinstance(data, BatchStoreDataRequest):
            for value in data.data:
                self.values[digest(bytes(value))] = bytes(value)
            return StoreDataResponse(status=ok())
        if isinstance(data, BatchGetValuesRequest):
            out = {}
            for hex_key in data.data:
                value = self.values.get(bytes.fromhex(hex_key), b"")
                out[hex_key] = KeyValWithClosest(value=value, closest=[])
            return BatchGetValuesResponse(data=out, status=ok())
        return BODYLESS  # a Ping: an answer without a body


class World:
    """Peers by routing ID; :meth:`reply` answers a plan's request as the peer would."""

    def __init__(self, peers: Iterable[ScriptedPeer]) -> None:
        self.peers = {p.contact.hashed_id: p for p in peers}

    @classmethod
    def random(cls, n: int, seed: int, k: int = 20, dead: float = 0.0) -> World:
        """``n`` peers, each knowing every other (bounded by its k-buckets)."""
        rng = random.Random(seed)
        contacts = [
            Contact(b"lumera-w%d-%d" % (seed, i), f"10.0.{i // 250}.{i % 250 + 1}", 4445)
            for i in range(n)
        ]

        def table_of(c: Contact, seed: int) -> Callable[[], RoutingTable]:
            def build() -> RoutingTable:
                table = RoutingTable(c.hashed_id, k=k)
                for other in random.Random(seed).sample(contacts, len(contacts)):
                    table.add(other, 0)
                return table

            return build

        peers = [
            ScriptedPeer(c, table_of(c, rng.getrandbits(64)), alive=rng.random() >= dead)
            for c in contacts
        ]
        return cls(peers)

    def contacts(self) -> list[Contact]:
        return [p.contact for p in self.peers.values()]

    def alive(self) -> list[Contact]:
        return [p.contact for p in self.peers.values() if p.alive]

    def nearest(self, target: bytes, n: int, *, alive_only: bool = True) -> list[Contact]:
        t = int.from_bytes(target, "big")
        pool = self.alive() if alive_only else self.contacts()
        return sorted(pool, key=lambda c: c.int_id ^ t)[:n]

    def reply(self, request: Request) -> Reply:
        peer = self.peers.get(request.peer.hashed_id)
        if peer is None:
            return TransportError(f"{request.peer}: connection refused")
        peer.requests.append(request)
        if not peer.alive:
            return None
        if peer.behaviour is not None:
            return peer.behaviour(peer, request)
        return peer.honest(request)


@dataclass
class Trace:
    """What a run did, in order."""

    sent: list[tuple[float, Request]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    max_in_flight: int = 0
    #: The most requests outstanding to one peer at once.
    max_per_peer: int = 0
    end: float = 0.0
    polls: int = 0

    def sent_types(self) -> list[MessageType]:
        return [r.mtype for _, r in self.sent]

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def drive(
    plan: Plan[object],
    world: World | Callable[[Request], Reply],
    *,
    seed: int = 0,
    latency: tuple[float, float] = (0.005, 0.05),
    timeouts: Mapping[MessageType, float] = GO_RPC_TIMEOUTS,
    consume: Callable[[bytes, bytes], bool] | None = None,
    max_steps: int = 1_000_000,
) -> Trace:
    """Run ``plan`` to completion against ``world``; return what happened."""
    rng = random.Random(seed)
    reply = world.reply if isinstance(world, World) else world
    trace = Trace()
    now = 0.0
    order = itertools.count()
    arrivals: list[tuple[float, int, int, Message | TransportError]] = []
    outstanding: dict[int, Request] = {}

    def settle() -> None:
        while (event := plan.next_event()) is not None:
            trace.events.append(event)
            if isinstance(event, ValueArrived):
                accepted = True if consume is None else consume(event.key, event.value)
                plan.on_verdict(event.key, accepted, now)

    for _ in range(max_steps):
        trace.polls += 1
        for request in plan.poll(now):
            trace.sent.append((now, request))
            if request.supersedes is not None:
                assert request.supersedes in outstanding, "supersedes a token not outstanding"
                outstanding.pop(request.supersedes)
                trace.cancelled.append(request.supersedes)
            assert request.token not in outstanding, "a token used twice"
            outstanding[request.token] = request
            answer = reply(request)
            timeout = request.timeout or timeouts.get(request.mtype, 15.0)
            if answer is None:
                outcome: Message | TransportError = TransportError("no answer")
                at = now + timeout
            elif isinstance(answer, TransportError):
                outcome, at = answer, now + rng.uniform(*latency) / 2
            else:
                body = None if isinstance(answer, _Bodyless) else answer
                outcome = Message(
                    sender=wire_node(request.peer),
                    receiver=wire_node(ME),
                    message_type=int(request.mtype),
                    data=body,
                )
                delay = rng.uniform(*latency) + rng.uniform(*latency)
                if delay > timeout:
                    outcome, delay = TransportError("too slow"), timeout
                at = now + delay
            heapq.heappush(arrivals, (at, next(order), request.token, outcome))
        for token in plan.abandoned():
            if outstanding.pop(token, None) is not None:
                trace.cancelled.append(token)
        trace.max_in_flight = max(trace.max_in_flight, len(outstanding))
        per_peer: dict[bytes, int] = {}
        for r in outstanding.values():
            per_peer[r.peer.hashed_id] = per_peer.get(r.peer.hashed_id, 0) + 1
        trace.max_per_peer = max([trace.max_per_peer, *per_peer.values()])
        settle()
        if plan.done:
            trace.end = now
            return trace
        deadline = plan.next_deadline()
        while arrivals and arrivals[0][2] not in outstanding:
            heapq.heappop(arrivals)  # cancelled: nothing is reported for it
        if not arrivals:
            assert deadline is not None, "the plan waits for nothing"
            now = max(now, deadline)
            continue
        at = arrivals[0][0]
        if deadline is not None and deadline < at:
            now = max(now, deadline)
            continue
        now = at
        while arrivals and arrivals[0][0] <= now:
            _, _, token, outcome = heapq.heappop(arrivals)
            if outstanding.pop(token, None) is None:
                continue
            if isinstance(outcome, TransportError):
                plan.on_failure(token, outcome, now)
            else:
                plan.on_response(token, outcome, now)
            settle()
    raise AssertionError("the plan did not finish")
