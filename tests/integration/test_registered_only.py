"""``server.registered_addresses_only``: the service keeps the server's list of addresses that
may connect to the registry's, and the server refuses the others before the handshake."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from lumera_p2p.config import load_config
from lumera_p2p.localnet import create_localnet
from lumera_p2p.service import P2P
from tests.support import eventually, peer_closed

pytestmark = pytest.mark.timeout(120)


async def node(tmp_path: Path, registered_only: bool) -> P2P:
    [local] = create_localnet(tmp_path, 1)
    doc = yaml.safe_load(local.config_path.read_text())
    doc["server"] = {"registered_addresses_only": registered_only}
    local.config_path.write_text(yaml.safe_dump(doc))
    p2p = await P2P.create(load_config(local.config_path))
    await p2p.start()
    return p2p


async def test_only_registered_addresses_reach_the_handshake(tmp_path: Path) -> None:
    p2p = await node(tmp_path, True)
    try:
        server = p2p.server
        assert server is not None
        assert server.allowed_addresses == frozenset({"127.0.0.1"})  # the registry's host
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", p2p.port, local_addr=("127.0.0.2", 0)
        )
        assert await peer_closed(reader, 5.0)
        writer.close()
        assert server.stats.refused_unlisted == 1
        _, writer = await asyncio.open_connection("127.0.0.1", p2p.port)
        await eventually(lambda: server.handshakes == 1, what="a registered address admitted")
        writer.close()
    finally:
        await p2p.stop()


async def test_off_by_default(tmp_path: Path) -> None:
    p2p = await node(tmp_path, False)
    try:
        server = p2p.server
        assert server is not None and server.allowed_addresses is None
        _, writer = await asyncio.open_connection(
            "127.0.0.1", p2p.port, local_addr=("127.0.0.2", 0)
        )
        await eventually(lambda: server.handshakes == 1, what="any address admitted")
        writer.close()
        assert server.stats.refused_unlisted == 0
    finally:
        await p2p.stop()
