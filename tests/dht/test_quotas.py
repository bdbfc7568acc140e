"""Per-peer write and announcement quotas (plain data, explicit ``now``)."""

from __future__ import annotations

import pytest

from lumera_p2p.dht.quotas import ACCEPTED, PeerQuotas, QuotaLimits, Verdict

MIB = 1024 * 1024


def test_bytes_per_window_then_the_average() -> None:
    quotas = PeerQuotas(QuotaLimits(write_bytes=100 * MIB, window=10.0, write_values_per_second=0))
    assert quotas.admit_write("a", 60 * MIB, 1, 0.0) is ACCEPTED
    assert quotas.admit_write("a", 40 * MIB, 1, 0.0).accepted
    refused = quotas.admit_write("a", 1, 1, 0.0)
    assert refused.verdict is Verdict.REFUSE
    assert refused.reason == (
        f"write quota exceeded: at most {100 * MIB} value bytes per 10 s from one peer"
    )
    assert quotas.admit_write("b", 100 * MIB, 1, 0.0).accepted  # every peer has its own
    assert quotas.admit_write("a", 10 * MIB, 1, 1.0).accepted  # 10 MiB/s comes back
    assert not quotas.admit_write("a", 10 * MIB, 1, 1.0).accepted
    assert quotas.refused == 2 and quotas.closed == 0


def test_values_per_second() -> None:
    quotas = PeerQuotas(QuotaLimits(write_bytes=0, write_values_per_second=10, window=5.0))
    assert quotas.admit_write("a", 0, 50, 0.0).accepted  # a window's worth at once
    refused = quotas.admit_write("a", 0, 1, 0.0)
    assert not refused.accepted and "10 values per second" in refused.reason
    assert quotas.admit_write("a", 0, 10, 1.0).accepted


def test_a_refused_write_charges_nothing() -> None:
    quotas = PeerQuotas(QuotaLimits(write_bytes=100, write_values_per_second=1, window=10.0))
    assert not quotas.admit_write("a", 50, 11, 0.0).accepted  # over the values quota
    assert quotas.admit_write("a", 100, 10, 0.0).accepted  # the bytes were not spent


def test_announcements() -> None:
    quotas = PeerQuotas(QuotaLimits(replicate_keys=30_000, window=600.0))
    assert quotas.admit_announcements("a", 20_000, 0.0).accepted
    refused = quotas.admit_announcements("a", 20_000, 0.0)
    assert refused.verdict is Verdict.REFUSE
    assert refused.reason == "replicate quota exceeded: at most 30000 keys per 600 s from one peer"
    assert quotas.admit_announcements("a", 10_000, 0.0).accepted
    assert quotas.admit_announcements("a", 50, 1.0).accepted  # 50 keys a second come back


def test_zero_turns_a_quota_off() -> None:
    quotas = PeerQuotas(QuotaLimits(write_bytes=0, write_values_per_second=0, replicate_keys=0))
    for _ in range(100):
        assert quotas.admit_write("a", 10**12, 10**9, 0.0).accepted
        assert quotas.admit_announcements("a", 10**9, 0.0).accepted


def test_a_peer_that_keeps_going_is_closed() -> None:
    quotas = PeerQuotas(QuotaLimits(write_bytes=10, window=10.0, strikes=3))
    assert quotas.admit_write("a", 10, 1, 0.0).accepted
    verdicts = [quotas.admit_write("a", 10, 1, 0.0).verdict for _ in range(5)]
    assert verdicts == [Verdict.REFUSE] * 3 + [Verdict.CLOSE] * 2
    assert (quotas.refused, quotas.closed) == (3, 2)
    # Another peer is not affected, and the strikes refill with the window.
    assert quotas.admit_write("b", 5, 1, 0.0).accepted
    assert quotas.admit_write("a", 10, 1, 100.0).accepted
    assert quotas.admit_write("a", 10, 1, 100.0).verdict is Verdict.REFUSE


@pytest.mark.parametrize(
    "kwargs",
    [{"window": 0}, {"write_bytes": -1}, {"replicate_keys": -1}, {"strikes": 0}, {"max_peers": 0}],
)
def test_bad_limits(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        QuotaLimits(**kwargs)  # type: ignore[arg-type]


def test_documented_defaults() -> None:
    limits = QuotaLimits()
    assert (limits.write_bytes, limits.window) == (1024 * MIB, 60.0)
    assert (limits.write_values_per_second, limits.replicate_keys) == (2000.0, 50_000)
    assert limits.strikes == 20


def test_a_peek_charges_nothing_and_a_refund_gives_back_up_to_the_burst() -> None:
    quotas = PeerQuotas(QuotaLimits(write_bytes=100, write_values_per_second=1, window=10.0))
    assert quotas.would_admit_write("a", 100, 10, 0.0)
    assert not quotas.would_admit_write("a", 101, 1, 0.0)
    assert not quotas.would_admit_write("a", 1, 11, 0.0)
    assert quotas.refused == 0  # a peek is no refusal
    assert quotas.admit_write("a", 60, 5, 0.0).accepted
    assert not quotas.would_admit_write("a", 60, 1, 0.0)
    quotas.refund_write("a", 60, 5, 0.0)  # it stored nothing after all
    assert quotas.admit_write("a", 100, 10, 0.0).accepted
    quotas.refund_write("a", 500, 50, 0.0)  # never more than a full bucket
    assert not quotas.would_admit_write("a", 101, 1, 0.0)
    assert quotas.admit_write("a", 100, 10, 0.0).accepted
