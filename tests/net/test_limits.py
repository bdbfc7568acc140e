"""Token buckets, the per-IP limiter, deadlines and the limits' validation."""

from __future__ import annotations

import pytest

from lumera_p2p.net.limits import MB, KeyedRateLimiter, ServerLimits, TokenBucket, transfer_deadline


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5)  # one token back after 1/rate s
    assert not bucket.take(0.5)
    assert not bucket.is_full(1.0)
    assert bucket.is_full(10.0)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_token_bucket_ignores_a_clock_going_back() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=5.0)
    assert bucket.take(5.0)
    assert not bucket.take(1.0)


def test_keyed_limiter_is_per_key() -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=2)
    assert limiter.allow("a", 0) and limiter.allow("a", 0)
    assert not limiter.allow("a", 0)
    assert limiter.allow("b", 0)


def test_keyed_limiter_stays_bounded() -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=1, max_keys=3)
    for i in range(3):
        assert limiter.allow(f"k{i}", 0)
    # All three are empty: the oldest is forgotten to make room.
    assert limiter.allow("k3", 0)
    assert len(limiter) == 3
    assert limiter.allow("k0", 0)  # forgotten, so it starts with a full bucket
    # Full buckets are dropped first.
    assert limiter.allow("k4", 100.0)
    assert len(limiter) == 1


def test_transfer_deadline() -> None:
    assert transfer_deadline(0, 10.0, MB) == 10.0
    assert transfer_deadline(400 * MB, 10.0, MB) == 410.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"per_ip_rate": 0},
        {"global_burst": 0.5},
        {"max_handshakes": 0},
        {"idle_timeout": -1},
        {"min_transfer_rate": 0},
        {"handler_timeout": 0},
    ],
)
def test_server_limits_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ServerLimits(**kwargs)  # type: ignore[arg-type]


def test_server_limits_defaults() -> None:
    limits = ServerLimits()
    assert limits.max_handshakes == 100 and limits.global_rate == 1000.0
    assert limits.handler_timeout is not None and limits.handler_timeout > 180


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.99), (1, 0)])
def test_token_bucket_refuses_bad_parameters(rate: float, burst: float) -> None:
    for make in (lambda: TokenBucket(rate, burst, 0.0), lambda: KeyedRateLimiter(rate, burst)):
        with pytest.raises(ValueError) as info:
            make()
        assert str(info.value) == "a token bucket needs rate > 0 and burst >= 1"


def test_token_bucket_smallest_legal_parameters() -> None:
    bucket = TokenBucket(rate=0.001, burst=1, now=0.0)
    assert bucket.take(0.0)
    assert not bucket.take(999.0)  # 0.999 of a token
    assert bucket.take(1000.0)  # exactly one token, spent at once


def test_token_bucket_refills_at_its_rate() -> None:
    # rate 4/s: one token every 0.25 s, and a fraction carries over between takes.
    bucket = TokenBucket(rate=4.0, burst=2, now=10.0)
    assert bucket.take(10.0) and bucket.take(10.0)
    assert not bucket.take(10.0)
    assert not bucket.take(10.125)  # half a token
    assert bucket.take(10.25)  # exactly one
    assert not bucket.take(10.25)
    assert not bucket.is_full(10.5)  # one token back: not yet the burst of two
    assert bucket.is_full(10.75)  # exactly the burst
    assert bucket.take(10.75) and bucket.take(10.75)
    assert not bucket.take(10.75)


def test_token_bucket_spends_exactly_one_token() -> None:
    bucket = TokenBucket(rate=1.0, burst=5, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(10)) == 5
    assert sum(bucket.take(2.0) for _ in range(10)) == 2  # two seconds, two tokens


def test_keyed_limiter_defaults_and_parameters() -> None:
    limiter = KeyedRateLimiter(rate=3.0, burst=4)
    assert (limiter.rate, limiter.burst, limiter.max_keys) == (3.0, 4, 65536)
    assert len(limiter) == 0
    assert sum(limiter.allow("a", 0.0) for _ in range(10)) == 4  # each key gets the burst
    assert sum(limiter.allow("a", 1.0) for _ in range(10)) == 3  # then the rate


def test_keyed_limiter_sweeps_only_when_full() -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=1, max_keys=3)
    limiter.allow("a", 0.0)
    limiter.allow("b", 0.0)
    # Two keys of three: a third never sweeps, though a's bucket is full again by now.
    limiter.allow("c", 5.0)
    assert len(limiter) == 3
    assert not limiter.allow("c", 5.0)


def test_keyed_limiter_drops_full_buckets_before_old_ones() -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=1, max_keys=3)
    assert limiter.allow("old", 0.0)
    assert limiter.allow("mid", 0.5)
    assert limiter.allow("new", 0.9)
    # At 1.0 only "old" has refilled: it alone goes, the two empty ones are kept.
    assert limiter.allow("x", 1.0)
    assert len(limiter) == 3
    assert not limiter.allow("mid", 1.0)  # kept, still empty
    assert not limiter.allow("new", 1.0)


