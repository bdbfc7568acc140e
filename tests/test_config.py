"""Configuration: defaults, path resolution, and one clear error per kind of bad value."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from lumera_p2p.cli import app
from lumera_p2p.config import BootstrapNode, Config, load_config
from lumera_p2p.errors import ConfigError
from lumera_p2p.identity.keyring import Keyring
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.localnet import create_localnet
from lumera_p2p.service import P2P
from lumera_p2p.store import limits

ADDR = "lumera1jcus5g9v6r080rg7dljvvpr4cm8k7psqwg7tj8"


def write(tmp_path: Path, data: Any, name: str = "config.yml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def minimal(**p2p: Any) -> dict[str, Any]:
    return {"key_name": "node", "p2p": {"data_dir": "data", **p2p}}


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, minimal()))
    assert isinstance(config, Config)
    assert config.key_name == "node"
    assert config.identity is None
    assert config.p2p.listen_address == "0.0.0.0"
    assert config.p2p.port == 4445
    assert config.p2p.data_dir == (tmp_path / "data").resolve()
    assert config.p2p.bootstrap_nodes == ()
    assert config.p2p.external_ip is None
    assert config.p2p.allow_private_peers is False
    assert config.p2p.bootstrap_refresh_interval == 600.0
    assert config.p2p.allowlist_refresh_interval == 30.0
    assert config.p2p.bucket_refresh_interval == 3600.0
    assert config.p2p.health_check_interval == 300.0
    assert config.p2p.version == "v2.6.2"
    assert config.p2p.min_peer_version is None
    assert config.lumera.registry_file is None
    assert config.keyring.backend == "test"
    assert config.keyring.dir == Path("~/.lumera").expanduser()
    assert config.keyring.passphrase_plain is None
    assert config.keyring.passphrase_env is None
    assert config.keyring.passphrase_file is None
    assert config.lumera.grpc_addr is None
    assert config.lumera.chain_id is None


def test_seed_example_section(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """
        key_name: mykey
        p2p:
          listen_address: "0.0.0.0"  # Network interface to listen on
          port: 4445                # Port for P2P communication
          data_dir: "~/.lumera/p2p"  # Directory for DHT data storage
          bootstrap_nodes: ""       # Optional comma-separated list of bootstrap nodes
          external_ip: ""           # Optional override for auto-detected external IP
        """
    )
    config = load_config(write(tmp_path, text))
    assert config.p2p.data_dir == Path("~/.lumera/p2p").expanduser()
    assert config.p2p.bootstrap_nodes == ()
    assert config.p2p.external_ip is None


def test_full_config_resolves(tmp_path: Path) -> None:
    data = {
        "key_name": "node",
        "identity": ADDR,
        "p2p": {
            "listen_address": "127.0.0.1",
            "port": 5000,
            "data_dir": "/abs/data",
            "bootstrap_nodes": f"{ADDR}@10.0.0.1:4445, {ADDR}@[::1]:4446,{ADDR}@node.example:1",
            "external_ip": "203.0.113.7",
        },
        "keyring": {"backend": "FILE", "dir": "keys", "passphrase_file": "pw.txt"},
        "lumera": {
            "grpc_addr": "https://grpc.example:443",
            "chain_id": "lumera-mainnet-1",
            "gas_adjustment": 1.3,
        },
        "raptorq": {"files_dir": "rq"},
    }
    config = load_config(write(tmp_path, data))
    assert config.identity == ADDR
    assert config.p2p.data_dir == Path("/abs/data")
    assert config.p2p.bootstrap_nodes == (
        BootstrapNode(ADDR, "10.0.0.1", 4445),
        BootstrapNode(ADDR, "::1", 4446),
        BootstrapNode(ADDR, "node.example", 1),
    )
    assert str(config.p2p.bootstrap_nodes[1]) == f"{ADDR}@[::1]:4446"
    assert config.keyring.backend == "file"
    assert config.keyring.dir == (tmp_path / "keys").resolve()
    assert config.keyring.passphrase_file == (tmp_path / "pw.txt").resolve()
    assert config.lumera.chain_id == "lumera-mainnet-1"


@pytest.mark.parametrize(
    ("version", "minimum", "want"),
    [
        ("v2.7.0", "v2.6.0", ("v2.7.0", "v2.6.0")),
        (" v2.6.2-testnet ", "2.6", ("v2.6.2-testnet", "2.6")),
        ("v3", "", ("v3", None)),
        ("v2.6.2", None, ("v2.6.2", None)),
        ("V1.0.0+build.7", "   ", ("V1.0.0+build.7", None)),
    ],
)
def test_version_and_minimum(
    tmp_path: Path, version: str, minimum: str | None, want: tuple[str, str | None]
) -> None:
    config = load_config(write(tmp_path, minimal(version=version, min_peer_version=minimum)))
    assert (config.p2p.version, config.p2p.min_peer_version) == want


def test_registry_file_resolves_against_the_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, {**minimal(), "lumera": {"registry_file": "reg.yml"}}))
    assert config.lumera.registry_file == (tmp_path / "reg.yml").resolve()


def test_bootstrap_nodes_as_list(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, minimal(bootstrap_nodes=[f"{ADDR}@127.0.0.1:9"])))
    assert config.p2p.bootstrap_nodes == (BootstrapNode(ADDR, "127.0.0.1", 9),)


def test_go_supernode_config_is_understood(tmp_path: Path) -> None:
    text = textwrap.dedent(
        f"""
        supernode:
          key_name: "mykey"
          identity: "{ADDR}"
          host: "127.0.0.2"
          port: 4444
          gateway_port: 8002
        keyring:
          backend: "test"
          dir: "keys"
        p2p:
          port: 4445
          data_dir: "data/p2p"
        lumera:
          grpc_addr: "localhost:9090"
          chain_id: "testing"
        raptorq:
          files_dir: "raptorq_files"
        storage_challenge:
          enabled: true
        """
    )
    config = load_config(write(tmp_path, text))
    assert config.key_name == "mykey"
    assert config.identity == ADDR
    assert config.p2p.listen_address == "127.0.0.2"


def test_empty_file_names_the_missing_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""))
    assert info.value.field == "key_name"


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"p2p": {"data_dir": "d"}}, "key_name", "required"),
    ({"key_name": "", "p2p": {"data_dir": "d"}}, "key_name", "at least 1"),
    ({"key_name": "n"}, "p2p", "required"),
    ({"key_name": "n", "p2p": "x"}, "p2p", ""),
    ({"key_name": "n", "p2p": {}}, "p2p.data_dir", "required"),
    (minimal(data_dir=""), "p2p.data_dir", "empty"),
    ({"key_name": "n", "p2p": {"data_dir": 5}}, "p2p.data_dir", "path"),
    (minimal(port=0), "p2p.port", "greater than or equal to 1"),
    (minimal(port=65536), "p2p.port", "less than or equal to 65535"),
    (minimal(port="4445"), "p2p.port", "integer"),
    (minimal(port=True), "p2p.port", "integer"),
    (minimal(port=44.5), "p2p.port", "integer"),
    (minimal(listen_address="not a host!"), "p2p.listen_address", "neither"),
    (minimal(listen_address=7), "p2p.listen_address", "string"),
    (minimal(bootstrap_nodes="lumera1abc@1.2.3.4:5"), "p2p.bootstrap_nodes", "identity"),
    (minimal(bootstrap_nodes=f"{ADDR}1.2.3.4:5"), "p2p.bootstrap_nodes", "identity@host:port"),
    (minimal(bootstrap_nodes=f"{ADDR}@1.2.3.4"), "p2p.bootstrap_nodes", "host:port"),
    (minimal(bootstrap_nodes=f"{ADDR}@1.2.3.4:0"), "p2p.bootstrap_nodes", "port"),
    (minimal(bootstrap_nodes=f"{ADDR}@1.2.3.4:99999"), "p2p.bootstrap_nodes", "port"),
    (minimal(bootstrap_nodes=f"{ADDR}@::1:80"), "p2p.bootstrap_nodes", "brackets"),
    (minimal(bootstrap_nodes=f"{ADDR}@bad_host!:80"), "p2p.bootstrap_nodes", "neither"),
    (minimal(bootstrap_nodes=5), "p2p.bootstrap_nodes", "string"),
    (minimal(bootstrap_nodes=[f"{ADDR}@1.2.3.4:5"] * 257), "p2p.bootstrap_nodes", "at most 256"),
    (minimal(external_ip="example.com"), "p2p.external_ip", "not an IP"),
    (minimal(external_ip=12), "p2p.external_ip", "IP"),
    (minimal(listen_adress="0.0.0.0"), "p2p.listen_adress", "unknown field"),
    ({**minimal(), "identity": "cosmos1xyz"}, "identity", "bech32"),
    ({**minimal(), "keyring": {"backend": "memory"}}, "keyring.backend", "use 'file'"),
    ({**minimal(), "keyring": {"backend": "kwallet"}}, "keyring.backend", "'test', 'file' or 'os'"),
    (
        {**minimal(), "keyring": {"passphrase_plain": "a", "passphrase_env": "B"}},
        "keyring",
        "at most one",
    ),
    ({**minimal(), "keyring": {"pasword": "x"}}, "keyring.pasword", "did you mean 'password'"),
    (
        {**minimal(), "keyring": {"password": "x", "passphrase_env": "E"}},
        "keyring.password",
        "at most one",
    ),
    (
        {**minimal(), "lumera": {"grpc_addr": "host:notaport", "chain_id": "c"}},
        "lumera.grpc_addr",
        "port",
    ),
    (
        {**minimal(), "lumera": {"grpc_addr": "bad host", "chain_id": "c"}},
        "lumera.grpc_addr",
        "neither",
    ),
    ({**minimal(), "lumera": {"grpc_addr": "localhost:9090"}}, "lumera", "chain_id is required"),
    ({**minimal(), "supernode": {"key_name": "other"}}, "supernode.key_name", "disagrees"),
    ({**minimal(), "supernode": {"hots": "1.2.3.4"}}, "supernode.hots", "did you mean 'host'"),
    ({**minimal(), "lumera": {"gas_adjustmnt": 1.3}}, "lumera.gas_adjustmnt", "gas_adjustment"),
    ({**minimal(), "lumera": {"gas_padding": -1}}, "lumera.gas_padding", "greater than"),
    ({**minimal(), "log": {"level": "loud"}}, "log.level", "'debug', 'info'"),
    ({**minimal(), "log": {"format": "xml"}}, "log.format", "'text' or 'json'"),
    ({**minimal(), "log": {"file": 3}}, "log.file", "path"),
    ({**minimal(), "log": {"colour": True}}, "log.colour", "unknown field"),
    ({**minimal(), "logging": {"level": "info"}}, "logging", "did you mean 'log'"),
    ({**minimal(), "raptorq": {"files_dri": "x"}}, "raptorq.files_dri", "files_dir"),
    (
        {**minimal(), "storage_challenge": {"lep6": {"recheck": {"enabld": True}}}},
        "storage_challenge.lep6.recheck.enabld",
        "did you mean 'enabled'",
    ),
    (
        {**minimal(), "storage_challenge": {"lep6": {"recipient_read_timeout": 30}}},
        "storage_challenge.lep6.recipient_read_timeout",
        "Go duration",
    ),
    ({**minimal(), "self_healing": {"enabled": "maybe"}}, "self_healing.enabled", "boolean"),
    ({**minimal(), "unexpected": 1}, "unexpected", "unknown field"),
    (minimal(health_check_interval=0), "p2p.health_check_interval", "greater than 0"),
    (minimal(bucket_refresh_interval=-5), "p2p.bucket_refresh_interval", "greater than 0"),
    (minimal(allowlist_refresh_interval="soon"), "p2p.allowlist_refresh_interval", "number"),
    (minimal(bootstrap_refresh_interval=10**9), "p2p.bootstrap_refresh_interval", "less than"),
    (minimal(allow_private_peers="maybe"), "p2p.allow_private_peers", "boolean"),
    (minimal(version=""), "p2p.version", "must not be empty"),
    (minimal(version="dev"), "p2p.version", "not a version such as"),
    (minimal(version="v2.6.2 beta"), "p2p.version", "no spaces"),
    (minimal(version="v2.6.2\x00"), "p2p.version", "printable"),
    (minimal(version="v" + "1" * 70), "p2p.version", "at most 64"),
    (minimal(version=2.6), "p2p.version", "string"),
    (minimal(min_peer_version="latest"), "p2p.min_peer_version", "not a version such as"),
    (minimal(min_peer_version="v.2"), "p2p.min_peer_version", "not a version such as"),
    (minimal(min_peer_version=2), "p2p.min_peer_version", "version string"),
]


@pytest.mark.parametrize(("data", "field", "problem"), BAD, ids=[f"{b[1]}:{b[2]}" for b in BAD])
def test_bad_values_name_the_field(
    tmp_path: Path, data: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    assert info.value.field == field
    assert problem in info.value.problem
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("key_name: [unclosed", "not valid YAML at line"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("just a string", "top level must be a mapping"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        load_config(write(tmp_path, text))
    assert info.value.field == ""


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yml")
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.yml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)


def test_cli_config_check_ok(tmp_path: Path) -> None:
    Keyring(tmp_path / "keys", "test").add("node", PrivateKey.generate()[0])
    data = {
        **minimal(bootstrap_nodes=f"{ADDR}@127.0.0.1:4445"),
        "keyring": {"dir": "keys", "passphrase_plain": "secret"},
    }
    path = write(tmp_path, data)
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["p2p"]["port"] == 4445
    assert printed["p2p"]["data_dir"] == str((tmp_path / "data").resolve())
    assert printed["keyring"]["passphrase_plain"] == "***"
    assert "secret" not in result.output


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, minimal(port=70000))
    # A real subprocess: the exit status and stderr an operator sees, with no traceback.
    proc = subprocess.run(
        [sys.executable, "-m", "lumera_p2p", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "p2p.port" in lines[0]
    assert "65535" in lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_cli_missing_config_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["config", "check", str(tmp_path / "nope.yml")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def with_store(**store: Any) -> dict[str, Any]:
    return {**minimal(), "store": store}


def test_store_defaults_match_the_store(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, minimal()))
    assert config.store.synchronous == "full"
    assert config.store.max_storage_bytes == 0
    assert (
        config.store.max_replication_keys_per_peer == limits.DEFAULT_MAX_REPLICATION_KEYS_PER_PEER
    )
    assert config.store.max_replication_keys == limits.DEFAULT_MAX_REPLICATION_KEYS


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (0, 0),
        (123_456, 123_456),
        ("123456", 123_456),
        ("10GiB", 10 * 2**30),
        ("10 gib", 10 * 2**30),
        ("500 MB", 500_000_000),
        ("1.5TiB", 3 * 2**39),
        ("1.1GB", 1_100_000_000),
        ("64KiB", 65_536),
        ("2 kB", 2_000),
    ],
)
def test_store_max_storage_bytes_takes_sizes(tmp_path: Path, given: Any, expected: int) -> None:
    config = load_config(write(tmp_path, with_store(max_storage_bytes=given)))
    assert config.store.max_storage_bytes == expected


def test_store_synchronous_is_case_insensitive(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, with_store(synchronous=" NORMAL ")))
    assert config.store.synchronous == "normal"


STORE_BAD: list[tuple[dict[str, Any], str, str]] = [
    (with_store(synchronous="off"), "store.synchronous", "'full' or 'normal'"),
    (with_store(synchronous=1), "store.synchronous", "'full' or 'normal'"),
    (with_store(max_storage_bytes=-1), "store.max_storage_bytes", "greater than or equal to 0"),
    (with_store(max_storage_bytes=2**63), "store.max_storage_bytes", "less than or equal"),
    (with_store(max_storage_bytes="ten gigs"), "store.max_storage_bytes", "not a size"),
    (with_store(max_storage_bytes="10 GiBs"), "store.max_storage_bytes", "not a size"),
    (with_store(max_storage_bytes="-5GB"), "store.max_storage_bytes", "not a size"),
    (with_store(max_storage_bytes=1.5), "store.max_storage_bytes", "whole number of bytes"),
    (with_store(max_storage_bytes=True), "store.max_storage_bytes", "whole number of bytes"),
    (with_store(max_storage_bytes=[1]), "store.max_storage_bytes", "whole number of bytes"),
    (
        with_store(max_replication_keys_per_peer=-1),
        "store.max_replication_keys_per_peer",
        "greater than or equal to 0",
    ),
    (
        with_store(max_replication_keys_per_peer="many"),
        "store.max_replication_keys_per_peer",
        "integer",
    ),
    (with_store(max_replication_keys=1.5), "store.max_replication_keys", "integer"),
    (with_store(max_replication_keys=10**20), "store.max_replication_keys", "less than"),
    (with_store(max_storage=5), "store.max_storage", "unknown field"),
    ({**minimal(), "store": "big"}, "store", ""),
]


@pytest.mark.parametrize(
    ("data", "field", "problem"), STORE_BAD, ids=[f"{b[1]}:{b[2]}" for b in STORE_BAD]
)
def test_bad_store_values_name_the_field(
    tmp_path: Path, data: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    assert info.value.field == field
    assert problem in info.value.problem
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("option", "value", "seen"),
    [
        ("synchronous", "normal", lambda store: store.synchronous),
        ("max_storage_bytes", "2MiB", lambda store: store.limits.max_storage_bytes),
        (
            "max_replication_keys_per_peer",
            7,
            lambda store: store.limits.max_replication_keys_per_peer,
        ),
        ("max_replication_keys", 9, lambda store: store.limits.max_replication_keys),
    ],
)
async def test_each_store_option_reaches_the_local_store(
    tmp_path: Path, option: str, value: Any, seen: Any
) -> None:
    (node,) = create_localnet(tmp_path, 1)
    data = yaml.safe_load(node.config_path.read_text())
    data["store"] = {option: value}
    node.config_path.write_text(yaml.safe_dump(data))
    config = load_config(node.config_path)
    p2p = await P2P.create(config)  # builds the node and opens its store; listens on nothing
    try:
        expected = config.store.open_options()[option]  # type: ignore[literal-required]
        assert seen(p2p.db) == expected != getattr(type(config.store)(), option)
    finally:
        await p2p.stop()
