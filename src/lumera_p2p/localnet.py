"""A local network of nodes on 127.0.0.1: keys, a static registry, one config per node.

Used by ``lumera-p2p localnet`` and ``lumera-p2p demo`` and by the multi-node tests. Layout
under the chosen directory::

    keys/keyring-test/…        one key per node (the Cosmos SDK test backend)
    registry.yml               every node as an ACTIVE supernode at 127.0.0.1:<port>
    node-00/config.yml         key_name, p2p (port, data_dir), keyring, lumera.registry_file
    node-00/data/              that node's SQLite stores
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import yaml

from lumera_p2p.chain.registry import Supernode, SupernodeState
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.config import Config, load_config
from lumera_p2p.identity.keyring import Keyring
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.service import P2P

HOST = "127.0.0.1"

#: Replication on a local network's timescale: a 10-second push cycle (Go: 10 min), the
#: activity check four times a cycle, a silent peer gone 5 seconds after its last answer, and
#: announced keys fetched half a second after they arrive.
FAST_REPLICATION = {
    "interval": 10.0,
    "activity_interval": 2.5,
    "offline_deadline": 5.0,
    "fetch_interval": 10.0,
    "fetch_delay": 0.5,
    "failed_fetch_interval": 10.0,
    "disabled_key_cleanup_interval": 60.0,
    "redundant_scan_interval": 300.0,
}


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            with closing(sock):
                pass


@dataclass(frozen=True)
class LocalNode:
    """One node of a local network, as written to disk."""

    name: str
    address: str
    port: int
    config_path: Path


def create_localnet(
    directory: Path,
    nodes: int,
    *,
    ports: Sequence[int] | None = None,
    fast_intervals: bool = True,
) -> list[LocalNode]:
    """Write keys, a registry and configs for ``nodes`` nodes under ``directory``.

    Existing keys of the same names are reused, so a directory can be started again.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ring = Keyring(directory / "keys", "test")
    known = {info.name: info for info in ring.list()}
    chosen = list(ports) if ports is not None else free_ports(nodes)
    out: list[LocalNode] = []
    for i in range(nodes):
        name = f"node-{i:02d}"
        address = (
            known[name].address
            if name in known
            else ring.add(name, PrivateKey.generate()[0]).address
        )
        node_dir = directory / name
        node_dir.mkdir(exist_ok=True)
        config = {
            "key_name": name,
            "p2p": {
                "listen_address": HOST,
                "port": chosen[i],
                "data_dir": "data",
                "allow_private_peers": True,
                **(
                    {"health_check_interval": 30.0, "allowlist_refresh_interval": 10.0}
                    if fast_intervals
                    else {}
                ),
            },
            "keyring": {"backend": "test", "dir": "../keys"},
            "lumera": {"registry_file": "../registry.yml"},
            **({"replication": dict(FAST_REPLICATION)} if fast_intervals else {}),
        }
        path = node_dir / "config.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        out.append(LocalNode(name, address, chosen[i], path))
    registry = StaticRegistry(
        [Supernode(n.address, SupernodeState.ACTIVE, HOST, n.port, state_height=1) for n in out]
    )
    registry.write(directory / "registry.yml")
    return out


async def start_nodes(configs: Sequence[Config]) -> list[P2P]:
    """Create and start nodes: all listen first, then all bootstrap (the registry lists all)."""
    nodes = [await P2P.create(c) for c in configs]
    try:
        await asyncio.gather(*(n.start(bootstrap=False) for n in nodes))
        await asyncio.gather(*(n.sync_peers() for n in nodes))
    except BaseException:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
        raise
    return nodes


def load_configs(local: Sequence[LocalNode]) -> list[Config]:
    """The validated configs of a local network's nodes."""
    return [load_config(n.config_path) for n in local]
