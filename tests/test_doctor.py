"""``doctor``: each of the seed's troubleshooting cases against real sockets, a real gRPC chain,
real nodes and real files; and a healthy node that is all green."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from typer.testing import CliRunner

from lumera_p2p.chain._generated.lumera.supernode.v1 import supernode_pb2
from lumera_p2p.chain.registry import Supernode, SupernodeState
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.cli import app
from lumera_p2p.config import Config, config_from_mapping
from lumera_p2p.doctor import (
    Facts,
    PeerTarget,
    check_external_ip,
    check_peer,
    check_port,
    check_registration,
    run_doctor,
)
from lumera_p2p.identity.keyring import Keyring
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.localnet import free_ports
from lumera_p2p.net.interfaces import InterfaceAddress, local_addresses
from lumera_p2p.preflight import LOW_FREE_BYTES, Status, Verdict, check_data_dir
from lumera_p2p.service import P2P
from tests.chain.fake_chain import CHAIN_ID, ChainData, start_server

pytestmark = pytest.mark.timeout(120)
#: The async tests share the module's loop (the chain and the two nodes run on it).
on_loop = pytest.mark.asyncio(loop_scope="module")

HOST = "127.0.0.1"


def record(address: str, port: int, state: int = 1) -> supernode_pb2.SuperNode:
    return supernode_pb2.SuperNode(
        validator_address=f"lumeravaloper1{address[-8:]}",
        states=[supernode_pb2.SuperNodeStateRecord(state=state, height=10)],
        prev_ip_addresses=[supernode_pb2.IPAddressHistory(address=HOST, height=10)],
        supernode_account=address,
        p2p_port=str(port),
    )


@dataclass
class World:
    """A fake chain listing us and one peer, the peer running, a refuser that does not list
    us, and our keyring: what each case changes one thing of."""

    tmp: Path
    chain: ChainData
    chain_port: int
    me: str
    my_port: int
    peer: P2P
    refuser: P2P

    def config(self, **changes: Any) -> Config:
        data: dict[str, Any] = {
            "key_name": "node",
            "p2p": {
                "listen_address": HOST,
                "port": self.my_port,
                "data_dir": "data",
                "allow_private_peers": True,
            },
            "keyring": {"dir": "keys"},
            "lumera": {"grpc_addr": f"{HOST}:{self.chain_port}", "chain_id": CHAIN_ID},
        }
        for dotted, value in changes.items():
            section, _, key = dotted.rpartition("__")
            if section:
                data[section][key] = value
            else:
                data[key] = value
        return config_from_mapping(data, self.tmp)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("doctor")
    me = Keyring(tmp / "keys", "test").add("node", PrivateKey.generate()[0]).address
    peer_key, refuser_key = PrivateKey.generate()[0], PrivateKey.generate()[0]
    my_port, peer_port, refuser_port = free_ports(3)
    chain = ChainData(
        records=[record(me, my_port), record(peer_key.address, peer_port)],
        accounts={me, peer_key.address},
    )
    server, chain_port = await start_server(chain)
    lumera = {"grpc_addr": f"{HOST}:{chain_port}", "chain_id": CHAIN_ID}

    def node_config(name: str, port: int, **extra: Any) -> Config:
        p2p = {"listen_address": HOST, "port": port, "data_dir": name, "allow_private_peers": True}
        return config_from_mapping({"key_name": name, "p2p": p2p, **extra}, tmp)

    peer = await P2P.create(node_config("peer", peer_port, lumera=lumera), key=peer_key)
    # The refuser's registry lists only itself and the peer: our handshake is refused.
    others = StaticRegistry(
        [
            Supernode(refuser_key.address, SupernodeState.ACTIVE, HOST, refuser_port, 1),
            Supernode(peer_key.address, SupernodeState.ACTIVE, HOST, peer_port, 1),
        ]
    )
    refuser = await P2P.create(
        node_config(
            "refuser",
            refuser_port,
            p2p={
                "listen_address": HOST,
                "port": refuser_port,
                "data_dir": "refuser",
                "allow_private_peers": True,
                "bootstrap_nodes": f"{peer_key.address}@{HOST}:{peer_port}",
            },
        ),
        key=refuser_key,
        registry=others,
    )
    try:
        await peer.start(bootstrap=False)
        await refuser.start(bootstrap=False)
        yield World(tmp, chain, chain_port, me, my_port, peer, refuser)
    finally:
        await peer.stop()
        await refuser.stop()
        await server.stop(None)


def by_check(verdicts: list[Verdict]) -> dict[str, Verdict]:
    return {v.check: v for v in verdicts}


def free_space_status(path: Path) -> Status:
    return Status.OK if shutil.disk_usage(path).free >= LOW_FREE_BYTES else Status.WARN


@on_loop
async def test_a_healthy_node_is_all_green(world: World) -> None:
    verdicts = await run_doctor(world.config(), {}, timeout=5.0)
    found = by_check(verdicts)
    assert list(found) == [
        "keyring",
        "data_dir",
        "log.file",
        "registry_file",
        "peers",
        "chain",
        "registration",
        "port",
        "external_ip",
        "advertised",
        f"peer {world.peer.address[:16]}…@{HOST}:{world.peer.port}",
        "bootstrap",
    ]
    expected = {name: Status.OK for name in found}
    expected.update(
        {
            "log.file": Status.SKIP,
            "registry_file": Status.SKIP,
            "data_dir": free_space_status(world.tmp),
        }
    )
    assert {n: v.status for n, v in found.items()} == expected, verdicts
    assert "lists" in found["registration"].detail and "ACTIVE" in found["registration"].detail
    assert (
        "Ping answered" in found[f"peer {world.peer.address[:16]}…@{HOST}:{world.peer.port}"].detail
    )
    assert found["bootstrap"].detail.startswith("1 of 1")


@on_loop
async def test_a_wrong_external_ip(world: World) -> None:
    found = by_check(await run_doctor(world.config(p2p__external_ip="203.0.113.9"), {}))
    advertised = found["advertised"]
    assert advertised.failed
    assert "advertises 203.0.113.9 (from p2p.external_ip)" in advertised.detail
    assert f"{HOST}:{world.my_port}" in advertised.detail
    assert f"set p2p.external_ip to {HOST}, or remove it" in advertised.fix
    assert found["external_ip"].failed
    assert "neither an address of this machine" in found["external_ip"].detail
    # An address of this machine that is not the registered one: the interface check passes,
    # the comparison with the chain does not.
    others = [a for a in local_addresses() if a.address != HOST and ":" not in a.address]
    if others:
        found = by_check(await run_doctor(world.config(p2p__external_ip=others[0].address), {}))
        assert found["external_ip"].status is Status.OK
        assert others[0].interface in found["external_ip"].detail
        assert found["advertised"].failed


def test_external_ip_against_the_interfaces(tmp_path: Path) -> None:
    nics = [InterfaceAddress("eth0", "10.1.2.3"), InterfaceAddress("lo", HOST)]

    def verdict(ip: str | None) -> Verdict:
        p2p = {"data_dir": "d", "external_ip": ip}
        return check_external_ip(config_from_mapping({"key_name": "n", "p2p": p2p}, tmp_path), nics)

    assert verdict(None).status is Status.OK
    assert verdict("10.1.2.3").status is Status.OK and "eth0" in verdict("10.1.2.3").detail
    public = verdict("8.8.8.8")  # public, not ours: right only behind NAT
    assert public.status is Status.WARN and "NAT" in public.detail
    assert "eth0 10.1.2.3" in public.detail
    assert verdict("10.9.9.9").failed  # private and not ours: nobody can reach it


@on_loop
async def test_an_unreachable_chain(world: World) -> None:
    [dead] = free_ports(1)
    found = by_check(
        await run_doctor(world.config(lumera__grpc_addr=f"{HOST}:{dead}"), {}, timeout=2.0)
    )
    assert found["chain"].failed and "cannot reach" in found["chain"].detail
    assert "lumera.grpc_addr" in found["chain"].fix
    assert found["registration"].status is Status.SKIP
    assert found["bootstrap"].failed and "no peers to try" in found["bootstrap"].detail
    # A chain that answers as another chain is as useless.
    found = by_check(await run_doctor(world.config(lumera__chain_id="lumera-other"), {}))
    assert found["chain"].failed and "serves chain" in found["chain"].detail


@on_loop
async def test_an_unwritable_data_dir(world: World) -> None:
    # /proc takes no new directories and no files, even from root.
    found = by_check(await run_doctor(world.config(p2p__data_dir="/proc/self/lumera/data"), {}))
    assert found["data_dir"].failed
    assert "cannot be created" in found["data_dir"].detail
    assert "p2p.data_dir" in found["data_dir"].fix
    found = by_check(await run_doctor(world.config(p2p__data_dir="/proc/self"), {}))
    assert found["data_dir"].failed and "not writable" in found["data_dir"].detail


def test_free_space_thresholds(tmp_path: Path) -> None:
    config = config_from_mapping({"key_name": "n", "p2p": {"data_dir": "d"}}, tmp_path)
    free = shutil.disk_usage(tmp_path).free
    assert check_data_dir(config, min_free=1, low_free=2).status is Status.OK
    low = check_data_dir(config, min_free=1, low_free=free + (1 << 30))
    assert low.status is Status.WARN and "GB free" in low.detail
    full = check_data_dir(config, min_free=free + (1 << 30), low_free=free + (2 << 30))
    assert full.failed and "writes will fail" in full.detail and "free space" in full.fix
    capped = config_from_mapping(
        {"key_name": "n", "p2p": {"data_dir": "d"}, "store": {"max_storage_bytes": free * 2}},
        tmp_path,
    )
    assert check_data_dir(capped, min_free=1).status is Status.WARN
    assert "max_storage_bytes" in check_data_dir(capped, min_free=1).detail
    assert not (tmp_path / "d").exists()  # the probe created nothing that stayed


@on_loop
async def test_a_missing_key(world: World) -> None:
    found = by_check(await run_doctor(world.config(key_name="absent"), {}))
    assert found["keyring"].failed and "no key named 'absent'" in found["keyring"].detail
    assert "lumera-p2p keys add absent" in found["keyring"].fix
    assert found["registration"].status is Status.SKIP
    assert found["bootstrap"].status is Status.SKIP


@on_loop
async def test_a_bootstrap_node_that_refuses_us(world: World) -> None:
    refuser, peer = world.refuser, world.peer
    [dead] = free_ports(1)
    wrong_identity = f"{peer.address}@{HOST}:{refuser.port}"
    nodes = (
        f"{refuser.address}@{HOST}:{refuser.port},{wrong_identity},{refuser.address}@{HOST}:{dead}"
    )
    verdicts = await run_doctor(world.config(p2p__bootstrap_nodes=nodes), {}, timeout=3.0)
    peers = [v for v in verdicts if v.check.startswith("peer ")]
    assert [v.status for v in peers] == [Status.FAIL] * 3, peers
    refused, impostor, down = peers
    assert f"does not admit {world.me}" in refused.detail
    assert f"register {world.me}" in refused.fix
    assert "is another node" in impostor.detail and "identity" in impostor.fix
    assert "does not accept connections" in down.detail
    summary = by_check(verdicts)["bootstrap"]
    assert summary.failed and "none of 3 from p2p.bootstrap_nodes" in summary.detail
    # The same node with the peer that admits us among them: bootstrap works.
    both = f"{refuser.address}@{HOST}:{refuser.port},{peer.address}@{HOST}:{peer.port}"
    summary = by_check(await run_doctor(world.config(p2p__bootstrap_nodes=both), {}))["bootstrap"]
    assert summary.status is Status.OK and summary.detail.startswith("1 of 2")


@on_loop
async def test_registration_states(world: World) -> None:
    key = Keyring(world.tmp / "keys", "test").private_key("node")
    config = world.config()

    def facts(state: SupernodeState | None) -> Facts:
        listed = [] if state is None else [Supernode(key.address, state, HOST, world.my_port, 1)]
        return Facts(key, listed, [])

    assert check_registration(config, facts(None)).failed
    assert "does not list" in check_registration(config, facts(None)).detail
    assert check_registration(config, facts(SupernodeState.POSTPONED)).status is Status.WARN
    assert check_registration(config, facts(SupernodeState.STOPPED)).failed
    assert check_registration(config, facts(SupernodeState.ACTIVE)).status is Status.OK
    # Registered on another port than the node listens on.
    world.chain.records[0] = record(world.me, world.my_port + 1)
    try:
        found = by_check(await run_doctor(config, {}))
    finally:
        world.chain.records[0] = record(world.me, world.my_port)
    assert found["advertised"].failed and f"port {world.my_port + 1}" in found["advertised"].detail


@on_loop
async def test_the_port(world: World) -> None:
    config = world.config()
    assert check_port(config).status is Status.OK
    with socket.socket() as taken:
        taken.bind((HOST, world.my_port))
        taken.listen(1)
        busy = check_port(config)
    assert busy.failed and "in use by another program" in busy.detail
    # The node of this very config holds it: that is fine.
    node = await P2P.create(config)
    await node.start(bootstrap=False)
    try:
        mine = await asyncio.to_thread(check_port, config)
    finally:
        await node.stop()
    assert mine.status is Status.OK and "node running on this data_dir" in mine.detail
    elsewhere = check_port(world.config(p2p__listen_address="192.0.2.250"))
    assert elsewhere.failed and "not an address of this machine" in elsewhere.detail


@on_loop
async def test_check_peer_times_out_on_a_silent_listener(world: World) -> None:
    key = Keyring(world.tmp / "keys", "test").private_key("node")
    silent = await asyncio.start_server(lambda r, w: None, HOST, 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        verdict = await check_peer(world.config(), key, PeerTarget(world.me, HOST, port), 0.5)
    finally:
        silent.close()
    assert verdict.failed and "dropped the secure handshake" in verdict.detail


@on_loop
async def test_the_command(world: World) -> None:
    path = world.tmp / "config.yml"
    doc = yaml.safe_load(yaml.safe_dump(world.config().redacted()))
    path.write_text(yaml.safe_dump(doc))
    runner = CliRunner()
    good = await asyncio.to_thread(runner.invoke, app, ["doctor", "--config", str(path), "--json"])
    assert good.exit_code == 0, good.output
    report = json.loads(good.stdout)
    assert report["ok"] is True and report["failed"] == 0
    assert {c["check"] for c in report["checks"]} >= {"chain", "registration", "bootstrap"}
    doc["key_name"] = "absent"
    path.write_text(yaml.safe_dump(doc))
    bad = await asyncio.to_thread(runner.invoke, app, ["doctor", "-c", str(path)])
    assert bad.exit_code == 1
    assert bad.stdout.splitlines()[0].startswith("fail  keyring: no key named 'absent'")
    assert "checks failed" in bad.stdout.splitlines()[-1]
    path.write_text("p2p: {port: 70000}\n")
    assert runner.invoke(app, ["doctor", "-c", str(path)]).exit_code == 2
