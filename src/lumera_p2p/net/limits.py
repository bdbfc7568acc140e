"""Admission and pacing limits of the TCP server: token buckets, deadlines, the tunables.

Go accepts 1000 connections a second in total and nothing else: no per-peer limit, no cap on
open connections, and a read deadline that, when it fires, leaves the stream where it was
(p2p-behaviour.md §8.3, §11.2 item 14). Here a connection must get past a per-IP and a global
rate limit, a cap on open connections and one on concurrent handshakes, in all and per address
(``net/admission.py``), and send its first byte promptly; then each frame must arrive at a
minimum average rate, or the connection is closed, and fit the node's memory budget
(``net/budget.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: One megabyte as Go counts it in its payload and deadline arithmetic (1,048,576 bytes).
MB = 1024 * 1024
MIB = MB
GIB = 1024 * MIB


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; starts full.

    The caller passes the time, so the bucket works with any clock and is trivial to test.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Spend ``amount`` tokens if there are that many; ``False`` (and nothing spent)
        means the caller is over the limit. More than ``burst`` can never be taken."""
        self._refill(now)
        if self._tokens >= amount:
            self._tokens -= amount
            return True
        return False

    def give(self, now: float, amount: float) -> None:
        """Put back ``amount`` tokens taken for work that turned out to cost nothing (never
        more than ``burst`` in all)."""
        self._refill(now)
        self._tokens = min(self.burst, self._tokens + amount)

    def level(self, now: float) -> float:
        """Tokens there are now."""
        self._refill(now)
        return self._tokens

    def is_full(self, now: float) -> bool:
        """True if the bucket has refilled completely (it then carries no information)."""
        self._refill(now)
        return self._tokens >= self.burst


class KeyedRateLimiter:
    """One :class:`TokenBucket` per key (a peer IP), with a bounded number of keys.

    A full bucket is the same as no bucket, so when the table grows past ``max_keys`` the full
    ones are dropped; if that is not enough (a flood from very many addresses) the oldest go,
    which only ever lets those addresses start again with a fresh burst. The global limit
    still bounds the total.
    """

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, *, max_keys: int = 65536) -> None:
        TokenBucket(rate, burst, 0.0)  # validate the parameters once, here
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float, amount: float = 1.0) -> bool:
        """Spend ``amount`` of ``key``'s tokens; ``False`` (nothing spent) if it has fewer."""
        return self.bucket(key, now).take(now, amount)

    def bucket(self, key: str, now: float) -> TokenBucket:
        """``key``'s bucket (a full one if it had none)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._sweep(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket

    def _sweep(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.is_full(now)]:
            del self._buckets[key]
        excess = len(self._buckets) - self.max_keys + 1
        if excess > 0:
            for key in list(self._buckets)[:excess]:  # dicts keep insertion order: oldest first
                del self._buckets[key]


def transfer_deadline(size: int, grace: float, min_rate: float) -> float:
    """Seconds allowed to move ``size`` bytes: ``grace`` plus the time at ``min_rate`` bytes/s.

    With the defaults (10 s, 1 MB/s) a 400 MB frame, the largest the protocol allows, gets
    410 s; a Ping gets 10 s.
    """
    return grace + size / min_rate


@dataclass(frozen=True)
class ServerLimits:
    """The server's limits; the defaults suit a public node.

    Times are in seconds, rates per second.
    """

    #: New connections a second from one IP, and the burst it may use at once.
    per_ip_rate: float = 20.0
    per_ip_burst: float = 50.0
    #: New connections a second from everyone (Go: 1000/s).
    global_rate: float = 1000.0
    global_burst: float = 1000.0
    #: Peer IPs whose rate is tracked at once (see :class:`KeyedRateLimiter`).
    max_tracked_ips: int = 65536
    #: Open connections, handshaking or not; more are closed on accept.
    max_connections: int = 1024
    #: Handshakes in progress at once (Go: 100); more are closed on accept, unless a newcomer
    #: from a less busy address takes the slot of the busiest address's oldest handshake.
    max_handshakes: int = 100
    #: Handshakes in progress at once from one address (an IPv6 /64 counts as one address),
    #: once half of ``max_handshakes`` are taken (below that, nobody is short of a slot).
    max_handshakes_per_address: int = 8
    #: A new connection that sends nothing for this long is dropped (Go clients send their
    #: first handshake message as soon as they are connected).
    first_byte_timeout: float = 2.5
    #: Refuse, before the handshake, connections from addresses the registry does not list
    #: (the server's ``allowed_addresses``, kept up to date by the service). Off by default:
    #: a peer behind NAT, or whose IP changed since its chain record, is refused until the
    #: record is updated.
    registered_addresses_only: bool = False
    #: The whole handshake, chain check included (Go: 30 s; ours is shorter because a silent
    #: peer holds one of the ``max_handshakes`` slots until then).
    handshake_timeout: float = 10.0
    #: Silence allowed between two requests (and for the 8-byte frame header); then the
    #: connection is closed (Go keeps it and may lose the frame alignment).
    idle_timeout: float = 90.0
    #: A frame body (and a response write) gets ``frame_grace`` seconds plus its size at
    #: ``min_transfer_rate``; the deadline moves with the bytes received, so a peer must keep
    #: up that average rate but a fast peer is never cut off.
    frame_grace: float = 10.0
    min_transfer_rate: float = 1.0 * MB
    #: The longest a handler may take before the connection is closed. Go's longest client
    #: timeout is 3 minutes; nobody waits for an answer after that.
    handler_timeout: float | None = 200.0
    #: Bytes in flight for the whole node: frames being read, answers being built and sent
    #: (``net/budget.py``). The default leaves room for the largest frame the protocol allows
    #: (400 MiB) in one peer's share.
    memory_budget: int = 1 * GIB
    #: The most of it one peer may hold at once (0: the whole budget).
    memory_budget_per_peer: int = 512 * MIB
    #: How long a request waits for room in the budget; then it is refused.
    memory_wait: float = 10.0

    def __post_init__(self) -> None:
        positive = {
            "per_ip_rate": self.per_ip_rate,
            "global_rate": self.global_rate,
            "handshake_timeout": self.handshake_timeout,
            "idle_timeout": self.idle_timeout,
            "frame_grace": self.frame_grace,
            "min_transfer_rate": self.min_transfer_rate,
            "first_byte_timeout": self.first_byte_timeout,
            "memory_wait": self.memory_wait,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value}")
        if self.per_ip_burst < 1 or self.global_burst < 1:
            raise ValueError("bursts must be at least 1")
        counts = {
            "max_connections": self.max_connections,
            "max_handshakes": self.max_handshakes,
            "max_handshakes_per_address": self.max_handshakes_per_address,
            "max_tracked_ips": self.max_tracked_ips,
            "memory_budget": self.memory_budget,
        }
        for name, count in counts.items():
            if count < 1:
                raise ValueError(f"{name} must be at least 1, not {count}")
        if self.memory_budget_per_peer < 0:
            raise ValueError("memory_budget_per_peer cannot be negative (0: the whole budget)")
        if self.handler_timeout is not None and self.handler_timeout <= 0:
            raise ValueError("handler_timeout must be positive or None")
