"""value_sizes: what an answer would cost, without reading the values."""

from __future__ import annotations

import os
from pathlib import Path

import blake3

from lumera_p2p.dht.valuestore import MemoryStore
from lumera_p2p.store import LocalStore


async def test_value_sizes(tmp_path: Path) -> None:
    values = [os.urandom(n) for n in (0, 1, 1000, 70_000)] + [bytes(100 + i) for i in range(1500)]
    absent = [os.urandom(32) for _ in range(3)]
    async with await LocalStore.open(tmp_path) as store:
        keys = await store.store_batch(values)
        sizes = await store.value_sizes(keys + absent)  # more than 900 keys: chunked
        assert sizes == {blake3.blake3(v).digest(): len(v) for v in values}
        assert await store.value_sizes([]) == {}
        assert await store.value_sizes(absent) == {}
    memory = MemoryStore()
    keys = await memory.store_batch(values[:4])
    assert await memory.value_sizes(keys + absent) == dict(
        zip(keys, [len(v) for v in values[:4]], strict=True)
    )
