"""Pull replication: one ``BatchFindValues`` exchange with one peer, with Go's retries.

Go's replication fetch (``GetBatchValuesFromNode``, fetch_and_store.go) asks one node for up to
400 announced keys with ``BatchFindValues`` (a 3-minute call) and retries a failed call, a
``Busy`` answer or any ``Failed`` status after about 10 s, giving up 30 s after the first try.
The answer is the compressed ``{hex key: base64 | null}`` payload and ``Done`` (the server did
not leave values out to fit its frame).

A call that timed out is not retried: Go's 3-minute call outlasts its 30-second backoff, so
Go never retries one either.

This plan is the exchange alone. Decoding the payload (which may be large: it is done off the
event loop), checking every value against its key, storing what verified and asking again for
what the server left out are the replication coordinator's, between plans, as Go does them
between calls.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from lumera_p2p.dht.contacts import answered_as
from lumera_p2p.dht.plans.backoff import FETCH_BACKOFF, Backoff
from lumera_p2p.dht.plans.base import Plan, Request
from lumera_p2p.dht.plans.events import Answered, Unanswered
from lumera_p2p.dht.statuses import is_ok
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import (
    BatchFindValuesRequest,
    BatchFindValuesResponse,
    Message,
    MessageType,
)

#: Go's ``fetchBatchSize``: keys asked of one node in one BatchFindValues.
FETCH_BATCH_KEYS = 400


@dataclass(frozen=True)
class FetchOutcome:
    """The answer, if one came: the compressed payload and ``done``; else the last error."""

    peer: Contact
    payload: bytes | None
    done: bool = False
    error: str = ""
    attempts: int = 0


class FetchPlan(Plan[FetchOutcome]):
    """Ask ``peer`` for ``keys`` (raw 32-byte keys) until it answers OK or the backoff ends."""

    def __init__(
        self,
        peer: Contact,
        keys: Sequence[bytes],
        *,
        rng: random.Random,
        backoff: Backoff = FETCH_BACKOFF,
        timeout: float = 180.0,
    ) -> None:
        super().__init__()
        if not keys:
            raise ValueError("a fetch needs keys")
        self._peer = peer
        self._hex = [k.hex() for k in keys]
        self._rng = rng
        self._backoff = backoff
        self._timeout = timeout
        self._started: float | None = None
        self._sent_at = 0.0
        self._retry_at: float | None = None
        self._token_out: int | None = None
        self._attempts = 0
        self._outcome: FetchOutcome | None = None

    def poll(self, now: float) -> list[Request]:
        if self._outcome is not None or self._token_out is not None:
            return []
        if self._retry_at is not None and now < self._retry_at:
            return []
        if self._started is None:
            self._started = now
        self._retry_at = None
        self._attempts += 1
        self._sent_at = now
        self._token_out = self._token()
        body = BatchFindValuesRequest(keys=list(self._hex))
        mtype = MessageType.BATCH_FIND_VALUES
        return [Request(self._token_out, self._peer, mtype, body, timeout=self._timeout)]

    def next_deadline(self) -> float | None:
        return self._retry_at

    @property
    def done(self) -> bool:
        return self._outcome is not None

    def result(self) -> FetchOutcome:
        return self._outcome or FetchOutcome(self._peer, None, error="not run")

    def on_response(self, token: int, message: Message, now: float) -> None:
        if token != self._token_out:
            return
        self._token_out = None
        body = message.data
        if isinstance(body, BatchFindValuesResponse) and is_ok(body.status):
            self._emit(Answered(answered_as(self._peer, message)))
            self._outcome = FetchOutcome(
                self._peer, bytes(body.response or b""), bool(body.done), attempts=self._attempts
            )
            return
        reason = "no status"
        if isinstance(body, BatchFindValuesResponse) and body.status is not None:
            reason = body.status.err_msg or "failed"
        self._again(now, f"answered: {reason}")

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        if token != self._token_out:
            return
        self._token_out = None
        self._emit(Unanswered(self._peer))
        self._again(now, str(error), final=now - self._sent_at >= self._timeout)

    def _again(self, now: float, error: str, *, final: bool = False) -> None:
        started = self._started if self._started is not None else now
        delay = (
            None if final else self._backoff.next_delay(self._attempts, now - started, self._rng)
        )
        if delay is None:
            self._outcome = FetchOutcome(self._peer, None, error=error, attempts=self._attempts)
        else:
            self._retry_at = now + delay
