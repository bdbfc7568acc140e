"""Handing a request already in flight over to a plan and the driver.

A single-key retrieve sends its first FindValue itself, before any lookup is built (see
:meth:`lumera_p2p.dht.node.Node.retrieve`): a lookup starts by asking the one nearest peer, and
nearly always that peer holds the value, so the lookup's twenty ranked candidates and the
driver's bookkeeping would cost more than the request. When that first answer is not a verified
value (none, a bad one, a failure, a stall), the ordinary lookup takes over in the state it would
be in had it sent the request itself: its plan is polled at the time the request went out (so it
chose that peer and runs that peer's timers from then), :class:`SentFirst` gives the driver that
request first, and :class:`Adopting` answers it with the call already in flight instead of
sending it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lumera_p2p.dht.driver import AnswerWatcher, Transport
from lumera_p2p.dht.plans import LookupOutcome, LookupPlan
from lumera_p2p.dht.plans.base import Plan, Request
from lumera_p2p.dht.plans.events import Event
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import Message, MessageData


class Watch:
    """The ``on_answer`` of a call sent before its plan exists: keeps what a large answer
    said when it started (and tells ``started``) until a plan takes it (:meth:`take`) or a
    driver adopts the call (:meth:`forward_to`), then forwards to the driver."""

    def __init__(self, started: Callable[[float, float], None]) -> None:
        self._started = started
        self._target: AnswerWatcher | None = None
        self._seen: tuple[float, float] | None = None  # (extra, when), not yet handed on

    def __call__(self, extra: float) -> None:
        if self._target is not None:
            self._target(extra)
            return
        now = asyncio.get_running_loop().time()
        self._seen = (extra, now)
        self._started(extra, now)

    def take(self) -> tuple[float, float] | None:
        """``(extra, when)`` of an answer that started and was not handed on yet."""
        seen, self._seen = self._seen, None
        return seen

    def forward_to(self, target: AnswerWatcher | None) -> None:
        """Hand what the answer says from now on to ``target`` (the driver's watcher),
        starting with a start not handed on yet."""
        self._target = target
        seen = self.take()
        if seen is not None and target is not None:
            target(seen[0])


class Adopting:
    """A :class:`~lumera_p2p.dht.driver.Transport` that answers the one request carrying
    ``data`` (that very object) with ``call``, already in flight, and sends every other.

    A driver that cancels the request cancels ``call`` with it, as it would its own.
    """

    def __init__(
        self,
        transport: Transport,
        data: MessageData | None,
        call: asyncio.Future[Message],
        watch: Watch,
    ) -> None:
        self._transport = transport
        self._data = data
        self._call = call
        self._watch = watch
        self.adopted = False

    async def call(
        self,
        peer: Contact,
        request: Message,
        timeout: float,
        *,
        on_answer: AnswerWatcher | None = None,
    ) -> Message:
        """``call``'s answer for the adopted request; ``transport.call`` for any other."""
        if not self.adopted and request.data is self._data:
            self.adopted = True
            self._watch.forward_to(on_answer)
            return await self._call
        return await self._transport.call(peer, request, timeout, on_answer=on_answer)


class SentFirst(Plan[LookupOutcome]):
    """``plan`` whose first request ``sent`` was polled already: the first :meth:`poll` gives
    it to the driver, before anything new (unless the plan supersedes it in that very poll:
    then ``dropped`` is called, and the driver gets only the new attempt)."""

    def __init__(self, plan: LookupPlan, sent: Request, dropped: Callable[[], object]) -> None:
        super().__init__()
        self._plan = plan
        self._sent: Request | None = sent
        self._dropped = dropped

    def poll(self, now: float) -> list[Request]:
        requests = self._plan.poll(now)
        sent, self._sent = self._sent, None
        if sent is None:
            return requests
        if any(r.supersedes == sent.token for r in requests):
            self._dropped()
            return requests
        return [sent, *requests]

    def next_deadline(self) -> float | None:
        return self._plan.next_deadline()

    def next_event(self) -> Event | None:
        return self._plan.next_event()

    def abandoned(self) -> list[int]:
        return self._plan.abandoned()

    @property
    def done(self) -> bool:
        return self._plan.done

    def result(self) -> LookupOutcome:
        return self._plan.result()

    def on_response(self, token: int, message: Message, now: float) -> None:
        self._plan.on_response(token, message, now)

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        self._plan.on_failure(token, error, now)

    def on_progress(self, token: int, extra: float, now: float) -> None:
        self._plan.on_progress(token, extra, now)
