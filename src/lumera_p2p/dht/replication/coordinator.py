"""``Replicator``: the replication and repair rounds of one node, between store and plans.

Each round reads what it needs from the store, runs plans through the node (pings, Replicate
announcements, BatchFindValues fetches), and writes what came of them back; the plans never
touch the store, and every decision in between is a pure function (:mod:`.assignment`,
:mod:`.activity`). All the state a round needs is in the store's Go tables, so a node that is
killed mid-round resumes where it stood: cursors advance only after a peer acknowledged, an
announced key is forgotten only once its value is committed, an offline peer is marked
adjusted only once its keys were handed on.

The rounds, each on its own interval (:class:`~.options.ReplicationOptions`):

* **activity** (:meth:`Replicator.check_activity`): ping every ``replication_info`` peer and
  keep ``is_active`` and ``last_seen`` as Go's loop does (:mod:`.activity`).
* **push** (:meth:`Replicator.replicate`): register the routing table's contacts as peers,
  ping those never seen (a newcomer is active within the cycle that finds it), then announce
  each local key to its responsible active peers past their cursor, in pages with the
  boundary rule of ``keys_for_replication``; advance a peer's cursor only when all its
  batches went through. Keys a gone peer (inactive past ``offline_deadline``) was
  responsible for are announced to the peers now responsible in the same pass.
* **fetch** (:meth:`Replicator.fetch_pending`, also woken by incoming announcements): fetch
  announced keys from their announcers, grouped by announcer, 400 keys per BatchFindValues,
  up to 10 calls per chunk while the server leaves values out; every value is checked against
  its key (a wrong one bans the sender); committed values are forgotten from the backlog,
  failed ones have their attempts raised.
* **failed fetch** (:meth:`Replicator.fetch_failed`): keys that failed twice are asked of the
  nodes nearest them, one alternate per attempt; past the last alternate they are dropped.
* **disabled-key purge**, **redundant-key scan** (``del_keys``) and, when switched on, the
  deletion of keys found redundant many times while the disk is short of space.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from lumera_p2p.content import digest
from lumera_p2p.dht.plans import Announcement, AnnouncePlan, FetchPlan
from lumera_p2p.dht.replication.activity import ActivityChange, after_ping, unroutable
from lumera_p2p.dht.replication.assignment import PageAssignment, Ranking, assign_page, redundant
from lumera_p2p.dht.replication.counters import ReplicationCounters
from lumera_p2p.dht.replication.options import ReplicationOptions
from lumera_p2p.dht.valuestore import ReplicationStore
from lumera_p2p.errors import LumeraP2PError, ProtocolError, StorageFull, StoreError
from lumera_p2p.kademlia import Contact
from lumera_p2p.store.local import ReplicationInfo, ReplicationKey
from lumera_p2p.store.timefmt import utcnow
from lumera_p2p.wire.find_values import decode_values
from lumera_p2p.wire.messages import MessageType

if TYPE_CHECKING:
    from lumera_p2p.dht.node import Node

log = logging.getLogger(__name__)

#: The largest decompressed BatchFindValues document accepted: a full 400 MiB frame of values
#: as base64 (4/3) plus the JSON around it. A payload claiming more is refused, not inflated.
MAX_FETCH_DOCUMENT = 400 * 1024 * 1024 * 4 // 3 + 16 * 1024 * 1024
#: Payloads above this are decompressed and checked in a worker thread.
OFF_LOOP_PAYLOAD = 1024 * 1024
#: Keys assigned between two yields to the event loop (a scan page can hold 200,000).
_ASSIGN_SLICE = 2000
#: Go's adjustment counts an offline peer handed on when 75 % of the nodes told succeeded.
ADJUST_SUCCESS = 0.75
#: Rounds of adopting responsible strangers per scan page: a silent one is taken for gone,
#: which can make the next-nearest node responsible, itself a stranger; the page is assigned
#: again after each round, so a node that takes a lost one's place is told in this cycle.
_ADOPT_PASSES = 4
#: Redundant keys deleted per transaction (Go: 100).
_DELETE_BATCH = 100


@dataclass
class CycleReport:
    """What one push cycle did."""

    peers: int = 0
    keys_scanned: int = 0
    keys_announced: int = 0
    keys_repaired: int = 0
    failed_peers: list[str] = field(default_factory=list)
    adjusted: list[str] = field(default_factory=list)


@dataclass
class FetchReport:
    """What one fetch round did."""

    keys: int = 0
    fetched: int = 0
    failed: int = 0
    already_held: int = 0
    dropped: int = 0


class _Next(enum.Enum):
    """After a chunk: go on with the source, give up on it (count the rest failed), or stop."""

    CONTINUE = "continue"
    SOURCE_DOWN = "source down"
    STOP = "stop"


@dataclass
class _Verified:
    values: dict[bytes, bytes]
    failed: list[bytes]
    poisoned: list[bytes]


def verify_payload(payload: bytes, wanted: Sequence[bytes]) -> _Verified:
    """Decode a BatchFindValues payload and check each value against its key.

    Only keys that were asked for count; a missing, null or empty value is a failure; a value
    that does not hash to its key is poisoned (Go's ``VerifyAndFilter`` counts it a failure and
    keeps fetching from the sender). Raises ``ProtocolError`` for a payload that is not one.
    """
    doc = decode_values(payload, MAX_FETCH_DOCUMENT)
    values: dict[bytes, bytes] = {}
    failed: list[bytes] = []
    poisoned: list[bytes] = []
    for key in wanted:
        value = doc.get(key.hex())
        if not value:
            failed.append(key)
        elif digest(value) != key:
            poisoned.append(key)
        else:
            values[key] = value
    return _Verified(values, failed, poisoned)


class Replicator:
    """Replication and repair for ``node`` over ``store`` (see the module docstring).

    ``clock`` is "now" as the store stamps it (the simulator's follows its virtual loop);
    ``free_bytes`` reports the free space of the data directory's disk, for the redundant-key
    deletion (without it nothing is ever deleted).
    """

    def __init__(
        self,
        node: Node,
        store: ReplicationStore,
        options: ReplicationOptions | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        free_bytes: Callable[[], int] | None = None,
    ) -> None:
        self.node = node
        self.store = store
        self.options = options or ReplicationOptions()
        self._clock = clock
        self._rng = rng or random.Random()
        self._free_bytes = free_bytes
        self._counters = ReplicationCounters()
        self._wake = asyncio.Event()
        self._repair_due = asyncio.Event()
        self._repair_timer: asyncio.TimerHandle | None = None
        #: Peers whose going has already brought a push cycle forward (until they return).
        self._repair_called: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._push_lock = asyncio.Lock()
        self._fetch_lock = asyncio.Lock()
        node.watch_announcements(self.announced)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, *, stagger: bool = False) -> None:
        """Start every round on its interval. The first push and activity rounds come one
        interval after start, as in Go (``stagger``: at a random point of the first interval,
        so that nodes started together do not move in step); the first fetch comes at once,
        so a node restarted with a backlog resumes it."""
        if self._tasks:
            return
        opts = self.options

        def first(interval: float) -> float:
            return self._rng.uniform(0.0, interval) if stagger else interval

        loops: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("replicate", self._push_loop(first(opts.interval))),
            (
                "activity",
                self._every(
                    opts.activity_interval, first(opts.activity_interval), self.check_activity
                ),
            ),
            ("fetch", self._fetch_loop()),
            (
                "failed-fetch",
                self._every(
                    opts.failed_fetch_interval, first(opts.failed_fetch_interval), self.fetch_failed
                ),
            ),
            (
                "disabled-purge",
                self._every(
                    opts.disabled_key_cleanup_interval,
                    first(opts.disabled_key_cleanup_interval),
                    self.purge_disabled,
                ),
            ),
            (
                "redundant-scan",
                self._every(
                    opts.redundant_scan_interval,
                    first(opts.redundant_scan_interval),
                    self.classify_redundant,
                ),
            ),
        ]
        if opts.delete_redundant:
            loops.append(
                (
                    "redundant-delete",
                    self._every(
                        opts.delete_interval, first(opts.delete_interval), self.delete_redundant
                    ),
                )
            )
        for name, coro in loops:
            self._tasks.append(asyncio.ensure_future(coro))
            self._tasks[-1].set_name(f"replication-{name}")

    async def stop(self) -> None:
        """Stop every round and wait for them (a round cut short resumes after a restart)."""
        tasks, self._tasks = self._tasks, []
        if self._repair_timer is not None:
            self._repair_timer.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def announced(self, peer: Contact, count: int) -> None:
        """A peer announced keys we lack: fetch soon (the node calls this)."""
        self._wake.set()

    async def register_peers(self, peers: Iterable[Contact]) -> None:
        """Make these peers replication peers (the registry's supernodes, at each peer sync);
        known ones keep their state and cursor."""
        me = self.node.me.id
        rows = [(c.address, c.ip, c.port) for c in peers if c.id != me and c.ip and c.port]
        await self.store.register_replication_peers(rows)

    async def stats(self) -> ReplicationCounters:
        """A snapshot of the counters, with the backlog as it stands."""
        snap = self._counters.snapshot()
        snap.pending_keys = await self.store.replication_key_count()
        return snap

    # --- activity --------------------------------------------------------------------------

    async def check_activity(self) -> None:
        """Ping every replication peer (shuffled, ``activity_concurrency`` at once)."""
        rows = await self._peer_rows()
        self._rng.shuffle(rows)
        await self._ping_rows(rows)
        self._counters.activity_checks += 1
        rows = await self._peer_rows()
        self._counters.peers_active = sum(r.is_active for r in rows)
        self._counters.peers_inactive = len(rows) - self._counters.peers_active
        self._schedule_repair(rows)

    def _schedule_repair(self, rows: Sequence[ReplicationInfo]) -> None:
        """Bring the next push cycle forward to when the first peer that went inactive
        passes the offline deadline, so its keys are handed on then, not up to a cycle
        later (Go looks at inactive peers once per cycle)."""
        self._repair_called &= {r.id for r in rows if not r.is_active}
        deadline = timedelta(seconds=self.options.offline_deadline)
        due = {
            r.id: r.last_seen + deadline
            for r in rows
            if not r.is_active
            and r.last_seen is not None
            and not r.is_adjusted
            and r.id not in self._repair_called
        }
        if not due:
            return
        first = min(due.values())
        # Those due by then are handled by that cycle; the rest at a later activity check.
        self._repair_called |= {peer for peer, when in due.items() if when <= first}
        wait = max(0.0, (first - self._clock()).total_seconds()) + 1.0
        loop = asyncio.get_running_loop()
        if self._repair_timer is not None:
            if self._repair_timer.when() <= loop.time() + wait:
                return  # an earlier cycle is already called for
            self._repair_timer.cancel()
        self._repair_timer = loop.call_later(wait, self._call_repair)

    def _call_repair(self) -> None:
        self._repair_timer = None
        self._repair_due.set()

    async def _ping_rows(self, rows: Sequence[ReplicationInfo]) -> None:
        node = self.node
        now = self._clock()
        changes: list[tuple[ReplicationInfo, ActivityChange]] = []
        to_ping: list[tuple[ReplicationInfo, Contact]] = []
        for row in rows:
            contact = _contact(row)
            if node.routing_eligible(contact.hashed_id):
                to_ping.append((row, contact))
            else:
                changes.append((row, unroutable(row.is_active)))
        if to_ping:
            outcome = await node.ping_peers(
                [c for _, c in to_ping], self.options.activity_concurrency
            )
            answered = {c.id for c in outcome.answered}
            for row, contact in to_ping:
                change = after_ping(
                    was_active=row.is_active,
                    answered=contact.id in answered,
                    banned=node.is_banned(contact.hashed_id),
                    store_eligible=node.store_eligible(contact.hashed_id),
                )
                changes.append((row, change))
        await asyncio.gather(*(self._write_change(row, c, now) for row, c in changes))

    async def _write_change(
        self, row: ReplicationInfo, change: ActivityChange, now: datetime
    ) -> None:
        if change.active is not None:
            await self.store.set_active(row.id, change.active, adjusted=False)
        if change.seen:
            await self.store.update_last_seen(row.id, now)

    # --- push ------------------------------------------------------------------------------

    async def replicate(self) -> CycleReport:
        """One push cycle (see the module docstring)."""
        async with self._push_lock:
            started = self.node.now()
            report = await self._replicate()
            counters = self._counters
            counters.cycles += 1
            counters.last_cycle_at = self._clock().timestamp()
            counters.last_cycle_seconds = self.node.now() - started
            return report

    async def _replicate(self) -> CycleReport:
        store, opts = self.store, self.options
        await self._register_neighbours()
        await self._verify_newcomers()
        now = self._clock()
        rows = await self._peer_rows()
        deadline = timedelta(seconds=opts.offline_deadline)
        known = {r.id.encode() for r in rows}
        active = {r.id.encode(): r for r in rows if r.is_active}
        gone = {r.id.encode() for r in rows if _gone(r, now, deadline)}
        to_adjust = [r for r in rows if r.id.encode() in gone and r.last_seen and not r.is_adjusted]
        ranking = self._ranking(gone)
        cursors: dict[bytes, datetime | None] = {
            pid: r.last_replicated_at for pid, r in active.items()
        }
        contacts = {pid: _contact(r) for pid, r in active.items()}
        gone_contacts = [_contact(r) for r in to_adjust]
        report = CycleReport(peers=len(active))
        start: datetime | None = None
        if not gone_contacts and cursors and all(c is not None for c in cursors.values()):
            start = min(c for c in cursors.values() if c is not None)
        failed: set[bytes] = set()
        #: Peers found responsible mid-cycle: their cursor stays unset until a cycle has
        #: scanned every key for them.
        late: set[bytes] = set()
        gone_responsible: dict[bytes, int] = {}
        gone_targets: dict[bytes, set[bytes]] = {}
        while True:
            page = await store.keys_for_replication(start, now, opts.scan_keys)
            if not page:
                break
            report.keys_scanned += len(page)
            window_end = page[-1][1]
            for attempt in range(_ADOPT_PASSES + 1):
                open_cursors = {pid: c for pid, c in cursors.items() if pid not in failed}
                assignment = await self._assign(page, ranking, open_cursors, gone_contacts, known)
                if not assignment.strangers or attempt == _ADOPT_PASSES:
                    break  # strangers left after the last pass: the next cycle adopts them
                # Responsible nodes we do not replicate with yet: make them peers, ping them,
                # and assign the page again with those that answered.
                joined = await self._adopt(assignment.strangers)
                known |= assignment.strangers
                for row in joined:
                    pid = row.id.encode()
                    cursors[pid] = None
                    contacts[pid] = _contact(row)
                    late.add(pid)
                silent = assignment.strangers - {r.id.encode() for r in joined}
                if silent:
                    gone |= silent
                    ranking = self._ranking(gone)
            failed |= await self._announce(assignment, contacts, report)
            for owner, count in assignment.gone_responsible.items():
                gone_responsible[owner] = gone_responsible.get(owner, 0) + count
            for owner, targets in assignment.gone_targets.items():
                gone_targets.setdefault(owner, set()).update(targets)
            for pid in list(cursors):
                cursor = cursors[pid]
                if pid in failed or pid in late or (cursor is not None and window_end <= cursor):
                    continue
                if await store.update_last_replicated(pid.decode(), window_end):
                    cursors[pid] = window_end
            if len(page) < opts.scan_keys:
                break
            start = window_end
        report.failed_peers = sorted(pid.decode() for pid in failed)
        for row in to_adjust:
            pid = row.id.encode()
            responsible = gone_responsible.get(pid, 0)
            targets = gone_targets.get(pid, set())
            if responsible and not targets:
                continue  # it held keys of ours, but no peer responsible now is active yet
            if targets and len(targets - failed) / len(targets) < ADJUST_SUCCESS:
                log.info("repair for gone peer %s: too few peers took its keys", row.id)
                continue
            if await store.set_adjusted(row.id, True):
                report.adjusted.append(row.id)
                self._counters.peers_adjusted += 1
                log.info("peer %s is gone: %d of its keys handed on", row.id, responsible)
        return report

    async def _register_neighbours(self) -> None:
        """The ``neighbours`` contacts nearest us are replication peers (the chain's
        supernodes are too, from each peer sync): the nodes that share our keys are among
        them, and a node that joins near us is found in the cycle after it joins."""
        me = self.node.me
        near = heapq.nsmallest(
            self.options.neighbours,
            self.node.store_candidates(),
            key=lambda c: c.int_id ^ me.int_id,
        )
        await self.register_peers(near)

    async def _verify_newcomers(self) -> None:
        """Ping the peers in the routing table never seen by the activity check, so that a
        newcomer is active (and is told its keys) in the cycle that finds it."""
        known = {c.id for c in self.node.contacts()}
        rows = await self._peer_rows()
        fresh = [r for r in rows if r.last_seen is None and r.id.encode() in known]
        if fresh:
            await self._ping_rows(fresh)

    async def _adopt(self, ids: set[bytes]) -> list[ReplicationInfo]:
        """Make routing-table contacts ``ids`` replication peers and ping them; return the
        rows of those now active."""
        contacts = [c for c in self.node.contacts() if c.id in ids]
        await self.register_peers(contacts)
        rows = [r for r in await self._peer_rows() if r.id.encode() in ids]
        await self._ping_rows(rows)
        return [r for r in await self._peer_rows() if r.id.encode() in ids and r.is_active]

    def _ranking(self, excluded: set[bytes]) -> Ranking:
        """Who a key's responsible nodes are drawn from now: us and the store-eligible,
        unbanned routing-table contacts that are not gone."""
        candidates = [c for c in self.node.store_candidates() if c.id not in excluded]
        return Ranking(self.node.me, candidates)

    async def _assign(
        self,
        page: Sequence[tuple[bytes, datetime]],
        ranking: Ranking,
        cursors: dict[bytes, datetime | None],
        gone: Sequence[Contact],
        known: set[bytes],
    ) -> PageAssignment:
        """``assign_page`` over a page, yielding to the loop between slices."""
        out = PageAssignment()
        replicas = self.node.options.replicas
        for i in range(0, len(page), _ASSIGN_SLICE):
            part = assign_page(
                page[i : i + _ASSIGN_SLICE],
                ranking,
                replicas=replicas,
                cursors=cursors,
                gone=gone,
                known=known,
            )
            out.strangers |= part.strangers
            for pid, keys in part.keys.items():
                out.keys.setdefault(pid, []).extend(keys)
            for pid, count in part.repairs.items():
                out.repairs[pid] = out.repairs.get(pid, 0) + count
            for owner, count in part.gone_responsible.items():
                out.gone_responsible[owner] = out.gone_responsible.get(owner, 0) + count
            for owner, targets in part.gone_targets.items():
                out.gone_targets.setdefault(owner, set()).update(targets)
            await asyncio.sleep(0)
        return out

    async def _announce(
        self,
        assignment: PageAssignment,
        contacts: dict[bytes, Contact],
        report: CycleReport,
    ) -> set[bytes]:
        """Send a page's announcements; return the peers that failed."""
        announcements = [
            Announcement(contacts[pid], keys) for pid, keys in assignment.keys.items() if keys
        ]
        if not announcements:
            return set()
        opts = self.options
        outcome = await self.node.run(
            AnnouncePlan(
                announcements,
                rng=self._rng,
                batch_keys=opts.announce_batch_keys,
                concurrency=opts.announce_concurrency,
                timeout=self.node.options.rpc_timeout(MessageType.REPLICATE),
            )
        )
        failed = {c.id for c in outcome.failed}
        repaired = sum(n for pid, n in assignment.repairs.items() if pid not in failed)
        counters = self._counters
        counters.keys_announced += outcome.keys_acknowledged
        counters.batches_announced += outcome.batches_acknowledged
        counters.announce_failures += len(failed)
        counters.keys_repaired += repaired
        report.keys_announced += outcome.keys_acknowledged
        report.keys_repaired += repaired
        for peer in outcome.failed:
            log.info(
                "announcing to %s failed, its cursor stays: %s",
                peer,
                outcome.errors.get(peer.id, ""),
            )
        return failed

    # --- fetch -----------------------------------------------------------------------------

    async def fetch_pending(self) -> FetchReport:
        """Fetch announced keys from their announcers (rows with 0-1 failed attempts)."""
        async with self._fetch_lock:
            await self._expire()
            rows = await self.store.replication_keys(0, 1, self.options.fetch_rows)
            return await self._fetch([(row, _contact(row)) for row in rows])

    async def fetch_failed(self) -> FetchReport:
        """Fetch keys that failed twice from the nodes nearest them, one alternate per
        attempt (Go's ``closestContacts(12)[attempt]``); drop those past the last one."""
        async with self._fetch_lock:
            opts = self.options
            last = 1 + opts.fetch_alternates
            rows = await self.store.replication_keys(2, last, opts.fetch_rows)
            pairs: list[tuple[ReplicationKey, Contact]] = []
            hopeless: list[bytes] = []
            me = self.node.me.id
            for row in rows:
                alternates = [
                    c for c in self.node.closest(row.key, opts.fetch_alternates + 1) if c.id != me
                ][: opts.fetch_alternates]
                index = row.attempts - 2
                if index < len(alternates):
                    pairs.append((row, alternates[index]))
                else:
                    hopeless.append(row.key)
            report = FetchReport()
            if hopeless:
                report.dropped = await self.store.delete_replication_keys(hopeless)
                self._counters.keys_expired += report.dropped
            fetched = await self._fetch(pairs)
            fetched.dropped += report.dropped
            return fetched

    async def _push_loop(self, first: float) -> None:
        """A push cycle every ``interval``, or sooner when a peer passes the offline
        deadline (:meth:`_schedule_repair`)."""
        await asyncio.sleep(first)
        while True:
            self._repair_due.clear()
            await self._guarded(self.replicate)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.interval):
                    await self._repair_due.wait()

    async def _fetch_loop(self) -> None:
        """Fetch soon after announcements arrive, and every ``fetch_interval`` regardless;
        the first round runs at once (a restarted node resumes its backlog)."""
        opts = self.options
        await self._drain()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(opts.fetch_interval):
                    await self._wake.wait()
            await asyncio.sleep(opts.fetch_delay)  # let a burst of announcements gather
            self._wake.clear()
            await self._drain()

    async def _drain(self) -> None:
        """Fetch rounds while they fill and make progress (more may wait behind a full
        one); a round that fetched nothing leaves the rest to the next wake-up."""
        while True:
            report = await self._guarded(self.fetch_pending)
            if report is None or report.keys < self.options.fetch_rows or not report.fetched:
                return

    async def _expire(self) -> None:
        """Drop announced keys not announced again within ``pending_key_ttl``, and keys that
        failed with every alternate."""
        opts = self.options
        cutoff = self._clock() - timedelta(seconds=opts.pending_key_ttl)
        expired = await self.store.expire_replication_keys(cutoff, 1 + opts.fetch_alternates)
        if expired:
            self._counters.keys_expired += expired
            log.info("dropped %d announced keys: stale or failed everywhere", expired)

    async def _fetch(self, pairs: Sequence[tuple[ReplicationKey, Contact]]) -> FetchReport:
        """Fetch ``(row, source)`` pairs: drop those already held, group the rest by source,
        and fetch ``fetch_concurrency`` sources at once, chunk by chunk."""
        report = FetchReport(keys=len(pairs))
        self._counters.fetch_rounds += 1
        if not pairs:
            return report
        store = self.store
        missing = set(await store.missing([row.key for row, _ in pairs]))
        held = [row.key for row, _ in pairs if row.key not in missing]
        if held:
            report.already_held = await store.delete_replication_keys(held)
        groups: dict[tuple[bytes, str, int], tuple[Contact, list[bytes]]] = {}
        shunned: list[bytes] = []
        for row, source in pairs:
            if row.key not in missing:
                continue
            if self.node.is_banned(source.hashed_id):
                shunned.append(row.key)  # never ask a banned peer: on to the alternates
                continue
            group = groups.setdefault((source.id, source.ip, source.port), (source, []))
            group[1].append(row.key)
        await self._failed(shunned, report)
        gate = asyncio.Semaphore(self.options.fetch_concurrency)
        size = self.options.fetch_batch_keys

        async def from_source(source: Contact, keys: list[bytes]) -> None:
            async with gate:
                for i in range(0, len(keys), size):
                    verdict = await self._fetch_chunk(source, keys[i : i + size], report)
                    if verdict is _Next.SOURCE_DOWN:
                        # Every chunk would wait out the same backoff: count the rest failed
                        # now, so they move on to alternates instead of sticking to it.
                        await self._failed(keys[i + size :], report)
                    if verdict is not _Next.CONTINUE:
                        break

        await asyncio.gather(*(from_source(s, keys) for s, keys in groups.values()))
        return report

    async def _fetch_chunk(self, source: Contact, keys: list[bytes], report: FetchReport) -> _Next:
        """Fetch one chunk from ``source``, asking again for what it left out (at most
        ``fetch_iterations`` calls); say whether to go on with the source's next chunk."""
        store, counters = self.store, self._counters
        remaining = keys
        for _ in range(self.options.fetch_iterations):
            counters.fetch_requests += 1
            timeout = self.node.options.rpc_timeout(MessageType.BATCH_FIND_VALUES)
            plan = FetchPlan(source, remaining, rng=self._rng, timeout=timeout)
            outcome = await self.node.run(plan)
            if outcome.payload is None:
                log.debug("fetch from %s failed: %s", source, outcome.error)
                await self._failed(remaining, report)
                return _Next.SOURCE_DOWN
            counters.payload_bytes += len(outcome.payload)
            try:
                verified = await self._verify(outcome.payload, remaining)
            except ProtocolError as exc:
                log.warning("%s sent an unreadable BatchFindValues answer: %s", source, exc)
                await self._failed(remaining, report)
                return _Next.SOURCE_DOWN
            if verified.values:
                try:
                    await store.store_batch(list(verified.values.items()))
                except StorageFull as exc:
                    log.warning("fetched values not stored: %s", exc)
                    return _Next.STOP
                except StoreError as exc:
                    log.error("storing fetched values failed: %s", exc)
                    await self._failed(list(verified.values), report)
                    return _Next.STOP
                await store.delete_replication_keys(list(verified.values))
                report.fetched += len(verified.values)
                counters.keys_fetched += len(verified.values)
                counters.bytes_fetched += sum(len(v) for v in verified.values.values())
            if verified.poisoned:
                counters.poisoned_values += len(verified.poisoned)
                self.node.poisoned(source, verified.poisoned[0])
                await self._failed(verified.failed + verified.poisoned, report)
                return _Next.SOURCE_DOWN
            if outcome.done or not verified.failed:
                await self._failed(verified.failed, report)
                return _Next.CONTINUE
            remaining = verified.failed  # the server left values out: ask for those again
        await self._failed(remaining, report)
        return _Next.CONTINUE

    async def _verify(self, payload: bytes, keys: Sequence[bytes]) -> _Verified:
        if len(payload) > OFF_LOOP_PAYLOAD:
            return await asyncio.to_thread(verify_payload, payload, keys)
        return verify_payload(payload, keys)

    async def _failed(self, keys: Sequence[bytes], report: FetchReport) -> None:
        if keys:
            await self.store.increment_attempts(keys)
            report.failed += len(keys)
            self._counters.fetch_failures += len(keys)

    # --- upkeep ----------------------------------------------------------------------------

    async def purge_disabled(self) -> int:
        """Drop disabled keys whose time is up (Go's purge drops the fresh ones instead)."""
        purged = await self.store.purge_expired_disabled_keys()
        self._counters.disabled_keys_purged += purged
        return purged

    async def classify_redundant(self) -> int:
        """Count each key held here whose responsible nodes no longer include us in
        ``del_keys`` (and forget those that do again); return how many are redundant now."""
        store = self.store
        ranking = self._ranking(await self._gone_ids())
        replicas = self.node.options.replicas
        start: datetime | None = None
        now = self._clock()
        total = 0
        while True:
            page = await store.keys_for_replication(start, now, self.options.scan_keys)
            if not page:
                break
            extra: list[bytes] = []
            kept: list[bytes] = []
            for key, _ in page:
                verdict = redundant(key, ranking, replicas)
                if verdict is True:
                    extra.append(key)
                elif verdict is False:
                    kept.append(key)
            await store.track_redundant_keys(extra)
            if kept:
                await store.forget_redundant_keys(kept)
            total += len(extra)
            await asyncio.sleep(0)
            if len(page) < self.options.scan_keys:
                break
            start = page[-1][1]
        self._counters.redundant_keys = total
        return total

    async def delete_redundant(self) -> int:
        """Delete keys found redundant ``delete_min_count`` times, 100 at a time, while the
        disk has less than ``delete_below_free_bytes`` free (Go's deleter; off by default)."""
        opts = self.options
        if not opts.delete_redundant or self._free_bytes is None:
            return 0
        keys = await self.store.redundant_keys(opts.delete_min_count)
        deleted = 0
        while keys and self._free_bytes() < opts.delete_below_free_bytes:
            batch, keys = keys[:_DELETE_BATCH], keys[_DELETE_BATCH:]
            deleted += await self.store.delete_many(batch)
            await self.store.forget_redundant_keys(batch)
        self._counters.redundant_deleted += deleted
        if deleted:
            log.info("deleted %d redundant keys to free disk space", deleted)
        return deleted

    # --- inside ----------------------------------------------------------------------------

    async def _peer_rows(self) -> list[ReplicationInfo]:
        me = self.node.me.address
        return [r for r in await self.store.replication_infos() if r.id != me]

    async def _gone_ids(self) -> set[bytes]:
        now = self._clock()
        deadline = timedelta(seconds=self.options.offline_deadline)
        return {r.id.encode() for r in await self._peer_rows() if _gone(r, now, deadline)}

    async def _every(
        self, interval: float, first: float, job: Callable[[], Awaitable[object]]
    ) -> None:
        await asyncio.sleep(first)
        while True:
            await self._guarded(job)
            await asyncio.sleep(interval)

    async def _guarded(self, job: Callable[[], Awaitable[Any]]) -> Any:
        """Run one round; a failure is logged and counted, and the next round runs as usual."""
        try:
            return await job()
        except asyncio.CancelledError:
            raise
        except LumeraP2PError as exc:
            self._counters.round_failures += 1
            log.warning("replication round %s failed: %s", getattr(job, "__name__", job), exc)
        except Exception:
            self._counters.round_failures += 1
            log.exception("replication round %s failed", getattr(job, "__name__", job))
        return None


def _contact(row: ReplicationInfo | ReplicationKey) -> Contact:
    """The peer a row names (a replication peer, or the node that announced a key)."""
    return Contact(row.id.encode(), row.ip, row.port)


def _gone(row: ReplicationInfo, now: datetime, deadline: timedelta) -> bool:
    """An inactive peer never seen, or not seen for longer than the offline deadline."""
    return not row.is_active and (row.last_seen is None or now - row.last_seen > deadline)
