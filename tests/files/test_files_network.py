"""Files through real nodes on 127.0.0.1: put through one, get through another, resume both ways.

The network: four store-eligible nodes and a fifth that the registry lists as POSTPONED
(routing-eligible, not store-eligible), so it holds no replica and everything it gets comes
over the network. Chunks are 4 KiB, so a file of a few hundred KiB already has a tree of
manifests.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from lumera_p2p.chain.registry import Supernode, SupernodeState
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.config import FilesConfig
from lumera_p2p.content import content_key, digest, key_from_bytes, key_to_bytes
from lumera_p2p.errors import InvalidContentKey, ManifestError, NotFound, ValueMismatch
from lumera_p2p.files import FileGet, Manifest, PartialFile, partial_paths
from lumera_p2p.files.manifest import fanout
from lumera_p2p.localnet import create_localnet, load_configs, start_nodes
from lumera_p2p.service import P2P
from tests.support import full_tables

pytestmark = [pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]

CHUNK = 4096
#: One round of batch_retrieve: a missing chunk is reported without the retries' back-off.
FILES = FilesConfig(chunk_size=CHUNK, store_batch_chunks=8, readahead_chunks=4, retrieve_attempts=1)


class Interrupted(Exception):
    """Raised from a progress callback: the transfer stops there, as if killed."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[P2P]]:
    directory = tmp_path_factory.mktemp("files-net")
    local = create_localnet(directory, 5)
    StaticRegistry(
        [
            Supernode(
                n.address,
                SupernodeState.POSTPONED if i == 4 else SupernodeState.ACTIVE,
                n.host,
                n.port,
                state_height=1,
            )
            for i, n in enumerate(local)
        ]
    ).write(directory / "registry.yml")
    configs = [c.model_copy(update={"files": FILES}) for c in load_configs(local)]
    nodes = await start_nodes(configs)
    try:
        await full_tables(nodes)
        yield nodes
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


