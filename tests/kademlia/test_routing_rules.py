"""The routing table's rules one at a time: ping-before-evict, replacement caches, failure
counts, bucket refresh ages at their boundaries, and the plain queries."""

from __future__ import annotations

import random

import pytest

from lumera_p2p.kademlia import AddStatus, Contact, RoutingTable, bucket_index, hash_id
from lumera_p2p.kademlia.routing import ALPHA, K

SELF = hash_id(b"routing-rules self")


def in_bucket(index: int, count: int, tag: str = "c") -> list[Contact]:
    """``count`` contacts that fall in bucket ``index`` of SELF's table."""
    found: list[Contact] = []
    i = 0
    while len(found) < count:
        c = Contact(f"{tag}-{i}".encode(), "10.0.0.1", 4445)
        i += 1
        if bucket_index(SELF, c.hashed_id) == index:
            found.append(c)
    return found


def full_table(
    k: int, index: int = 255, replacements: int = 5
) -> tuple[RoutingTable, list[Contact]]:
    table = RoutingTable(SELF, k=k, replacements=replacements)
    members = in_bucket(index, k)
    for c in members:
        assert table.add(c, 0).status is AddStatus.ADDED
    return table, members


def test_protocol_constants() -> None:
    assert (K, ALPHA) == (20, 6)
    table = RoutingTable(SELF)
    assert table.k == 20 and table.replacement_size == 20
    assert RoutingTable(SELF, k=3).replacement_size == 3
    assert RoutingTable(SELF, k=3, replacements=0).replacement_size == 0


@pytest.mark.parametrize("size", [0, 31, 33])
def test_the_routing_id_has_32_bytes(size: int) -> None:
    with pytest.raises(ValueError) as info:
        RoutingTable(bytes(size))
    assert str(info.value) == "the routing ID has 32 bytes"


def test_a_bucket_takes_exactly_k() -> None:
    table = RoutingTable(SELF, k=3)
    a, b, c, d = in_bucket(255, 4)
    assert [table.add(x, 0).status for x in (a, b, c)] == [AddStatus.ADDED] * 3
    result = table.add(d, 0)
    assert result.status is AddStatus.PENDING and result.ping == a
    assert table.bucket(255) == [a, b, c]
    assert len(table) == 3
    assert d.hashed_id not in table


def test_a_ping_answer_clears_the_pending_ping() -> None:
    table, (a, b, _c) = full_table(3)
    d, e, f = in_bucket(255, 3, "new")
    assert table.add(d, 1).ping == a
    table.ping_succeeded(a, 2)
    # The ping is answered: the next newcomer asks for a ping of the new oldest entry.
    result = table.add(e, 3)
    assert result.status is AddStatus.PENDING and result.ping == b
    assert table.add(f, 3).ping is None  # b's ping is still out
    assert table.replacements(255) == [d, e, f]


def test_an_evicted_pinged_head_clears_the_pending_ping() -> None:
    table, (a, b, c) = full_table(3)
    d, e = in_bucket(255, 2, "new")
    assert table.add(d, 1).ping == a
    assert table.remove(a.hashed_id) == d  # a failed its ping; d is promoted
    assert table.bucket(255) == [b, c, d]
    result = table.add(e, 2)
    assert result.ping == b  # a new ping, not blocked by the old one


def test_removing_another_entry_keeps_the_pending_ping() -> None:
    table, (a, b, c) = full_table(3)
    d, e = in_bucket(255, 2, "new")
    assert table.add(d, 1).ping == a
    table.remove(c.hashed_id)  # d takes c's place; a's ping is still pending
    assert table.bucket(255) == [a, b, d]
    assert table.add(e, 2).ping is None


def test_re_seeing_the_pinged_head_elsewhere_keeps_other_pings() -> None:
    table, (a, b, c) = full_table(3)
    d, e = in_bucket(255, 2, "new")
    assert table.add(d, 1).ping == a
    table.add(b, 2)  # b re-seen: the pending ping of a stays
    assert table.bucket(255) == [a, c, b]
    assert table.add(e, 2).ping is None


