"""The client's connection pool: several connections per peer, LRU-bounded, pruned when idle.

Go keeps one connection per peer and holds it for a whole RPC, so a 75 s BatchStoreData
blocks a Ping to the same peer (p2p-behaviour.md §11.2 item 13). Here each peer has up to
``per_peer`` connections, each carrying one RPC at a time: a caller first takes one of the
peer's *slots* (waiting only if all are busy), then an idle connection of that peer or, if
there is none, dials a new one. Since a new connection is dialled only when the peer has no
idle one, a peer never has more connections than slots.

Capacity counts every connection, idle or in use. A new one evicts the least recently used
idle connection of any peer when the pool is full; if every connection is busy, the pool goes
over capacity for a moment and closes the surplus as soon as it is released, so a full pool
never makes a caller wait for another peer's RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Generic, Protocol, TypeVar

from lumera_p2p.errors import TransportError

log = logging.getLogger(__name__)


class PoolConnection(Protocol):
    """What the pool needs from a connection (a ``SecureStream``)."""

    def is_closing(self) -> bool:
        """True once closed or lost."""
        ...

    def at_eof(self) -> bool:
        """True once the peer has closed its end."""
        ...

    def abort(self) -> None:
        """Drop the connection at once."""
        ...


C = TypeVar("C", bound=PoolConnection)


@dataclass
class PoolStats:
    """Counters since the pool was made (Go's ``conn_pool`` metrics, plus ``dead``)."""

    #: Connections added (each is one dial).
    adds: int = 0
    #: RPCs that found an idle connection to their peer.
    reuse_hits: int = 0
    #: RPCs that had to dial.
    misses: int = 0
    #: Idle connections closed to make room (LRU), or surplus closed on release.
    evictions: int = 0
    #: Idle connections closed by the pruner.
    pruned: int = 0
    #: Idle connections found closed by the peer when about to be reused.
    dead: int = 0
    #: Connections dropped after a failed, timed-out or cancelled RPC.
    discarded: int = 0


@dataclass(eq=False, slots=True)
class _Idle(Generic[C]):
    key: str
    conn: C
    since: float


@dataclass(eq=False)
class _Peer(Generic[C]):
    idle: list[_Idle[C]] = field(default_factory=list)  # most recently released last
    users: int = 0  # slot holders and waiters
    busy: int = 0  # slots held
    #: Callers waiting for a slot, first come first served; a freed slot passes to the first.
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)


