"""An in-memory transport: many nodes in one process, with injected latency, loss and death.

Requests go straight to the target node's handler, after a random one-way latency each way.
A lost message or a dead target behaves like a silent network: the caller waits for its
timeout and gets a ``TransportError``. With ``encode=True`` every request and response also
goes through the gob codec (slower, but exercises the wire format end to end).
Randomness comes from one seeded ``random.Random``, so a run on the virtual-time loop is
reproducible.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from lumera_p2p.errors import ProtocolError, RpcTimeout, TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import Message, decode_message, encode_message

Handler = Callable[[Message, bytes], Awaitable[Message]]


@dataclass
class NetworkConditions:
    """Latency range (seconds, one way) and loss probability (each direction)."""

    min_latency: float = 0.005
    max_latency: float = 0.050
    loss: float = 0.0


@dataclass
class TrafficCounters:
    """Messages that crossed the simulated network."""

    requests: int = 0
    lost: int = 0
    to_dead: int = 0
    by_type: dict[int, int] = field(default_factory=dict)


class MemoryNetwork:
    """The shared medium: who is reachable, under which conditions."""

    def __init__(
        self,
        rng: random.Random,
        conditions: NetworkConditions | None = None,
        *,
        encode: bool = False,
    ) -> None:
        self.rng = rng
        self.conditions = conditions or NetworkConditions()
        self.encode = encode
        self.handlers: dict[bytes, Handler] = {}
        self.dead: set[bytes] = set()
        self.counters = TrafficCounters()

    def attach(self, node_id: bytes) -> MemoryTransport:
        """The transport a node sends with (it receives nothing until it ``serve``s)."""
        return MemoryTransport(self, node_id)

    def serve(self, node_id: bytes, handler: Handler) -> None:
        """Deliver requests addressed to ``node_id`` to ``handler``."""
        self.handlers[node_id] = handler

    def kill(self, node_id: bytes) -> None:
        """The node stops answering (its handler stays registered for revival)."""
        self.dead.add(node_id)

    def revive(self, node_id: bytes) -> None:
        """The node answers again."""
        self.dead.discard(node_id)

    def _latency(self) -> float:
        c = self.conditions
        return self.rng.uniform(c.min_latency, c.max_latency)

    def _lost(self) -> bool:
        return self.conditions.loss > 0 and self.rng.random() < self.conditions.loss


class MemoryTransport:
    """One node's sending side on a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, node_id: bytes) -> None:
        self.network = network
        self.node_id = node_id

    async def call(
        self,
        peer: Contact,
        request: Message,
        timeout: float,
        *,
        on_answer: Callable[[float], None] | None = None,
    ) -> Message:
        """Deliver ``request`` to ``peer`` and return its answer (see the module docstring).

        Answers arrive whole after their latency, so ``on_answer`` is never called."""
        net = self.network
        net.counters.requests += 1
        net.counters.by_type[request.message_type] = (
            net.counters.by_type.get(request.message_type, 0) + 1
        )
        try:
            # A timeout scope, not wait_for: no extra task per call (the simulator makes
            # hundreds of thousands of them).
            async with asyncio.timeout(timeout):
                return await self._exchange(peer, request)
        except TimeoutError:
            raise RpcTimeout(f"{peer}: no answer within {timeout} s") from None

    async def _exchange(self, peer: Contact, request: Message) -> Message:
        net = self.network
        handler = net.handlers.get(peer.id)
        if self.node_id in net.dead:
            raise TransportError("we are dead")
        if handler is None:
            raise TransportError(f"{peer}: connection refused")
        if net.encode:
            request = decode_message(encode_message(request))
        await asyncio.sleep(net._latency())
        if peer.id in net.dead:
            net.counters.to_dead += 1
            await asyncio.Event().wait()  # silence until the caller's timeout
        if net._lost():
            net.counters.lost += 1
            await asyncio.Event().wait()
        try:
            response = await handler(request, self.node_id)
        except ProtocolError as exc:
            raise TransportError(f"{peer}: closed the connection: {exc}") from exc
        await asyncio.sleep(net._latency())
        if net._lost():
            net.counters.lost += 1
            await asyncio.Event().wait()
        if net.encode:
            response = decode_message(encode_message(response))
        return response
