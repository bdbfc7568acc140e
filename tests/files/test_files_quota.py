"""A put through real nodes whose write quotas are small: paced, it is never refused; unpaced
(a node that believes the quotas are large), it is refused and its later store rounds get
every value through anyway.

Four store-eligible nodes on 127.0.0.1, each allowing one peer 1 MiB of values per second;
node 3 believes the quota is 64 MiB, so it does not wait. The file is 2 MiB of 64 KiB chunks,
so each of the three other nodes must take all of it from the putting node at 1 MiB/s.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from lumera_p2p.config import FilesConfig
from lumera_p2p.localnet import create_localnet, load_configs, start_nodes
from lumera_p2p.service import P2P
from tests.support import full_tables

pytestmark = [pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]

MIB = 1024 * 1024
CHUNK = 64 * 1024
FILES = FilesConfig(chunk_size=CHUNK, store_batch_chunks=4, store_rounds=8, store_retry_delay=0.25)
SIZE = 2 * MIB


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[list[P2P]]:
    local = create_localnet(tmp_path_factory.mktemp("files-quota"), 4)
    configs = []
    for i, config in enumerate(load_configs(local)):
        quota = 64 * MIB if i == 3 else MIB
        server = config.server.model_copy(update={"write_quota_bytes": quota, "quota_window": 1.0})
        configs.append(config.model_copy(update={"files": FILES, "server": server}))
    nodes = await start_nodes(configs)
    try:
        await full_tables(nodes)
        yield nodes
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


async def test_a_paced_put_is_never_refused(net: list[P2P], tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    put = await net[0].put_file(_write(tmp_path, data))
    assert put.min_acks == 3  # every value on each of the three others...
    assert put.resent == 0  # ...each at the first time of asking
    # At 0.9 MiB/s after a burst of 0.45 MiB: 2 MiB cannot have gone in under 1.5 s.
    assert put.seconds > 1.5
    dest = tmp_path / "out.bin"
    await net[2].get_file(put.key, dest)
    assert dest.read_bytes() == data


async def test_an_unpaced_put_is_refused_and_its_later_rounds_get_it_through(
    net: list[P2P], tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    put = await net[3].put_file(_write(tmp_path, data))
    assert put.resent > 0  # the receivers refused some batches at first...
    assert put.min_acks == 3  # ...and took them in a later round
    dest = tmp_path / "out.bin"
    await net[1].get_file(put.key, dest)
    assert dest.read_bytes() == data


def _write(directory: Path, data: bytes) -> Path:
    path = directory / "in.bin"
    path.write_bytes(data)
    return path
