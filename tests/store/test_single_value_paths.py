"""The single-value paths a server takes: store if absent, a sized read, the disabled-key
shortcut and the stamps of stored rows, on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import blake3
import pytest

from lumera_p2p.errors import StorageFull, ValueTooLarge
from lumera_p2p.store import LocalStore
from lumera_p2p.store.readers import INLINE_READ_BYTES
from lumera_p2p.store.timefmt import NowText, format_time, parse_time, utcnow


def h(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def row(store: LocalStore, key: bytes) -> tuple[str, str] | None:
    conn = sqlite3.connect(store.data_path)
    try:
        found = conn.execute(
            "SELECT createdAt, updatedAt FROM data WHERE key=?", (key.hex(),)
        ).fetchone()
    finally:
        conn.close()
    return None if found is None else (found[0], found[1])


async def test_store_if_absent_stores_once_and_leaves_a_held_value_alone(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path)
    try:
        assert await s.store_if_absent(b"v", datatype=1)
        assert await s.retrieve(h(b"v")) == b"v"
        stamps = row(s, h(b"v"))
        assert stamps is not None and stamps[0] == stamps[1]
        await asyncio.sleep(0.01)
        assert not await s.store_if_absent(b"v")  # held: nothing written
        assert row(s, h(b"v")) == stamps
        assert await s.count() == 1
    finally:
        await s.close()


async def test_store_if_absent_refuses_a_value_over_the_limit(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path, max_value_size=10)
    try:
        with pytest.raises(ValueTooLarge, match="11 bytes is over the limit of 10"):
            await s.store_if_absent(b"x" * 11)
        assert await s.count() == 0
        assert await s.store_if_absent(b"x" * 10)
    finally:
        await s.close()


async def test_store_if_absent_on_a_full_node_refuses_only_new_values(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path, max_storage_bytes=1000)
    try:
        assert await s.store_if_absent(b"a" * 900)
        with pytest.raises(StorageFull):
            await s.store_if_absent(b"b" * 200)
        assert s.storage_full_refusals == 1
        assert not await s.store_if_absent(b"a" * 900)  # held: fine even when full
        assert await s.missing([h(b"b" * 200)]) == [h(b"b" * 200)]
    finally:
        await s.close()


def summed(store: LocalStore) -> int:
    conn = sqlite3.connect(store.data_path)
    try:
        return int(conn.execute("SELECT COALESCE(SUM(length(data)), 0) FROM data").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("max_storage_bytes", [0, 1000, 10**9])
async def test_store_if_absent_answers_alike_on_both_paths(
    tmp_path: Path, max_storage_bytes: int
) -> None:
    # A value that fits whether or not it is held is inserted unless present, in one
    # statement; one that might not fit is looked up first. At 1000 bytes the held values
    # below take the second path, at 0 and 10**9 the first: the answers are the same.
    s = await LocalStore.open(tmp_path, max_storage_bytes=max_storage_bytes)
    a, b, c = b"a" * 400, b"b" * 300, b"c" * 250
    try:
        answers = []
        for value in (a, b, a, b, c, c, a):
            before = row(s, h(value))
            answers.append(await s.store_if_absent(value, datatype=1))
            if before is not None:
                assert row(s, h(value)) == before  # held: its stamps are untouched
        assert answers == [True, True, False, False, True, False, False]
        assert await s.count() == 3
        assert summed(s) == 950
        assert s.stored_bytes() == (None if max_storage_bytes == 0 else 950)
        if max_storage_bytes == 1000:
            with pytest.raises(StorageFull):
                await s.store_if_absent(b"d" * 100)
            assert s.storage_full_refusals == 1
            assert s.stored_bytes() == 950 == summed(s)
        else:
            assert await s.store_if_absent(b"d" * 100)
    finally:
        await s.close()


async def test_store_if_absent_in_one_group_stores_a_value_once(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path, max_storage_bytes=10_000)
    try:
        inside, release = threading.Event(), threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            inside.set()
            release.wait(30)

        held = asyncio.ensure_future(s._data_writer.submit(hold))
        assert await asyncio.to_thread(inside.wait, 30)
        values = [b"x" * 100, b"y" * 200, b"x" * 100, b"z" * 300, b"y" * 200]
        writes = [asyncio.ensure_future(s.store_if_absent(v)) for v in values]
        await asyncio.sleep(0)  # every write has reached the writer's queue
        release.set()
        await held
        assert await asyncio.gather(*writes) == [True, True, False, True, False]
        assert s._data_writer.commits == 2  # the hold's, then the five in one
        assert s.stored_bytes() == 600 == summed(s)
    finally:
        await s.close()


async def test_sized_value_reads_small_values_and_sizes_large_ones(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path)
    try:
        small, large = b"s" * 100, b"L" * 5000
        await s.store_batch([small, large])
        assert await s.sized_value(h(small), 1000) == (100, small)
        assert await s.sized_value(h(large), 1000) == (5000, None)
        assert await s.sized_value(h(large), 5000) == (5000, large)
        assert await s.sized_value(h(b"absent"), 1000) == (0, None)
        # Never more than a loop read's worth at once, whatever the limit.
        huge = b"H" * (INLINE_READ_BYTES + 1)
        await s.store_batch([huge])
        assert await s.sized_value(h(huge), 10 * INLINE_READ_BYTES) == (len(huge), None)
    finally:
        await s.close()


async def test_disabled_keys_are_seen_through_every_change_and_a_reopen(tmp_path: Path) -> None:
    s = await LocalStore.open(tmp_path, disabled_key_ttl=timedelta(minutes=30))
    a, b = h(b"a"), h(b"b")
    try:
        assert not await s.is_disabled(a)
        await asyncio.gather(s.disable_key(a), s.enable_key(b), s.disable_key(b))
        assert await s.is_disabled(a) and await s.is_disabled(b)
        await asyncio.gather(s.enable_key(a), s.disable_key(a), s.enable_key(b))
        assert await s.is_disabled(a) and not await s.is_disabled(b)
        # A change whose caller went away still counts: it happened.
        task = asyncio.ensure_future(s.disable_key(b))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await s.enable_key(a)  # queued after it: the table holds b
        assert (await s.stats()).disabled_keys == 1
        assert await s.is_disabled(b) and not await s.is_disabled(a)
    finally:
        await s.close()
    s = await LocalStore.open(tmp_path)
    try:
        assert await s.is_disabled(b)  # read at open
        await s.enable_key(b)
        assert not await s.is_disabled(b)
        await s.disable_key(a)
    finally:
        await s.close()
    s = await LocalStore.open(tmp_path)
    try:
        assert await s.is_disabled(a)
    finally:
        await s.close()


def test_stamps_are_written_as_format_time_writes_them() -> None:
    stamps = NowText()
    for _ in range(200):
        before = utcnow()
        text = stamps.now()
        after = utcnow()
        assert text.endswith("+00:00") and len(text) in range(25, 33)
        moment = parse_time(text)
        assert before - timedelta(microseconds=1) <= moment <= after
        assert format_time(moment) == text
