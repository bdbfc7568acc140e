"""Shared state of a DHT node: who we are, whom we know, and how we talk to them.

:class:`DHTCore` holds the routing table, the ban list, the allowlists, the local value store
and the transport, and the conversions between the wire's ``Node`` and the routing table's
:class:`~lumera_p2p.kademlia.Contact`. The RPC handlers (:mod:`.server`) and the operations
(:mod:`.client`) both work on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from lumera_p2p.dht.eligibility import Eligibility
from lumera_p2p.dht.options import ServingLimits
from lumera_p2p.dht.valuestore import ValueStore
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import BanList, Contact, RoutingTable
from lumera_p2p.kademlia.node import hash_id
from lumera_p2p.kademlia.version import version_too_old
from lumera_p2p.wire.messages import Message, MessageData, MessageType, Node

log = logging.getLogger(__name__)

#: How many nodes hold each value (the Go node's α).
REPLICAS = 6

#: Per-RPC timeouts in seconds, as the Go client uses them (network.go:41-54).
TIMEOUTS: dict[MessageType, float] = {
    MessageType.PING: 5.0,
    MessageType.FIND_NODE: 10.0,
    MessageType.BATCH_FIND_NODE: 5.0,
    MessageType.FIND_VALUE: 5.0,
    MessageType.STORE_DATA: 10.0,
    MessageType.BATCH_STORE_DATA: 75.0,
    MessageType.BATCH_FIND_VALUES: 180.0,
    MessageType.BATCH_GET_VALUES: 75.0,
    MessageType.REPLICATE: 180.0,
}


class Transport(Protocol):
    """Sends one request to a peer and returns its response (the one interface of ``net/``)."""

    async def call(self, peer: Contact, request: Message, timeout: float) -> Message:
        """Deliver ``request`` to ``peer``; raise ``TransportError`` on any failure."""
        ...


@dataclass
class DHTOptions:
    """Tunables of a DHT node (defaults are the Go node's constants)."""

    k: int = 20
    alpha: int = 6
    replicas: int = REPLICAS
    #: Accept loopback and private addresses for peers (local networks and tests); the Go
    #: node's INTEGRATION_TEST switch.
    allow_private: bool = False
    lookup_timeout: float = 5.0
    lookup_stall: float = 1.0
    #: A lookup asks a peer whose request failed again, this many times, before giving it up.
    lookup_retries: int = 2
    #: Consecutive failed requests after which a contact leaves the routing table.
    max_failures: int = 2
    #: Largest BatchStoreData payload sent in one request. Go puts all of a node's share in
    #: one message, which fails outright once it exceeds the 400 MB frame limit; we split.
    batch_store_bytes: int = 64 * 1024 * 1024
    bucket_refresh_age: float = 3600.0
    #: Refuse peers that advertise a lower version, or none, as a Go node built with a
    #: minimum does (``kademlia.version``); empty admits every version.
    min_peer_version: str = ""
    timeouts: dict[MessageType, float] = field(default_factory=lambda: dict(TIMEOUTS))
    #: Limits of the request handlers.
    serving: ServingLimits = field(default_factory=ServingLimits)


@dataclass
class DHTCounters:
    """Monotonic counters for stats and metrics."""

    rpc_sent: int = 0
    rpc_failed: int = 0
    poisoned_values: int = 0
    requests_handled: int = 0
    requests_refused: int = 0
    values_stored_remote: int = 0
    #: Peers kept out of the routing table or not answered: below ``min_peer_version``.
    peers_too_old: int = 0
    #: Banned peers kept out of the routing table (they answered a ping or sent a request).
    banned_kept_out: int = 0


class DHTCore:
    """Identity, routing state, storage and transport of one node."""

    def __init__(
        self,
        self_contact: Contact,
        store: ValueStore,
        transport: Transport,
        *,
        options: DHTOptions | None = None,
        eligibility: Eligibility | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.me = self_contact
        self.store = store
        self.transport = transport
        self.options = options or DHTOptions()
        self.eligibility = eligibility or Eligibility()
        self.rng = rng or random.Random()
        self.table = RoutingTable(self_contact.hashed_id, k=self.options.k)
        self.bans = BanList()
        self.counters = DHTCounters()
        self._background: set[asyncio.Task[None]] = set()

    # --- time and background work --------------------------------------------------------

    @staticmethod
    def now() -> float:
        """The event loop's clock (virtual in simulation)."""
        return asyncio.get_running_loop().time()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run a fire-and-forget coroutine, keeping a reference and logging its failure."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background %s failed: %s", task.get_name(), task.exception())

    async def stop_background(self) -> None:
        """Cancel background work (ping probes and the like) and wait for it."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- wire conversions ----------------------------------------------------------------

    def wire_node(self, contact: Contact) -> Node:
        """A wire ``Node`` for ``contact``, always carrying its 32-byte HashedID (Go needs it)."""
        return Node(
            id=contact.id,
            ip=contact.ip,
            port=contact.port,
            version=contact.version,
            hashed_id=contact.hashed_id,
        )

    @property
    def wire_self(self) -> Node:
        """Our own ``Node`` as we send it in ``Sender``."""
        return self.wire_node(self.me)

    def message(
        self, mtype: MessageType, receiver: Contact | None, data: MessageData | None
    ) -> Message:
        """A message from us to ``receiver``.

        ``Receiver.Version`` is the version we last heard from that peer: a seed contact from
        the registry has none, but the routing table may (empty only before first contact).
        """
        if receiver is not None and not receiver.version:
            known = self.table.get(receiver.hashed_id)
            if known is not None and known.version:
                receiver = Contact(receiver.id, receiver.ip, receiver.port, known.version)
        return Message(
            sender=self.wire_self,
            receiver=None if receiver is None else self.wire_node(receiver),
            message_type=int(mtype),
            data=data,
        )

    def acceptable_endpoint(self, ip: str, port: int) -> bool:
        """Is this an address we would dial? (The Go node's address hygiene.)"""
        if not ip or not 0 < port < 65536:
            return False
        kind = endpoint_kind(ip)
        return kind == _PUBLIC or (kind == _PRIVATE and self.options.allow_private)

    def contact_from_wire(self, node: Node | None) -> Contact | None:
        """A routable contact from a peer-supplied ``Node``, or None if it is unusable.

        The HashedID a peer sends is ignored and recomputed from the ID: trusting it would let
        a peer place any node anywhere in the key space (a Go weakness).
        """
        if node is None or not node.id or len(node.id) > 256:
            return None
        if not self.acceptable_endpoint(node.ip, node.port):
            return None
        contact = Contact(bytes(node.id), node.ip, int(node.port), node.version or "")
        if contact.hashed_id == self.me.hashed_id:
            return None
        if not self.eligibility.routing(contact.hashed_id):
            return None
        return contact

    def contacts_from_wire(self, nodes: Iterable[Node | None] | None) -> list[Contact]:
        """Usable contacts among peer-supplied nodes (duplicates dropped)."""
        out: dict[bytes, Contact] = {}
        for node in nodes or ():
            contact = self.contact_from_wire(node)
            if contact is not None:
                out.setdefault(contact.hashed_id, contact)
        return list(out.values())

    # --- routing table upkeep ------------------------------------------------------------

    def too_old(self, version: str) -> bool:
        """Is a peer advertising ``version`` below our minimum? (Counted when it is.)"""
        if not version_too_old(version, self.options.min_peer_version):
            return False
        self.counters.peers_too_old += 1
        return True

    def answered(self, peer: Contact, response: Message) -> Contact:
        """``peer`` with the version its answer advertises in ``Sender`` (Go records it so)."""
        sender = response.sender
        if sender is None or bytes(sender.id) != peer.id or sender.version == peer.version:
            return peer
        return Contact(peer.id, peer.ip, peer.port, sender.version or "")

    def seen(self, contact: Contact) -> None:
        """``contact`` proved alive (answered us, or sent an authenticated request).

        Its ``version`` must be the one the peer itself advertised: below our minimum it stays
        out of the routing table (Go's ``addNode`` gate).
        """
        if contact.hashed_id == self.me.hashed_id:
            return
        if not self.eligibility.routing(contact.hashed_id):
            return
        if self.bans.is_banned(contact.hashed_id, self.now()):
            # Until its ban expires (or, for one earned by failures, a ping clears it): a
            # poisoner that answers pings or sends requests must not walk back in.
            self.counters.banned_kept_out += 1
            return
        if self.too_old(contact.version):
            log.debug("not adding %s: version %r is below the minimum", contact, contact.version)
            return
        now = self.now()
        result = self.table.add(contact, now, lambda h: self.bans.is_banned(h, now))
        if result.ping is not None:
            self.spawn(self._probe(result.ping), "probe-lru")

    async def _probe(self, contact: Contact) -> None:
        """Ping the oldest entry of a full bucket; evict it if it does not answer."""
        try:
            await self.call(contact, MessageType.PING, None)
        except TransportError:
            self.bans.increment(contact.hashed_id, self.now(), contact.address)
            self.table.ping_failed(contact.hashed_id)
        else:
            self.table.ping_succeeded(contact, self.now())

    def banned_set(self) -> set[bytes]:
        """Routing IDs banned right now."""
        return self.bans.banned(self.now())

    def closest(self, target: bytes, n: int, exclude: Iterable[bytes] = ()) -> list[Contact]:
        """The ``n`` nearest routable contacts we know, minus banned and ``exclude``."""
        skip = self.banned_set() | set(exclude)
        return self.table.closest(target, n, skip)

    # --- RPC -----------------------------------------------------------------------------

    async def call(self, peer: Contact, mtype: MessageType, data: MessageData | None) -> Message:
        """Send a request and return the peer's response message; raise ``TransportError``.

        The response must come from the peer we called and be of the type we asked for.
        """
        request = self.message(mtype, peer, data)
        timeout = self.options.timeouts.get(mtype, 15.0)
        self.counters.rpc_sent += 1
        try:
            response = await self.transport.call(peer, request, timeout)
        except TransportError:
            self.counters.rpc_failed += 1
            raise
        if response.message_type != int(mtype):
            self.counters.rpc_failed += 1
            raise TransportError(
                f"{peer}: answered type {response.message_type} to a type {int(mtype)} request"
            )
        return response


_PUBLIC, _PRIVATE, _UNUSABLE = 0, 1, 2


@lru_cache(maxsize=65536)
def endpoint_kind(host: str) -> int:
    """Classify a peer's host: public (dial), private/loopback (dial on local networks only),
    or unusable (unspecified, link-local, multicast, not a hostname). Memoised: parsing IP
    text is the costliest step of reading a lookup response."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return _PUBLIC if "." in host else _UNUSABLE  # a fully qualified hostname
    if addr.is_unspecified or addr.is_link_local or addr.is_multicast:
        return _UNUSABLE
    return _PRIVATE if addr.is_loopback or addr.is_private else _PUBLIC


def ensure_hashed_target(target: bytes) -> bytes:
    """A lookup target in routing space: 32 bytes as is, anything else (a node ID) hashed."""
    return target if len(target) == 32 else hash_id(target)
