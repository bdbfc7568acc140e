"""One node-wide budget for the bytes in flight: frames being read, answers being built and sent.

Nothing else bounds what peers can make a node hold at once: each request is within the
protocol's limits, but four BatchGetValues answers of 256 MiB, or six 250 MB frames trickled in
side by side, took a node to 3-4 GB (issue 13). Every large buffer the server holds for a peer
is first reserved here, and the reservation is released when the buffer is gone:

* the server reserves a frame's declared length before it reads the body (a frame that can
  never fit is refused on its header; one that does not fit *now* waits, without reading, for
  at most the configured wait, then the connection is closed);
* a handler that builds a large answer grows the request's reservation as it gathers values
  (see :func:`current_reservation`) and leaves out what does not fit;
* the server resizes the reservation to the encoded answer and releases it once it is sent.

A peer may hold at most ``per_peer`` bytes, so one registered peer cannot take the whole
budget from the others. Requests up to ``small`` bytes (Pings, lookups, small stores) are
always granted at once: they are counted, but never wait, so the node keeps answering them
under pressure (their total is bounded by the open connections). Larger waiters are served in
arrival order, except that one held back only by its own peer's share does not block others.

The accounting is plain data; waiting uses asyncio futures and nothing else. Reservations
are released by :meth:`Reservation.release` (idempotent; also a context manager), and a waiter
cancelled or timed out never leaves a grant behind.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Final

from lumera_p2p.errors import OverBudget

#: Requests up to this size never wait (see the module docstring).
DEFAULT_SMALL: Final = 64 * 1024

#: The reservation of the request being served in this task (set by the server around the
#: handler), which a handler grows for the answer it builds. A ContextVar rather than an
#: argument because the handler interface (``handler(request, peer_id)``) is shared with the
#: in-memory transport, where there is no budget; there it is None.
_CURRENT: ContextVar[Reservation | None] = ContextVar(
    "lumera_p2p_request_reservation", default=None
)


def current_reservation() -> Reservation | None:
    """The reservation of the request this task is serving, or None outside a budgeted server."""
    return _CURRENT.get()


@dataclass
class BudgetStats:
    """Counters since the budget was made."""

    granted: int = 0
    #: Grants that had to wait for memory to be released first.
    waited: int = 0
    #: Requests refused: too large to ever fit, or not granted within their wait.
    refused: int = 0
    #: The most bytes reserved at once.
    peak: int = 0


@dataclass(eq=False)
class _Waiter:
    """A request for ``size`` more bytes into ``target`` (a new, empty reservation or a growth)."""

    size: int
    target: Reservation
    growth: bool
    future: asyncio.Future[None]


class Reservation:
    """Bytes reserved for one peer's request; give them back with :meth:`release`."""

    __slots__ = ("_budget", "peer", "size")

    def __init__(self, budget: MemoryBudget, peer: str, size: int) -> None:
        self._budget = budget
        self.peer = peer
        self.size = size

    @property
    def released(self) -> bool:
        """True once :meth:`release` ran (its bytes are back in the budget)."""
        return self.size < 0

    def could_grow(self, extra: int) -> bool:
        """Whether ``extra`` more bytes could ever be granted (once everything else is free)."""
        return self._budget.can_ever_fit(self.size + extra)

    def try_grow(self, extra: int) -> bool:
        """Reserve ``extra`` more bytes if they fit right now; ``False`` otherwise."""
        return self._budget._try_grow(self, extra)

    async def grow(self, extra: int, timeout: float) -> None:
        """Reserve ``extra`` more bytes, waiting at most ``timeout`` s; ``OverBudget`` if not."""
        await self._budget._grow(self, extra, timeout)

    def resize(self, size: int) -> None:
        """Set the reservation to ``size`` bytes at once, even past the budget.

        For memory that already exists (an answer just encoded): the budget must count it,
        and others wait until it is released.
        """
        self._budget._resize(self, size)

    def release(self) -> None:
        """Give every byte back. Idempotent."""
        self._budget._release(self)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Reservation {self.size} bytes for {self.peer!r}>"


