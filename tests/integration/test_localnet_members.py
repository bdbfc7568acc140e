"""``localnet`` on a directory used before keeps its keys and ports; ``localnet add`` adds a
member that a running network admits once its nodes re-read ``registry.yml``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lumera_p2p.chain import StaticRegistry, SupernodeState
from lumera_p2p.config import Config, load_config
from lumera_p2p.errors import ConfigError, NotFound, StoreFailed
from lumera_p2p.localnet import add_member, create_localnet, load_configs, start_nodes
from lumera_p2p.service import P2P

pytestmark = pytest.mark.timeout(180)


def test_a_directory_used_again_keeps_its_keys_ports_and_registry(tmp_path: Path) -> None:
    first = create_localnet(tmp_path, 3)
    registry = (tmp_path / "registry.yml").read_bytes()
    again = create_localnet(tmp_path, 3)
    assert again == first  # addresses, P2P and API ports, config paths
    assert (tmp_path / "registry.yml").read_bytes() == registry
    ports = [n.port for n in first] + [n.api_port for n in first]
    assert len(set(ports)) == len(ports)

    # A config lost: its ports come back from the registry (P2P) or are new (API).
    first[1].config_path.unlink()
    rebuilt = create_localnet(tmp_path, 3)
    assert rebuilt[1].address == first[1].address and rebuilt[1].port == first[1].port
    assert rebuilt[0] == first[0] and rebuilt[2] == first[2]


def test_add_member_writes_a_key_an_entry_and_a_config_once(tmp_path: Path) -> None:
    local = create_localnet(tmp_path, 2)
    member = add_member(tmp_path, "client", state=SupernodeState.POSTPONED)
    assert member.config_path == tmp_path / "client" / "config.yml"
    entries = {n.address: n for n in StaticRegistry.from_file(tmp_path / "registry.yml").snapshot()}
    assert set(entries) == {n.address for n in local} | {member.address}
    assert entries[member.address].state is SupernodeState.POSTPONED
    assert entries[member.address].port == member.port
    config = load_config(member.config_path)
    assert config.key_name == "client" and config.p2p.port == member.port
    assert config.api.port == member.api_port
    assert member.port not in {n.port for n in local}
    assert add_member(tmp_path, "client", state=SupernodeState.POSTPONED) == member  # idempotent

    for bad in ("../up", "keys", "", "a b"):
        with pytest.raises(ConfigError) as info:
            add_member(tmp_path, bad)
        assert info.value.field == "name"
    with pytest.raises(ConfigError) as info:
        add_member(tmp_path / "elsewhere", "client")
    assert info.value.field == "dir"


def test_the_add_command_prints_the_member_and_refuses_a_bad_state(tmp_path: Path) -> None:
    create_localnet(tmp_path, 2)
    cli = [sys.executable, "-m", "lumera_p2p", "localnet", "add"]
    run = subprocess.run(
        [*cli, "client", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    address, endpoint, api, path = run.stdout.split()
    assert endpoint.endswith(f":{load_config(path).p2p.port}")
    assert address.startswith("lumera1") and api.startswith("http://")
    assert Path(path) == tmp_path / "client" / "config.yml"
    assert yaml.safe_load(Path(path).read_text())["key_name"] == "client"
    bad = subprocess.run(
        [*cli, "other", "--dir", str(tmp_path), "--state", "bogus"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "--state" in bad.stderr and "ACTIVE" in bad.stderr
    assert not (tmp_path / "other").exists()


def quick(config: Config) -> Config:
    """The registry re-read every half second (a local network's default is 10 s)."""
    p2p = config.p2p.model_copy(update={"allowlist_refresh_interval": 0.5})
    return config.model_copy(update={"p2p": p2p})


async def held(node: P2P, key: str) -> bytes | None:
    """``node``'s own copy of ``key``, if it has one."""
    try:
        return await node.retrieve(key, local_only=True)
    except NotFound:
        return None


async def test_a_running_network_admits_a_member_added_to_it(tmp_path: Path) -> None:
    nodes = await start_nodes([quick(c) for c in load_configs(create_localnet(tmp_path, 2))])
    newcomer: P2P | None = None
    try:
        member = add_member(tmp_path, "client")
        newcomer = await P2P.create(quick(load_config(member.config_path)))
        await newcomer.start(bootstrap=False)
        value = os.urandom(2000)
        deadline = time.monotonic() + 120
        while True:  # until both old nodes have re-read the registry and take its stores
            await newcomer.sync_peers()
            try:
                key = await newcomer.store(value)
            except StoreFailed:
                key = None
            if key is not None and [await held(n, key) for n in nodes] == [value] * len(nodes):
                break
            assert time.monotonic() < deadline, "the added member was never admitted"
            await asyncio.sleep(0.3)
        assert member.address in {c.address for n in nodes for c in n.peers()}
    finally:
        if newcomer is not None:
            await newcomer.stop()
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
