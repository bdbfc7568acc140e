"""``Node``: one DHT node that owns its state and runs its operations as plans.

The node owns its identity (the contact peers see), its routing table, ban list, chain
allowlists (eligibility), local value store, options and counters. Everything that changes them
is a method that says what it does (:meth:`Node.learn`, :meth:`Node.record_failure`,
:meth:`Node.ban`, :meth:`Node.move_to`, :meth:`Node.apply_allowlist`, ...); nobody outside
``dht/`` reaches into them, and what they may read goes through inspection methods
(:meth:`Node.contacts`, :meth:`Node.knows`, :meth:`Node.snapshot_counters`, ...).

Operations (store, batch store, retrieve, batch retrieve, lookups, pings, the health check and
bucket refresh) are sans-I/O plans (:mod:`lumera_p2p.dht.plans`) that the one driver
(:mod:`lumera_p2p.dht.driver`) runs over the node's transport. Local reads and writes happen here,
beside a plan: a store commits locally while its plan runs the network part (both must
succeed); a retrieve reads what it holds and plans for the rest. Keys are raw 32-byte digests
at this level; the public API with base58 keys is :class:`lumera_p2p.P2P`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Final, TypeVar

from lumera_p2p.content import digest, key_from_bytes
from lumera_p2p.dht.contacts import ContactReader, answered_as, wire_node
from lumera_p2p.dht.counters import DHTCounters, ServingCounters
from lumera_p2p.dht.driver import Consumer, Driver, Transport
from lumera_p2p.dht.eligibility import Eligibility
from lumera_p2p.dht.handover import Adopting, SentFirst, Watch
from lumera_p2p.dht.options import DHTOptions
from lumera_p2p.dht.plans import (
    AllOf,
    Answered,
    BatchRetrievePlan,
    BatchStorePlan,
    BatchStoreReport,
    Cleared,
    Event,
    HealthCheckPlan,
    LookupKind,
    LookupOutcome,
    LookupParams,
    LookupPlan,
    LookupStarted,
    PingOutcome,
    PingPlan,
    Plan,
    Poisoned,
    ProbeAnswered,
    ProbeFailed,
    ProbePlan,
    RefusedStore,
    StoreOutcome,
    StorePlan,
    Struck,
    Unanswered,
)
from lumera_p2p.dht.reports import StoreReport, shortfall_cause
from lumera_p2p.dht.server import RequestHandler
from lumera_p2p.dht.valuestore import ValueStore
from lumera_p2p.dht.wire_nodes import WireNodes
from lumera_p2p.errors import KeyDisabled, NoStorePeers, NotFound, StoreFailed, TooFewReplicas
from lumera_p2p.kademlia import BanList, Contact, RoutingTable, hash_id
from lumera_p2p.kademlia.banlist import BanEntry
from lumera_p2p.kademlia.version import version_too_old
from lumera_p2p.store.local import pair_with_keys
from lumera_p2p.wire.envelope import MAX_VALUE_SIZE
from lumera_p2p.wire.messages import (
    FindValueRequest,
    FindValueResponse,
    Message,
    MessageData,
    MessageType,
)
from lumera_p2p.wire.messages import Node as WireNode

log = logging.getLogger(__name__)

R = TypeVar("R")

#: ``listener(peer, count)``: a peer announced ``count`` keys we lack (they await fetching).
AnnouncementListener = Callable[[Contact, int], None]


#: Values hashed on the event loop before a batch's keys are computed in a thread.
_INLINE_HASH_BYTES = 256 * 1024


async def _keys_of(values: Sequence[bytes]) -> list[bytes]:
    """The keys of ``values``, every size checked first (``ValueTooLarge``); large batches
    are hashed in a thread."""

    def keys() -> list[bytes]:
        return [key for key, _ in pair_with_keys(values, MAX_VALUE_SIZE)]

    if sum(len(v) for v in values) <= _INLINE_HASH_BYTES:
        return keys()
    return await asyncio.to_thread(keys)


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark a task's exception as seen (it is raised, or superseded, by its awaiter)."""
    if not task.cancelled():
        task.exception()


#: Values at least this large are committed locally before they are sent to replicas (not
#: while): the node then peaks at three copies of the value (it, and SQLite's two while it
#: inserts) rather than three plus every replica connection's send buffers.
COMMIT_FIRST: Final = 16 * 1024 * 1024


