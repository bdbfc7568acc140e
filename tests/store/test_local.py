"""LocalStore against real SQLite files: every method, Go compatibility, and failure modes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import StoreError, ValueMismatch, ValueTooLarge
from lumera_p2p.store import LocalStore, ReplicationInfo, ReplicationKey, schema
from lumera_p2p.store.local import LARGE_WRITE
from lumera_p2p.store.timefmt import format_time, parse_time, utcnow
from lumera_p2p.store.writer import WriterThread


def h(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


@pytest.fixture
async def store(tmp_path: Path) -> LocalStore:
    s = await LocalStore.open(tmp_path / "p2p", checkpoint_interval=0.5)
    yield s  # type: ignore[misc]
    await s.close()


async def test_files_and_schema_match_go(store: LocalStore) -> None:
    assert store.data_path.name == "data001.sqlite3"
    assert store.meta_path.name == "data001-meta.sqlite3"
    conn = sqlite3.connect(store.data_path)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(data)")]
    assert cols == [
        "key",
        "data",
        "is_original",
        "createdAt",
        "updatedAt",
        "replicatedAt",
        "republishedAt",
        "datatype",
        "is_on_cloud",
    ]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"data", "replication_info", "replication_keys"} <= tables
    conn.close()
    meta = sqlite3.connect(store.meta_path)
    tables = {r[0] for r in meta.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"disabled_keys", "del_keys"} <= tables
    meta.close()


async def test_store_retrieve_delete(store: LocalStore) -> None:
    key = await store.store_value(b"hello", datatype=1, is_original=True)
    assert key == h(b"hello")
    assert await store.retrieve(key) == b"hello"
    assert await store.count() == 1
    # The row is committed: a separate connection sees it, in Go's column layout.
    conn = sqlite3.connect(store.data_path)
    row = conn.execute("SELECT key, data, datatype, is_original, createdAt FROM data").fetchone()
    conn.close()
    assert row[0] == key.hex()
    assert row[1] == b"hello"
    assert row[2:4] == (1, 1)
    assert row[4].endswith("+00:00")
    assert await store.delete(key) is True
    assert await store.delete(key) is False
    assert await store.retrieve(key) is None
    assert await store.count() == 0


async def test_store_with_key_is_checked(store: LocalStore) -> None:
    await store.store(h(b"v"), b"v")
    with pytest.raises(ValueMismatch):
        await store.store(h(b"v"), b"w")
    with pytest.raises(ValueMismatch):
        await store.store_batch([(h(b"a"), b"a"), (h(b"b"), b"x")])
    # The failing batch stored nothing, not even its good first value.
    assert await store.retrieve(h(b"a")) is None
    assert await store.count() == 1
    # A batch too large to key on the loop is keyed (and checked) in the writer: the same.
    big = [bytes([i]) * 100_000 for i in range(4)]
    pairs = [(h(v), v) for v in big]
    with pytest.raises(ValueMismatch):
        await store.store_batch([*pairs[:3], (pairs[3][0], b"forged" * 20_000)])
    assert await store.retrieve(pairs[0][0]) is None
    assert await store.store_batch(big) == [k for k, _ in pairs]
    assert await store.store_batch(pairs, datatype=1) == [k for k, _ in pairs]
    assert await store.retrieve(pairs[3][0]) == big[3]
    assert await store.count() == 5


async def test_oversized_value_refused(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path, max_value_size=10)
    try:
        with pytest.raises(ValueTooLarge, match="11 bytes is over the limit of 10") as caught:
            await s.store_value(b"x" * 11)
        assert (caught.value.size, caught.value.limit) == (11, 10)
        with pytest.raises(ValueTooLarge):
            await s.store(h(b"y" * 11), b"y" * 11)
        # One value too large refuses the whole batch, the others included.
        with pytest.raises(ValueTooLarge):
            await s.store_batch([b"ok", b"z" * 11])
        assert await s.count() == 0
    finally:
        await s.close()


async def test_upsert_keeps_created_at_datatype_and_original(store: LocalStore) -> None:
    key = await store.store_value(b"same", datatype=1, is_original=True)
    conn = sqlite3.connect(store.data_path)
    first = conn.execute("SELECT createdAt, updatedAt FROM data").fetchone()
    await asyncio.sleep(0.01)
    await store.store_value(b"same", datatype=0, is_original=False)
    again = conn.execute("SELECT createdAt, updatedAt, datatype, is_original FROM data").fetchone()
    conn.close()
    assert again[0] == first[0]
    assert again[1] > first[1]
    assert again[2:] == (1, 1)
    assert await store.retrieve(key) == b"same"


async def test_batch_and_many(store: LocalStore) -> None:
    values = [os.urandom(100 + i) for i in range(2000)]
    keys = await store.store_batch(values)
    assert keys == [h(v) for v in values]
    absent = [h(b"absent-%d" % i) for i in range(5)]
    found = await store.retrieve_many(keys + absent)  # more than 900: chunked IN queries
    assert found == dict(zip(keys, values, strict=True))
    assert await store.missing(absent + keys[:3] + absent[:1]) == absent + absent[:1]
    assert await store.delete_many(keys[:1500]) == 1500
    assert await store.count() == 500
    assert await store.store_batch([]) == []


async def test_concurrent_writers_and_readers(store: LocalStore) -> None:
    async def writer(i: int) -> bytes:
        return await store.store_value(b"value-%d" % i)

    keys = await asyncio.gather(*(writer(i) for i in range(300)))
    reads = await asyncio.gather(*(store.retrieve(k) for k in keys))
    assert reads == [b"value-%d" % i for i in range(300)]


async def test_get_local_keys_time_range(store: LocalStore) -> None:
    conn = sqlite3.connect(store.data_path)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    keys = [h(b"%d" % i) for i in range(5)]
    for i, key in enumerate(keys):
        when = format_time(base + timedelta(minutes=i))
        conn.execute(
            "INSERT INTO data(key, data, createdAt, updatedAt) VALUES(?, ?, ?, ?)",
            (key.hex(), b"%d" % i, when, when),
        )
    conn.commit()
    conn.close()
    end = base + timedelta(hours=1)
    # from=None includes the oldest row (Go's strict '>' against MIN(createdAt) drops it).
    assert await store.get_local_keys(None, end) == keys
    assert await store.get_local_keys(base, end) == keys[1:]  # strict on both ends
    assert await store.get_local_keys(base, base + timedelta(minutes=3)) == keys[1:3]
    assert await store.get_local_keys(end, end + timedelta(hours=1)) == []
    assert await store.oldest_created_at() == base


async def test_keys_for_replication_keeps_boundary_ties(store: LocalStore) -> None:
    conn = sqlite3.connect(store.data_path)
    base = datetime(2026, 2, 1, tzinfo=UTC)
    rows = []
    for i in range(10):
        when = base + timedelta(seconds=i if i < 4 else 4)  # rows 4..9 share one timestamp
        key = h(b"r%d" % i)
        rows.append((key, when))
        conn.execute(
            "INSERT INTO data(key, data, createdAt) VALUES(?, ?, ?)",
            (key.hex(), b"x", format_time(when)),
        )
    conn.commit()
    conn.close()
    start, end = base - timedelta(seconds=1), base + timedelta(minutes=1)
    limited = await store.keys_for_replication(start, end, max_keys=6)
    assert len(limited) == 10  # the run sharing the last timestamp is not cut
    expected = sorted(rows, key=lambda r: (r[1], r[0].hex()))
    assert limited == expected
    unlimited = await store.keys_for_replication(start, end, max_keys=100)
    assert unlimited == expected
    assert await store.keys_for_replication(start, end, max_keys=2) == expected[:2]


async def test_disabled_keys(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path, disabled_key_ttl=timedelta(minutes=30))
    try:
        key = h(b"k")
        assert not await s.is_disabled(key)
        await s.disable_key(key)
        assert await s.is_disabled(key)
        # Recently disabled keys survive a purge (the Go purge removes exactly these).
        assert await s.purge_expired_disabled_keys() == 0
        assert await s.is_disabled(key)
        await s.enable_key(key)
        assert not await s.is_disabled(key)
        await s.enable_key(key)  # enabling twice is fine
        # A key disabled 31 minutes ago has expired, and the purge removes it.
        meta = sqlite3.connect(s.meta_path)
        meta.execute(
            "INSERT INTO disabled_keys(key, createdAt) VALUES(?, ?)",
            (key.hex(), format_time(utcnow() - timedelta(minutes=31))),
        )
        meta.commit()
        meta.close()
        assert not await s.is_disabled(key)
        assert (await s.stats()).disabled_keys == 1
        assert await s.purge_expired_disabled_keys() == 1
        assert (await s.stats()).disabled_keys == 0
    finally:
        await s.close()


async def test_replication_info(store: LocalStore) -> None:
    a = ReplicationInfo("lumera1a", "10.0.0.1", 4445, is_active=True)
    b = ReplicationInfo("lumera1b", "10.0.0.2", 4446)
    await store.upsert_replication_info(a)
    await store.upsert_replication_info(b)
    when = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert await store.update_last_replicated("lumera1a", when)
    assert await store.update_last_seen("lumera1b", when)
    assert await store.set_active("lumera1b", True)
    assert await store.set_adjusted("lumera1b", True)
    assert not await store.set_active("lumera1zzz", True)
    infos = await store.replication_infos()
    assert [i.id for i in infos] == ["lumera1b", "lumera1a"]  # never replicated first
    by_id = {i.id: i for i in infos}
    assert by_id["lumera1a"].last_replicated_at == when
    assert by_id["lumera1b"].last_seen == when
    assert by_id["lumera1b"].is_active and by_id["lumera1b"].is_adjusted
    # Re-upserting with unknown cursors keeps the known ones (Go's overwrite bug).
    await store.upsert_replication_info(ReplicationInfo("lumera1a", "10.0.0.9", 5000))
    again = {i.id: i for i in await store.replication_infos()}["lumera1a"]
    assert again.ip == "10.0.0.9"
    assert again.port == 5000
    assert again.last_replicated_at == when
    assert not again.is_active


async def test_replication_keys(store: LocalStore) -> None:
    keys = [h(b"rk%d" % i) for i in range(1000)]
    await store.add_replication_keys([ReplicationKey(k, "lumera1a", "1.2.3.4", 4445) for k in keys])
    pending = await store.replication_keys(0, 1, limit=2000)
    assert {p.key for p in pending} == set(keys)
    await store.increment_attempts(keys[:950])
    await store.increment_attempts(keys[:10])
    assert len(await store.replication_keys(0, 0, limit=2000)) == 50
    assert len(await store.replication_keys(1, 1, limit=2000)) == 940
    assert len(await store.replication_keys(2, 14, limit=2000)) == 10
    assert len(await store.replication_keys(0, 14, limit=7)) == 7
    # A re-announcement resets attempts and records the new source.
    await store.add_replication_keys([ReplicationKey(keys[0], "lumera1b", "5.6.7.8", 1)])
    fresh = [p for p in await store.replication_keys(0, 0, limit=2000) if p.key == keys[0]]
    assert fresh == [ReplicationKey(keys[0], "lumera1b", "5.6.7.8", 1, 0)]
    assert (await store.stats()).replication_keys == 1000
    assert await store.delete_replication_keys(keys) == 1000
    assert await store.replication_keys(0, 100) == []


async def test_stats(store: LocalStore) -> None:
    await store.store_batch([b"a" * 100, b"b" * 50])
    stats = await store.stats()
    assert stats.records == 2
    assert stats.data_bytes == 150
    assert stats.db_file_bytes > 0


async def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path)
    key = await s.store_value(b"persist")
    await s.close()
    await s.close()
    with pytest.raises(StoreError, match="closed"):
        await s.store_value(b"late")
    reopened = await LocalStore.open(tmp_path)
    try:
        assert await reopened.retrieve(key) == b"persist"
    finally:
        await reopened.close()


async def test_existing_go_database_is_served(tmp_path: Path) -> None:
    """A database laid out by hand exactly as the Go node creates it (older columns too)."""
    conn = sqlite3.connect(tmp_path / "data001.sqlite3")
    # The Go node's original CREATE TABLE; datatype and is_on_cloud came later by ALTER.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS data(key TEXT PRIMARY KEY, data BLOB NOT NULL, "
        "is_original BOOL DEFAULT FALSE, createdAt DATETIME DEFAULT CURRENT_TIMESTAMP, "
        "updatedAt DATETIME DEFAULT CURRENT_TIMESTAMP, replicatedAt DATETIME, "
        "republishedAt DATETIME)"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS replication_info(id TEXT PRIMARY KEY, ip TEXT NOT NULL, "
        "port INTEGER NOT NULL, is_active BOOL DEFAULT FALSE, is_adjusted BOOL DEFAULT FALSE, "
        "lastReplicatedAt DATETIME, createdAt DATETIME DEFAULT CURRENT_TIMESTAMP, "
        "updatedAt DATETIME DEFAULT CURRENT_TIMESTAMP)"
    )
    go_time = "2025-12-01 10:11:12.123456789+00:00"  # go-sqlite3's layout, nanoseconds
    value = b"written by a Go supernode"
    conn.execute(
        "INSERT INTO data(key, data, is_original, createdAt, updatedAt) VALUES(?, ?, 1, ?, ?)",
        (h(value).hex(), value, go_time, go_time),
    )
    conn.execute(
        "INSERT INTO data(key, data) VALUES(?, ?)", (h(b"default ts").hex(), b"default ts")
    )
    conn.execute(
        "INSERT INTO replication_info(id, ip, port, is_active, lastReplicatedAt) "
        "VALUES('lumera1peer', '203.0.113.5', 4445, 1, ?)",
        (go_time,),
    )
    conn.commit()
    conn.close()
    s = await LocalStore.open(tmp_path)
    try:
        assert await s.retrieve(h(value)) == value
        assert await s.retrieve(h(b"default ts")) == b"default ts"
        assert await s.count() == 2
        oldest = await s.oldest_created_at()
        assert oldest is not None
        keys = await s.get_local_keys(None, utcnow() + timedelta(minutes=1))
        assert set(keys) == {h(value), h(b"default ts")}
        (info,) = await s.replication_infos()
        assert info.is_active
        assert info.last_replicated_at == datetime(2025, 12, 1, 10, 11, 12, 123456, tzinfo=UTC)
        assert info.last_seen is None  # the column was added on open
        await s.store_value(b"new")
        assert await s.count() == 3
    finally:
        await s.close()


async def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data001.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="corrupt"):
        await LocalStore.open(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_read_only_directory_is_a_clear_error(tmp_path: Path) -> None:
    tmp_path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(StoreError, match="not writable"):
            await LocalStore.open(tmp_path)
    finally:
        tmp_path.chmod(stat.S_IRWXU)


async def test_read_only_database_file_is_a_clear_error(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path)
    await s.close()
    uri = f"file:{tmp_path / 'data001.sqlite3'}?mode=ro"
    # Open the writer through a read-only URI: every write must fail loudly, not vanish.
    writer = WriterThread(uri, schema.READER_PRAGMAS)
    writer._connect = lambda: sqlite3.connect(  # type: ignore[method-assign]
        uri, uri=True, isolation_level=None
    )
    writer.start()
    try:
        with pytest.raises(StoreError, match="not writable"):
            await writer.submit(lambda c: c.execute("INSERT INTO data(key, data) VALUES('k', x'')"))
    finally:
        writer.close()


async def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(StoreError, match="cannot create"):
        await LocalStore.open(target)


async def test_disk_full_fails_the_write_loudly(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path)
    try:
        # Cap the database size, as a full disk would: SQLITE_FULL at the insert.
        page_size = sqlite3.connect(s.data_path).execute("PRAGMA page_size").fetchone()[0]

        def cap(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA max_page_count=64")

        # max_page_count is per connection: set it inside the writer's own connection.
        await s._data_writer.submit(cap)
        with pytest.raises(StoreError, match="disk is full"):
            await s.store_value(os.urandom(64 * page_size))
        key = await s.store_value(b"small still fits")
        assert await s.retrieve(key) == b"small still fits"
    finally:
        await s.close()


def test_time_format_matches_go() -> None:
    assert format_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02 03:04:05+00:00"
    assert (
        format_time(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC))
        == "2026-01-02 03:04:05.12+00:00"
    )
    assert parse_time("2026-01-02 03:04:05.123456789+00:00") == datetime(
        2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC
    )
    assert parse_time("2026-01-02 03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@settings(max_examples=200)
@given(
    a=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    b=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
)
def test_time_format_orders_like_time(a: datetime, b: datetime) -> None:
    a, b = a.replace(tzinfo=UTC), b.replace(tzinfo=UTC)
    fa, fb = format_time(a), format_time(b)
    assert parse_time(fa) == a
    assert (fa < fb) == (a < b)


async def test_one_failing_job_does_not_sink_its_group(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path)
    try:

        def cap(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA max_page_count=64")

        await s._data_writer.submit(cap)
        small = [b"small-%d" % i for i in range(20)]
        # Submitted together, these land in one group commit with the oversized write.
        results = await asyncio.gather(
            *(s.store_value(v) for v in small[:10]),
            s.store_value(os.urandom(1024 * 1024)),
            *(s.store_value(v) for v in small[10:]),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1
        assert isinstance(errors[0], StoreError)
        assert await s.count() == 20
        assert set((await s.retrieve_many([h(v) for v in small])).values()) == set(small)
    finally:
        await s.close()


async def test_unwritable_location_is_a_clear_error() -> None:
    # /proc refuses new directories even to root, unlike a chmod-ed directory.
    with pytest.raises(StoreError, match="cannot create the data directory"):
        await LocalStore.open(Path("/proc/self/lumera-p2p-test/data"))


async def test_large_values_keep_the_upsert_semantics(tmp_path: Path) -> None:
    """A batch with a value over LARGE_WRITE goes through its own statement (a small page
    cache, then a row that inserts nothing to drop SQLite's bound copy): the bytes, the row's
    columns and the upsert rules are those of small values, views included."""
    big = os.urandom(LARGE_WRITE + 12345)
    edge = os.urandom(1024 * 1024)
    s = await LocalStore.open(tmp_path, max_storage_bytes=4 * LARGE_WRITE)
    try:
        keys = await s.store_batch([memoryview(big), b"small", edge], datatype=1, is_original=True)
        assert keys == [h(big), h(b"small"), h(edge)]
        assert await s.retrieve(h(big)) == big
        assert await s.retrieve(h(edge)) == edge
        assert await s.retrieve_many(keys) == {h(big): big, h(b"small"): b"small", h(edge): edge}
        assert await s.value_sizes([h(big)]) == {h(big): len(big)}
        assert await s.count() == 3  # the unbinding row inserted nothing
        assert s.stored_bytes() == len(big) + len(edge) + 5
        # Storing it again keeps its datatype and is_original, and nothing is counted twice.
        await s.store(h(big), big, datatype=0, is_original=False)
        assert s.stored_bytes() == len(big) + len(edge) + 5
    finally:
        await s.close()
    reopened = await LocalStore.open(tmp_path)
    try:
        assert await reopened.retrieve(h(big)) == big
    finally:
        await reopened.close()
    conn = sqlite3.connect(tmp_path / schema.DATA_DB)
    try:
        row = conn.execute(
            "SELECT datatype, is_original, length(data) FROM data WHERE key=?", (h(big).hex(),)
        ).fetchone()
    finally:
        conn.close()
    assert tuple(row) == (1, 1, len(big))
