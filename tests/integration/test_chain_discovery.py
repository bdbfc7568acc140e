"""Nodes that find each other through the Lumera chain (a real gRPC server with fixture data)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from lumera_p2p.chain._generated.lumera.supernode.v1 import supernode_pb2
from lumera_p2p.chain.registry import SupernodeState
from lumera_p2p.localnet import create_localnet, load_configs, start_nodes
from tests.chain.fake_chain import CHAIN_ID, ChainData, start_server
from tests.support import eventually

pytestmark = pytest.mark.timeout(120)


def _record(address: str, host: str, port: int, state: SupernodeState) -> supernode_pb2.SuperNode:
    return supernode_pb2.SuperNode(
        supernode_account=address,
        states=[
            supernode_pb2.SuperNodeStateRecord(state=int(SupernodeState.ACTIVE), height=1),
            supernode_pb2.SuperNodeStateRecord(state=int(state), height=5),
        ],
        prev_ip_addresses=[supernode_pb2.IPAddressHistory(address=host, height=1)],
        p2p_port=str(port),
    )


async def test_nodes_bootstrap_from_the_chain_and_respect_states(tmp_path: Path) -> None:
    local = create_localnet(tmp_path, 7)
    states = [SupernodeState.ACTIVE] * 5 + [SupernodeState.POSTPONED, SupernodeState.STOPPED]
    data = ChainData(
        records=[_record(n.address, n.host, n.port, s) for n, s in zip(local, states, strict=True)]
    )
    server, port = await start_server(data)
    try:
        for node in local:
            config = yaml.safe_load(node.config_path.read_text())
            config["lumera"] = {"grpc_addr": f"127.0.0.1:{port}", "chain_id": CHAIN_ID}
            node.config_path.write_text(yaml.safe_dump(config))
        # The STOPPED node is not started: a registered but stopped supernode.
        nodes = await start_nodes(load_configs(local[:6]))
        try:
            assert data.calls["ListSuperNodes"] >= 6
            postponed = nodes[5]
            # Everyone routes to the five ACTIVE nodes and the POSTPONED one, never the
            # STOPPED one, which is not routing-eligible.
            await eventually(
                lambda: all(n.node.peer_count == 5 for n in nodes),
                timeout=90.0,
                what="five peers each",
            )
            for node in nodes:
                assert node.node.peer_count == 5, node.address
                assert local[6].address not in {c.address for c in node.node.contacts()}
            assert not postponed.node.self_store_eligible
            key = await nodes[0].store(b"found through the chain")
            for node in nodes[1:]:
                assert await node.retrieve(key) == b"found through the chain"
            await nodes[1].store_batch([b"batch %d" % i for i in range(50)])
            assert await postponed.db.count() == 0  # never sent a store
        finally:
            await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
    finally:
        await server.stop(None)