async def received(nodes: list[P2P]) -> int:
    """Values peers have stored on these nodes with BatchStoreData, in all."""
    return sum([(await n.stats()).dht.values_stored_remote for n in nodes])


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, fanout(CHUNK) * CHUNK, 150 * CHUNK + 17]
)
async def test_put_through_one_node_and_get_through_another(
    net: list[P2P], tmp_path: Path, size: int
) -> None:
    writer, reader = net[0], net[4]
    data = os.urandom(size)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    put = await writer.put_file(source)
    chunks = -(-size // CHUNK)
    assert (put.size, put.chunks, put.skipped) == (size, chunks, 0)
    assert put.manifests == (0 if chunks <= fanout(CHUNK) else -(-chunks // fanout(CHUNK)))
    assert put.min_acks == 3  # every value on the three other store-eligible nodes
    assert await reader.db.missing([key_to_bytes(put.key)]) == [key_to_bytes(put.key)]
    dest = tmp_path / "out.bin"
    got = await reader.get_file(put.key, dest)
    assert dest.read_bytes() == data
    assert (got.size, got.resumed_bytes, got.fetched_bytes) == (size, 0, size)
    assert not any(p.exists() for p in partial_paths(dest))
    root = Manifest.decode(await writer.retrieve(put.key) or b"")
    assert root.root and root.total == size and root.whole == digest(data)
    # The same bytes put again, through another node, name the same file.
    assert (await net[2].put_file(io.BytesIO(data))).key == put.key


class Trickle:
    """A pipe-like stream: short reads of odd sizes."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0

    def read(self, n: int = -1) -> bytes:
        step = min(n, 1000 + self._at % 777)
        out = bytes(self._data[self._at : self._at + step])
        self._at += len(out)
        return out


async def test_streams_in_and_out(net: list[P2P], tmp_path: Path) -> None:
    data = os.urandom(50 * CHUNK + 5)
    from_pipe = await net[1].put_file(Trickle(data))  # type: ignore[arg-type]
    stream = asyncio.StreamReader()
    stream.feed_data(data)
    stream.feed_eof()
    from_async = await net[1].put_file(stream)
    assert from_pipe.key == from_async.key and from_pipe.size == len(data)
    out = io.BytesIO()
    seen: list[tuple[int, int]] = []
    await net[4].get_file(from_pipe.key, out, progress=lambda d, t: seen.append((d, t)))
    assert out.getvalue() == data
    assert seen[-1] == (len(data), len(data)) and seen == sorted(seen)
    pieces = [p async for p in net[3].read_file(from_pipe.key)]
    assert b"".join(pieces) == data and max(map(len, pieces)) <= CHUNK
    for offset in (1, CHUNK, 7 * CHUNK + 3, len(data) - 1, len(data)):
        tail = b"".join([p async for p in net[4].read_file(from_pipe.key, offset)])
        assert tail == data[offset:], offset
    info = await net[4].open_file(from_pipe.key)
    assert (info.size, info.whole) == (len(data), digest(data))
    # Local only: the putting node holds every chunk; the one that stores nothing, none.
    local = [p async for p in net[1].read_file(from_pipe.key, local_only=True)]
    assert b"".join(local) == data
    with pytest.raises(NotFound):
        await net[4].open_file(from_pipe.key, local_only=True)


async def test_a_put_stopped_half_way_resumes_without_resending(
    net: list[P2P], tmp_path: Path
) -> None:
    writer, peers = net[0], net[1:4]
    data = os.urandom(120 * CHUNK)
    source = tmp_path / "in.bin"
    source.write_bytes(data)

    def stop_half_way(done: int, total: int | None) -> None:
        if done >= len(data) // 2:
            raise Interrupted

    before = await received(peers)
    with pytest.raises(Interrupted):
        await writer.put_file(source, progress=stop_half_way)
    first = await received(peers) - before
    assert 0 < first < 3 * 120  # some chunks reached all three peers, not all of them
    put = await writer.put_file(source)
    second = await received(peers) - before - first
    # Nothing sent twice: the two runs together delivered each value (120 chunks, two
    # manifests and the root) exactly once to each of the three peers.
    assert first + second == 3 * (120 + put.manifests + 1)
    assert put.skipped == first // 3 and put.sent == 120 + put.manifests + 1 - put.skipped
    assert put.skipped_bytes + put.sent_bytes > len(data)
    again = await writer.put_file(source)
    assert (again.sent, again.key) == (0, put.key)
    assert await received(peers) - before == first + second
    dest = tmp_path / "out.bin"
    await net[4].get_file(put.key, dest)
    assert dest.read_bytes() == data


async def test_a_get_stopped_half_way_resumes_into_its_partial_file(
    net: list[P2P], tmp_path: Path
) -> None:
    data = os.urandom(90 * CHUNK + 99)
    put = await net[2].put_file(io.BytesIO(data))
    dest = tmp_path / "out.bin"
    part, state = partial_paths(dest)

    def stop_half_way(done: int, total: int) -> None:
        if done >= total // 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        await net[4].get_file(put.key, dest, progress=stop_half_way)
    assert not dest.exists() and state.exists()
    kept = part.stat().st_size
    assert 0 < kept < len(data) and kept % CHUNK == 0
    assert part.read_bytes() == data[:kept]
    # The tail of the partial file is damaged (a crash mid-write): only what still matches
    # the manifest is kept, the rest is fetched.
    with part.open("r+b") as f:
        f.seek(kept - CHUNK + 10)
        f.write(b"\xff" * 5)
        f.seek(0, 2)
        f.write(b"half a chunk")
    got: FileGet = await net[4].get_file(put.key, dest)
    assert dest.read_bytes() == data
    assert got.resumed_bytes == kept - CHUNK
    assert got.fetched_bytes == len(data) - got.resumed_bytes
    assert not part.exists() and not state.exists()
    # A partial file left by another key is not trusted: started over.
    other = await net[2].put_file(io.BytesIO(data[:5000]))
    part.write_bytes(data[:CHUNK])
    doc = {"format": "lumera-p2p partial file", "version": 1, "key": put.key}
    state.write_text(json.dumps(doc))
    got = await net[4].get_file(other.key, dest)
    assert got.resumed_bytes == 0 and dest.read_bytes() == data[:5000]


async def test_what_is_not_a_file_is_refused_clearly(net: list[P2P], tmp_path: Path) -> None:
    plain = await net[0].store(b"just a value, not a manifest")
    with pytest.raises(ManifestError, match="not a file manifest"):
        await net[4].get_file(plain, tmp_path / "x")
    data = os.urandom(200 * CHUNK)
    put = await net[0].put_file(io.BytesIO(data))
    root = Manifest.decode(await net[0].retrieve(put.key) or b"")
    assert root.depth == 1  # its first entry names a leaf manifest: a part of the file
    with pytest.raises(ManifestError, match="part of a file"):
        await net[4].get_file(key_from_bytes(root.entries[0].key), tmp_path / "x")
    with pytest.raises(NotFound, match="manifest"):
        await net[4].get_file(content_key(b"never stored"), tmp_path / "x")
    with pytest.raises(InvalidContentKey):
        await net[4].get_file("not-a-key", tmp_path / "x")
    assert not (tmp_path / "x").exists()


async def test_a_chunk_lost_everywhere_is_a_clear_not_found(net: list[P2P], tmp_path: Path) -> None:
    data = os.urandom(20 * CHUNK)
    put = await net[1].put_file(io.BytesIO(data))
    lost = digest(data[5 * CHUNK : 6 * CHUNK])
    for node in net:
        await node.db.delete(lost)
    dest = tmp_path / "out.bin"
    with pytest.raises(NotFound, match="not found on the network"):
        await net[4].get_file(put.key, dest)
    assert not dest.exists()
    assert partial_paths(dest)[0].stat().st_size == 5 * CHUNK  # kept for a later resume


async def test_a_whole_that_does_not_match_its_root_is_refused(
    net: list[P2P], tmp_path: Path
) -> None:
    # A root whose chunks are all genuine but whose file hash is not theirs.
    data = os.urandom(3 * CHUNK)
    put = await net[1].put_file(io.BytesIO(data))
    root = Manifest.decode(await net[1].retrieve(put.key) or b"")
    forged = Manifest(root.depth, root.entries, digest(b"something else")).encode()
    key = await net[1].store(forged)
    dest = tmp_path / "out.bin"
    with pytest.raises(ValueMismatch):
        await net[4].get_file(key, dest)
    assert not dest.exists() and not any(p.exists() for p in partial_paths(dest))
    with pytest.raises(ValueMismatch):
        async for _ in net[4].read_file(key):
            pass


async def test_a_destination_is_written_by_one_transfer_at_a_time(
    net: list[P2P], tmp_path: Path
) -> None:
    data = os.urandom(3 * CHUNK)
    put = await net[0].put_file(io.BytesIO(data))
    with pytest.raises(IsADirectoryError):
        await net[4].get_file(put.key, tmp_path)
    dest = tmp_path / "out.bin"
    holder = PartialFile.open(dest, put.key, len(data))  # another transfer, mid-way
    try:
        with pytest.raises(BlockingIOError, match="another transfer"):
            await net[4].get_file(put.key, dest)
    finally:
        holder.close()
    await net[4].get_file(put.key, dest)
    assert dest.read_bytes() == data
