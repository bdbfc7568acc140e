"""Pacing a put to its receivers' write quotas, so a large file is not refused half-way.

Every node limits what one peer may have it store (``server.write_quota_bytes`` per
``quota_window``, ``write_quota_values_per_second``; ``dht/quotas.py``): over its quota a
peer is answered Failed, and a peer that keeps going has its connection closed. A put of a
large file sends each replica a share of every batch, so past a quota's burst it would be
refused batch after batch. The pacer keeps what this node sends each receiver under a share
(``SHARE``) of those quotas, read from this node's own server section: the network's nodes
are assumed to run the same limits (a receiver with stricter ones still refuses, and the put's
later store rounds retry it).

Sans I/O: a generic cell rate algorithm per receiver and dimension (bytes, values). Each
receiver has a theoretical time ``tat`` at which its budget would be whole again; a send of
``a`` at rate ``r`` may go at ``tat - burst / r`` and moves ``tat`` on by ``a / r``. The burst is
half the receiver's (``BURST``), since its bucket may already be partly spent by an earlier put.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lumera_p2p.dht.quotas import QuotaLimits

#: The share of a receiver's quota rates a put uses.
SHARE = 0.9
#: The share of a receiver's burst a put may use at once.
BURST = 0.5
#: Receivers remembered before those whose budget is whole again are forgotten.
_SWEEP_AT = 4096


@dataclass(frozen=True)
class Share:
    """What one receiver is sent in one store: value bytes and values."""

    nbytes: int
    nvalues: int


class _Gcra:
    """One dimension of the pacer: a rate and a burst, a ``tat`` per receiver."""

    def __init__(self, per_second: float, burst: float) -> None:
        self.per_second = per_second
        self.tolerance = burst / per_second
        self.tat: dict[str, float] = {}

    def delay(self, receiver: str, amount: float, now: float) -> float:
        # A send larger than the burst waits until the budget is whole, then goes.
        tat = max(self.tat.get(receiver, now), now)
        tolerance = max(0.0, self.tolerance - amount / self.per_second)
        return max(0.0, tat - tolerance - now)

    def charge(self, receiver: str, amount: float, now: float) -> None:
        self.tat[receiver] = max(self.tat.get(receiver, now), now) + amount / self.per_second
        if len(self.tat) > _SWEEP_AT:
            for key in [k for k, t in self.tat.items() if t <= now]:
                del self.tat[key]


class WritePacer:
    """When a store to some receivers may go without exceeding their write quotas."""

    def __init__(self, limits: QuotaLimits) -> None:
        window = limits.window
        self._bytes = (
            _Gcra(limits.write_bytes * SHARE / window, limits.write_bytes * SHARE * BURST)
            if limits.write_bytes > 0
            else None
        )
        rate = limits.write_values_per_second
        self._values = (
            _Gcra(rate * SHARE, max(1.0, rate * window * SHARE * BURST)) if rate > 0 else None
        )

    def delay(self, shares: Mapping[str, Share], now: float) -> float:
        """Seconds to wait before sending ``shares`` (0: send now)."""
        wait = 0.0
        for receiver, share in shares.items():
            if self._bytes is not None:
                wait = max(wait, self._bytes.delay(receiver, share.nbytes, now))
            if self._values is not None:
                wait = max(wait, self._values.delay(receiver, share.nvalues, now))
        return wait

    def charge(self, shares: Mapping[str, Share], now: float) -> None:
        """Count ``shares`` as sent at ``now``."""
        for receiver, share in shares.items():
            if self._bytes is not None:
                self._bytes.charge(receiver, share.nbytes, now)
            if self._values is not None:
                self._values.charge(receiver, share.nvalues, now)
