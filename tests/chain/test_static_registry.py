"""StaticRegistry: YAML round trip, validation errors that name the entry, Registry behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lumera_p2p.chain import StaticRegistry, Supernode, SupernodeState
from lumera_p2p.errors import ConfigError
from lumera_p2p.identity.keys import address_from_bytes

A = address_from_bytes(b"\x01" * 20)
B = address_from_bytes(b"\x02" * 20)
C = address_from_bytes(b"\x03" * 20)
EXTRA = address_from_bytes(b"\x09" * 20)
NOBODY = address_from_bytes(b"\x07" * 20)


def test_round_trip(tmp_path: Path) -> None:
    nodes = [
        Supernode(A, SupernodeState.ACTIVE, "127.0.0.1", 4445, 0),
        Supernode(B, SupernodeState.POSTPONED, "::1", 4446, 0, "lumeravaloper1b"),
        Supernode(C, SupernodeState.DISABLED, "node-c.local", 4447, 0),
    ]
    path = tmp_path / "registry.yaml"
    StaticRegistry(nodes, accounts=[EXTRA]).write(path)
    data = yaml.safe_load(path.read_text())
    assert data["supernodes"][0] == {
        "address": A,
        "host": "127.0.0.1",
        "port": 4445,
        "state": "ACTIVE",
    }
    again = StaticRegistry.from_file(path)
    assert again.to_data() == data
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


async def test_registry_answers(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"""
supernodes:
  - address: {A}
    host: 127.0.0.1
  - {{address: {B}, host: "[::1]", port: 5000, state: supernode_state_stopped}}
  - {{address: {C}, host: localhost, state: 6}}
accounts: ["{EXTRA}"]
"""
    )
    registry = StaticRegistry.from_file(path)
    nodes = await registry.list_supernodes()
    assert [n.address for n in nodes] == [A, B, C]
    assert nodes[0] == Supernode(A, SupernodeState.ACTIVE, "127.0.0.1", 4445, 0)
    assert nodes[1].state is SupernodeState.STOPPED
    assert nodes[1].host == "::1" and nodes[1].endpoint == "[::1]:5000"
    assert nodes[2].state is SupernodeState.STORAGE_FULL
    assert await registry.get_supernode(B) == nodes[1]
    assert await registry.get_supernode(NOBODY) is None
    assert await registry.is_registered_supernode(B)  # state not checked
    assert not await registry.is_registered_supernode(EXTRA)
    assert await registry.account_exists(EXTRA)
    assert await registry.account_exists(A)
    assert not await registry.account_exists(NOBODY)
    await registry.close()


def test_bare_list_is_accepted() -> None:
    registry = StaticRegistry.from_data([{"address": A, "host": "10.0.0.1"}])
    assert registry.to_data() == {
        "supernodes": [{"address": A, "host": "10.0.0.1", "port": 4445, "state": "ACTIVE"}]
    }


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        ("just text", "", "'supernodes' list"),
        ({"supernodes": "x"}, "supernodes", "must be a list"),
        ({"peers": []}, "peers", "unknown field"),
        ([{"host": "1.2.3.4"}], "supernodes[0].address", "is required"),
        ([{"address": "cosmos1xyz", "host": "1.2.3.4"}], "supernodes[0].address", "bech32"),
        ([{"address": 5, "host": "1.2.3.4"}], "supernodes[0].address", "lumera1"),
        ([{"address": A}], "supernodes[0].host", "is required"),
        ([{"address": A, "host": ""}], "supernodes[0].host", "IP address or hostname"),
        ([{"address": A, "host": "bad host"}], "supernodes[0].host", "neither"),
        ([{"address": A, "host": "h", "port": 0}], "supernodes[0].port", "1 to 65535"),
        ([{"address": A, "host": "h", "port": 70000}], "supernodes[0].port", "1 to 65535"),
        ([{"address": A, "host": "h", "port": "4445"}], "supernodes[0].port", "1 to 65535"),
        ([{"address": A, "host": "h", "port": True}], "supernodes[0].port", "1 to 65535"),
        ([{"address": A, "host": "h", "state": "RUNNING"}], "supernodes[0].state", "ACTIVE"),
        ([{"address": A, "host": "h", "state": 9}], "supernodes[0].state", "0-6"),
        ([{"address": A, "host": "h", "state": False}], "supernodes[0].state", "name or number"),
        ([{"address": A, "host": "h", "prt": 1}], "supernodes[0].prt", "unknown field"),
        ([{"address": A, "host": "h", "validator_address": 3}], "supernodes[0].validator", ""),
        ([{"address": A, "host": "h"}, "x"], "supernodes[1]", "must be a mapping"),
        (
            [{"address": A, "host": "h"}, {"address": B, "host": "h"}, {"address": A, "host": "i"}],
            "supernodes[2].address",
            "already listed at supernodes[0]",
        ),
        ({"supernodes": [], "accounts": "x"}, "accounts", "list"),
        ({"supernodes": [], "accounts": ["nope"]}, "accounts[0]", "bech32"),
    ],
)
def test_validation_names_the_entry(data: object, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        StaticRegistry.from_data(data)
    assert info.value.field.startswith(field)
    assert problem in info.value.problem


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="no such registry file"):
        StaticRegistry.from_file(missing)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("supernodes: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        StaticRegistry.from_file(bad_yaml)
    bad_entry = tmp_path / "entry.yaml"
    bad_entry.write_text(f"supernodes:\n  - address: {A}\n    host: h\n    port: -1\n")
    with pytest.raises(ConfigError) as info:
        StaticRegistry.from_file(bad_entry)
    assert info.value.field == "supernodes[0].port"
    assert str(bad_entry) in str(info.value)


def test_constructor_checks() -> None:
    node = Supernode(A, SupernodeState.ACTIVE, "127.0.0.1", 4445, 0)
    with pytest.raises(ValueError, match="twice"):
        StaticRegistry([node, node])
    with pytest.raises(ValueError, match="no host"):
        StaticRegistry([Supernode(B, SupernodeState.ACTIVE, None, 4445, 0)])