def test_keyed_limiter_drops_just_enough_of_the_oldest() -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=1, max_keys=4)
    for key in "abcd":
        assert limiter.allow(key, 0.0)
    assert limiter.allow("e", 0.0)  # none is full: the oldest one, "a", goes
    assert len(limiter) == 4
    assert not limiter.allow("b", 0.0)  # b, c and d are kept, still empty
    assert not limiter.allow("c", 0.0)
    assert not limiter.allow("d", 0.0)
    assert limiter.allow("a", 0.0)  # a starts again with a fresh burst (and pushes b out)
    assert len(limiter) == 4
    assert limiter.allow("b", 0.0)


def test_transfer_deadline_scales_with_size() -> None:
    assert transfer_deadline(2 * MB, 5.0, 0.5 * MB) == 9.0
    assert transfer_deadline(1, 0.0, 4.0) == 0.25
    assert MB == 1_048_576


POSITIVE = [
    "per_ip_rate",
    "global_rate",
    "handshake_timeout",
    "idle_timeout",
    "frame_grace",
    "min_transfer_rate",
    "first_byte_timeout",
    "memory_wait",
]


@pytest.mark.parametrize("name", POSITIVE)
@pytest.mark.parametrize("value", [0, -0.5])
def test_server_limits_positive_fields(name: str, value: float) -> None:
    with pytest.raises(ValueError) as info:
        ServerLimits(**{name: value})  # type: ignore[arg-type]
    assert str(info.value) == f"{name} must be positive, not {value}"
    assert getattr(ServerLimits(**{name: 0.001}), name) == 0.001  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["per_ip_burst", "global_burst"])
def test_server_limits_bursts(name: str) -> None:
    with pytest.raises(ValueError) as info:
        ServerLimits(**{name: 0.99})  # type: ignore[arg-type]
    assert str(info.value) == "bursts must be at least 1"
    assert getattr(ServerLimits(**{name: 1}), name) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    [
        "max_connections",
        "max_handshakes",
        "max_handshakes_per_address",
        "max_tracked_ips",
        "memory_budget",
    ],
)
def test_server_limits_counts(name: str) -> None:
    with pytest.raises(ValueError) as info:
        ServerLimits(**{name: 0})  # type: ignore[arg-type]
    assert str(info.value) == f"{name} must be at least 1, not 0"
    assert getattr(ServerLimits(**{name: 1}), name) == 1  # type: ignore[arg-type]


def test_server_limits_per_peer_budget() -> None:
    assert ServerLimits(memory_budget_per_peer=0).memory_budget_per_peer == 0
    with pytest.raises(ValueError) as info:
        ServerLimits(memory_budget_per_peer=-1)
    assert str(info.value) == "memory_budget_per_peer cannot be negative (0: the whole budget)"


def test_server_limits_handler_timeout() -> None:
    assert ServerLimits(handler_timeout=None).handler_timeout is None
    assert ServerLimits(handler_timeout=0.001).handler_timeout == 0.001
    for bad in (0, -1):
        with pytest.raises(ValueError) as info:
            ServerLimits(handler_timeout=bad)
        assert str(info.value) == "handler_timeout must be positive or None"


def test_server_limits_documented_defaults() -> None:
    limits = ServerLimits()
    assert (limits.per_ip_rate, limits.per_ip_burst) == (20.0, 50.0)
    assert (limits.global_rate, limits.global_burst) == (1000.0, 1000.0)
    assert (limits.max_tracked_ips, limits.max_connections) == (65536, 1024)
    assert (limits.handshake_timeout, limits.idle_timeout) == (10.0, 90.0)
    assert (limits.frame_grace, limits.min_transfer_rate) == (10.0, MB)
    assert limits.handler_timeout == 200.0
    assert (limits.max_handshakes, limits.max_handshakes_per_address) == (100, 8)
    assert (limits.first_byte_timeout, limits.registered_addresses_only) == (2.5, False)
    assert (limits.memory_budget, limits.memory_budget_per_peer) == (1024 * MB, 512 * MB)
    assert limits.memory_wait == 10.0
    # The docstring's figures: a 400 MB frame gets 410 s, a ping 10 s.
    assert transfer_deadline(400 * MB, limits.frame_grace, limits.min_transfer_rate) == 410.0


def test_token_bucket_amounts() -> None:
    bucket = TokenBucket(rate=10.0, burst=100, now=0.0)
    assert bucket.take(0.0, 60) and not bucket.take(0.0, 60)
    assert bucket.level(0.0) == 40
    assert bucket.take(2.0, 60)  # 40 + 2 s × 10
    assert not bucket.take(1000.0, 101)  # never more than the burst
    assert bucket.level(1000.0) == 100


def test_keyed_limiter_amounts() -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=10)
    assert limiter.allow("a", 0, 7) and not limiter.allow("a", 0, 7)
    assert limiter.allow("a", 0, 3)
    assert limiter.bucket("b", 0).level(0) == 10
