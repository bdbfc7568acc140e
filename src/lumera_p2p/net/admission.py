"""Who may handshake now: a cap per address, a cap in all, and fair sharing of the slots.

A handshake slot is held from accept until the handshake ends. Go has one global pool of 100
and nothing per address, so a peer with two addresses and 100 silent sockets, re-opened as they
are dropped, holds every slot (issue 13: 0 of 60 new connections got through). Here:

* once half the slots are taken, an address holds at most ``per_address`` of them (IPv6
  counts by /64: one host is routinely given a whole /64, so single addresses would be free
  for the asking). Below half, nobody is short of a slot, so one address may take more: a
  local network's nodes all dial from 127.0.0.1, and a node that joins one handshakes with
  every other at once;
* when all ``total`` slots are taken, a newcomer from an address holding fewer slots than the
  busiest address takes the slot of that address's *oldest* pending handshake: a real peer's
  handshake lasts milliseconds, so the oldest pending ones are almost always the silent ones,
  and an attacker spread over many addresses can no longer keep newcomers out.

Plain data, no clock and no I/O: the server asks :meth:`HandshakeSlots.admit` on accept and
calls :meth:`HandshakeSlots.release` when the handshake ends, and carries out the eviction.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Hashable
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)

#: Reasons for a refusal, as counted by the server.
REFUSED_ADDRESS = "address at its handshake cap"
REFUSED_FULL = "every handshake slot taken"


@lru_cache(maxsize=4096)
def address_key(ip: str) -> str:
    """The unit a per-address limit counts: an IPv4 address, or the /64 of an IPv6 one.

    An IPv4-mapped IPv6 address counts as its IPv4 address; anything unparsable as itself.
    """
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


@dataclass(frozen=True)
class Admission(Generic[T]):
    """The answer to one new connection."""

    admitted: bool
    #: An admitted newcomer took this pending handshake's slot: the caller drops it.
    evict: T | None = None
    #: Why a refused connection was refused (``REFUSED_ADDRESS`` or ``REFUSED_FULL``).
    refusal: str = ""


class HandshakeSlots(Generic[T]):
    """Pending handshakes by address, under a per-address and a total cap (module docstring).

    ``T`` identifies a connection (anything hashable; the server uses its connection object).
    """

    def __init__(self, total: int, per_address: int) -> None:
        if total < 1 or per_address < 1:
            raise ValueError("handshake caps must be at least 1")
        self.total = total
        self.per_address = min(per_address, total)
        # address -> {conn: sequence number}; dicts keep insertion order, so the first entry
        # of an address is its oldest pending handshake.
        self._by_address: dict[str, dict[T, int]] = {}
        self._address_of: dict[T, str] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._address_of)

    def __contains__(self, conn: object) -> bool:
        return conn in self._address_of

    def count(self, address: str) -> int:
        """Slots ``address`` (already a :func:`address_key`) holds now."""
        return len(self._by_address.get(address, ()))

    @property
    def crowded(self) -> bool:
        """At least half the slots are taken: the per-address cap applies."""
        return 2 * len(self._address_of) >= self.total

    def at_address_cap(self, address: str) -> bool:
        """Would a new connection from ``address`` be refused for its own address's cap?"""
        return self.crowded and self.count(address) >= self.per_address

    def admit(self, conn: T, address: str) -> Admission[T]:
        """Give ``conn`` (from ``address``, a :func:`address_key`) a slot if the rules allow."""
        if conn in self._address_of:
            raise ValueError("this connection already holds a handshake slot")
        mine = self.count(address)
        if self.at_address_cap(address):
            return Admission(False, refusal=REFUSED_ADDRESS)
        victim: T | None = None
        if len(self._address_of) >= self.total:
            victim = self._victim_for(address, mine)
            if victim is None:
                return Admission(False, refusal=REFUSED_FULL)
            self.release(victim)
        self._by_address.setdefault(address, {})[conn] = next(self._seq)
        self._address_of[conn] = address
        return Admission(True, evict=victim)

    def _victim_for(self, address: str, mine: int) -> T | None:
        """The oldest pending handshake of the busiest other address, if it holds more than
        ``mine`` slots (ties between busiest addresses: the one with the oldest handshake)."""
        best: tuple[int, int, T] | None = None  # (-count, seq of its oldest, conn)
        for other, conns in self._by_address.items():
            if other == address or len(conns) <= mine:
                continue
            oldest, seq = next(iter(conns.items()))
            candidate = (-len(conns), seq, oldest)
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        return None if best is None else best[2]

    def release(self, conn: T) -> None:
        """``conn``'s handshake ended (or it was evicted). Idempotent."""
        address = self._address_of.pop(conn, None)
        if address is None:
            return
        conns = self._by_address[address]
        del conns[conn]
        if not conns:
            del self._by_address[address]
