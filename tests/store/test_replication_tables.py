"""The replication tables, the same on SQLite (``LocalStore``) and in memory (``MemoryStore``).

Replication runs over either (the node over SQLite, the simulator over memory), so every rule
is checked against both: peers, cursors, announced keys with their attempts and expiry, the
boundary rule of the key scan, ``del_keys`` and the disabled-key purge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import blake3
import pytest

from lumera_p2p.dht import MemoryStore
from lumera_p2p.dht.valuestore import ReplicationStore
from lumera_p2p.store import LocalStore, ReplicationKey
from lumera_p2p.store.timefmt import utcnow


def h(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ReplicationStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    s = await LocalStore.open(tmp_path / "p2p", checkpoint_interval=0.5)
    try:
        yield s
    finally:
        await s.close()


async def test_registering_peers_keeps_what_is_known_of_them(store: ReplicationStore) -> None:
    await store.register_replication_peers([("lumera1a", "10.0.0.1", 4445), ("lumera1b", "h", 1)])
    rows = {r.id: r for r in await store.replication_infos()}
    assert set(rows) == {"lumera1a", "lumera1b"}
    a = rows["lumera1a"]
    assert (a.ip, a.port, a.is_active, a.is_adjusted) == ("10.0.0.1", 4445, False, False)
    assert a.last_seen is None and a.last_replicated_at is None
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert await store.set_active("lumera1a", True)
    assert await store.update_last_replicated("lumera1a", when)
    assert await store.update_last_seen("lumera1a", when)
    # Registered again (every peer sync does), at a new address: only the address changes.
    await store.register_replication_peers([("lumera1a", "10.0.0.9", 5000)])
    again = {r.id: r for r in await store.replication_infos()}["lumera1a"]
    assert (again.ip, again.port) == ("10.0.0.9", 5000)
    assert again.is_active and again.last_replicated_at == when and again.last_seen == when
    assert not await store.set_active("lumera1zz", True)


async def test_a_change_of_activity_clears_is_adjusted(store: ReplicationStore) -> None:
    await store.register_replication_peers([("lumera1a", "10.0.0.1", 4445)])
    assert await store.set_adjusted("lumera1a", True)
    assert await store.set_active("lumera1a", False)
    (row,) = await store.replication_infos()
    assert not row.is_active and not row.is_adjusted
    assert await store.set_active("lumera1a", True, adjusted=True)
    (row,) = await store.replication_infos()
    assert row.is_active and row.is_adjusted


async def test_peers_never_replicated_to_come_first(store: ReplicationStore) -> None:
    await store.register_replication_peers([(f"lumera1{c}", "10.0.0.1", 1) for c in "abc"])
    await store.update_last_replicated("lumera1a", datetime(2026, 1, 2, tzinfo=UTC))
    await store.update_last_replicated("lumera1c", datetime(2026, 1, 1, tzinfo=UTC))
    assert [r.id for r in await store.replication_infos()] == ["lumera1b", "lumera1c", "lumera1a"]


async def test_the_key_scan_from_none_includes_the_oldest_and_keeps_ties(
    store: ReplicationStore,
) -> None:
    # One batch: every key shares one createdAt, the worst case for a cursor.
    keys = await store.store_batch([b"v%d" % i for i in range(30)])
    end = utcnow() + timedelta(seconds=5)
    every = await store.keys_for_replication(None, end, max_keys=7)
    assert sorted(k for k, _ in every) == sorted(keys)  # the tied run is never cut
    created = every[0][1]
    assert all(t == created for _, t in every)
    assert await store.keys_for_replication(created, end) == []  # strictly after the cursor
    assert await store.keys_for_replication(None, created) == []  # strictly before the end
    more = await store.store_batch([b"later"])
    assert [k for k, _ in await store.keys_for_replication(created, end)] == more


async def test_announced_keys_expire_when_stale_or_failed_everywhere(
    store: ReplicationStore,
) -> None:
    rows = [ReplicationKey(h(b"%d" % i), "lumera1a", "10.0.0.1", 4445) for i in range(10)]
    await store.add_replication_keys(rows)
    assert await store.replication_key_count() == 10
    for _ in range(3):
        await store.increment_attempts([rows[0].key])
    assert await store.expire_replication_keys(utcnow() - timedelta(hours=1), 2) == 1
    assert await store.replication_key_count() == 9
    assert rows[0].key not in {r.key for r in await store.replication_keys(0, 100)}
    assert await store.expire_replication_keys(utcnow() + timedelta(seconds=5), 100) == 9
    assert await store.replication_key_count() == 0
    # A key announced again starts over (attempts back to 0).
    await store.add_replication_keys(rows[:1])
    await store.increment_attempts([rows[0].key])
    await store.add_replication_keys(rows[:1])
    assert [r.attempts for r in await store.replication_keys(0, 100)] == [0]


async def test_del_keys_count_scans_and_are_forgotten(store: ReplicationStore) -> None:
    a, b = h(b"a"), h(b"b")
    await store.track_redundant_keys([a, b])
    await store.track_redundant_keys([a, a])  # one scan counts a key once
    assert await store.redundant_keys(2) == [a]
    assert set(await store.redundant_keys(1)) == {a, b}
    assert await store.forget_redundant_keys([a, h(b"never")]) == 1
    assert await store.redundant_keys(1) == [b]


async def test_deleting_many_values(store: ReplicationStore) -> None:
    keys = await store.store_batch([b"x", b"y", b"z"])
    assert await store.delete_many([*keys[:2], h(b"absent")]) == 2
    assert await store.missing(keys) == keys[:2]


async def test_the_disabled_key_purge_keeps_fresh_ones(store: ReplicationStore) -> None:
    key = h(b"d")
    await store.disable_key(key)
    assert await store.purge_expired_disabled_keys() == 0
    assert await store.is_disabled(key)
