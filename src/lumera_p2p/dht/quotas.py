"""What one peer may make this node write: value bytes and values per window, and Replicate
announcements per window.

Go accepts every store and every announcement (issue 13: 23 MB/s from one peer, 200,000
``replication_keys`` rows from 10 requests). Here each peer has token buckets: ``write_bytes``
refilled over ``window`` seconds (a peer may send that much at once, then at that average),
``write_values_per_second`` (with a window's worth of burst), and ``replicate_keys`` per window.
A request over its peer's quota is answered Failed, and that is all, unless the peer keeps
going: after ``strikes`` refusals within a window its further over-quota requests close the
connection, which costs it a reconnect through the per-address limits.

Plain data fed with ``now``; the handlers ask before they write and carry out the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from lumera_p2p.net.limits import KeyedRateLimiter

MIB = 1024 * 1024


class Verdict(Enum):
    """What to do with one request."""

    ACCEPT = "accept"
    #: Answer Failed with the reason.
    REFUSE = "refuse"
    #: The peer kept going past its quota: close its connection.
    CLOSE = "close"


@dataclass(frozen=True)
class QuotaLimits:
    """Per-peer quotas (see the module docstring); a limit of 0 turns that one off."""

    #: Value bytes one peer may have stored per ``window``, and at once.
    write_bytes: int = 1024 * MIB
    #: Values one peer may have stored per second on average (a window's worth at once).
    write_values_per_second: float = 2000.0
    #: Keys one peer may announce with Replicate per ``window``, and at once.
    replicate_keys: int = 50_000
    #: Seconds over which the quotas refill.
    window: float = 60.0
    #: Refusals within a window after which over-quota requests close the connection.
    strikes: int = 20
    #: Peers whose quotas are tracked at once (the oldest full ones are forgotten first).
    max_peers: int = 65536

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise ValueError(f"the quota window must be positive, not {self.window}")
        for name in ("write_bytes", "write_values_per_second", "replicate_keys"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative (0: no limit)")
        if self.strikes < 1 or self.max_peers < 1:
            raise ValueError("strikes and max_peers must be at least 1")


@dataclass(frozen=True)
class Decision:
    """A verdict and, for a refusal, why (the text of the Failed answer)."""

    verdict: Verdict
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPT


ACCEPTED = Decision(Verdict.ACCEPT)


def _bucket(amount: float, window: float, max_peers: int) -> KeyedRateLimiter | None:
    if amount <= 0:
        return None
    return KeyedRateLimiter(amount / window, max(1.0, amount), max_keys=max_peers)


class PeerQuotas:
    """The quotas of every peer (keyed by its address)."""

    def __init__(self, limits: QuotaLimits | None = None) -> None:
        self.limits = lim = limits or QuotaLimits()
        self._bytes = _bucket(lim.write_bytes, lim.window, lim.max_peers)
        values = lim.write_values_per_second * lim.window
        self._values = _bucket(values, lim.window, lim.max_peers)
        self._announced = _bucket(lim.replicate_keys, lim.window, lim.max_peers)
        self._strikes = KeyedRateLimiter(
            lim.strikes / lim.window, lim.strikes, max_keys=lim.max_peers
        )
        #: Requests refused (Failed) and closed since start.
        self.refused = 0
        self.closed = 0

    def admit_write(self, peer: str, nbytes: int, nvalues: int, now: float) -> Decision:
        """May ``peer`` store ``nvalues`` values of ``nbytes`` bytes in all now? Charged if so."""
        lim = self.limits
        checks = (
            (self._bytes, float(nbytes), f"{lim.write_bytes} value bytes per {lim.window:g} s"),
            (
                self._values,
                float(nvalues),
                f"{lim.write_values_per_second:g} values per second",
            ),
        )
        return self._admit(peer, now, checks, "write quota exceeded")

    def would_admit_write(self, peer: str, nbytes: int, nvalues: int, now: float) -> bool:
        """Would :meth:`admit_write` accept this now? (Nothing is charged or counted.)"""
        for limiter, amount in ((self._bytes, nbytes), (self._values, nvalues)):
            if limiter is not None and limiter.bucket(peer, now).level(now) < amount:
                return False
        return True

    def refund_write(self, peer: str, nbytes: int, nvalues: int, now: float) -> None:
        """Give back what an accepted write was charged: it turned out to store nothing (the
        values were held already, which costs a peer nothing)."""
        for limiter, amount in ((self._bytes, nbytes), (self._values, nvalues)):
            if limiter is not None:
                limiter.bucket(peer, now).give(now, float(amount))

    def admit_announcements(self, peer: str, nkeys: int, now: float) -> Decision:
        """May ``peer`` announce ``nkeys`` keys with Replicate now? Charged if so."""
        lim = self.limits
        checks = (
            (self._announced, float(nkeys), f"{lim.replicate_keys} keys per {lim.window:g} s"),
        )
        return self._admit(peer, now, checks, "replicate quota exceeded")

    def _admit(
        self,
        peer: str,
        now: float,
        checks: tuple[tuple[KeyedRateLimiter | None, float, str], ...],
        what: str,
    ) -> Decision:
        # All or nothing: look at every bucket before charging any.
        for limiter, amount, limit in checks:
            if limiter is not None and limiter.bucket(peer, now).level(now) < amount:
                return self._refuse(peer, now, f"{what}: at most {limit} from one peer")
        for limiter, amount, _ in checks:
            if limiter is not None:
                limiter.allow(peer, now, amount)
        return ACCEPTED

    def _refuse(self, peer: str, now: float, reason: str) -> Decision:
        if self._strikes.allow(peer, now):
            self.refused += 1
            return Decision(Verdict.REFUSE, reason)
        self.closed += 1
        return Decision(Verdict.CLOSE, reason)
