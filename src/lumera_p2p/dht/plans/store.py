"""Storing one value on the network, after it is committed locally.

Two phases. First a lookup of the nodes nearest the key (an embedded :class:`LookupPlan`). Then
StoreData in waves: the first wave goes to the ``replicas`` nearest store-eligible nodes the
lookup found; each later wave replaces the nodes that failed or refused with the next nearest,
until ``replicas`` have acknowledged or the candidates run out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lumera_p2p.dht.plans.base import Plan, Request
from lumera_p2p.dht.plans.events import RefusedStore
from lumera_p2p.dht.plans.lookup import LookupOutcome, LookupPlan
from lumera_p2p.dht.statuses import is_ok, refuses_store
from lumera_p2p.errors import RpcTimeout, TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import Message, MessageType, StoreDataRequest, StoreDataResponse


@dataclass
class StoreOutcome:
    """What a store achieved on the network (the local copy is not counted)."""

    key: bytes
    #: Nodes that acknowledged, in the order they did.
    stored_on: list[Contact] = field(default_factory=list)
    #: Nodes that answered "not store-eligible".
    refused: list[Contact] = field(default_factory=list)
    #: Nodes that failed (no answer, or an error status).
    failed: list[Contact] = field(default_factory=list)
    #: How many of ``failed`` did not answer in time.
    timeouts: int = 0
    #: Store-eligible candidates the lookup found (the nodes a wave could go to).
    candidates: int = 0
    waves: int = 0
    lookup: LookupOutcome | None = None
    #: Why fewer than the replicas wanted acknowledged ("" if none did not; the node says).
    cause: str = ""

    @property
    def replicas(self) -> int:
        """How many remote nodes hold the value now."""
        return len(self.stored_on)


class StorePlan(Plan[StoreOutcome]):
    """Store ``value`` (whose key is ``key``) on ``replicas`` nodes found by ``lookup``.

    ``store_eligible`` says whether a contact may be sent values (the chain allowlist); it is
    asked when the lookup ends (and by a lookup built with ``enough``, as it goes).
    """

    def __init__(
        self,
        key: bytes,
        value: bytes,
        datatype: int,
        lookup: LookupPlan,
        *,
        replicas: int,
        store_eligible: Callable[[Contact], bool],
    ) -> None:
        super().__init__()
        if lookup.target != key:
            raise ValueError("the lookup must be for the key being stored")
        self._value = value
        self._datatype = datatype
        self._replicas = replicas
        self._store_eligible = store_eligible
        self._lookup: LookupPlan | None = lookup
        self._candidates: list[Contact] = []
        self._next = 0
        self._wave: dict[int, Contact] = {}
        self._outbox: list[Request] = []
        self._outcome = StoreOutcome(key)
        self._adopt_events(lookup)

    # --- Plan -------------------------------------------------------------------------

    def poll(self, now: float) -> list[Request]:
        lookup = self._lookup
        if lookup is not None:
            # The lookup's requests go out under its own tokens (every one positive): ours
            # are negative, so nothing needs re-tokening or routing (``Routes``).
            self._outbox += lookup.poll(now)
            self._settle(lookup)
            self._advance()
        out, self._outbox = self._outbox, []
        return out

    def next_deadline(self) -> float | None:
        return None if self._lookup is None else self._lookup.next_deadline()

    @property
    def done(self) -> bool:
        return self._lookup is None and not self._wave and not self._outbox

    def result(self) -> StoreOutcome:
        return self._outcome

    def on_response(self, token: int, message: Message, now: float) -> None:
        if token > 0:  # the lookup's (it ignores tokens it does not track)
            lookup = self._lookup
            if lookup is not None:
                lookup.on_response(token, message, now)
                self._after_lookup_input(lookup)
            return
        peer = self._wave.pop(token, None)
        if peer is None:
            return
        body = message.data
        status = body.status if isinstance(body, StoreDataResponse) else None
        if is_ok(status):
            self._outcome.stored_on.append(peer)
        elif refuses_store(status):
            self._outcome.refused.append(peer)
            self._emit(RefusedStore(peer))
        else:
            self._outcome.failed.append(peer)
        self._advance()

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        if token > 0:
            lookup = self._lookup
            if lookup is not None:
                lookup.on_failure(token, error, now)
                self._after_lookup_input(lookup)
            return
        peer = self._wave.pop(token, None)
        if peer is not None:
            self._outcome.failed.append(peer)
            self._outcome.timeouts += isinstance(error, RpcTimeout)
            self._advance()

    # --- inside -----------------------------------------------------------------------

    def _after_lookup_input(self, lookup: LookupPlan) -> None:
        self._settle(lookup)
        self._advance()

    def _settle(self, lookup: LookupPlan) -> None:
        """Pass on what the lookup said: its events, and the requests it gave up."""
        self._adopt_events(lookup)
        self._abandon(lookup.abandoned())

    def _advance(self) -> None:
        """Move on when a phase is over: lookup → first wave → replacement waves → done."""
        if self._lookup is not None:
            if not self._lookup.done:
                return
            outcome = self._lookup.result()
            self._outcome.lookup = outcome
            # Those that answered first, then those an early-stopped lookup never asked (a
            # StoreData to them is their liveness check).
            self._candidates = [
                c for c in (*outcome.closest, *outcome.unasked) if self._store_eligible(c)
            ]
            self._outcome.candidates = len(self._candidates)
            self._lookup = None  # answers still outstanding for it are ignored from now on
        if self._wave:
            return
        missing = self._replicas - self._outcome.replicas
        if missing <= 0 or self._next >= len(self._candidates):
            return
        wave = self._candidates[self._next : self._next + missing]
        self._next += len(wave)
        self._outcome.waves += 1
        for peer in wave:
            token = -self._token()  # negative: the lookup's tokens are positive
            self._wave[token] = peer
            data = StoreDataRequest(data=self._value, type=self._datatype)
            self._outbox.append(Request(token, peer, MessageType.STORE_DATA, data))
