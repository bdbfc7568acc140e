"""The ban list at its boundaries: threshold, duration counted from the first failure,
expiry on every query, outright bans, ordering of the snapshot."""

from __future__ import annotations

import pytest

from lumera_p2p.kademlia import BanList, hash_id
from lumera_p2p.kademlia.banlist import BAN_DURATION, BAN_THRESHOLD

A, B, C = hash_id(b"ban a"), hash_id(b"ban b"), hash_id(b"ban c")


def test_go_defaults() -> None:
    assert (BAN_THRESHOLD, BAN_DURATION) == (1, 3600.0)
    bans = BanList()
    assert (bans.threshold, bans.duration) == (1, 3600.0)
    assert len(bans) == 0


@pytest.mark.parametrize("threshold", [0, 1, 3])
def test_banned_once_the_count_exceeds_the_threshold(threshold: int) -> None:
    bans = BanList(threshold=threshold, duration=100)
    for n in range(1, threshold + 1):
        assert bans.increment(A, 0) == n
        assert not bans.is_banned(A, 0), n
    assert bans.increment(A, 0) == threshold + 1
    assert bans.is_banned(A, 0)
    assert bans.banned(0) == {A}


def test_increment_by_several_and_labels() -> None:
    bans = BanList()
    assert bans.increment(A, 5.0, "peer-a", by=3) == 3
    assert bans.increment(A, 6.0, "ignored later") == 4
    (entry,) = bans.snapshot(6.0)
    assert (entry.key, entry.label, entry.count, entry.first_failure) == (A, "peer-a", 4, 5.0)


def test_the_ban_lasts_exactly_its_duration_from_the_first_failure() -> None:
    bans = BanList(duration=100)
    bans.increment(A, 10.0)
    bans.increment(A, 50.0)
    assert bans.is_banned(A, 109.999)
    assert bans.count(A, 109.999) == 2
    assert not bans.is_banned(A, 110.0)
    assert bans.count(A, 110.0) == 0
    assert len(bans) == 0  # the expired entry is gone, not just hidden


def test_a_failure_after_expiry_starts_a_new_entry() -> None:
    bans = BanList(duration=100)
    bans.increment(A, 0.0)
    bans.increment(A, 1.0)
    assert bans.increment(A, 100.0) == 1  # the old entry expired at 100
    assert not bans.is_banned(A, 100.0)
    assert bans.increment(A, 150.0) == 2
    assert bans.is_banned(A, 199.0)  # counted from 100 now
    assert not bans.is_banned(A, 200.0)


def test_an_outright_ban_is_just_over_the_threshold() -> None:
    bans = BanList(threshold=2)
    bans.ban(A, 0.0, "seeded")
    assert bans.count(A, 0.0) == 3
    assert bans.is_banned(A, 0.0)
    (entry,) = bans.snapshot(0.0)
    assert entry.label == "seeded"
    bans.clear(A)
    assert not bans.is_banned(A, 0.0)
    assert bans.count(A, 0.0) == 0
    bans.clear(B)  # unknown: nothing happens


def test_purge_drops_only_expired_entries() -> None:
    bans = BanList(duration=100)
    bans.increment(A, 0.0)
    bans.increment(B, 10.0)
    bans.increment(C, 20.0)
    assert bans.purge(9.9) == 0
    assert bans.purge(110.0) == 2  # A (expired at 100) and B (exactly at 110)
    assert len(bans) == 1
    assert bans.count(C, 110.0) == 1
    assert bans.purge(110.0) == 0


def test_banned_and_snapshot_skip_expired_entries() -> None:
    bans = BanList(duration=100)
    bans.ban(A, 0.0)
    bans.ban(B, 50.0)
    assert bans.banned(99.0) == {A, B}
    assert bans.banned(100.0) == {B}
    assert [e.key for e in bans.snapshot(100.0)] == [B]


def test_snapshot_orders_by_count_then_age() -> None:
    bans = BanList()
    bans.increment(A, 30.0)
    bans.increment(B, 10.0, by=2)
    bans.increment(C, 20.0)
    assert [e.key for e in bans.snapshot(40.0)] == [B, C, A]
    assert bans.banned(40.0) == {B}


def test_labels_default_to_empty() -> None:
    bans = BanList()
    bans.increment(A, 0.0)
    bans.ban(B, 0.0)
    assert [e.label for e in bans.snapshot(0.0)] == ["", ""]


def test_a_hard_ban_survives_a_successful_ping_until_it_expires() -> None:
    bans = BanList(duration=100)
    bans.increment(A, 0.0)
    bans.ban(A, 50.0, "poisoner", hard=True)
    assert bans.is_banned(A, 50.0) and bans.is_hard_banned(A, 50.0)
    bans.clear(A)  # it answered a ping: a failure ban would go, this one stays
    assert bans.is_banned(A, 149.0)
    assert bans.count(A, 50.0) == 3  # the earlier failure, and just over the threshold
    (entry,) = bans.snapshot(60.0)
    assert (entry.label, entry.hard, entry.first_failure) == ("poisoner", True, 50.0)
    # It runs from the ban, not from the first failure.
    assert not bans.is_banned(A, 150.0) and not bans.is_hard_banned(A, 150.0)
    assert bans.banned(150.0) == set()


def test_a_soft_ban_is_not_hard() -> None:
    bans = BanList()
    bans.ban(A, 0.0)
    assert bans.is_banned(A, 1.0) and not bans.is_hard_banned(A, 1.0)
    bans.increment(B, 0.0)
    assert not bans.is_hard_banned(B, 0.0) and not bans.is_hard_banned(b"unknown", 0.0)


def test_a_hard_ban_of_a_peer_with_no_failures_is_just_over_the_threshold() -> None:
    bans = BanList(threshold=2, duration=100)
    bans.ban(B, 10.0, "poisoner", hard=True)
    assert bans.count(B, 10.0) == 3
    assert bans.is_banned(B, 10.0) and bans.is_hard_banned(B, 10.0)
    (entry,) = bans.snapshot(20.0)
    assert entry.key == B
    assert B in bans.banned(20.0)
