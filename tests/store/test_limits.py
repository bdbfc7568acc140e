"""max_storage_bytes and the replication_keys caps, on real SQLite files, across reopen."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import blake3
import pytest

from lumera_p2p.dht import DHTOptions
from lumera_p2p.dht import Node as DHTNode
from lumera_p2p.errors import StorageFull, StoreError, TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.store import LocalStore, ReplicationKey
from lumera_p2p.store.limits import StoreLimits
from lumera_p2p.wire.messages import (
    BatchStoreDataRequest,
    Message,
    MessageType,
    Node,
    StoreDataRequest,
)


def h(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def summed(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COALESCE(SUM(length(data)), 0) FROM data").fetchone()[0])
    finally:
        conn.close()


async def test_values_past_the_limit_are_refused_and_nothing_of_the_batch_is_kept(
    tmp_path: Path,
) -> None:
    s = await LocalStore.open(tmp_path, max_storage_bytes=10_000)
    try:
        held = [os.urandom(3_000) for _ in range(3)]
        await s.store_batch(held)
        assert s.stored_bytes() == 9_000
        crossing = [os.urandom(500), os.urandom(600)]  # 1,100 more: past 10,000
        with pytest.raises(StorageFull, match="max_storage_bytes") as info:
            await s.store_batch(crossing)
        assert isinstance(info.value, StoreError)
        assert await s.missing([h(v) for v in crossing]) == [h(v) for v in crossing]
        assert await s.count() == 3
        # Values already held add nothing: a full node still acknowledges them.
        assert await s.store_batch(held) == [h(v) for v in held]
        await s.store_batch([os.urandom(1_000)])  # exactly at the limit is allowed
        assert s.stored_bytes() == 10_000 == summed(s.data_path)
        with pytest.raises(StorageFull):
            await s.store_value(b"x")
        # Deleting frees room.
        assert await s.delete(h(held[0]))
        await s.store_value(os.urandom(2_500))
        assert s.stored_bytes() == 9_500 == summed(s.data_path)
        stats = await s.stats()
        assert stats.storage_full_refusals == 2
        assert stats.data_bytes == 9_500
    finally:
        await s.close()


async def test_the_running_total_is_loaded_at_open(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path)  # unlimited: nothing counted
    await s.store_batch([os.urandom(4_000), os.urandom(4_000)])
    assert s.stored_bytes() is None
    await s.close()
    s = await LocalStore.open(tmp_path, max_storage_bytes=9_000)
    try:
        assert s.stored_bytes() == 8_000
        with pytest.raises(StorageFull):
            await s.store_value(os.urandom(1_001))
        await s.store_value(os.urandom(1_000))
    finally:
        await s.close()


async def test_concurrent_writes_in_one_group_commit_never_pass_the_limit(
    tmp_path: Path,
) -> None:
    s = await LocalStore.open(tmp_path, max_storage_bytes=10_000)
    try:
        values = [os.urandom(1_000) for _ in range(40)]
        # Submitted together they share transactions: each must see the others' bytes.
        results = await asyncio.gather(*(s.store_value(v) for v in values), return_exceptions=True)
        refused = [r for r in results if isinstance(r, StorageFull)]
        assert len(refused) == 30
        assert not [r for r in results if isinstance(r, BaseException) and r not in refused]
        assert s.stored_bytes() == 10_000 == summed(s.data_path)
    finally:
        await s.close()


async def test_a_failed_transaction_is_not_counted(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path, max_storage_bytes=10_000_000)
    try:

        def cap(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA max_page_count=64")  # as a full disk would: SQLITE_FULL

        await s._data_writer.submit(cap)
        # Hold the writer so that the writes below queue up and share one transaction.
        inside, release = threading.Event(), threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            inside.set()
            release.wait(30)

        held = asyncio.ensure_future(s._data_writer.submit(hold))
        assert await asyncio.to_thread(inside.wait, 30)
        small = [os.urandom(100) for _ in range(20)]
        big = os.urandom(250_000)  # hashed on the loop, too large for 64 pages
        writes = [asyncio.ensure_future(s.store_value(v)) for v in [*small[:10], big, *small[10:]]]
        await asyncio.sleep(0)  # every write has reached the writer's queue
        release.set()
        await held
        results = await asyncio.gather(*writes, return_exceptions=True)
        # SQLite undid the whole transaction at the full disk; the writer ran the small
        # writes again, and each must be counted once.
        assert [type(r) for r in results if isinstance(r, BaseException)] == [StoreError]
        assert s.stored_bytes() == 2_000 == summed(s.data_path)
    finally:
        await s.close()


def announce(peer: str, keys: list[bytes]) -> list[ReplicationKey]:
    return [ReplicationKey(k, peer, "10.0.0.1", 4445) for k in keys]


def pending(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT id, COUNT(*) FROM replication_keys GROUP BY id"))
    finally:
        conn.close()


async def test_replication_keys_are_capped_per_announcer(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path, max_replication_keys_per_peer=100)
    try:
        keys = [os.urandom(32) for _ in range(150)]
        await s.add_replication_keys(announce("lumera1greedy", keys))
        assert pending(s.data_path) == {"lumera1greedy": 100}
        assert s.replication_keys_dropped == 50
        # Another announcer is unaffected.
        await s.add_replication_keys(announce("lumera1polite", [os.urandom(32) for _ in range(5)]))
        assert pending(s.data_path)["lumera1polite"] == 5
        # A key the announcer already has pending is taken again (attempts reset) at the cap.
        await s.increment_attempts(keys[:1])
        await s.add_replication_keys(announce("lumera1greedy", keys[:1]))
        (row,) = [r for r in await s.replication_keys(0, 0) if r.key == keys[0]]
        assert row.attempts == 0
        # Taking a key over from another announcer counts against the new one's cap.
        polite = [r.key for r in await s.replication_keys(0, 5, 1000) if r.id == "lumera1polite"]
        await s.add_replication_keys(announce("lumera1greedy", polite[:1]))
        assert pending(s.data_path) == {"lumera1greedy": 100, "lumera1polite": 5}
        assert s.replication_keys_dropped == 51
        # Fetched keys free the quota.
        assert await s.delete_replication_keys(keys[:10]) == 10
        await s.add_replication_keys(announce("lumera1greedy", keys[100:]))
        assert pending(s.data_path)["lumera1greedy"] == 100
        assert (await s.stats()).replication_keys_dropped == 91
    finally:
        await s.close()
    # The counts are loaded again at open: the cap holds across a restart.
    s = await LocalStore.open(tmp_path, max_replication_keys_per_peer=100)
    try:
        await s.add_replication_keys(announce("lumera1greedy", [os.urandom(32)]))
        assert s.replication_keys_dropped == 1
        await s.add_replication_keys(announce("lumera1polite", polite[:1]))
        assert pending(s.data_path) == {"lumera1greedy": 100, "lumera1polite": 5}
    finally:
        await s.close()


async def test_replication_keys_global_cap_and_moves(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path, max_replication_keys_per_peer=50, max_replication_keys=60)
    try:
        a_keys = [os.urandom(32) for _ in range(40)]
        await s.add_replication_keys(announce("lumera1a", a_keys))
        await s.add_replication_keys(announce("lumera1b", [os.urandom(32) for _ in range(40)]))
        assert pending(s.data_path) == {"lumera1a": 40, "lumera1b": 20}
        assert s.replication_keys_dropped == 20
        # Moving a key between announcers does not grow the table: allowed at the global cap.
        await s.add_replication_keys(announce("lumera1b", a_keys[:5]))
        assert pending(s.data_path) == {"lumera1a": 35, "lumera1b": 25}
        assert s.replication_keys_dropped == 20
        # The same key twice in one call counts once.
        fresh = os.urandom(32)
        await s.delete_replication_keys(a_keys[5:6])
        await s.add_replication_keys(announce("lumera1a", [fresh, fresh]))
        assert pending(s.data_path) == {"lumera1a": 35, "lumera1b": 25}
    finally:
        await s.close()


async def test_zero_means_no_limit(tmp_path: Path) -> None:
    s = await LocalStore.open(
        tmp_path, max_storage_bytes=0, max_replication_keys_per_peer=0, max_replication_keys=0
    )
    try:
        await s.add_replication_keys(announce("lumera1a", [os.urandom(32) for _ in range(300)]))
        await s.store_batch([os.urandom(100_000) for _ in range(5)])
        assert pending(s.data_path) == {"lumera1a": 300}
        assert s.replication_keys_dropped == 0
    finally:
        await s.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_storage_bytes": -1},
        {"max_replication_keys_per_peer": -5},
        {"max_replication_keys": True},
        {"max_storage_bytes": 1.5},
    ],
)
async def test_bad_limits_are_refused(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        await LocalStore.open(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert StoreLimits().max_storage_bytes == 0


class NoTransport:
    async def call(
        self, peer: Contact, request: Message, timeout: float, *, on_answer: object = None
    ) -> Message:
        raise TransportError("offline")


CLIENT = Node(id=b"lumera1client", ip="10.0.9.9", port=4445)


def request(mtype: MessageType, data: object) -> Message:
    return Message(sender=CLIENT, receiver=None, message_type=int(mtype), data=data)  # type: ignore[arg-type]


async def test_a_full_node_answers_store_requests_as_not_store_eligible(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path, max_storage_bytes=1_000)
    node = DHTNode(
        Contact(b"lumera1server", "10.0.0.1", 4445),
        s,
        NoTransport(),
        options=DHTOptions(allow_private=True),
    )
    try:
        held = os.urandom(900)
        ok = await node.handle(
            request(MessageType.STORE_DATA, StoreDataRequest(data=held)), CLIENT.id
        )
        assert ok.data.status.result == 0  # type: ignore[union-attr]
        single = await node.handle(
            request(MessageType.STORE_DATA, StoreDataRequest(data=os.urandom(200))), CLIENT.id
        )
        batch = await node.handle(
            request(
                MessageType.BATCH_STORE_DATA,
                BatchStoreDataRequest(data=[held, os.urandom(200)]),
            ),
            CLIENT.id,
        )
        for answer, prefix in ((single, "store"), (batch, "batch store")):
            status = answer.data.status  # type: ignore[union-attr]
            assert status.result == 1
            # Go's clients leave "self not store-eligible" answers out of their success rate
            # and stop sending to that peer until their next allowlist refresh.
            assert status.err_msg == f"{prefix} rejected: self not store-eligible (node is full)"
        again = await node.handle(
            request(MessageType.STORE_DATA, StoreDataRequest(data=held)), CLIENT.id
        )
        assert again.data.status.result == 0  # type: ignore[union-attr]
        assert await s.count() == 1
    finally:
        await node.close()
        await s.close()
