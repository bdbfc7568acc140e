"""The public API of one real node (SQLite, a TCP listener) that has no peers: what is local
is answered locally, with Go's errors and semantics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from lumera_p2p import (
    P2P,
    InvalidContentKey,
    KeyDisabled,
    NoStorePeers,
    NotEnoughValues,
    NotFound,
    NotRunning,
    StoreFailed,
    StoreReport,
    ValueMismatch,
    content_key,
    load_config,
)
from lumera_p2p.localnet import create_localnet
from lumera_p2p.store.timefmt import utcnow

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def alone(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[P2P]:
    [local] = create_localnet(tmp_path_factory.mktemp("alone"), 1)
    node = await P2P.create(load_config(local.config_path))
    with pytest.raises(NotRunning):
        await node.store(b"too early")
    await node.start()
    assert node.running
    yield node
    await node.stop()
    assert not node.running


async def test_local_store_retrieve_disable_enable_delete_and_local_keys(alone: P2P) -> None:
    node = alone
    start = utcnow() - timedelta(seconds=1)
    key = await node.local_store(content_key(b"v"), b"v")
    assert key == content_key(b"v")
    await node.disable_key(key)
    with pytest.raises(KeyDisabled):
        await node.retrieve(key)
    await node.enable_key(key)
    assert await node.retrieve(key, local_only=True) == b"v"
    assert key in await node.get_local_keys(start, utcnow() + timedelta(seconds=1))
    assert await node.delete(key) is True
    assert await node.delete(key) is False
    with pytest.raises(ValueMismatch):
        await node.local_store(content_key(b"v"), b"not v")
    with pytest.raises(NotFound):
        await node.retrieve(key, local_only=True)


async def test_bad_keys_and_misses(alone: P2P) -> None:
    with pytest.raises(InvalidContentKey):
        await alone.retrieve("not-a-key")
    with pytest.raises(InvalidContentKey):
        await alone.batch_retrieve(["not-a-key"])
    assert await alone.retrieve(content_key(b"never stored")) is None  # a miss, as in Go


async def test_local_only_batch_shortfalls_say_what_was_found(alone: P2P) -> None:
    key = await alone.local_store(content_key(b"x"), b"x")
    absent = content_key(b"absent")
    with pytest.raises(NotEnoughValues) as info:
        await alone.batch_retrieve([key, absent], local_only=True)
    assert info.value.found == {key: b"x"}
    got: dict[str, bytes] = {}

    async def keep(k: str, v: bytes) -> None:
        got[k] = v

    with pytest.raises(NotEnoughValues, match="found 1, required 2"):
        await alone.batch_retrieve_stream([key, absent], 2, "tx", keep, local_only=True)
    assert got == {key: b"x"}
    # Over the network a shortfall is no error: the result is just smaller.
    assert await alone.batch_retrieve([key, absent]) == {key: b"x"}


async def test_without_peers_a_store_and_a_batch_store_fail_loudly_and_stay_local(
    alone: P2P,
) -> None:
    # Go returns the key of a value stored here only; we say so (dht.min_replicas = 1).
    with pytest.raises(NoStorePeers, match=r"on 0 of 6 peers.*no peers") as caught:
        await alone.store(b"only here")
    key = content_key(b"only here")
    assert caught.value.key == key
    report = caught.value.report
    assert isinstance(report, StoreReport)
    assert (report.replicas, report.wanted, report.key) == (0, 6, key)
    assert await alone.retrieve(key, local_only=True) == b"only here"  # committed here
    with pytest.raises(StoreFailed, match=r"no store-eligible peers.*\(task t-42\)"):
        await alone.store_batch([b"a", b"b"], task_id="t-42")
    assert await alone.retrieve(content_key(b"a"), local_only=True) == b"a"
    assert alone.n_closest_nodes(6, key) == []
    stats = await alone.stats()
    assert stats.peers == 0 and stats.dht.stores == 1 and stats.dht.batch_stores == 1


async def test_a_stopped_node_cannot_start_again(tmp_path: Path) -> None:
    [local] = create_localnet(tmp_path, 1)
    node = await P2P.create(load_config(local.config_path))
    await node.start()
    await node.stop()
    await node.stop()  # idempotent
    with pytest.raises(NotRunning):
        await node.start()
    with pytest.raises(NotRunning):
        await node.retrieve(content_key(b"x"))
