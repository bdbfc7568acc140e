"""The iterative lookup (FIND_NODE and FIND_VALUE) as a state machine driven from outside.

Ask it what to send (:meth:`Lookup.poll`), tell it what came back (:meth:`on_response`) or
failed (:meth:`on_failure`), and ask when it next needs the clock (:meth:`next_deadline`). It
never awaits, sleeps or reads a clock, so the same code runs over TCP and in a simulator of
thousands of nodes, deterministically.

Rules:

* Candidates are kept sorted by XOR distance to the target.
* Up to ``alpha`` requests are *active* at every moment: as soon as one answers, fails or
  stalls, the next closest waiting candidate is queried. A request that has not answered within
  ``stall_timeout`` stops counting against ``alpha`` (so one slow peer never holds up the
  others) but may still answer until ``timeout``, when it counts as failed.
* The lookup is done when the ``k`` closest candidates that have not failed have all answered;
  or, for FIND_VALUE, as soon as one answers with a value; or when no candidate is left.
* A lookup told it needs only ``enough`` of some kind of node (a store needs its replicas'
  worth of store-eligible nodes) is also done once the closest candidates that have not failed
  have all answered and ``enough`` of them are of that kind: nothing closer is outstanding,
  and every answer came with the answerer's own ``k`` nearest, so a closer node would have been
  named. Nobody past the ``enough``-th such candidate is asked unless a nearer one fails:
  that saves the messages to the rest of the ``k``.
* FIND_VALUE starts narrow: ``value_alpha`` requests (the nearest nodes, which should hold the
  value) and widens to ``alpha`` once an answer comes without the value, or a request fails or
  stalls. The first verified value ends it.
* An answer that is known to be arriving (a large one whose header came: :meth:`on_progress`)
  gets the time its size needs and neither stalls nor times out before then: a 400 MiB value
  takes minutes, and asking the other holders meanwhile would only fetch it again.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from enum import Enum

from lumera_p2p.kademlia.node import Contact
from lumera_p2p.kademlia.routing import ALPHA, K


class PeerState(Enum):
    """Where a candidate stands in the lookup."""

    WAITING = "waiting"
    IN_FLIGHT = "in_flight"
    STALLED = "stalled"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


#: A candidate's distance, read in C (a sort key called for every seed).
_by_distance = operator.attrgetter("distance")


class _Candidate:
    """One peer of a lookup: where it stands, its distance to the target, its timers."""

    __slots__ = ("contact", "deadline", "distance", "hop", "retries", "stall_at", "state")

    def __init__(self, contact: Contact, distance: int, hop: int, retries: int) -> None:
        self.contact = contact
        self.distance = distance
        self.hop = hop
        self.state = PeerState.WAITING
        self.stall_at = 0.0
        self.deadline = 0.0
        self.retries = retries


@dataclass
class LookupStats:
    """What a lookup cost: requests sent, answers, failures, and rounds (longest hop chain)."""

    messages: int = 0
    responses: int = 0
    failures: int = 0
    rounds: int = 0


class Lookup:
    """One iterative lookup of ``target`` (see the module docstring)."""

    __slots__ = (
        "_active",
        "_by_hash",
        "_distances",
        "_done",
        "_enough",
        "_exclude",
        "_sorted",
        "_t",
        "_width",
        "alpha",
        "find_value",
        "k",
        "retries",
        "stall_timeout",
        "stats",
        "target",
        "timeout",
        "value",
        "value_from",
    )

    def __init__(
        self,
        target: bytes,
        seeds: Iterable[Contact],
        *,
        k: int = K,
        alpha: int = ALPHA,
        timeout: float = 10.0,
        stall_timeout: float | None = None,
        find_value: bool = False,
        exclude: Container[bytes] = frozenset(),
        retries: int = 0,
        enough: tuple[int, Callable[[Contact], bool]] | None = None,
        value_alpha: int | None = None,
    ) -> None:
        if len(target) != 32:
            raise ValueError("a lookup target has 32 bytes")
        if enough is not None and enough[0] < 1:
            raise ValueError("a lookup needs at least one node of the kind it looks for")
        self.target = target
        self.k = k
        self.alpha = alpha
        self.timeout = timeout
        self.stall_timeout = timeout / 3 if stall_timeout is None else stall_timeout
        self.find_value = find_value
        self.retries = retries
        self._enough = enough
        # FIND_VALUE starts with this many in flight and widens to ``alpha`` (see above).
        self._width = min(alpha, value_alpha) if find_value and value_alpha else alpha
        self._exclude = exclude
        self._t = int.from_bytes(target, "big")
        # Candidates by distance, and their distances beside them (bisected as plain ints).
        self._sorted: list[_Candidate] = []
        self._distances: list[int] = []
        self._by_hash: dict[bytes, _Candidate] = {}
        # Those asked and not yet answered (in flight or stalled): what timeouts apply to.
        self._active: dict[bytes, _Candidate] = {}
        self.value: bytes | None = None
        self.value_from: Contact | None = None
        self.stats = LookupStats()
        self._done = False
        self._seed(seeds)
        self._refresh_done()

    def _seed(self, seeds: Iterable[Contact]) -> None:
        """Offer the seeds at hop 1 (``_offer`` for each, in one pass and one sort)."""
        by_hash = self._by_hash
        t = self._t
        fresh: list[_Candidate] = []
        for contact in seeds:
            hashed = contact.hashed_id
            if hashed in by_hash or hashed in self._exclude:
                continue  # a repeated seed is at hop 1 already
            cand = by_hash[hashed] = _Candidate(contact, contact.int_id ^ t, 1, self.retries)
            fresh.append(cand)
        fresh.sort(key=_by_distance)  # one pass: the routing table gives them nearest first
        self._sorted = fresh
        self._distances = [cand.distance for cand in fresh]

    # --- inputs --------------------------------------------------------------------------

    def _offer(self, contact: Contact, hop: int) -> None:
        known = self._by_hash.get(contact.hashed_id)
        if known is not None:
            known.hop = min(known.hop, hop)
            return
        if contact.hashed_id in self._exclude:
            return
        distance = contact.int_id ^ self._t
        cand = _Candidate(contact, distance, hop, self.retries)
        self._by_hash[contact.hashed_id] = cand
        distances = self._distances
        if not distances or distances[-1] < distance:
            distances.append(distance)  # seeds come nearest first
            self._sorted.append(cand)
        else:
            at = bisect.bisect(distances, distance)
            distances.insert(at, distance)
            self._sorted.insert(at, cand)

    def on_response(
        self,
        peer: Contact,
        contacts: Iterable[Contact],
        now: float,
        value: bytes | None = None,
    ) -> None:
        """``peer`` answered with ``contacts`` (and, for FIND_VALUE, maybe a verified value)."""
        cand = self._by_hash.get(peer.hashed_id)
        if cand is None or cand.state not in (PeerState.IN_FLIGHT, PeerState.STALLED):
            return  # an answer we did not ask for, or one that came after its timeout
        cand.state = PeerState.SUCCEEDED
        del self._active[peer.hashed_id]
        self.stats.responses += 1
        if self.find_value and value is not None and self.value is None:
            self.value = value
            self.value_from = peer
        else:
            self._width = self.alpha  # the nearest did not have it: search at full width
        hop = cand.hop + 1
        by_hash = self._by_hash
        for contact in contacts:
            known = by_hash.get(contact.hashed_id)
            if known is None:
                self._offer(contact, hop)
            elif hop < known.hop:  # most of an answer names candidates known already
                known.hop = hop
        self._refresh_done()

    def on_failure(self, peer: Contact, now: float, *, retry: bool = True) -> None:
        """The request to ``peer`` failed (error, refused, or closed connection). With
        ``retry=False`` (the peer misbehaved, e.g. served a bad value) it is never asked again."""
        cand = self._by_hash.get(peer.hashed_id)
        if cand is None or cand.state not in (PeerState.IN_FLIGHT, PeerState.STALLED):
            return
        if not retry:
            cand.retries = 0
        self._width = self.alpha
        self._fail(cand)
        self._refresh_done()

    def on_progress(self, peer: Contact, now: float, extra: float) -> None:
        """``peer``'s answer has started to arrive and may take ``extra`` seconds more: its
        request stays active (no stall, no widening) until ``now + timeout + extra``."""
        cand = self._by_hash.get(peer.hashed_id)
        if cand is None or cand.state not in (PeerState.IN_FLIGHT, PeerState.STALLED):
            return
        cand.deadline = max(cand.deadline, now + self.timeout + extra)
        if cand.state is PeerState.IN_FLIGHT:
            cand.stall_at = cand.deadline

    def _fail(self, cand: _Candidate) -> None:
        """A request failed: ask again if retries remain (a lost message, a dropped
        connection), else give the peer up."""
        self.stats.failures += 1
        del self._active[cand.contact.hashed_id]
        if cand.retries > 0:
            cand.retries -= 1
            cand.state = PeerState.WAITING
        else:
            cand.state = PeerState.FAILED

    # --- outputs -------------------------------------------------------------------------

    def poll(self, now: float) -> list[Contact]:
        """Apply timeouts at ``now`` and return the peers to query now (marked in flight)."""
        if self._done:
            return []
        active = 0
        for cand in list(self._active.values()):
            if cand.state is PeerState.IN_FLIGHT:
                if now >= cand.deadline:
                    self._fail(cand)
                elif now >= cand.stall_at:
                    cand.state = PeerState.STALLED
                    self._width = self.alpha
                else:
                    active += 1
            elif now >= cand.deadline:  # stalled
                self._width = self.alpha
                self._fail(cand)
        self._refresh_done()
        if self._done:
            return []
        to_send: list[Contact] = []
        alive = 0  # candidates not failed, in distance order
        need, wanted = self._enough if self._enough is not None else (0, None)
        found = 0  # ... of them wanted: past the ``need``-th, none is asked (yet)
        for cand in self._sorted:
            if active >= self._width or alive >= self.k or (wanted and found >= need):
                break
            if cand.state is PeerState.FAILED:
                continue
            alive += 1
            if wanted is not None and wanted(cand.contact):
                found += 1
            if cand.state is PeerState.WAITING:
                cand.state = PeerState.IN_FLIGHT
                self._active[cand.contact.hashed_id] = cand
                cand.stall_at = now + self.stall_timeout
                cand.deadline = now + self.timeout
                active += 1
                self.stats.messages += 1
                self.stats.rounds = max(self.stats.rounds, cand.hop)
                to_send.append(cand.contact)
        return to_send

    def next_deadline(self) -> float | None:
        """When :meth:`poll` must next be called even if nothing arrives (None: not needed)."""
        if self._done:
            return None
        if not self._active:
            return None
        flying = PeerState.IN_FLIGHT
        return min(c.stall_at if c.state is flying else c.deadline for c in self._active.values())

    def _refresh_done(self) -> None:
        if self._done:
            return
        if self.value is not None:
            self._done = True
            return
        answered = 0
        found = 0
        need, wanted = self._enough if self._enough is not None else (0, None)
        pending = False
        for cand in self._sorted:
            if cand.state is PeerState.FAILED:
                continue
            if cand.state is not PeerState.SUCCEEDED:
                pending = True
                break
            answered += 1
            if wanted is not None and wanted(cand.contact):
                found += 1
                if found >= need:
                    break  # enough of the nearest have answered, nothing nearer pending
            if answered >= self.k:
                break
        self._done = not pending

    @property
    def done(self) -> bool:
        """True once the lookup has its answer (see the module docstring)."""
        return self._done

    @property
    def in_flight(self) -> list[Contact]:
        """Peers asked and not yet answered (in flight or stalled)."""
        return [
            c.contact for c in self._sorted if c.state in (PeerState.IN_FLIGHT, PeerState.STALLED)
        ]

    def closest(self, n: int | None = None) -> list[Contact]:
        """The nearest peers that answered, nearest first (``k`` of them by default)."""
        limit = self.k if n is None else n
        out: list[Contact] = []
        for cand in self._sorted:
            if cand.state is PeerState.SUCCEEDED:
                out.append(cand.contact)
                if len(out) >= limit:
                    break
        return out

    def unasked(self) -> list[Contact]:
        """Candidates never asked (an early stop leaves some), nearest first."""
        return [c.contact for c in self._sorted if c.state is PeerState.WAITING]

    def state_of(self, peer: Contact) -> PeerState | None:
        """The lookup's view of ``peer`` (None if it never heard of it)."""
        cand = self._by_hash.get(peer.hashed_id)
        return None if cand is None else cand.state
