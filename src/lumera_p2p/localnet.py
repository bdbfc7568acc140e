"""A local network of nodes on 127.0.0.1: keys, a static registry, one config per node.

Used by ``lumera-p2p localnet`` and ``lumera-p2p demo`` and by the multi-node tests. Layout
under the chosen directory::

    keys/keyring-test/…        one key per node (the Cosmos SDK test backend)
    registry.yml               every node as an ACTIVE supernode at 127.0.0.1:<port>
    node-00/config.yml         key_name, p2p (port, data_dir), api (listen), keyring,
                               lumera.registry_file
    node-00/data/              that node's SQLite stores (and its API token)

A directory used again keeps its keys and its ports (read back from each ``config.yml``, else
from ``registry.yml``), so nodes come back where they were. :func:`add_member` adds one more
identity (a key, a registry entry, a config) to a network that may be running: its nodes
re-read ``registry.yml`` on their allowlist refresh and admit it.
"""

from __future__ import annotations

import asyncio
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
    listed = _registry_ports(directory)
    names = [f"node-{i:02d}" for i in range(nodes)]
    used = {name: _config_ports(directory / name / "config.yml") for name in names}
    fresh = iter(free_ports(2 * nodes))
    out: list[LocalNode] = []
    for i, name in enumerate(names):
        address = (
            known[name].address
            if name in known
            else ring.add(name, PrivateKey.generate()[0]).address
        )
        old_p2p, old_api = used[name]
        p2p_port = ports[i] if ports is not None else old_p2p or listed.get(address) or next(fresh)
        api_port = old_api or next(fresh)
        out.append(_write_config(directory, name, address, p2p_port, api_port, fast_intervals))
    _write_registry(directory, [(n.address, n.port, SupernodeState.ACTIVE) for n in out])
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
    fresh = iter(free_ports(2))
    p2p_port = old_p2p or _registry_ports(directory).get(address) or next(fresh)
    member = _write_config(
        directory, name, address, p2p_port, old_api or next(fresh), fast_intervals
    )
    _write_registry(directory, [(address, p2p_port, state)])
    return member


def _write_config(
    directory: Path, name: str, address: str, port: int, api_port: int, fast_intervals: bool
) -> LocalNode:
    node_dir = directory / name
    node_dir.mkdir(exist_ok=True)
    config = {
        "key_name": name,
        "p2p": {
            "listen_address": HOST,
            "port": port,
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
    }
    path = node_dir / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return LocalNode(name, address, port, path, api_port)


def _write_registry(directory: Path, entries: Sequence[tuple[str, int, SupernodeState]]) -> None:
    """``registry.yml`` with ``entries`` set (address, port, state) and every other entry of
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
    for address, port, state in entries:
        nodes[address] = Supernode(address, state, HOST, port, state_height=1)
    StaticRegistry(nodes.values(), accounts).write(path)


def _registry_ports(directory: Path) -> dict[str, int]:
    """Address → port of the existing ``registry.yml`` (empty if there is none)."""
    try:
        registry = StaticRegistry.from_file(directory / REGISTRY)
    except ConfigError:
        return {}
    return {n.address: n.port for n in registry.snapshot()}


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
