"""A node without peers says so, with what to check, and not on every sync."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lumera_p2p import P2P, load_config
from lumera_p2p.alone import AloneWarning
from lumera_p2p.chain.registry import Supernode, SupernodeState
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.localnet import create_localnet, free_ports


def test_the_warning_is_rate_limited_while_alone() -> None:
    warn = AloneWarning(every=300.0)
    assert warn.due(0, now=10.0)
    assert not warn.due(0, now=11.0)
    assert not warn.due(0, now=309.9)
    assert warn.due(0, now=310.0)
    assert not warn.due(3, now=320.0)  # peers: nothing to say
    assert warn.due(0, now=321.0)  # alone again: news at once
    with pytest.raises(ValueError, match="positive"):
        AloneWarning(every=0)


@pytest.mark.timeout(60)
async def test_a_node_alone_warns_with_what_to_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    [local] = create_localnet(tmp_path, 1)
    [dead] = free_ports(1)
    # The registry lists us and one peer that is not running.
    registry = tmp_path / "registry.yml"
    me = StaticRegistry.from_file(registry).to_data()["supernodes"][0]["address"]
    StaticRegistry(
        [
            Supernode(me, SupernodeState.ACTIVE, local.host, local.port, 1),
            Supernode(
                PrivateKey.generate()[0].address, SupernodeState.ACTIVE, "127.0.0.1", dead, 1
            ),
        ]
    ).write(registry)
    node = await P2P.create(load_config(local.config_path))
    with caplog.at_level(logging.WARNING, logger="lumera_p2p.service"):
        async with node:
            assert node.node.peer_count == 0
    warnings = [r.getMessage() for r in caplog.records if "no peers" in r.getMessage()]
    assert len(warnings) == 1
    assert f"the nodes listed in {registry} run and list {me}" in warnings[0]
    assert "lumera-p2p doctor --config" in warnings[0]
