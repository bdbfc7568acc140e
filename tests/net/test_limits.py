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
