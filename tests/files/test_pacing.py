"""The put pacer against the receivers' own quota buckets: what it lets through is accepted."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.dht.quotas import PeerQuotas, QuotaLimits
from lumera_p2p.files.pacing import BURST, SHARE, Share, WritePacer

MIB = 1024 * 1024


@settings(max_examples=60, deadline=None)
@given(
    sends=st.lists(
        st.tuples(st.integers(1, 8 * MIB), st.integers(1, 64), st.sampled_from("abc")),
        min_size=1,
        max_size=80,
    ),
    gaps=st.lists(st.floats(0, 2.0), min_size=80, max_size=80),
)
def test_what_the_pacer_sends_never_exceeds_a_receivers_quota(
    sends: list[tuple[int, int, str]], gaps: list[float]
) -> None:
    limits = QuotaLimits(write_bytes=16 * MIB, write_values_per_second=100, window=10.0)
    pacer = WritePacer(limits)
    receivers = {r: PeerQuotas(limits) for r in "abc"}
    now = 0.0
    for (nbytes, nvalues, receiver), gap in zip(sends, gaps, strict=False):
        now += gap
        share = {receiver: Share(nbytes, nvalues)}
        now += pacer.delay(share, now)
        pacer.charge(share, now)
        # The receiver charges this sender when the store arrives.
        assert receivers[receiver].admit_write("sender", nbytes, nvalues, now).accepted


def test_a_long_put_goes_at_the_share_of_the_quota_rate() -> None:
    limits = QuotaLimits(write_bytes=60 * MIB, window=60.0)  # 1 MiB/s
    pacer = WritePacer(limits)
    now = 0.0
    for _ in range(200):  # 200 MiB in 1 MiB stores
        share = {"r": Share(MIB, 1)}
        now += pacer.delay(share, now)
        pacer.charge(share, now)
    burst = 60 * SHARE * BURST
    expected = (200 - burst) / SHARE
    assert expected - 2 <= now <= expected + 2


def test_a_quota_turned_off_does_not_pace() -> None:
    pacer = WritePacer(QuotaLimits(write_bytes=0, write_values_per_second=0))
    share = {"r": Share(400 * MIB, 100_000)}
    for _ in range(10):
        assert pacer.delay(share, 0.0) == 0.0
        pacer.charge(share, 0.0)


def test_the_wait_is_for_the_slowest_receiver() -> None:
    pacer = WritePacer(QuotaLimits(write_bytes=10 * MIB, window=10.0))
    pacer.charge({"busy": Share(20 * MIB, 1)}, 0.0)
    assert pacer.delay({"idle": Share(MIB, 1)}, 0.0) == 0.0
    assert pacer.delay({"idle": Share(MIB, 1), "busy": Share(MIB, 1)}, 0.0) > 10.0
