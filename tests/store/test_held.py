"""The filter of held keys: no key stored is ever missed; most absent keys cost no read."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumera_p2p.store import LocalStore
from lumera_p2p.store import readers as readers_module
from lumera_p2p.store.held import BITS_PER_KEY, MAX_BITS, MIN_BITS, HeldKeys


def h(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=200))
def test_every_key_added_may_be_held(keys: list[bytes]) -> None:
    held = HeldKeys(len(keys))
    held.add(keys)
    assert all(held.may_hold(k) for k in keys)


def test_an_empty_filter_holds_nothing_and_its_size_follows_the_keys() -> None:
    assert not any(HeldKeys().may_hold(os.urandom(32)) for _ in range(1000))
    assert len(HeldKeys()._bits) * 8 == MIN_BITS
    assert len(HeldKeys(100_000)._bits) * 8 >= 100_000 * BITS_PER_KEY
    assert len(HeldKeys(10**9)._bits) * 8 == MAX_BITS


def _count_reads(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The single-value statements run on the loop from now on."""
    reads: list[str] = []
    one = store._data_readers.one_inline

    def counted(sql: str, args: Any) -> Any:
        reads.append(sql)
        return one(sql, args)

    monkeypatch.setattr(store._data_readers, "one_inline", counted)
    return reads


async def test_absent_keys_are_not_read_and_held_ones_always_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = [os.urandom(100) for _ in range(300)]
    store = await LocalStore.open(tmp_path)
    try:
        reads = _count_reads(store, monkeypatch)
        absent = [os.urandom(32) for _ in range(300)]
        assert [await store.retrieve(k) for k in absent] == [None] * 300
        assert [await store.sized_value(k, 1000) for k in absent] == [(0, None)] * 300
        assert reads == []  # nothing stored yet: every bit is clear
        await store.store_batch(values[:150])
        for value in values[:150]:
            assert await store.store_if_absent(value) is False
        for value in values[150:]:
            assert await store.store_if_absent(value) is True
        for value in values:
            assert await store.retrieve(h(value)) == value
            assert await store.sized_value(h(value), 1000) == (100, value)
        reads.clear()
        assert [await store.retrieve(k) for k in absent] == [None] * 300
        assert len(reads) < 60  # a few false positives, read (and found absent) as before
    finally:
        await store.close()


async def test_a_deleted_key_reads_as_absent_and_can_be_stored_again(tmp_path: Path) -> None:
    store = await LocalStore.open(tmp_path)
    try:
        key = (await store.store_batch([b"soon gone"]))[0]
        assert await store.delete(key)
        assert await store.retrieve(key) is None  # its bit stays set: SQLite says absent
        assert await store.sized_value(key, 100) == (0, None)
        await store.store_batch([b"soon gone"])
        assert await store.retrieve(key) == b"soon gone"
    finally:
        await store.close()


async def test_the_filter_is_rebuilt_from_the_table_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = [os.urandom(64) for _ in range(5000)]  # more than the smallest bitmap is sized for
    store = await LocalStore.open(tmp_path)
    try:
        for i in range(0, len(values), 500):
            await store.store_batch(values[i : i + 500])
    finally:
        await store.close()
    # Rows the table spells otherwise (not by our writer) must not break the filter.
    conn = sqlite3.connect(tmp_path / "data001.sqlite3", isolation_level=None)
    try:
        conn.execute("INSERT INTO data(key, data) VALUES('short', x'00')")
        conn.execute("INSERT INTO data(key, data) VALUES(?, x'00')", ("zz" * 32,))
        upper = h(b"upper case")
        conn.execute("INSERT INTO data(key, data) VALUES(?, x'00')", (upper.hex().upper(),))
    finally:
        conn.close()
    store = await LocalStore.open(tmp_path)
    try:
        assert store._held is not None
        assert len(store._held._bits) * 8 >= len(values) * BITS_PER_KEY
        for value in values:
            assert await store.retrieve(h(value)) == value
        reads = _count_reads(store, monkeypatch)
        assert [await store.retrieve(os.urandom(32)) for _ in range(500)] == [None] * 500
        assert len(reads) < 100
    finally:
        await store.close()


async def test_a_value_over_the_inline_limit_is_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers_module, "INLINE_READ_BYTES", 1000)
    store = await LocalStore.open(tmp_path)
    try:
        value = os.urandom(5000)
        await store.store_batch([value])
        assert await store.retrieve(h(value)) == value
    finally:
        await store.close()


async def test_keys_are_noted_before_any_insert_whatever_inserts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer's jobs take their pairs from ``_keying`` first; an insert that does not go
    # through ``_write`` (a statement of its own) must still leave its keys readable.
    store = await LocalStore.open(tmp_path)
    try:

        def raw_insert(conn: sqlite3.Connection, pairs: Any, *_: Any) -> list[bytes]:
            conn.executemany(
                "INSERT INTO data(key, data) VALUES(?, ?)", [(k.hex(), v) for k, v in pairs]
            )
            return [k for k, _ in pairs]

        monkeypatch.setattr(store, "_write", raw_insert)
        await store.store_batch([b"batch one", b"batch two"])
        assert await store.store_if_absent(b"if absent")
        large = os.urandom(300_000)  # keyed in the writer thread
        await store.store_batch([large])
        for value in (b"batch one", b"batch two", b"if absent", large):
            assert await store.retrieve(h(value)) == value
    finally:
        await store.close()
