"""Keeping the routing table honest: pings, the health check, and the LRU probe.

* :class:`PingPlan`: ping peers (joining, or checking one). An answer from the peer we called
  clears its ban-list failures and adds it to the table; no answer counts on the ban list.
* :class:`HealthCheckPlan`: ping every contact of the table (the Go node's 5-minute activity
  loop, without its dependence on the public internet); a peer that does not answer also counts
  toward eviction, so repeated failures remove it.
* :class:`ProbePlan`: a full bucket's oldest contact is pinged before a newcomer may take its
  place (classic Kademlia; Go drops the newcomer): it stays if it answers, else it is evicted
  and the freshest replacement promoted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from lumera_p2p.dht.contacts import ContactReader, answered_as
from lumera_p2p.dht.plans.base import Plan, Request
from lumera_p2p.dht.plans.events import (
    Answered,
    Cleared,
    ProbeAnswered,
    ProbeFailed,
    Struck,
    Unanswered,
)
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import Message, MessageType


@dataclass
class PingOutcome:
    """Who answered and who did not, in the order the answers came."""

    answered: list[Contact] = field(default_factory=list)
    failed: list[Contact] = field(default_factory=list)


class PingPlan(Plan[PingOutcome]):
    """Ping ``peers``, at most ``concurrency`` at once (all at once when None)."""

    def __init__(
        self,
        peers: Iterable[Contact],
        reader: ContactReader,
        *,
        concurrency: int | None = None,
    ) -> None:
        super().__init__()
        self._queue = deque(peers)
        self._reader = reader
        self._concurrency = concurrency
        self._in_flight: dict[int, Contact] = {}
        self._outcome = PingOutcome()

    def poll(self, now: float) -> list[Request]:
        out: list[Request] = []
        while self._queue and (
            self._concurrency is None or len(self._in_flight) < self._concurrency
        ):
            peer = self._queue.popleft()
            token = self._token()
            self._in_flight[token] = peer
            out.append(Request(token, peer, MessageType.PING, None))
        return out

    @property
    def done(self) -> bool:
        return not self._queue and not self._in_flight

    def result(self) -> PingOutcome:
        return self._outcome

    def on_response(self, token: int, message: Message, now: float) -> None:
        peer = self._in_flight.pop(token, None)
        if peer is None:
            return
        # Someone else answering for the peer we dialled is no sign that the peer is alive.
        answered = self._reader.contact(message.sender) or peer
        if answered.id != peer.id:
            self._missed(peer)
            return
        self._outcome.answered.append(peer)
        self._emit(Cleared(peer))
        self._emit(Answered(answered_as(peer, message)))  # with the version it advertised

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        peer = self._in_flight.pop(token, None)
        if peer is not None:
            self._emit(Struck(peer))
            self._missed(peer)

    def _missed(self, peer: Contact) -> None:
        self._outcome.failed.append(peer)


class HealthCheckPlan(PingPlan):
    """Ping every contact; one that does not answer also counts toward its eviction."""

    def _missed(self, peer: Contact) -> None:
        super()._missed(peer)
        self._emit(Unanswered(peer))


class ProbePlan(Plan[bool]):
    """Ping the oldest contact of a full bucket; the result says whether it answered."""

    def __init__(self, head: Contact) -> None:
        super().__init__()
        self.head = head
        self._answer: bool | None = None
        self._sent = False

    def poll(self, now: float) -> list[Request]:
        if self._sent:
            return []
        self._sent = True
        return [Request(self._token(), self.head, MessageType.PING, None)]

    @property
    def done(self) -> bool:
        return self._answer is not None

    def result(self) -> bool:
        return bool(self._answer)

    def on_response(self, token: int, message: Message, now: float) -> None:
        if self._answer is None:
            self._answer = True
            self._emit(ProbeAnswered(self.head))

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        if self._answer is None:
            self._answer = False
            self._emit(Struck(self.head))
            self._emit(ProbeFailed(self.head))
