"""The iterative lookup as a plan: :class:`~lumera_p2p.kademlia.Lookup` plus the wire.

:class:`~lumera_p2p.kademlia.Lookup` decides whom to ask and when a lookup is over; this plan
turns its choices into requests (BatchFindNode, FindNode or FindValue), reads the answers into
contacts, checks a found value against its key, and tells the node who answered and who did not.
A retry of a peer supersedes the attempt the lookup gave up on, so that attempt's late failure
never counts against the new one.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from enum import Enum

from lumera_p2p.b58 import encode as b58_encode
from lumera_p2p.content import digest
from lumera_p2p.dht.contacts import ContactReader, answered_as
from lumera_p2p.dht.options import DHTOptions
from lumera_p2p.dht.plans.base import Plan, Request
from lumera_p2p.dht.plans.events import Answered, LookupStarted, Poisoned, Unanswered
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact, Lookup, hash_id
from lumera_p2p.wire.messages import (
    BatchFindNodeRequest,
    BatchFindNodeResponse,
    FindNodeRequest,
    FindNodeResponse,
    FindValueRequest,
    FindValueResponse,
    Message,
    MessageData,
    MessageType,
)
from lumera_p2p.wire.messages import Node as WireNode


class LookupKind(Enum):
    """What a lookup asks, and so which RPC carries it."""

    #: The nodes nearest a 32-byte point, asked with BatchFindNode. Its server side (Go's
    #: included) takes a 32-byte target as it is; Go's FindNode server would hash it once
    #: more and answer for the wrong region.
    NODES = "nodes"
    #: The nodes nearest a node ID, asked with FindNode as Go does (bootstrap, self-lookup).
    NODE_ID = "node_id"
    #: A value by its 32-byte key, with FindValue; the lookup ends at the first verified value.
    VALUE = "value"


@dataclass(frozen=True)
class LookupParams:
    """The lookup's tunables (a slice of :class:`~lumera_p2p.dht.options.DHTOptions`)."""

    k: int = 20
    alpha: int = 6
    timeout: float = 5.0
    stall: float = 1.0
    retries: int = 2
    #: FIND_VALUE's first requests in flight, before it widens to ``alpha``.
    value_alpha: int = 1

    @classmethod
    def from_options(cls, options: DHTOptions) -> LookupParams:
        """The lookup part of a node's options."""
        return cls(
            k=options.k,
            alpha=options.alpha,
            timeout=options.lookup_timeout,
            stall=options.lookup_stall,
            retries=options.lookup_retries,
            value_alpha=options.find_value_alpha,
        )


@dataclass
class LookupOutcome:
    """The result of an iterative lookup."""

    closest: list[Contact]
    value: bytes | None = None
    value_from: Contact | None = None
    messages: int = 0
    rounds: int = 0
    failures: int = 0
    poisoners: list[Contact] = field(default_factory=list)
    #: Candidates never asked (a lookup that stopped early), nearest first.
    unasked: list[Contact] = field(default_factory=list)