class Node:
    """A Kademlia node: state, the RPC handlers, and operations over ``transport``."""

    def __init__(
        self,
        me: Contact,
        values: ValueStore,
        transport: Transport,
        *,
        options: DHTOptions | None = None,
        eligibility: Eligibility | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._options = opts = options or DHTOptions()
        self._me = me
        self._values = values
        self._eligibility = eligibility or Eligibility()
        self._rng = rng or random.Random()
        self._table = RoutingTable(me.hashed_id, k=opts.k, probe_after=opts.probe_after)
        self._bans = BanList()
        self._counters = DHTCounters()
        self._reader = ContactReader(
            me.hashed_id, self._eligibility, allow_private=opts.allow_private
        )
        self._lookup_params = LookupParams.from_options(opts)
        self._transport = transport
        self._driver = Driver(
            transport,
            message=self.request,
            timeout_for=opts.rpc_timeout,
            apply=self._apply,
            counters=self._counters,
        )
        self._wire = WireNodes()
        self._handler = RequestHandler(self, self._counters, opts.serving)
        self._background: set[asyncio.Task[None]] = set()
        self._announcement_listener: AnnouncementListener | None = None

    # --- identity ------------------------------------------------------------------------

    @property
    def me(self) -> Contact:
        """This node as peers see it: ID, advertised address, port and version."""
        return self._me

    def move_to(self, ip: str, port: int) -> None:
        """Advertise another address (the bound port, or the address the chain lists)."""
        self._me = self._me.with_endpoint(ip, port)

    @property
    def options(self) -> DHTOptions:
        """The options the node was built with."""
        return self._options

    @property
    def values(self) -> ValueStore:
        """The local value store the node serves from and stores into."""
        return self._values

    def wire_node(self, contact: Contact) -> WireNode:
        """The wire ``Node`` of ``contact`` (with its HashedID, as Go needs it), built once
        per contact, then reused."""
        return self._wire.of(contact)

    def wire_nodes(self, contacts: list[Contact]) -> list[WireNode]:
        """The wire ``Node`` of each of ``contacts`` (built once per contact, then reused)."""
        return self._wire.of_all(contacts)

    def request(self, mtype: MessageType, receiver: Contact, data: MessageData | None) -> Message:
        """A request from us to ``receiver``.

        ``Receiver.Version`` is the version we last heard from that peer: a seed contact from
        the registry has none, but the routing table may (empty only before first contact).
        """
        if not receiver.version:
            known = self._table.get(receiver.hashed_id)
            if known is not None and known.version:
                receiver = Contact(receiver.id, receiver.ip, receiver.port, known.version)
        wire = self._wire
        return Message(
            sender=wire.of(self._me),
            receiver=wire.of(receiver),
            message_type=int(mtype),
            data=data,
        )

    @staticmethod
    def now() -> float:
        """The event loop's clock (virtual in simulation)."""
        return asyncio.get_running_loop().time()

    # --- whom we know ----------------------------------------------------------------------

    def contact_from_wire(self, node: WireNode | None) -> Contact | None:
        """A routable contact from a peer-supplied ``Node``, or None (see ``dht.contacts``)."""
        return self._reader.contact(node)

    def contacts_from_wire(self, nodes: Iterable[WireNode | None] | None) -> list[Contact]:
        """Usable contacts among peer-supplied nodes (duplicates dropped)."""
        return self._reader.contacts(nodes)

    def acceptable_endpoint(self, ip: str, port: int) -> bool:
        """Is this an address we would dial?"""
        return self._reader.acceptable_endpoint(ip, port)

    def learn(self, contact: Contact, now: float | None = None) -> None:
        """``contact`` proved alive (it answered us, or sent an authenticated request).

        The one place peers enter the routing table. ``contact.version`` must be the one the
        peer itself advertised: below ``min_peer_version`` it stays out (Go's ``addNode``
        gate). A full bucket keeps its oldest contact unless a probe finds it dead; the probe
        runs in the background.
        """
        hashed = contact.hashed_id
        if hashed == self._me.hashed_id:
            return
        if not self._eligibility.routing(hashed):
            return
        if self._options.min_peer_version and self.too_old(contact.version):
            log.debug("not adding %s: version %r is below the minimum", contact, contact.version)
            return
        at = self.now() if now is None else now
        if self._bans.is_banned(hashed, at):
            # Until its ban expires (or, for one earned by failures, a ping clears it): a
            # poisoner that answers pings or sends requests must not walk back in.
            self._counters.banned_kept_out += 1
            return
        result = self._table.add(contact, at, lambda h: self._bans.is_banned(h, at))
        if result.ping is not None:
            self._counters.probes += 1
            self._spawn(self.run(ProbePlan(result.ping)), "probe-lru")

    def learn_requester(self, peer: Contact) -> None:
        """An authenticated peer sent us a request: learn it if its address is usable."""
        known = self._table.get(peer.hashed_id)
        if (
            known is not None
            and known.port == peer.port
            and known.ip == peer.ip
            and known.version == peer.version
        ):
            # Known at this very address and version: its address passed the reader when it
            # was learned, and ``learn`` checks the rest (eligibility, version, bans) again.
            self.learn(known)
            return
        contact = self._reader.contact(wire_node(peer))
        if contact is not None:
            self.learn(contact)

    def too_old(self, version: str) -> bool:
        """Is a peer advertising ``version`` below our minimum? (Counted when it is.)"""
        minimum = self._options.min_peer_version
        if not minimum or not version_too_old(version, minimum):
            return False
        self._counters.peers_too_old += 1
        return True

    def record_failure(self, peer: Contact) -> None:
        """A request to ``peer`` failed; after ``max_failures`` in a row it is evicted."""
        if self._table.failed(peer.hashed_id, self._options.max_failures):
            self._counters.evictions += 1

    def strike(self, peer: Contact, now: float) -> None:
        """Count a failure on the ban list (two within an hour ban the peer)."""
        self._bans.increment(peer.hashed_id, now, peer.address)

    def forgive(self, peer: Contact) -> None:
        """``peer`` answered a ping: clear its ban-list failures."""
        self._bans.clear(peer.hashed_id)

    def ban(self, peer: Contact, reason: str, now: float) -> None:
        """Ban ``peer`` outright and drop it from the routing table."""
        self._counters.bans += 1
        self._bans.ban(peer.hashed_id, now, peer.address, hard=True)
        self._table.remove(peer.hashed_id)
        log.warning("%s %s: banned", peer, reason)

    def poisoned(self, peer: Contact, key: bytes, now: float | None = None) -> None:
        """``peer`` served a value that does not hash to ``key``: count it and ban the peer."""
        self._counters.poisoned_values += 1
        at = self.now() if now is None else now
        self.ban(peer, f"served a value that does not hash to {key.hex()}", at)

    def watch_announcements(self, listener: AnnouncementListener | None) -> None:
        """Call ``listener`` whenever a peer's ``Replicate`` records keys to fetch (the
        replication coordinator's fetch workers wake on it)."""
        self._announcement_listener = listener

    def announced(self, peer: Contact, count: int) -> None:
        """The Replicate handler recorded ``count`` keys announced by ``peer``."""
        if count and self._announcement_listener is not None:
            self._announcement_listener(peer, count)

    def apply_allowlist(
        self, routing: Iterable[bytes], store: Iterable[bytes], *, self_store_eligible: bool
    ) -> bool:
        """Replace the chain allowlists (routing IDs) and drop contacts no longer routable.

        An empty routing list is ignored (returns False), as Go does: the chain briefly
        answering nothing must not lock everyone out.
        """
        if not self._eligibility.update(routing, store):
            return False
        self._eligibility.self_store_eligible = self_store_eligible
        for contact in list(self._table):
            if not self._eligibility.routing(contact.hashed_id):
                self._table.remove(contact.hashed_id)
        return True

    def closest(
        self,
        target: bytes,
        n: int,
        exclude: Iterable[bytes] = (),
        *,
        include_banned: bool = False,
    ) -> list[Contact]:
        """The ``n`` nearest contacts we know, minus ``exclude`` and (unless
        ``include_banned``: answers to peers include them, as Go's do) banned ones."""
        if include_banned:
            # A set as it is (an answer's: the requester), anything else copied.
            return self._table.closest(
                target, n, exclude if isinstance(exclude, (set, frozenset)) else set(exclude)
            )
        return self._table.closest(target, n, set(exclude) | self._bans.banned(self.now()))

    def store_targets(self, key: bytes) -> list[Contact]:
        """The ``replicas`` nearest store-eligible, unbanned contacts of the routing table."""
        return self._store_targets(key, self._store_candidates())

    def store_candidates(self) -> list[Contact]:
        """Every store-eligible, unbanned contact of the routing table (whom replication
        ranks for each key)."""
        return [c for c in self._store_candidates() if self._eligibility.store(c.hashed_id)]

    def routing_eligible(self, hashed_id: bytes) -> bool:
        """May this peer route (the chain's routing allowlist, open before the first list)?"""
        return self._eligibility.routing(hashed_id)

    def store_eligible(self, hashed_id: bytes) -> bool:
        """May this peer be sent values to store?"""
        return self._eligibility.store(hashed_id)

    # --- inspection --------------------------------------------------------------------------

    @property
    def peer_count(self) -> int:
        """Contacts in the routing table."""
        return len(self._table)

    def contacts(self) -> list[Contact]:
        """Every contact of the routing table, bucket by bucket, oldest first in each."""
        return list(self._table)

    def knows(self, hashed_id: bytes) -> bool:
        """Is this routing ID in the routing table?"""
        return hashed_id in self._table

    def is_banned(self, hashed_id: bytes) -> bool:
        """Is this routing ID banned now?"""
        return self._bans.is_banned(hashed_id, self.now())

    def bans(self) -> list[BanEntry]:
        """Peers with failures on record now, most failures first (``is_banned`` says which are)."""
        return self._bans.snapshot(self.now())

    def banned_count(self) -> int:
        """How many peers are banned now."""
        return len(self._bans.banned(self.now()))

    @property
    def self_store_eligible(self) -> bool:
        """May peers store values on us (the chain lists us ACTIVE, or nothing yet)?"""
        return self._eligibility.self_store_eligible

    @property
    def routing_allowlist_size(self) -> int:
        """Routing-eligible supernodes on the chain's last list (0 before the first)."""
        return self._eligibility.routing_count

    def snapshot_counters(self) -> DHTCounters:
        """A copy of the node's counters."""
        return self._counters.snapshot()

    def serving_counters(self) -> ServingCounters:
        """What the request handlers' quotas and slots refused (and the slots in use)."""
        return self._handler.serving_counters()

    # --- serving ---------------------------------------------------------------------------

    def handle(self, request: Message, peer_id: bytes) -> Coroutine[Any, Any, Message]:
        """Answer a request from the peer authenticated as ``peer_id`` (transports call this
        and await what it returns: the handler's own coroutine, not one wrapped around it)."""
        return self._handler.handle(request, peer_id)

    # --- operations ------------------------------------------------------------------------

    async def run(self, plan: Plan[R], consume: Consumer | None = None) -> R:
        """Run any plan over the node's transport; its events update the node."""
        return await self._driver.run(plan, consume)

    async def ping(self, peer: Contact) -> bool:
        """Ping ``peer``; on an answer add it to the routing table and clear its failures."""
        outcome = await self.run(PingPlan([peer], self._reader))
        return bool(outcome.answered)

    async def check_peers(self) -> tuple[int, int]:
        """Ping every routing-table contact; return (answered, failed)."""
        self._counters.health_checks += 1
        plan = HealthCheckPlan(
            self.contacts(), self._reader, concurrency=self._options.health_check_concurrency
        )
        outcome = await self.run(plan)
        return len(outcome.answered), len(outcome.failed)

    async def ping_peers(self, peers: Iterable[Contact], concurrency: int) -> PingOutcome:
        """Ping ``peers``, ``concurrency`` at once (the replication activity check); like the
        health check, a peer that does not answer also counts toward its eviction."""
        return await self.run(HealthCheckPlan(peers, self._reader, concurrency=concurrency))

    async def bootstrap(self, seeds: Iterable[Contact]) -> int:
        """Join through ``seeds``: ping them, look ourselves up, refresh farther buckets.

        Returns the size of the routing table afterwards.
        """
        others = [s for s in seeds if s.hashed_id != self._me.hashed_id]
        outcome: PingOutcome = await self.run(PingPlan(others, self._reader))
        log.debug("bootstrap: %d of %d seeds answered", len(outcome.answered), len(others))
        if self.peer_count == 0:
            return 0
        await self.find_node_id(self._me.id)
        # One bucket at a time: concurrent lookups would ask the same peers at once, each
        # over a new connection (a handshake each), for nothing the next lookup lacks.
        await self.refresh(force=True, concurrency=1)
        return self.peer_count

    async def refresh(self, *, force: bool = False, concurrency: int | None = None) -> int:
        """Look up a random ID in every stale bucket (every bucket from the nearest occupied
        one when ``force``), ``concurrency`` lookups at a time (all at once when None);
        return how many lookups ran."""
        self._counters.bucket_refreshes += 1
        age = 0.0 if force else self._options.bucket_refresh_age
        stale = self._table.stale_buckets(self.now(), age)
        targets = [self._table.random_id_in_bucket(i, self._rng) for i in stale]
        step = concurrency or len(targets) or 1
        for start in range(0, len(targets), step):
            batch = targets[start : start + step]
            await self.run(AllOf(self._lookup(LookupKind.NODES, t) for t in batch))
        return len(targets)

    async def find_node(self, target: bytes) -> LookupOutcome:
        """The ``k`` nodes nearest a 32-byte routing-space ``target``, by iterative lookup."""
        return await self.run(self._lookup(LookupKind.NODES, target))

    async def find_node_id(self, node_id: bytes) -> LookupOutcome:
        """The nodes nearest a node ID, asked with FindNode as Go does (bootstrap)."""
        return await self.run(self._lookup(LookupKind.NODE_ID, node_id))

    async def find_value(self, key: bytes) -> LookupOutcome:
        """Iterative FIND_VALUE of a 32-byte key; a value found is hash-checked."""
        return await self.run(self._lookup(LookupKind.VALUE, key))

    async def store(self, value: bytes, datatype: int = 0) -> StoreOutcome:
        """Commit ``value`` locally while storing it on the nearest store-eligible nodes.

        The key is computed (and the size checked: ``ValueTooLarge`` before anything is
        stored or sent) first; the local commit (an fsync under ``synchronous: full``) then
        overlaps the lookup and the StoreData wave, as in :meth:`store_batch` (a value of
        :data:`COMMIT_FIRST` bytes or more is committed before it is sent). The call
        returns once both are done; a failed local commit raises its own error, before any
        shortfall of the network part.

        The lookup stops once the ``replicas`` nearest store-eligible nodes have answered;
        nodes that fail are replaced by the next nearest until ``replicas`` have it or the
        candidates run out. The outcome says how many did (and its ``cause``, why not more);
        fewer than ``min_replicas`` raise ``NoStorePeers`` or ``TooFewReplicas`` (a
        ``StoreFailed``) carrying its :class:`StoreReport`, and any shortfall is logged as a
        warning naming its cause.
        """
        self._counters.stores += 1
        (key,) = await _keys_of([value])
        # The bare value: the store computes the same key (a pair would be hashed again).
        local = asyncio.ensure_future(
            self._values.store_batch([value], datatype=datatype, is_original=True)
        )
        local.add_done_callback(_retrieved)
        if len(value) >= COMMIT_FIRST:
            # SQLite holds two more copies of the value while it inserts it; the sends' buffers
            # (a few MiB per replica) on top of those would pass three copies per node.
            await asyncio.wait([local])
        try:
            outcome = await self._store_remote(key, value, datatype)
        finally:
            # The commit is in the writer's hands: wait for it whatever happened out there.
            await asyncio.wait([local])
        local.result()  # a failed commit raises first (the network part is logged)
        return self._judge_store(key, outcome)

    async def _store_remote(self, key: bytes, value: bytes, datatype: int) -> StoreOutcome:
        opts = self._options

        def eligible(contact: Contact) -> bool:
            return self._eligibility.store(contact.hashed_id)

        plan = StorePlan(
            key,
            value,
            datatype,
            self._lookup(LookupKind.NODES, key, enough=(opts.replicas, eligible)),
            replicas=opts.replicas,
            store_eligible=eligible,
        )
        return await self.run(plan)

    def _judge_store(self, key: bytes, outcome: StoreOutcome) -> StoreOutcome:
        """Count ``outcome``'s replicas; log and raise (``min_replicas``) a shortfall."""
        opts = self._options
        self._counters.store_replicas += outcome.replicas
        outcome.cause = shortfall_cause(outcome, opts.replicas, self.peer_count)
        if not outcome.cause:
            return outcome
        name = key_from_bytes(key)
        report = StoreReport.of(name, outcome, opts.replicas)
        log.warning(
            "stored %s on %d of %d peers: %s", name, report.replicas, report.wanted, report.cause
        )
        if report.replicas < opts.min_replicas:
            error = NoStorePeers if outcome.candidates == 0 else TooFewReplicas
            raise error(
                f"stored {name} on {report.replicas} of {report.wanted} peers, "
                f"at least {opts.min_replicas} required ({report.cause}); committed locally",
                key=name,
                report=report,
            )
        return outcome

    async def store_batch(
        self, values: Sequence[bytes], datatype: int = 0, task_id: str = ""
    ) -> BatchStoreReport:
        """Commit ``values`` locally in one transaction while sending each node its share.

        The keys are computed (and every size checked: ``ValueTooLarge`` before anything is
        stored or sent) first; the local commit then overlaps the network part (on a disk
        shared with the replicas, a seventh of the work). The call returns once both are
        done; a failed local commit raises its own error, before any of the network part's.

        The report says how many peers acknowledged each key (``replicas``). Raises
        ``NoStorePeers`` when some key has no store-eligible node, ``TooFewReplicas`` when
        fewer than the configured share of requests succeed or a key reached fewer than
        ``min_replicas`` peers (both ``StoreFailed``; the values stay committed locally).
        """
        self._counters.batch_stores += 1
        keys = await _keys_of(values)
        local = asyncio.ensure_future(
            self._values.store_batch(
                list(zip(keys, values, strict=True)), datatype=datatype, is_original=True
            )
        )
        local.add_done_callback(_retrieved)
        shortfall: StoreFailed | None = None
        try:
            report = await self._store_batch_remote(keys, values, datatype, task_id)
        except StoreFailed as exc:
            shortfall = exc
        finally:
            # The commit is in the writer's hands: wait for it whatever happened out there.
            await asyncio.wait([local])
        local.result()  # a failed commit raises first (the network part is logged)
        if shortfall is not None:
            raise shortfall
        return report

    async def _store_batch_remote(
        self, keys: list[bytes], values: Sequence[bytes], datatype: int, task_id: str
    ) -> BatchStoreReport:
        candidates = self._store_candidates()
        opts = self._options
        plan = BatchStorePlan(
            keys,
            values,
            [self._store_targets(key, candidates) for key in keys],
            datatype=datatype,
            task_id=task_id,
            chunk_bytes=opts.batch_store_bytes,
            concurrency=opts.batch_store_concurrency,
            min_success=opts.min_batch_store_success,
        )
        report = await self.run(plan)
        self._counters.batch_store_requests += report.requests
        self._counters.batch_store_requests_succeeded += report.succeeded
        task = f" (task {task_id})" if task_id else ""
        if report.failure is None and keys and report.min_replicas < opts.min_replicas:
            short = sum(n < opts.min_replicas for n in report.replicas)
            report.failure = (
                f"{short}/{len(keys)} keys reached fewer than {opts.min_replicas} peers"
                f" ({report.timeouts} requests timed out,"
                f" {report.refused_not_eligible} refused as not store-eligible)"
            )
        log.log(
            logging.WARNING if report.failure else logging.INFO,
            "batch store%s: %d values, %d/%d requests succeeded, %d refused as not eligible,"
            " %d timed out, fewest replicas of a key %d%s",
            task,
            len(keys),
            report.succeeded,
            report.requests,
            report.refused_not_eligible,
            report.timeouts,
            report.min_replicas,
            f": {report.failure}" if report.failure else "",
        )
        if report.failure is not None:
            error = NoStorePeers if report.requests == 0 else TooFewReplicas
            raise error(report.failure + task, report=report)
        return report

    async def retrieve(self, key: bytes, local_only: bool = False) -> bytes | None:
        """The value of ``key``: local first, then the network (None if nowhere).

        Raises ``KeyDisabled`` for a key disabled here and ``NotFound`` for a local-only miss.
        """
        self._counters.retrieves += 1
        if await self._values.is_disabled(key):
            raise KeyDisabled(f"key is disabled: {key_from_bytes(key)}")
        value = await self._values.retrieve(key)
        if value is not None:
            return value
        if local_only:
            raise NotFound(f"not stored locally: {key_from_bytes(key)}")
        if self._lookup_params.value_alpha != 1:
            return (await self.find_value(key)).value
        return await self._find_value_nearest_first(key)

    async def batch_retrieve_stream(
        self,
        keys: Sequence[bytes],
        required: int,
        tx_id: str,
        consume: Consumer,
        *,
        local_only: bool = False,
    ) -> int:
        """Hand values to ``consume(key, value)`` until ``required`` have been accepted.

        Local values first, then the network for the rest (waves over each key's providers,
        then FIND_VALUE lookups: see ``plans.batch_retrieve``). ``consume`` returns False to
        refuse a value (another provider is then asked). Returns how many were accepted.
        """
        if required <= 0 or not keys:
            return 0
        self._counters.batch_retrieves += 1
        wanted = list(dict.fromkeys(keys))
        delivered = 0
        local = await self._values.retrieve_many(wanted)
        missing: list[bytes] = []
        for key in wanted:
            if key in local and delivered < required and await consume(key, local[key]):
                delivered += 1
            else:
                missing.append(key)
        if delivered >= required or local_only:
            return delivered
        opts = self._options
        banned = self._bans.banned(self.now())
        plan = BatchRetrievePlan(
            missing,
            required - delivered,
            tx_id,
            {key: self._table.closest(key, opts.k, banned) for key in missing},
            self._reader,
            self._lookup_params,
            replicas=opts.replicas,
            batch_get_keys=opts.batch_get_keys,
            concurrency=opts.batch_get_concurrency,
            fallback_lookups=opts.fallback_lookups,
            exclude=frozenset(banned | {self._me.hashed_id}),
        )
        outcome = await self.run(plan, consume)
        return delivered + outcome.delivered

    async def close(self) -> None:
        """Stop background probes and wait for them."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- inside ----------------------------------------------------------------------------

    async def _find_value_nearest_first(self, key: bytes) -> bytes | None:
        """:meth:`find_value`'s value, its first request sent before the lookup is built.

        The lookup would ask the nearest peer alone, and widen after ``lookup_stall`` s or
        an answer without the value. That request is sent here; a verified value that comes
        before the stall is the lookup's result, recorded as the lookup would (the lookup
        counted, the bucket touched, the peer learned, the RPC counted). Anything else hands
        over to the lookup in the state it would be in (see :mod:`lumera_p2p.dht.handover`).
        """
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        nearest = self._table.closest(key, 1, self._bans.banned(sent_at))
        if not nearest:
            return (await self.find_value(key)).value
        peer = nearest[0]
        params = self._lookup_params
        mtype = MessageType.FIND_VALUE
        waiter = loop.create_future()

        def wake(_: object = None) -> None:
            if not waiter.done():
                waiter.set_result(None)

        timer = [loop.call_at(sent_at + params.stall, wake)]

        def answer_started(extra: float, now: float) -> None:
            # As the lookup's ``on_progress``: no stall while it arrives, a later deadline.
            if waiter.done():
                return  # handing over already: the lookup will hear of it
            timer[0].cancel()
            timer[0] = loop.call_at(max(sent_at, now) + params.timeout + extra, wake)

        watch = Watch(answer_started)
        message = self.request(mtype, peer, FindValueRequest(target=key))
        call = asyncio.ensure_future(
            self._transport.call(peer, message, self._options.rpc_timeout(mtype), on_answer=watch)
        )
        call.add_done_callback(_retrieved)
        call.add_done_callback(wake)
        try:
            await waiter
        except BaseException:
            call.cancel()
            raise
        finally:
            timer[0].cancel()
            call.remove_done_callback(wake)
        if call.done() and not call.cancelled() and call.exception() is None:
            response = call.result()
            body = response.data
            if (
                response.message_type == int(mtype)
                and isinstance(body, FindValueResponse)
                and body.value
            ):
                value = bytes(body.value)
                if digest(value) == key:
                    counters = self._counters
                    counters.lookups += 1
                    self._table.touch(key, sent_at)
                    counters.count_sent(mtype.name)
                    counters.observe_rpc(mtype.name, loop.time() - sent_at)
                    self.learn(answered_as(peer, response))
                    return value
        return await self._hand_over(key, sent_at, peer, call, watch)

    async def _hand_over(
        self,
        key: bytes,
        sent_at: float,
        peer: Contact,
        call: asyncio.Future[Message],
        watch: Watch,
    ) -> bytes | None:
        """The lookup of ``key``, its first request (to ``peer`` at ``sent_at``) being
        ``call``: its plan polled as of then, the driver given ``call`` for that request."""
        plan = self._lookup(LookupKind.VALUE, key)
        first = plan.poll(sent_at)
        if len(first) != 1 or first[0].peer.hashed_id != peer.hashed_id:
            # The table changed meanwhile, and a lookup now would ask someone else: run one
            # (the plan polled as of then, its requests never sent, is dropped).
            call.cancel()
            return (await self.find_value(key)).value
        sent = first[0]
        seen = watch.take()
        if seen is not None:
            plan.on_progress(sent.token, *seen)
        adopting = Adopting(self._transport, sent.data, call, watch)
        driver = Driver(
            adopting,
            message=self.request,
            timeout_for=self._options.rpc_timeout,
            apply=self._apply,
            counters=self._counters,
        )
        try:
            return (await driver.run(SentFirst(plan, sent, call.cancel))).value
        finally:
            if not adopting.adopted:
                call.cancel()

    def _lookup(
        self,
        kind: LookupKind,
        target: bytes,
        *,
        enough: tuple[int, Callable[[Contact], bool]] | None = None,
    ) -> LookupPlan:
        """A lookup seeded from the routing table, never asking ourselves or a banned peer
        (``enough``: see :class:`LookupPlan`)."""
        banned = self._bans.banned(self.now())
        exclude = frozenset(banned | {self._me.hashed_id})
        params = self._lookup_params
        if kind is LookupKind.NODE_ID:
            seeds = self._table.closest(hash_id(target), self._options.k, banned)
            return LookupPlan.for_node_id(target, seeds, self._reader, params, exclude=exclude)
        seeds = self._table.closest(target, self._options.k, banned)
        return LookupPlan(kind, target, seeds, self._reader, params, exclude=exclude, enough=enough)

    def _store_candidates(self) -> list[Contact]:
        banned = self._bans.banned(self.now())
        return [c for c in self._table if c.hashed_id not in banned]

    def _store_targets(self, key: bytes, candidates: Sequence[Contact]) -> list[Contact]:
        t = int.from_bytes(key, "big")
        out: list[Contact] = []
        for contact in sorted(candidates, key=lambda c: c.int_id ^ t):
            if self._eligibility.store(contact.hashed_id):
                out.append(contact)
                if len(out) >= self._options.replicas:
                    break
        return out

    def _apply(self, event: Event) -> None:
        """Record what a plan observed (the driver calls this for every event)."""
        now = self.now()
        match event:
            case Answered(peer):
                self.learn(peer, now)
            case Unanswered(peer):
                self.record_failure(peer)
            case Struck(peer):
                self.strike(peer, now)
            case Cleared(peer):
                self.forgive(peer)
            case Poisoned(peer, key):
                self.poisoned(peer, key, now)
            case RefusedStore(peer):
                self._eligibility.refused_store(peer.hashed_id)
            case ProbeAnswered(peer):
                self._table.ping_succeeded(peer, now)
            case ProbeFailed(peer):
                evicted = peer.hashed_id in self._table
                self._table.ping_failed(peer.hashed_id)
                self._counters.evictions += evicted
            case LookupStarted(target):
                self._counters.lookups += 1
                self._table.touch(target, now)
            case _:
                raise TypeError(f"the node cannot apply {event!r}")

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        """Run fire-and-forget work, keeping a reference and logging its failure."""

        async def guarded() -> None:
            await coro

        task = asyncio.ensure_future(guarded())
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background %s failed: %s", task.get_name(), task.exception())
