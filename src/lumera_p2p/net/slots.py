"""Concurrency caps for one kind of request, in all and per peer, with a bounded wait.

Go serves 25 BatchFindValues at once and any number of BatchGetValues; four concurrent
BatchGetValues of 20,000 keys from one peer took a node to 3.8 GB (issue 13). The handlers
take a slot here first: a request over either cap waits (in arrival order, except that one held
back only by its own peer's cap does not block other peers) and gets a Failed "busy" answer if
no slot frees up within its wait.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass(eq=False)
class _Waiter:
    peer: str
    future: asyncio.Future[None]


class RequestSlots:
    """At most ``total`` requests in flight, at most ``per_peer`` of them from one peer."""

    def __init__(self, total: int, per_peer: int) -> None:
        if total < 1 or per_peer < 1:
            raise ValueError("request slots need total >= 1 and per_peer >= 1")
        self.total = total
        self.per_peer = min(per_peer, total)
        self.in_use = 0
        self._by_peer: dict[str, int] = {}
        self._waiters: deque[_Waiter] = deque()
        #: Requests that got no slot within their wait.
        self.refused = 0

    def held_by(self, peer: str) -> int:
        """Slots ``peer`` holds now."""
        return self._by_peer.get(peer, 0)

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return len(self._waiters)

    def _fits(self, peer: str) -> bool:
        return self.in_use < self.total and self.held_by(peer) < self.per_peer

    def _take(self, peer: str) -> None:
        self.in_use += 1
        self._by_peer[peer] = self.held_by(peer) + 1

    def try_acquire(self, peer: str) -> bool:
        """Take a slot for ``peer`` if one is free and nobody is queued for it."""
        if self._fits(peer) and not self._blocked_queue():
            self._take(peer)
            return True
        return False

    def _blocked_queue(self) -> bool:
        """Is a waiter queued that only needs a free total slot (so it goes first)?"""
        return any(self.held_by(w.peer) < self.per_peer for w in self._waiters)

    async def acquire(self, peer: str, timeout: float) -> bool:
        """Take a slot for ``peer``, waiting at most ``timeout`` s; ``False`` if none came."""
        if self.try_acquire(peer):
            return True
        waiter = _Waiter(peer, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter.future
        except BaseException as exc:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(peer)  # granted just as the wait ended
            else:
                waiter.future.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    self._wake()
            if isinstance(exc, TimeoutError):
                self.refused += 1
                return False
            raise
        return True

    def release(self, peer: str) -> None:
        """Give back a slot ``peer`` holds."""
        held = self.held_by(peer)
        if held <= 0:
            raise RuntimeError(f"{peer!r} holds no slot")
        self.in_use -= 1
        if held == 1:
            del self._by_peer[peer]
        else:
            self._by_peer[peer] = held - 1
        self._wake()

    def _wake(self) -> None:
        for waiter in list(self._waiters):
            if self.in_use >= self.total:
                return
            if waiter.future.done():
                self._waiters.remove(waiter)
            elif self.held_by(waiter.peer) < self.per_peer:
                self._waiters.remove(waiter)
                self._take(waiter.peer)
                waiter.future.set_result(None)

    @asynccontextmanager
    async def slot(self, peer: str, timeout: float) -> AsyncIterator[bool]:
        """``async with slots.slot(peer, timeout) as got:`` holds a slot inside the block if
        ``got``; it is given back however the block ends."""
        got = await self.acquire(peer, timeout)
        try:
            yield got
        finally:
            if got:
                self.release(peer)