class MemoryBudget:
    """``capacity`` bytes in flight for the whole node, at most ``per_peer`` of them per peer.

    ``per_peer`` 0 (or more than ``capacity``) means the whole capacity; reservations of at
    most ``small`` bytes never wait. See the module docstring.
    """

    def __init__(self, capacity: int, *, per_peer: int = 0, small: int = DEFAULT_SMALL) -> None:
        if capacity < 1:
            raise ValueError(f"a memory budget needs a capacity of at least 1, not {capacity}")
        if per_peer < 0 or small < 0:
            raise ValueError("per_peer and small cannot be negative")
        self.capacity = capacity
        self.per_peer = capacity if per_peer == 0 or per_peer > capacity else per_peer
        self.small = small
        self.stats = BudgetStats()
        #: Bytes reserved now.
        self.used = 0
        self._by_peer: dict[str, int] = {}
        self._waiters: deque[_Waiter] = deque()

    # --- queries -------------------------------------------------------------------------

    @property
    def available(self) -> int:
        """Bytes that can be reserved now (ignoring the per-peer share)."""
        return max(0, self.capacity - self.used)

    def held_by(self, peer: str) -> int:
        """Bytes ``peer`` has reserved now."""
        return self._by_peer.get(peer, 0)

    def can_ever_fit(self, size: int) -> bool:
        """Whether a request of ``size`` bytes could be granted once everything else is free."""
        return size <= self.small or size <= self.per_peer

    @property
    def waiting(self) -> int:
        """Requests waiting for memory now."""
        return len(self._waiters)

    # --- new reservations ----------------------------------------------------------------

    def try_reserve(self, size: int, peer: str) -> Reservation | None:
        """A reservation of ``size`` bytes for ``peer`` if it fits now, else None."""
        if 0 <= size <= self.small:  # never waits: the common case, kept short
            self._account(peer, size)
            self.stats.granted += 1
            return Reservation(self, peer, size)
        _check_size(size)
        if self._may_skip_queue(size, 0) and self._fits(size, peer, 0):
            return self._grant(Reservation(self, peer, 0), size)
        return None

    async def reserve(self, size: int, peer: str, timeout: float) -> Reservation:
        """A reservation of ``size`` bytes for ``peer``, waiting at most ``timeout`` seconds.

        Raises ``OverBudget`` at once if ``size`` can never fit, or when the wait runs out.
        """
        reservation = self.try_reserve(size, peer)
        if reservation is not None:
            return reservation
        if not self.can_ever_fit(size):
            self.stats.refused += 1
            raise OverBudget(
                f"{size} bytes can never fit: a peer may hold at most {self.per_peer} bytes "
                f"of the {self.capacity}-byte memory budget"
            )
        reservation = Reservation(self, peer, 0)
        await self._wait(_Waiter(size, reservation, False, _new_future()), timeout)
        return reservation

    # --- what Reservation calls ----------------------------------------------------------

    def _try_grow(self, reservation: Reservation, extra: int) -> bool:
        _check_size(extra)
        _check_live(reservation)
        if self._may_skip_queue(extra, reservation.size) and self._fits(
            extra, reservation.peer, reservation.size
        ):
            self._grant(reservation, extra)
            return True
        return False

    async def _grow(self, reservation: Reservation, extra: int, timeout: float) -> None:
        if self._try_grow(reservation, extra):
            return
        if not self.can_ever_fit(reservation.size + extra):
            self.stats.refused += 1
            raise OverBudget(
                f"{reservation.size + extra} bytes for one request is over a peer's share "
                f"({self.per_peer} bytes) of the memory budget"
            )
        await self._wait(_Waiter(extra, reservation, True, _new_future()), timeout)

    def _resize(self, reservation: Reservation, size: int) -> None:
        held = reservation.size
        if size < 0 or held < 0:  # (checked here rather than in two calls: once per answer)
            _check_size(size)
            _check_live(reservation)
        if size == held:
            return
        self._account(reservation.peer, size - held)
        reservation.size = size
        if self._waiters:
            self._wake()

    def _release(self, reservation: Reservation) -> None:
        if reservation.size < 0:
            return
        if reservation.size:
            self._account(reservation.peer, -reservation.size)
        reservation.size = -1
        if self._waiters:
            self._wake()

    # --- internals -----------------------------------------------------------------------

    def _fits(self, size: int, peer: str, already: int) -> bool:
        """Would ``size`` more bytes for ``peer`` (whose request holds ``already``) fit now?"""
        if already + size <= self.small:
            return True
        return self.used + size <= self.capacity and self.held_by(peer) + size <= self.per_peer

    def _may_skip_queue(self, size: int, already: int) -> bool:
        """Small requests never queue; others go ahead only of waiters held back by their own
        peer's share, never of one waiting for the budget itself (as :meth:`_wake` does)."""
        if already + size <= self.small:
            return True
        return all(self.used + w.size <= self.capacity for w in self._waiters)

    def _grant(self, reservation: Reservation, size: int) -> Reservation:
        self._account(reservation.peer, size)
        reservation.size += size
        self.stats.granted += 1
        return reservation

    def _account(self, peer: str, delta: int) -> None:
        self.used = used = self.used + delta
        by_peer = self._by_peer
        held = by_peer.get(peer, 0) + delta
        if held:
            by_peer[peer] = held
        else:
            by_peer.pop(peer, None)
        self.stats.peak = max(self.stats.peak, used)

    async def _wait(self, waiter: _Waiter, timeout: float) -> None:
        """Queue ``waiter`` and wait at most ``timeout`` s for :meth:`_wake` to grant it."""
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter.future
        except BaseException as exc:
            if waiter.future.done() and not waiter.future.cancelled():
                # Granted just as the wait ended (timeout or cancellation): give it back.
                if waiter.growth:
                    waiter.target.resize(waiter.target.size - waiter.size)
                else:
                    waiter.target.release()
            else:
                waiter.future.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                self._wake()  # it may have been holding others back
            if isinstance(exc, TimeoutError):
                self.stats.refused += 1
                raise OverBudget(
                    f"no room for {waiter.size} bytes in the memory budget within {timeout} s "
                    f"({self.used} of {self.capacity} bytes in use)"
                ) from None
            raise
        self.stats.waited += 1

    def _wake(self) -> None:
        """Grant queued waiters in order while they fit. One held back only by its own peer's
        share is passed over; one that does not fit the budget stops the scan, so a large
        request is not starved by a stream of smaller ones behind it."""
        for waiter in list(self._waiters):
            if waiter.future.done() or waiter.target.released:
                self._waiters.remove(waiter)
                continue
            if self._fits(waiter.size, waiter.target.peer, waiter.target.size):
                self._waiters.remove(waiter)
                self._grant(waiter.target, waiter.size)
                waiter.future.set_result(None)
            elif self.used + waiter.size > self.capacity:
                break


def _new_future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"cannot reserve a negative number of bytes ({size})")


def _check_live(reservation: Reservation) -> None:
    if reservation.released:
        raise RuntimeError("this reservation was already released")


class serving:  # noqa: N801 - used as a function: ``with serving(reservation):``
    """Make ``reservation`` the :func:`current_reservation` inside the block (a class, not
    a generator: it is entered once per request served)."""

    __slots__ = ("_reservation", "_token")

    _token: Token[Reservation | None]

    def __init__(self, reservation: Reservation | None) -> None:
        self._reservation = reservation

    def __enter__(self) -> None:
        self._token = _CURRENT.set(self._reservation)

    def __exit__(self, *exc_info: object) -> None:
        _CURRENT.reset(self._token)
