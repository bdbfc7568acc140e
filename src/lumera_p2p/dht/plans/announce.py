"""Push replication: ``Replicate`` announcements of keys to the peers that should hold them.

Go's ``Replicate`` (replication.go) sends each active peer its keys in batches of 5,000 hex
keys, retrying a failed batch with exponential backoff (given up after 45 s), and stops with
that peer at the first batch that fails for good; the peer's cursor advances only when every
batch went through. This plan does the sending; what to send and which cursor to advance is the
replication coordinator's (``dht.replication``), before and after it runs.

Unlike Go, which announces to one peer after another, peers are served ``concurrency`` at a
time (a peer that never answers costs one timeout, not the whole cycle's). A peer's batches go
one at a time, in order. A batch that timed out is not retried: Go's 3-minute call outlasts its
45-second backoff, so Go never retries one either, and with a shorter timeout a silent peer
would otherwise hold the cycle for the whole backoff.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lumera_p2p.dht.contacts import answered_as
from lumera_p2p.dht.plans.backoff import REPLICATE_BACKOFF, Backoff
from lumera_p2p.dht.plans.base import Plan, Request
from lumera_p2p.dht.plans.events import Answered, Unanswered
from lumera_p2p.dht.statuses import is_ok
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import (
    Message,
    MessageType,
    ReplicateDataRequest,
    ReplicateDataResponse,
)

#: Go's ``replicateKeysRequestBatchSize``.
REPLICATE_BATCH_KEYS = 5000


@dataclass(frozen=True)
class Announcement:
    """Keys (32 raw bytes each) to announce to one peer."""

    peer: Contact
    keys: Sequence[bytes]


@dataclass
class AnnounceOutcome:
    """What each peer acknowledged."""

    #: Peers that acknowledged every batch.
    succeeded: list[Contact] = field(default_factory=list)
    #: Peers with a batch that failed for good (the rest of their batches were not sent), and
    #: the last error of each, by node ID.
    failed: list[Contact] = field(default_factory=list)
    errors: dict[bytes, str] = field(default_factory=dict)
    #: Keys and batches acknowledged, and batches sent again after a failure.
    keys_acknowledged: int = 0
    batches_acknowledged: int = 0
    retries: int = 0


@dataclass
class _Peer:
    peer: Contact
    batches: list[list[str]]
    index: int = 0
    failures: int = 0
    #: When the current batch was first sent (the backoff counts from there), when it was
    #: last sent, and when it is due again after a failure.
    batch_started: float | None = None
    sent_at: float = 0.0
    retry_at: float = 0.0


def split_batches(keys: Sequence[bytes], size: int) -> list[list[str]]:
    """Hex keys in batches of ``size`` (Go's ``splitReplicateKeys``)."""
    hex_keys = [k.hex() for k in keys]
    return [hex_keys[i : i + size] for i in range(0, len(hex_keys), size)]


class AnnouncePlan(Plan[AnnounceOutcome]):
    """Announce each ``Announcement``'s keys to its peer (see the module docstring)."""

    def __init__(
        self,
        announcements: Iterable[Announcement],
        *,
        rng: random.Random,
        batch_keys: int = REPLICATE_BATCH_KEYS,
        concurrency: int = 16,
        backoff: Backoff = REPLICATE_BACKOFF,
        timeout: float = 180.0,
    ) -> None:
        super().__init__()
        if batch_keys < 1 or concurrency < 1:
            raise ValueError("batch_keys and concurrency must be at least 1")
        self._waiting = deque(a for a in announcements if a.keys)
        self._batch_keys = batch_keys
        self._concurrency = concurrency
        self._backoff = backoff
        self._rng = rng
        self._timeout = timeout
        self._ready: deque[_Peer] = deque()
        self._sleeping: list[_Peer] = []
        self._in_flight: dict[int, _Peer] = {}
        self._outcome = AnnounceOutcome()

    def poll(self, now: float) -> list[Request]:
        due = [p for p in self._sleeping if p.retry_at <= now]
        if due:
            self._sleeping = [p for p in self._sleeping if p.retry_at > now]
            self._ready.extend(due)
        while self._waiting and self._busy() < self._concurrency:
            a = self._waiting.popleft()
            self._ready.append(_Peer(a.peer, split_batches(a.keys, self._batch_keys)))
        out: list[Request] = []
        while self._ready:
            state = self._ready.popleft()
            if state.batch_started is None:
                state.batch_started = now
            state.sent_at = now
            token = self._token()
            self._in_flight[token] = state
            body = ReplicateDataRequest(keys=list(state.batches[state.index]))
            out.append(
                Request(token, state.peer, MessageType.REPLICATE, body, timeout=self._timeout)
            )
        return out

    def next_deadline(self) -> float | None:
        return min((p.retry_at for p in self._sleeping), default=None)

    @property
    def done(self) -> bool:
        return not (self._waiting or self._ready or self._sleeping or self._in_flight)

    def result(self) -> AnnounceOutcome:
        return self._outcome

    def on_response(self, token: int, message: Message, now: float) -> None:
        state = self._in_flight.pop(token, None)
        if state is None:
            return
        body = message.data
        if not isinstance(body, ReplicateDataResponse) or not is_ok(body.status):
            reason = "no status"
            if isinstance(body, ReplicateDataResponse) and body.status is not None:
                reason = body.status.err_msg or "failed"
            self._retry(state, now, f"answered: {reason}")
            return
        self._emit(Answered(answered_as(state.peer, message)))
        outcome = self._outcome
        outcome.keys_acknowledged += len(state.batches[state.index])
        outcome.batches_acknowledged += 1
        state.index += 1
        state.failures = 0
        state.batch_started = None
        if state.index == len(state.batches):
            outcome.succeeded.append(state.peer)
        else:
            self._ready.append(state)

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        state = self._in_flight.pop(token, None)
        if state is not None:
            self._emit(Unanswered(state.peer))
            timed_out = now - state.sent_at >= self._timeout
            self._retry(state, now, str(error), final=timed_out)

    def _busy(self) -> int:
        return len(self._ready) + len(self._sleeping) + len(self._in_flight)

    def _retry(self, state: _Peer, now: float, error: str, *, final: bool = False) -> None:
        state.failures += 1
        started = state.batch_started if state.batch_started is not None else now
        delay = (
            None if final else self._backoff.next_delay(state.failures, now - started, self._rng)
        )
        if delay is None:
            self._outcome.failed.append(state.peer)
            self._outcome.errors[state.peer.id] = error
            return
        self._outcome.retries += 1
        state.retry_at = now + delay
        self._sleeping.append(state)
