"""A local network of nodes on loopback addresses: keys, a static registry, one config per node.

Used by ``lumera-p2p localnet`` and ``lumera-p2p demo`` and by the multi-node tests. Layout
under the chosen directory::

    keys/keyring-test/…        one key per node (the Cosmos SDK test backend)
    registry.yml               every node as an ACTIVE supernode at 127.0.x.y:<port>
    node-00/config.yml         key_name, p2p (port, data_dir), api (listen), keyring,
                               lumera.registry_file
    node-00/data/              that node's SQLite stores (and its API token)

Node *i* listens on its own loopback address (:func:`host_of`), so per-address limits see
one peer per node, as in production. A directory used again keeps its keys and its ports
(read back from each ``config.yml``, else from ``registry.yml``), so nodes come back where
they were. :func:`add_member` adds one more identity (a key, a registry entry, a config) to a
network that may be running: its nodes re-read ``registry.yml`` on their allowlist refresh
and admit it.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lumera_p2p.chain.registry import Supernode, SupernodeState
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.config import Config, load_config, parse_listen
from lumera_p2p.errors import ConfigError
from lumera_p2p.identity.keyring import Keyring
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.service import P2P

HOST = "127.0.0.1"
REGISTRY = "registry.yml"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

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
    #: The API's port (``api.listen``).
    api_port: int = 0
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

    Existing keys of the same names are reused, and so are their ports, so a directory can be
    started again. With ``seeds``, each node joins through that many earlier nodes
    (``p2p.bootstrap_nodes``) instead of pinging every node in the registry, and lookups find
    the rest: how hundreds of node processes join. ``one_host`` puts every node on 127.0.0.1.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ring = Keyring(directory / "keys", "test")
    known = {info.name: info for info in ring.list()}
    listed = {a: n.port for a, n in _registry_nodes(directory).items()}
    names = [f"node-{i:02d}" for i in range(nodes)]
    used = {name: _config_ports(directory / name / "config.yml") for name in names}
    hosts = [HOST if one_host else host_of(i) for i in range(nodes)]
    fresh_api = iter(free_ports(nodes))
    out: list[LocalNode] = []
    rng = random.Random(nodes)
    for i, name in enumerate(names):
        address = (
            known[name].address
            if name in known
            else ring.add(name, PrivateKey.generate()[0]).address
        )
        old_p2p, old_api = used[name]
        p2p_port = (
            ports[i]
            if ports is not None
            else old_p2p or listed.get(address) or free_ports(1, hosts[i])[0]
        )
        # Seeds from before the last few nodes: those may start in parallel with this one.
        pool = range(max(1, i - SEED_LAG)) if i else range(0)
        earlier = tuple(rng.sample(pool, min(seeds, len(pool)))) if seeds else ()
        bootstrap = ",".join(f"{out[j].address}@{out[j].host}:{out[j].port}" for j in earlier)
        out.append(
            _write_config(
                directory,
                name,
                address,
                p2p_port,
                old_api or next(fresh_api),
                fast_intervals,
                host=hosts[i],
                bootstrap=bootstrap,
                seeds=earlier,
            )
        )
    _write_registry(directory, [(n.address, n.host, n.port, SupernodeState.ACTIVE) for n in out])
    return out


def add_member(
    directory: Path,
    name: str,
    *,
    state: SupernodeState = SupernodeState.ACTIVE,
    fast_intervals: bool = True,
) -> LocalNode:
    """Add ``name`` to the local network in ``directory``: a key, a registry entry and a
    config (``<dir>/<name>/config.yml``), reusing any of them that exist.

    The network may be running: its nodes re-read ``registry.yml`` on their allowlist
    refresh and from then on admit the new identity (with ``state``: ``ACTIVE`` is a full
    member that also receives replicas; ``POSTPONED`` is routed to but stores nothing).
    Raises ``ConfigError`` for a bad name or a directory that holds no local network.
    """
    if not _NAME_RE.match(name) or name in ("keys", "data"):
        raise ConfigError("name", f"{name!r} is not a node name (letters, digits, - and _)")
    if not (directory / REGISTRY).exists():
        raise ConfigError("dir", f"{directory} holds no local network (no {REGISTRY})")
    ring = Keyring(directory / "keys", "test")
    known = {info.name: info for info in ring.list()}
    address = (
        known[name].address if name in known else ring.add(name, PrivateKey.generate()[0]).address
    )
    old_p2p, old_api = _config_ports(directory / name / "config.yml")
    listed = _registry_nodes(directory)
    entry = listed.get(address)
    # A member new to the registry takes the next node's address; one listed keeps its own.
    host = (entry.host if entry else None) or host_of(len(listed))
    p2p_port = old_p2p or (entry.port if entry else None) or free_ports(1, host)[0]
    member = _write_config(
        directory, name, address, p2p_port, old_api or free_ports(1)[0], fast_intervals, host=host
    )
    _write_registry(directory, [(address, host, p2p_port, state)])
    return member


def _write_config(
    directory: Path,
    name: str,
    address: str,
    port: int,
    api_port: int,
    fast_intervals: bool,
    *,
    host: str = HOST,
    bootstrap: str = "",
    seeds: tuple[int, ...] = (),
) -> LocalNode:
    node_dir = directory / name
    node_dir.mkdir(exist_ok=True)
    config: dict[str, Any] = {
        "key_name": name,
        "p2p": {
            "listen_address": host,
            "port": port,
            **({"bootstrap_nodes": bootstrap} if bootstrap else {}),
            "data_dir": "data",
            "allow_private_peers": True,
            **(
                {"health_check_interval": 30.0, "allowlist_refresh_interval": 10.0}
                if fast_intervals
                else {}
            ),
        },
        "api": {"listen": f"{HOST}:{api_port}"},
        "keyring": {"backend": "test", "dir": "../keys"},
        "lumera": {"registry_file": f"../{REGISTRY}"},
        **({"replication": dict(FAST_REPLICATION)} if fast_intervals else {}),
    }
    path = node_dir / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return LocalNode(name, address, port, path, api_port, host, seeds)


def _write_registry(
    directory: Path, entries: Sequence[tuple[str, str, int, SupernodeState]]
) -> None:
    """``registry.yml`` with ``entries`` set (address, host, port, state) and every other entry of
    the existing file kept (members added with :func:`add_member`)."""
    path = directory / REGISTRY
    nodes: dict[str, Supernode] = {}
    accounts: frozenset[str] = frozenset()
    if path.exists():
        try:
            old = StaticRegistry.from_file(path)
        except ConfigError:
            old = None  # unreadable: written anew from what we know
        if old is not None:
            nodes = {n.address: n for n in old.snapshot()}
            accounts = old.extra_accounts
    for address, host, port, state in entries:
        nodes[address] = Supernode(address, state, host, port, state_height=1)
    StaticRegistry(nodes.values(), accounts).write(path)


def _registry_nodes(directory: Path) -> dict[str, Supernode]:
    """Address → entry of the existing ``registry.yml`` (empty if there is none)."""
    try:
        registry = StaticRegistry.from_file(directory / REGISTRY)
    except ConfigError:
        return {}
    return {n.address: n for n in registry.snapshot()}


def _config_ports(path: Path) -> tuple[int | None, int | None]:
    """The P2P and API ports an existing ``config.yml`` uses (None where it has none)."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    p2p, api = data.get("p2p"), data.get("api")
    port = p2p.get("port") if isinstance(p2p, dict) else None
    api_port = None
    if isinstance(api, dict) and isinstance(api.get("listen"), str):
        try:
            api_port = parse_listen(api["listen"])[1] or None
        except ValueError:
            api_port = None
    valid = isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536
    return (port if valid else None), api_port


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