def test_pings_are_per_bucket() -> None:
    table = RoutingTable(SELF, k=1)
    (a, x) = in_bucket(255, 2)
    (b, y) = in_bucket(254, 2)
    table.add(a, 0)
    table.add(b, 0)
    assert table.add(x, 1).ping == a
    assert table.add(y, 1).ping == b


def test_a_banned_head_makes_room_only_if_banned() -> None:
    table, (a, b) = full_table(2)
    c, d = in_bucket(255, 2, "new")
    assert table.add(c, 1, is_banned=lambda h: False).status is AddStatus.PENDING
    result = table.add(d, 1, is_banned=lambda h: h == a.hashed_id)
    assert result.status is AddStatus.ADDED and result.ping is None
    assert table.bucket(255) == [b, d]
    assert a.hashed_id not in table and table.get(a.hashed_id) is None
    assert len(table) == 2


def test_the_freshest_replacement_is_promoted_and_leaves_the_cache() -> None:
    table, (a, b) = full_table(2)
    c, d, e = in_bucket(255, 3, "new")
    for x in (c, d, e):
        table.add(x, 1)
    assert table.replacements(255) == [c, d, e]
    assert table.remove(b.hashed_id) == e
    assert table.bucket(255) == [a, e]
    assert table.replacements(255) == [c, d]
    assert table.get(e.hashed_id) == e


def test_no_promotion_from_an_empty_cache() -> None:
    table, (a, b) = full_table(2)
    assert table.remove(a.hashed_id) is None
    assert table.bucket(255) == [b]
    assert len(table) == 1


def test_a_recached_contact_moves_to_the_fresh_end() -> None:
    table, _ = full_table(1)
    c, d = in_bucket(255, 2, "new")
    table.add(c, 1)
    table.add(d, 1)
    table.add(c, 2)  # seen again while waiting
    assert table.replacements(255) == [d, c]


def test_the_cache_keeps_the_freshest_when_bounded() -> None:
    table = RoutingTable(SELF, k=1, replacements=3)
    head, *waiting = in_bucket(255, 6)
    table.add(head, 0)
    for x in waiting:
        table.add(x, 1)
    assert table.replacements(255) == waiting[-3:]
    no_cache = RoutingTable(SELF, k=1, replacements=0)
    no_cache.add(head, 0)
    no_cache.add(waiting[0], 1)
    assert no_cache.replacements(255) == []


def test_an_added_contact_leaves_the_cache() -> None:
    table, (a,) = full_table(1)
    (c,) = in_bucket(255, 1, "new")
    table.add(c, 1)
    table.remove(a.hashed_id)  # c promoted
    assert table.replacements(255) == []
    table.add(a, 2)  # a now waits
    assert table.replacements(255) == [a]


def test_a_removed_entry_forgets_its_failures() -> None:
    table, (a, _b) = full_table(2)
    assert not table.failed(a.hashed_id, max_failures=3)
    assert not table.failed(a.hashed_id, max_failures=3)
    table.remove(a.hashed_id)
    table.add(a, 1)
    # The old count is gone: three fresh failures are needed again.
    assert not table.failed(a.hashed_id, max_failures=3)
    assert not table.failed(a.hashed_id, max_failures=3)
    assert table.failed(a.hashed_id, max_failures=3)


def test_failures_count_per_contact_up_to_the_limit() -> None:
    table, (a, b) = full_table(2)
    assert not table.failed(a.hashed_id)  # default limit: 2
    assert not table.failed(b.hashed_id)
    assert table.failed(a.hashed_id)
    assert a.hashed_id not in table
    assert b.hashed_id in table
    assert table.failed(b.hashed_id)
    assert len(table) == 0
    assert not table.failed(a.hashed_id)  # not in the table any more


def test_one_failure_is_enough_with_a_limit_of_one() -> None:
    table, (a, b) = full_table(2)
    assert table.failed(a.hashed_id, max_failures=1)
    assert table.bucket(255) == [b]


def test_a_sign_of_life_resets_the_failures() -> None:
    table, (a, b) = full_table(2)
    table.failed(a.hashed_id, max_failures=2)
    table.ping_succeeded(a, 1)
    assert not table.failed(a.hashed_id, max_failures=2)
    assert table.bucket(255) == [b, a]


