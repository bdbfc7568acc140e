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


async def test_few_key_probes_on_the_loop_see_every_commit(tmp_path: Path) -> None:
    # A probe of a few keys runs on the loop's own connection: it must never pin a snapshot
    # that hides a later commit (a FindValue would then miss a value just stored).
    async with await LocalStore.open(tmp_path) as store:
        seen: list[bytes] = []
        for i in range(5):
            value = b"fresh %d" % i
            (key,) = await store.store_batch([value])
            seen.append(key)
            assert await store.value_sizes([key]) == {key: len(value)}
            assert await store.missing([key, os.urandom(32)]) != [key]
            assert await store.missing(seen) == []
        absent = [os.urandom(32) for _ in range(40)]
        # More keys than a probe on the loop takes: the reader thread answers the same.
        assert await store.missing(absent + seen) == absent
        assert await store.value_sizes(absent[:3] + seen) == {
            k: len(b"fresh %d" % i) for i, k in enumerate(seen)
        }
