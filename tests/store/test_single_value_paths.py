"""The single-value paths a server takes: store if absent, a sized read, the disabled-key
shortcut and the stamps of stored rows, on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
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