def test_removing_a_cached_contact_leaves_other_buckets_alone() -> None:
    table = RoutingTable(SELF, k=1)
    a, a2, a3 = in_bucket(255, 3)
    b, b2 = in_bucket(254, 2)
    for x in (a, a2, a3, b, b2):
        table.add(x, 0)
    assert table.remove(a2.hashed_id) is None
    assert table.replacements(255) == [a3]
    assert table.replacements(254) == [b2]
    assert len(table) == 2


# --- queries ------------------------------------------------------------------------------


def test_iteration_membership_and_copies() -> None:
    table = RoutingTable(SELF, k=2)
    (a,) = in_bucket(250, 1)
    b, c = in_bucket(255, 2)
    for x in (b, a, c):
        table.add(x, 0)
    assert list(table) == [a, b, c]  # bucket order, then least recently seen
    assert a.hashed_id in table and hash_id(b"nobody") not in table
    assert object() not in table
    copy = table.bucket(255)
    copy.clear()
    assert table.bucket(255) == [b, c]
    cache = table.replacements(255)
    cache.append(a)
    assert table.replacements(255) == []


def test_closest_respects_n_and_exclude() -> None:
    table = RoutingTable(SELF, k=20)
    members = [Contact(f"m{i}".encode(), "10.0.0.1", 1) for i in range(30)]
    for c in members:
        table.add(c, 0)
    target = hash_id(b"somewhere")
    t = int.from_bytes(target, "big")
    by_distance = sorted(table, key=lambda c: c.int_id ^ t)
    assert table.closest(target, 5) == by_distance[:5]
    assert table.closest(target, 0) == []
    assert table.closest(target, 100) == by_distance
    skip = {by_distance[0].hashed_id, by_distance[2].hashed_id}
    assert table.closest(target, 3, skip) == [by_distance[1], by_distance[3], by_distance[4]]


# --- refresh ------------------------------------------------------------------------------


def test_stale_buckets_at_the_age_boundary() -> None:
    table = RoutingTable(SELF)
    (far,) = in_bucket(253, 1)
    table.add(far, 0)
    assert table.stale_buckets(99.9, 100) == []
    assert table.stale_buckets(100, 100) == [253, 254, 255]
    table.touch(table.random_id_in_bucket(254, random.Random(1)), 150)
    assert table.stale_buckets(249.9, 100) == [253, 255]
    assert table.stale_buckets(250, 100) == [253, 254, 255]


def test_stale_buckets_start_at_the_nearest_nonempty_one() -> None:
    table = RoutingTable(SELF)
    (x,) = in_bucket(250, 1)
    (y,) = in_bucket(252, 1)
    table.add(y, 0)
    assert table.stale_buckets(10, 1) == [252, 253, 254, 255]
    table.add(x, 0)
    assert table.stale_buckets(10, 1) == [250, 251, 252, 253, 254, 255]


def test_touch_marks_the_target_bucket() -> None:
    table = RoutingTable(SELF)
    table.add(in_bucket(248, 1)[0], 0)
    rng = random.Random(3)
    for index in (248, 251, 255):
        table.touch(table.random_id_in_bucket(index, rng), 500)
    assert table.stale_buckets(500, 1) == [249, 250, 252, 253, 254]


@pytest.mark.parametrize("index", [0, 1, 2, 8, 128, 254, 255])
def test_random_ids_cover_their_bucket(index: int) -> None:
    table = RoutingTable(SELF)
    rng = random.Random(index)
    ids = {table.random_id_in_bucket(index, rng) for _ in range(50)}
    assert all(len(i) == 32 for i in ids)
    assert all(bucket_index(SELF, i) == index for i in ids)
    if index == 0:
        # Bucket 0 holds one ID: ours with the last bit flipped.
        assert ids == {(int.from_bytes(SELF, "big") ^ 1).to_bytes(32, "big")}
    elif index >= 64:
        assert len(ids) == 50  # the low bits are random


def test_random_id_uses_the_given_rng() -> None:
    table = RoutingTable(SELF)
    one = [table.random_id_in_bucket(200, random.Random(7)) for _ in range(2)]
    assert one[0] == one[1]
    assert table.random_id_in_bucket(200, random.Random(8)) != one[0]
