"""Reads on the event loop and in reader threads: same answers, a responsive loop, fresh data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
from pathlib import Path

import blake3
import pytest

from lumera_p2p.store import LocalStore
from lumera_p2p.store import readers as readers_module


def h(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


async def test_retrieve_many_matches_the_stored_values_for_any_mix(tmp_path: Path) -> None:
    rng = random.Random(12)
    # Sizes around every boundary: empty, tiny, the first slice's 64 KiB share and just past
    # it, past a later slice's share, and past what is read on the loop at all (1 MiB).
    sizes = [0, 1] + [1024] * 200 + [65_536] * 150 + [65_537] * 5 + [300_000] * 5
    sizes += [1_500_000] * 3
    values = [rng.randbytes(n) for n in sizes]
    store = await LocalStore.open(tmp_path)
    try:
        for i in range(0, len(values), 50):
            await store.store_batch(values[i : i + 50])
        truth = {h(v): v for v in values}
        keys = list(truth)
        for _ in range(60):
            asked = rng.sample(keys, rng.randint(0, len(keys)))
            asked += [os.urandom(32) for _ in range(rng.randint(0, 40))]  # absent
            asked += rng.sample(asked, min(len(asked), rng.randint(0, 5)))  # repeated
            rng.shuffle(asked)
            assert await store.retrieve_many(asked) == {k: truth[k] for k in asked if k in truth}
        for key in [*rng.sample(keys, 40), h(values[-1])]:
            assert await store.retrieve(key) == truth[key]
        assert await store.retrieve(os.urandom(32)) is None
        # More keys than one SQL statement may bind, all absent.
        assert await store.retrieve_many([os.urandom(32) for _ in range(2_500)]) == {}
    finally:
        await store.close()


async def test_retrieve_many_lets_other_tasks_run_and_sees_fresh_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read the whole batch on the loop, in slices, to see what happens between them.
    monkeypatch.setattr(readers_module, "INLINE_MANY_BYTES", 64 * 1024 * 1024)
    store = await LocalStore.open(tmp_path)
    try:
        values = [os.urandom(65_536) for _ in range(100)]
        await store.store_batch(values)
        run = store._data_readers.run

        async def no_hop(fn):  # type: ignore[no-untyped-def]
            raise AssertionError("this batch should be read on the loop")

        monkeypatch.setattr(store._data_readers, "run", no_hop)
        late = b"committed while the batch read was under way"
        ticks = 0
        seen_late: list[bytes | None] = []

        async def other_task() -> None:
            nonlocal ticks
            # First run: at the batch read's first yield. Commit a row from another
            # connection and read it back: no statement of the batch read may stay open
            # across its yields, or this read would see the snapshot from before the commit.
            conn = sqlite3.connect(store.data_path, isolation_level=None)
            # The store's own writes note their keys in its filter of held keys
            # (store/held.py) before they commit; a write from outside must too.
            assert store._held is not None
            store._held.add([h(late)])
            with contextlib.closing(conn):
                conn.execute("INSERT INTO data(key, data) VALUES(?, ?)", (h(late).hex(), late))
            seen_late.append(await store.retrieve(h(late)))
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(other_task())
        found = await store.retrieve_many([h(v) for v in values])
        task.cancel()
        monkeypatch.setattr(store._data_readers, "run", run)
        assert len(found) == 100
        assert seen_late == [late]
        # 6.5 MB in slices of at most 256 KiB, with a yield every 128 KiB or so.
        assert ticks >= 20
    finally:
        await store.close()


async def test_a_value_over_the_inline_limit_is_read_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await LocalStore.open(tmp_path)
    try:
        big = os.urandom(readers_module.INLINE_READ_BYTES + 1)
        small = os.urandom(1000)
        batch = [os.urandom(1000) for _ in range(100)]
        await store.store_batch([big, small, *batch])
        hops: list[str] = []
        run = store._data_readers.run

        async def counting(fn):  # type: ignore[no-untyped-def]
            hops.append("hop")
            return await run(fn)

        monkeypatch.setattr(store._data_readers, "run", counting)
        assert await store.retrieve(h(small)) == small
        assert await store.retrieve_many([h(small)]) == {h(small): small}
        # 100 KB in all: cheaper read on the loop than with a hop to a thread and back.
        assert len(await store.retrieve_many([h(v) for v in batch])) == 100
        assert hops == []
        assert await store.retrieve(h(big)) == big
        assert await store.retrieve_many([h(big), h(small)]) == {h(big): big, h(small): small}
        assert hops == ["hop", "hop"]
    finally:
        await store.close()


@pytest.mark.parametrize(("mode", "level"), [("full", 2), ("normal", 1)])
async def test_synchronous_mode_reaches_the_data_writer(
    tmp_path: Path, mode: str, level: int
) -> None:
    store = await LocalStore.open(tmp_path, synchronous=mode)  # type: ignore[arg-type]
    try:
        got = await store._data_writer.submit(
            lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]
        )
        assert got == level
        meta = await store._meta_writer.submit(
            lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]
        )
        assert meta == 2  # the small meta database stays FULL
        assert store.synchronous == mode
    finally:
        await store.close()


async def test_an_unknown_synchronous_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        await LocalStore.open(tmp_path, synchronous="off")  # type: ignore[arg-type]
    assert not (tmp_path / "data001.sqlite3").exists()


async def test_the_loops_read_connections_are_opened_with_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Opening one costs ~300 µs; the first single-value read on the loop must not pay it.
    store = await LocalStore.open(tmp_path)
    try:
        await store.store_batch([b"held"])
        await store.disable_key(h(b"off"))

        def no_connect(self: readers_module.Readers) -> sqlite3.Connection:
            raise AssertionError("a read on the loop opened a connection")

        monkeypatch.setattr(readers_module.Readers, "_connect", no_connect)
        assert await store.retrieve(h(b"held")) == b"held"
        assert await store.retrieve(os.urandom(32)) is None
        assert await store.sized_value(h(b"held"), 100) == (4, b"held")
        assert await store.is_disabled(h(b"off"))
        assert not await store.is_disabled(h(b"held"))
    finally:
        await store.close()