class ConnectionPool(Generic[C]):
    """Connections by key (``id@ip:port``); see the module docstring.

    ``clock`` is any monotonic clock in seconds (``time.monotonic`` by default); the pruner
    runs every ``prune_interval`` seconds once the pool has been used inside an event loop,
    and closes connections idle for ``idle_timeout`` seconds or more.
    """

    def __init__(
        self,
        *,
        capacity: int = 256,
        per_peer: int = 4,
        idle_timeout: float = 3600.0,
        prune_interval: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or per_peer < 1:
            raise ValueError("capacity and per_peer must be at least 1")
        if idle_timeout <= 0 or prune_interval <= 0:
            raise ValueError("idle_timeout and prune_interval must be positive")
        self.capacity = capacity
        self.per_peer = per_peer
        self.idle_timeout = idle_timeout
        self.prune_interval = prune_interval
        self.stats = PoolStats()
        self._clock = clock
        self._peers: dict[str, _Peer[C]] = {}
        self._lru: dict[_Idle[C], None] = {}  # idle connections, least recently used first
        self._in_use: set[C] = set()
        self._pruner: asyncio.Task[None] | None = None
        self._closed = False

    # --- state ----------------------------------------------------------------------------

    @property
    def open(self) -> int:
        """Connections held now, idle or in use."""
        return len(self._lru) + len(self._in_use)

    @property
    def idle(self) -> int:
        """Idle connections held now."""
        return len(self._lru)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    def snapshot(self) -> dict[str, int]:
        """Counters and gauges by name, for stats and metrics."""
        return {**asdict(self.stats), "open": self.open, "capacity": self.capacity}

    # --- leasing --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Hold one of ``key``'s slots for an RPC (waits while all ``per_peer`` are busy).

        Inside, use :meth:`take` or :meth:`add`, then :meth:`release` or :meth:`discard`.
        Raises ``TransportError`` once the pool is closed. (:meth:`try_slot`,
        :meth:`wait_slot` and :meth:`free_slot` are the same without a context manager.)
        """
        await self.wait_slot(key)
        try:
            yield
        finally:
            self.free_slot(key)

    def try_slot(self, key: str) -> bool:
        """Take one of ``key``'s slots if one is free and nobody waits for it; ``False``
        otherwise (then :meth:`wait_slot`). ``TransportError`` once the pool is closed."""
        if self._closed:
            raise TransportError("connection pool is closed")
        if self._pruner is None:
            self._start_pruner()
        peer = self._peers.get(key)
        if peer is None:
            peer = self._peers[key] = _Peer()
        if peer.busy < self.per_peer and not peer.waiting:
            peer.busy += 1
            peer.users += 1
            return True
        return False

    async def wait_slot(self, key: str) -> None:
        """Take one of ``key``'s slots, waiting in line while all are busy; give it back
        with :meth:`free_slot`. ``TransportError`` once the pool is closed."""
        if self.try_slot(key):
            return
        peer = self._peers[key]
        peer.users += 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        peer.waiting.append(waiter)
        try:
            await waiter  # a freed slot is handed over: ``busy`` already counts it
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.free_slot(key)  # handed over just as we gave up: pass it on
            else:
                peer.waiting.remove(waiter)
                peer.users -= 1
                self._forget_if_unused(key, peer)
            raise
        if self._closed:  # closed while we waited for the slot
            self.free_slot(key)
            raise TransportError("connection pool is closed")

    def free_slot(self, key: str) -> None:
        """Give back a slot taken by :meth:`try_slot` or :meth:`wait_slot`."""
        peer = self._peers[key]
        peer.users -= 1
        while peer.waiting:
            waiter = peer.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        peer.busy -= 1
        self._forget_if_unused(key, peer)

    def take(self, key: str) -> C | None:
        """An idle connection to ``key`` (the most recently used), or ``None``: dial then."""
        peer = self._peers.get(key)
        while peer is not None and peer.idle:
            # Most recently used first: the others stay idle and age out, so a burst of
            # parallel RPCs does not keep ``per_peer`` connections open forever.
            entry = peer.idle.pop()
            del self._lru[entry]
            if entry.conn.is_closing() or entry.conn.at_eof():
                # The peer closed it while idle (a server idle timeout): no RPC is lost.
                self.stats.dead += 1
                entry.conn.abort()
                continue
            self.stats.reuse_hits += 1
            self._in_use.add(entry.conn)
            return entry.conn
        self.stats.misses += 1
        return None

    def add(self, conn: C) -> None:
        """Register a newly dialled connection, in use by the caller (``TransportError`` and
        the connection dropped if the pool was closed meanwhile)."""
        if self._closed:
            conn.abort()
            raise TransportError("connection pool is closed")
        if self.open >= self.capacity and self._lru:
            self._evict(next(iter(self._lru)))
        self.stats.adds += 1
        self._in_use.add(conn)

    def release(self, key: str, conn: C) -> None:
        """Give back a connection whose RPC completed: it becomes idle (or is closed)."""
        if conn not in self._in_use:
            return  # already discarded (pool closed under the caller)
        self._in_use.discard(conn)
        if self._closed or conn.is_closing():
            conn.abort()
            return
        if len(self._lru) + len(self._in_use) >= self.capacity:
            # Over capacity because everything was busy when it was dialled.
            self.stats.evictions += 1
            conn.abort()
            return
        peer = self._peers.get(key)
        if peer is None:  # only if the caller released outside its slot
            conn.abort()
            return
        entry = _Idle(key, conn, self._clock())
        peer.idle.append(entry)
        self._lru[entry] = None

    def discard(self, conn: C) -> None:
        """Drop a connection that must not be reused (error, timeout, cancellation)."""
        if conn in self._in_use:
            self._in_use.discard(conn)
            self.stats.discarded += 1
        conn.abort()

    # --- housekeeping ---------------------------------------------------------------------

    def prune(self) -> int:
        """Close connections idle for ``idle_timeout`` or more; return how many."""
        limit = self._clock() - self.idle_timeout
        stale = [entry for entry in self._lru if entry.since <= limit]
        for entry in stale:
            self._drop_idle(entry)
            self.stats.pruned += 1
        return len(stale)

    def _evict(self, entry: _Idle[C]) -> None:
        self._drop_idle(entry)
        self.stats.evictions += 1

    def _drop_idle(self, entry: _Idle[C]) -> None:
        del self._lru[entry]
        peer = self._peers.get(entry.key)
        if peer is not None:
            peer.idle.remove(entry)
            self._forget_if_unused(entry.key, peer)
        entry.conn.abort()

    def _forget_if_unused(self, key: str, peer: _Peer[C]) -> None:
        if peer.users == 0 and not peer.idle and self._peers.get(key) is peer:
            del self._peers[key]

    def _start_pruner(self) -> None:
        if self._pruner is None:
            self._pruner = asyncio.get_running_loop().create_task(
                self._prune_forever(), name="connection-pool-pruner"
            )

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(self.prune_interval)
            pruned = self.prune()
            if pruned:
                log.debug("closed %d idle connections", pruned)

    async def close(self) -> None:
        """Stop the pruner and drop every connection, idle or in use. Idempotent."""
        self._closed = True
        if self._pruner is not None:
            pruner, self._pruner = self._pruner, None
            pruner.cancel()
            # gather, not a bare await: a cancellation of close() itself must still propagate.
            await asyncio.gather(pruner, return_exceptions=True)
        for entry in list(self._lru):
            entry.conn.abort()
        for conn in list(self._in_use):
            conn.abort()
        self._lru.clear()
        self._in_use.clear()
        for peer in self._peers.values():
            peer.idle.clear()