class LookupPlan(Plan[LookupOutcome]):
    """One iterative lookup (see the module docstring).

    ``target`` is the 32-byte point (the key, or a node's hashed ID); for
    :attr:`LookupKind.NODE_ID` pass the node ID itself as ``node_id`` (it is what FindNode
    carries). ``exclude`` holds routing IDs never to ask (ourselves, banned peers); it is read
    as the lookup goes, so a caller may add to it. ``enough = (n, wanted)`` ends the lookup
    once the nearest candidates have answered and ``n`` of them are ``wanted`` (see
    :class:`~lumera_p2p.kademlia.Lookup`): a store stops at its replicas.
    """

    def __init__(
        self,
        kind: LookupKind,
        target: bytes,
        seeds: Iterable[Contact],
        reader: ContactReader,
        params: LookupParams,
        *,
        exclude: Container[bytes] = frozenset(),
        node_id: bytes | None = None,
        enough: tuple[int, Callable[[Contact], bool]] | None = None,
    ) -> None:
        super().__init__()
        if (kind is LookupKind.NODE_ID) != (node_id is not None):
            raise ValueError("node_id is given exactly for a NODE_ID lookup")
        if node_id is not None and hash_id(node_id) != target:
            raise ValueError("a NODE_ID lookup's target is the node ID's hash")
        self.kind = kind
        self.target = target
        # How a BatchFindNode answer names our target (base58 is slow: computed once).
        self._answer_key = b58_encode(target) if kind is LookupKind.NODES else ""
        self._node_id = node_id
        self._reader = reader
        self._lookup = Lookup(
            target,
            seeds,
            k=params.k,
            alpha=params.alpha,
            timeout=params.timeout,
            stall_timeout=params.stall,
            find_value=kind is LookupKind.VALUE,
            exclude=exclude,
            retries=params.retries,
            enough=enough,
            value_alpha=params.value_alpha,
        )
        self._peer_of: dict[int, Contact] = {}
        self._token_of: dict[bytes, int] = {}
        self._poisoners: list[Contact] = []
        self._emit(LookupStarted(target))

    @classmethod
    def for_node_id(
        cls,
        node_id: bytes,
        seeds: Iterable[Contact],
        reader: ContactReader,
        params: LookupParams,
        *,
        exclude: Container[bytes] = frozenset(),
    ) -> LookupPlan:
        """A FindNode lookup of the nodes nearest ``node_id``."""
        return cls(
            LookupKind.NODE_ID,
            hash_id(node_id),
            seeds,
            reader,
            params,
            exclude=exclude,
            node_id=node_id,
        )

    # --- Plan -------------------------------------------------------------------------

    def poll(self, now: float) -> list[Request]:
        requests: list[Request] = []
        for peer in self._lookup.poll(now):
            token = self._token()
            earlier = self._token_of.get(peer.hashed_id)
            if earlier is not None:
                del self._peer_of[earlier]
            self._peer_of[token] = peer
            self._token_of[peer.hashed_id] = token
            mtype, data = self._request_body()
            watch = self.kind is LookupKind.VALUE  # a value may take long to arrive
            requests.append(Request(token, peer, mtype, data, supersedes=earlier, watch=watch))
        self._abandon_if_done()
        return requests

    def next_deadline(self) -> float | None:
        return self._lookup.next_deadline()

    @property
    def done(self) -> bool:
        return self._lookup.done

    def result(self) -> LookupOutcome:
        lookup = self._lookup
        stats = lookup.stats
        return LookupOutcome(
            closest=lookup.closest(),
            value=lookup.value,
            value_from=lookup.value_from,
            messages=stats.messages,
            rounds=stats.rounds,
            failures=stats.failures,
            poisoners=list(self._poisoners),
            unasked=lookup.unasked(),
        )

    def on_response(self, token: int, message: Message, now: float) -> None:
        peer = self._take(token)
        if peer is None:
            return
        body = message.data
        value: bytes | None = None
        if self.kind is LookupKind.NODES and isinstance(body, BatchFindNodeResponse):
            nodes = (body.closest_nodes or {}).get(self._answer_key, [])
            contacts = self._contacts(nodes)
        elif self.kind is LookupKind.NODE_ID and isinstance(body, FindNodeResponse):
            contacts = self._contacts(body.closest)
        elif self.kind is LookupKind.VALUE and isinstance(body, FindValueResponse):
            value = bytes(body.value) if body.value else None
            if value is not None and digest(value) != self.target:
                self._poisoners.append(peer)
                self._emit(Poisoned(peer, self.target))
                self._lookup.on_failure(peer, now, retry=False)  # never asked again
                self._abandon_if_done()
                return
            contacts = self._contacts(body.closest)
        else:  # the right message type carrying the wrong body: as good as no answer
            self._failed(peer, now)
            self._abandon_if_done()
            return
        self._emit(Answered(answered_as(peer, message)))
        self._lookup.on_response(peer, contacts, now, value=value)
        self._abandon_if_done()

    def on_progress(self, token: int, extra: float, now: float) -> None:
        peer = self._peer_of.get(token)
        if peer is not None:
            self._lookup.on_progress(peer, now, extra)

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        peer = self._take(token)
        if peer is not None:
            self._failed(peer, now)
            self._abandon_if_done()

    # --- inside -----------------------------------------------------------------------

    def _request_body(self) -> tuple[MessageType, MessageData]:
        if self.kind is LookupKind.NODES:
            return MessageType.BATCH_FIND_NODE, BatchFindNodeRequest(hashed_target=[self.target])
        if self.kind is LookupKind.NODE_ID:
            assert self._node_id is not None
            return MessageType.FIND_NODE, FindNodeRequest(target=self._node_id)
        return MessageType.FIND_VALUE, FindValueRequest(target=self.target)

    def _contacts(self, nodes: Iterable[WireNode | None] | None) -> list[Contact]:
        """The contacts ``nodes`` make (``ContactReader.each``; the reader remembers each
        node's verdict, and asks the allowlist afresh). A node named twice in one answer
        comes twice: the lookup keeps the first."""
        return self._reader.each(nodes)

    def _take(self, token: int) -> Contact | None:
        peer = self._peer_of.pop(token, None)
        if peer is not None and self._token_of.get(peer.hashed_id) == token:
            del self._token_of[peer.hashed_id]
        return peer

    def _abandon_if_done(self) -> None:
        """Once the lookup has its answer, nothing still outstanding is wanted."""
        if self._lookup.done and self._peer_of:
            self._abandon(self._peer_of)
            self._peer_of.clear()
            self._token_of.clear()

    def _failed(self, peer: Contact, now: float) -> None:
        self._emit(Unanswered(peer))
        self._lookup.on_failure(peer, now)
