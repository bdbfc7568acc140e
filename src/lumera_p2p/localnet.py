"""A local network of nodes on loopback: keys, a static registry, one config per node.

Each node listens on (and dials from) its own address, 127.0.0.2, 127.0.0.3, ... (loopback
is all of 127.0.0.0/8 on Linux), so per-address limits see one peer per node, as in
production; the registry lists each node at its own address.

Used by ``lumera-p2p localnet`` and ``lumera-p2p demo`` and by the multi-node tests. Layout
under the chosen directory::

    keys/keyring-test/…        one key per node (the Cosmos SDK test backend)
    registry.yml               every node as an ACTIVE supernode at 127.0.x.y:<port>
    node-00/config.yml         key_name, p2p (port, data_dir), keyring, lumera.registry_file
    node-00/data/              that node's SQLite stores
"""

from __future__ import annotations

import asyncio
import random
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
#: Nodes joining at once in :func:`start_nodes` (the rest wait: no thundering herd).
JOIN_CONCURRENCY = 8
#: A node's seeds are not among the last this many nodes before it (they may still be starting).
SEED_LAG = 8


def host_of(index: int) -> str:
    """The loopback address of node ``index``: 127.0.0.2, ..., 127.0.0.251, 127.0.1.2, ..."""
    return f"127.0.{index // 250}.{index % 250 + 2}"


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
    host: str = HOST
    #: Indexes of the earlier nodes it joins through (``create_localnet(seeds=...)``).
    seeds: tuple[int, ...] = ()


def create_localnet(
    directory: Path,
    nodes: int,
    *,
    ports: Sequence[int] | None = None,
    fast_intervals: bool = True,
    seeds: int = 0,
    one_host: bool = False,
) -> list[LocalNode]:
    """Write keys, a registry and configs for ``nodes`` nodes under ``directory``.

    Existing keys of the same names are reused, so a directory can be started again. With
    ``seeds``, each node joins through that many earlier nodes (``p2p.bootstrap_nodes``)
    instead of pinging every node in the registry, and lookups find the rest: how hundreds
    of node processes join. ``one_host`` puts every node on 127.0.0.1 (one address).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ring = Keyring(directory / "keys", "test")
    known = {info.name: info for info in ring.list()}
    hosts = [HOST if one_host else host_of(i) for i in range(nodes)]
    chosen = list(ports) if ports is not None else [free_ports(1, host)[0] for host in hosts]
    out: list[LocalNode] = []
    rng = random.Random(nodes)
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
                "listen_address": hosts[i],
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
        }
        # Seeds from before the last few nodes: those may start in parallel with this one.
        pool = range(max(1, i - SEED_LAG)) if i else range(0)
        earlier = rng.sample(pool, min(seeds, len(pool))) if seeds else []
        if earlier:
            config["p2p"]["bootstrap_nodes"] = ",".join(  # type: ignore[index]
                f"{out[j].address}@{hosts[j]}:{chosen[j]}" for j in earlier
            )
        path = node_dir / "config.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        out.append(LocalNode(name, address, chosen[i], path, hosts[i], tuple(earlier)))
    registry = StaticRegistry(
        [Supernode(n.address, SupernodeState.ACTIVE, n.host, n.port, state_height=1) for n in out]
    )
    registry.write(directory / "registry.yml")
    return out


async def start_nodes(
    configs: Sequence[Config], *, join_concurrency: int = JOIN_CONCURRENCY
) -> list[P2P]:
    """Create and start nodes: all listen first, then they bootstrap, ``join_concurrency``
    at a time (each join pings its peers and runs its lookups; 64 at once would time out)."""
    nodes = [await P2P.create(c) for c in configs]
    gate = asyncio.Semaphore(join_concurrency)

    async def join(node: P2P) -> None:
        async with gate:
            await node.sync_peers()

    try:
        await asyncio.gather(*(n.start(bootstrap=False) for n in nodes))
        await asyncio.gather(*(join(n) for n in nodes))
    except BaseException:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
        raise
    return nodes


def load_configs(local: Sequence[LocalNode]) -> list[Config]:
    """The validated configs of a local network's nodes."""
    return [load_config(n.config_path) for n in local]
