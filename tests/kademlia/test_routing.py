"""Routing table and ban list against brute-force answers."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.kademlia import (
    AddStatus,
    BanList,
    Contact,
    RoutingTable,
    bucket_index,
    distance,
    hash_id,
)


def contact(i: int, ip: str = "10.0.0.1", port: int = 4445) -> Contact:
    return Contact(b"node-%d" % i, ip, port)


SELF = hash_id(b"self")


def brute_bucket(a: bytes, b: bytes) -> int:
    bits_a = "".join(f"{x:08b}" for x in a)
    bits_b = "".join(f"{x:08b}" for x in b)
    for p in range(256):
        if bits_a[p] != bits_b[p]:
            return 255 - p
    return 0


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_bucket_index_matches_bit_scan(a: bytes, b: bytes) -> None:
    assert bucket_index(a, b) == brute_bucket(a, b)


def test_bucket_index_edges() -> None:
    zero = bytes(32)
    assert bucket_index(zero, zero) == 0
    assert bucket_index(zero, b"\x80" + bytes(31)) == 255
    assert bucket_index(zero, bytes(31) + b"\x01") == 0
    assert bucket_index(zero, bytes(31) + b"\x02") == 1


def test_contact_hashes_its_id() -> None:
    c = Contact(b"lumera1abc", "1.2.3.4", 1)
    assert c.hashed_id == hash_id(b"lumera1abc")
    assert c.int_id == int.from_bytes(c.hashed_id, "big")
    assert c.pool_key == "lumera1abc@1.2.3.4:1"
    assert Contact(b"x", "::1", 5).endpoint == "[::1]:5"


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=400),
    k=st.integers(min_value=1, max_value=20),
    seed=st.integers(min_value=0, max_value=2**32),
    want=st.integers(min_value=1, max_value=40),
)
def test_closest_matches_brute_force(n: int, k: int, seed: int, want: int) -> None:
    rng = random.Random(seed)
    table = RoutingTable(SELF, k=k)
    for _ in range(n):
        table.add(contact(rng.randrange(10**9)), now=0.0)
    members = list(table)
    assert len(members) == len(table)
    # No bucket exceeds k, and each contact sits in its own bucket.
    for index in range(256):
        bucket = table.bucket(index)
        assert len(bucket) <= k
        assert all(bucket_index(SELF, c.hashed_id) == index for c in bucket)
    target = rng.randbytes(32)
    exclude = {c.hashed_id for c in members[::3]}
    expected = sorted(
        (c for c in members if c.hashed_id not in exclude),
        key=lambda c: distance(c.hashed_id, target),
    )[:want]
    assert table.closest(target, want, exclude) == expected


def test_self_is_never_added() -> None:
    table = RoutingTable(hash_id(b"me"))
    assert table.add(Contact(b"me", "1.1.1.1", 1), 0).status is AddStatus.REJECTED
    assert len(table) == 0


def _fill_bucket(table: RoutingTable, index: int, count: int) -> list[Contact]:
    found: list[Contact] = []
    i = 0
    while len(found) < count:
        c = contact(i)
        i += 1
        if bucket_index(table.self_hash, c.hashed_id) == index:
            found.append(c)
    return found


def test_least_recently_seen_order_and_address_update() -> None:
    table = RoutingTable(SELF, k=3)
    a, b, c = _fill_bucket(table, 255, 3)
    for x in (a, b, c):
        assert table.add(x, 0).status is AddStatus.ADDED
    assert table.bucket(255) == [a, b, c]
    moved = a.with_endpoint("10.9.9.9", 9999)
    assert table.add(moved, 1).status is AddStatus.UPDATED
    assert table.bucket(255) == [b, c, moved]
    assert table.get(a.hashed_id) is not None
    assert table.get(a.hashed_id).ip == "10.9.9.9"  # type: ignore[union-attr]


def test_full_bucket_pings_oldest_then_keeps_it_if_alive() -> None:
    table = RoutingTable(SELF, k=3)
    a, b, c, d, e = _fill_bucket(table, 255, 5)
    for x in (a, b, c):
        table.add(x, 0)
    result = table.add(d, 1)
    assert result.status is AddStatus.PENDING
    assert result.ping == a
    # Another newcomer while the ping is outstanding: cached, no second ping.
    again = table.add(e, 1)
    assert again.status is AddStatus.PENDING
    assert again.ping is None
    assert table.replacements(255) == [d, e]
    table.ping_succeeded(a, 2)
    assert table.bucket(255) == [b, c, a]
    assert d.hashed_id not in table
    # The next newcomer triggers a ping of the new oldest.
    assert table.add(contact(10**6), 3).status in (AddStatus.PENDING, AddStatus.ADDED)


def test_full_bucket_evicts_oldest_after_failed_ping() -> None:
    table = RoutingTable(SELF, k=3)
    a, b, c, d, e = _fill_bucket(table, 255, 5)
    for x in (a, b, c):
        table.add(x, 0)
    assert table.add(d, 1).ping == a
    table.add(e, 1)
    promoted = table.ping_failed(a.hashed_id)
    assert promoted == e  # the freshest replacement
    assert table.bucket(255) == [b, c, e]
    assert table.replacements(255) == [d]
    assert a.hashed_id not in table


def test_banned_head_is_replaced_at_once() -> None:
    table = RoutingTable(SELF, k=2)
    a, b, c = _fill_bucket(table, 255, 3)
    table.add(a, 0)
    table.add(b, 0)
    result = table.add(c, 1, is_banned=lambda h: h == a.hashed_id)
    assert result.status is AddStatus.ADDED
    assert table.bucket(255) == [b, c]


def test_replacement_cache_is_bounded() -> None:
    table = RoutingTable(SELF, k=1, replacements=2)
    members = _fill_bucket(table, 255, 5)
    for x in members:
        table.add(x, 0)
    assert table.replacements(255) == members[3:]


def test_remove_unknown_and_cached() -> None:
    table = RoutingTable(SELF, k=1)
    a, b = _fill_bucket(table, 255, 2)
    table.add(a, 0)
    table.add(b, 0)
    assert table.remove(b.hashed_id) is None  # only in the cache: dropped from it
    assert table.replacements(255) == []
    assert table.remove(hash_id(b"nobody")) is None


def test_random_id_in_bucket_and_refresh() -> None:
    rng = random.Random(5)
    table = RoutingTable(SELF)
    for index in (0, 1, 7, 100, 255):
        for _ in range(20):
            assert bucket_index(SELF, table.random_id_in_bucket(index, rng)) == index
    assert table.stale_buckets(0, 3600) == []
    far = _fill_bucket(table, 250, 1)[0]
    table.add(far, 0)
    assert table.stale_buckets(3600, 3600) == list(range(250, 256))
    table.touch(table.random_id_in_bucket(252, rng), 3600)
    assert 252 not in table.stale_buckets(3600, 3600)
    assert 252 in table.stale_buckets(7200, 3600)


def test_ban_list_rules() -> None:
    bans = BanList()
    key = hash_id(b"peer")
    assert not bans.is_banned(key, 0)
    assert bans.increment(key, 0, "peer") == 1
    assert not bans.is_banned(key, 1)  # one failure: not yet (threshold 1, banned when > 1)
    bans.increment(key, 10)
    assert bans.is_banned(key, 11)
    # The ban runs from the first failure, not the last.
    bans.increment(key, 3000)
    assert bans.is_banned(key, 3599)
    assert not bans.is_banned(key, 3600)
    assert bans.count(key, 3600) == 0
    bans.ban(key, 4000)
    assert bans.is_banned(key, 4000)
    bans.clear(key)
    assert not bans.is_banned(key, 4001)


def test_ban_list_purge_and_snapshot() -> None:
    bans = BanList(duration=100)
    a, b, c = hash_id(b"a"), hash_id(b"b"), hash_id(b"c")
    bans.increment(a, 0)
    bans.increment(b, 50)
    bans.increment(b, 51)
    bans.increment(c, 60)
    assert [e.key for e in bans.snapshot(70)] == [b, a, c]
    assert bans.banned(70) == {b}
    assert bans.purge(100) == 1
    assert len(bans) == 2
    assert bans.banned(151) == set()


@pytest.mark.parametrize("bad", [b"", bytes(31)])
def test_table_needs_32_byte_id(bad: bytes) -> None:
    with pytest.raises(ValueError):
        RoutingTable(bad)


def test_repeated_failures_evict_and_success_resets() -> None:
    table = RoutingTable(SELF, k=2)
    a, b, c = _fill_bucket(table, 255, 3)
    table.add(a, 0)
    table.add(b, 0)
    table.add(c, 0)  # cached as a replacement
    assert not table.failed(a.hashed_id, max_failures=2)
    table.add(a, 1)  # it answered: the count starts again
    assert not table.failed(a.hashed_id, max_failures=2)
    assert table.failed(a.hashed_id, max_failures=2)
    assert a.hashed_id not in table
    assert table.bucket(255) == [b, c]  # the replacement took its place
    assert not table.failed(hash_id(b"stranger"))


def test_a_head_that_answered_its_ping_is_not_pinged_again_within_probe_after() -> None:
    table = RoutingTable(SELF, k=1, probe_after=10.0)
    a, b, c, d = [
        x for x in (contact(i) for i in range(40)) if bucket_index(SELF, x.hashed_id) == 255
    ][:4]
    assert table.add(a, 0.0).status is AddStatus.ADDED
    assert table.add(b, 5.0).ping is None  # a was seen 5 s ago: alive, b waits
    pending = table.add(c, 20.0)
    assert pending.status is AddStatus.PENDING and pending.ping == a
    table.ping_succeeded(a, 20.0)
    later = table.add(d, 25.0)  # a answered 5 s ago
    assert later.status is AddStatus.PENDING and later.ping is None
    assert table.add(d, 31.0).ping == a


def test_a_promoted_replacement_counts_as_seen_when_it_was_cached() -> None:
    table = RoutingTable(SELF, k=1, probe_after=10.0)
    a, b, c = [
        x for x in (contact(i) for i in range(40)) if bucket_index(SELF, x.hashed_id) == 255
    ][:3]
    table.add(a, 0.0)
    assert table.add(b, 50.0).ping == a  # b waits in the cache, seen at 50
    assert table.remove(a.hashed_id) == b  # a failed its ping: b takes its place
    assert table.add(c, 55.0).ping is None  # b was seen 5 s ago
    assert table.add(c, 60.0).ping == b


def test_a_newcomer_that_replaced_a_banned_head_counts_as_just_seen() -> None:
    table = RoutingTable(SELF, k=1, probe_after=10.0)
    a, b, c = [
        x for x in (contact(i) for i in range(40)) if bucket_index(SELF, x.hashed_id) == 255
    ][:3]
    table.add(a, 100.0)
    banned = table.add(b, 101.0, is_banned=lambda h: h == a.hashed_id)
    assert banned.status is AddStatus.ADDED and table.get(b.hashed_id) == b
    assert table.add(c, 105.0).ping is None  # b was seen 4 s ago
    assert table.add(c, 111.0).ping == b


@settings(deadline=None, max_examples=40)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    want=st.integers(min_value=0, max_value=25),
    skipped=st.integers(min_value=0, max_value=6),
)
def test_closest_of_a_large_table_skips_few_exclusions_exactly(
    seed: int, want: int, skipped: int
) -> None:
    # Many more contacts than are wanted or excluded: ranked by a heap, exclusions skipped.
    rng = random.Random(seed)
    table = RoutingTable(SELF, k=20)
    for _ in range(1500):
        table.add(contact(rng.randrange(10**9)), now=0.0)
    members = list(table)
    target = rng.randbytes(32)
    by_distance = sorted(members, key=lambda c: distance(c.hashed_id, target))
    exclude = frozenset(c.hashed_id for c in rng.sample(by_distance[:30], skipped))
    expected = [c for c in by_distance if c.hashed_id not in exclude][:want]
    assert len(table) > 4 * (want + skipped)
    assert table.closest(target, want, exclude) == expected
    # Any container works; one without a size is ranked in full.
    assert table.closest(target, want, list(exclude)) == expected


def test_a_re_seen_contact_moves_to_the_tail_with_its_new_address() -> None:
    table = RoutingTable(SELF, k=20)
    first = [contact(i) for i in range(200)]
    for c in first:
        table.add(c, now=0.0)
    head = next(c for c in first if c.hashed_id in table)
    index = bucket_index(SELF, head.hashed_id)
    moved = Contact(head.id, "10.9.9.9", 7777, "v9")
    assert table.add(moved, now=1.0).status is AddStatus.UPDATED
    bucket = table.bucket(index)
    assert bucket[-1] is moved and head not in bucket[:-1]
    assert table.get(head.hashed_id) is moved and len(bucket) == len(set(bucket))


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_closest_follows_re_seen_addresses_removals_and_odd_exclusions(seed: int) -> None:
    # ``closest`` ranks the contacts by routing ID apart from the buckets: it must return
    # the very contact the table holds now (a re-seen address replaces it), never a removed
    # one, and skip only the excluded IDs (entries of another length name nobody).
    rng = random.Random(seed)
    table = RoutingTable(SELF, k=8)
    ids = [rng.randrange(10**6) for _ in range(300)]
    for i in ids:
        table.add(contact(i), now=0.0)
    for i in rng.sample(ids, 60):
        table.add(contact(i, ip="10.9.9.9", port=7), now=1.0)  # re-seen elsewhere
    for i in rng.sample(ids, 60):
        table.remove(contact(i).hashed_id)
    members = list(table)
    target = rng.randbytes(32)
    skipped = [c.hashed_id for c in rng.sample(members, min(3, len(members)))]
    exclude = {*skipped, b"", b"\0" + skipped[0], hash_id(b"nobody")}
    expected = sorted(
        (c for c in members if c.hashed_id not in exclude),
        key=lambda c: distance(c.hashed_id, target),
    )
    for want in (1, 5, 20, len(members)):
        got = table.closest(target, want, exclude)
        assert got == expected[:want]
        assert all(table.get(c.hashed_id) is c for c in got)  # the table's own objects
        assert table.closest(target, want, list(exclude)) == got
    # Entries that are not bytes name nobody either (and break nothing).
    odd: set[object] = {*skipped, "x" * 32, 7, None}
    assert table.closest(target, 20, odd) == expected[:20]  # type: ignore[arg-type]
