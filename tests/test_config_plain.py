"""The plain form of a validated configuration (what a localnet node process reads): every
field comes back with the same value and type, read-only, and nothing else is accepted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from lumera_p2p.components import (
    dht_options,
    replication_options,
    server_limits,
    store_open_options,
    transport_options,
)
from lumera_p2p.config import Config, load_config
from lumera_p2p.config_plain import FORMAT, PlainSection, dump_plain, load_plain
from lumera_p2p.errors import ConfigError
from lumera_p2p.localnet import create_localnet

ADDR = "lumera1npvwllfr9dqr8erajqqr6s0vxnk2ak5530js3g"


def _full(tmp_path: Path) -> Config:
    data = {
        "key_name": "node",
        "identity": ADDR,
        "p2p": {
            "listen_address": "127.0.0.1",
            "port": 5000,
            "data_dir": "data",
            "bootstrap_nodes": f"{ADDR}@10.0.0.1:4445, {ADDR}@[::1]:4446",
            "min_peer_version": "v2.6.0",
        },
        "keyring": {"backend": "file", "dir": "keys", "passphrase_file": "pw.txt"},
        "lumera": {
            "grpc_addr": "https://grpc.example:443",
            "chain_id": "lumera-mainnet-1",
            "gas_adjustment": 1.3,
        },
        "store": {"synchronous": "normal", "max_storage_bytes": "2 GiB"},
        "replication": {"delete_redundant": True, "fetch_delay": 2.5},
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def _same(model: BaseModel, plain: Any, where: str = "config") -> None:
    assert isinstance(plain, PlainSection), where
    assert set(vars(plain)) == set(type(model).model_fields), where
    for name in type(model).model_fields:
        ours, theirs = getattr(model, name), getattr(plain, name)
        if isinstance(ours, BaseModel):
            _same(ours, theirs, f"{where}.{name}")
        else:
            assert theirs == ours, f"{where}.{name}"
            assert type(theirs) is type(ours), f"{where}.{name}"


@pytest.mark.parametrize("make", ["full", "localnet"])
def test_round_trip_keeps_every_field(tmp_path: Path, make: str) -> None:
    if make == "full":
        config = _full(tmp_path)
    else:
        config = load_config(create_localnet(tmp_path, 2)[1].config_path)
    path = tmp_path / "plain.json"
    path.write_text(dump_plain(config))
    plain = load_plain(path)
    _same(config, plain)
    # What the node builds from it is the same too.
    for build in (dht_options, replication_options, server_limits, transport_options):
        assert build(plain) == build(config)
    assert store_open_options(plain) == store_open_options(config)


def test_plain_config_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "plain.json"
    path.write_text(dump_plain(_full(tmp_path)))
    plain = load_plain(path)
    with pytest.raises(AttributeError, match="read-only"):
        plain.p2p.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        json.dumps({"format": "other", "config": {}}),
        json.dumps({"format": FORMAT}),
        json.dumps({"format": FORMAT, "config": {"value": 1}}),
        json.dumps({"format": FORMAT, "config": {"section": {"p2p": {"weird": 1}}}}),
        json.dumps({"format": FORMAT, "config": {"section": {"p2p": {"a": 1, "b": 2}}}}),
        json.dumps({"format": FORMAT, "config": {"section": {"x": {"bootstrap": [1]}}}}),
    ],
)
def test_anything_else_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "plain.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not a plain configuration"):
        load_plain(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a plain configuration"):
        load_plain(tmp_path / "nope.json")


def test_reading_a_plain_config_imports_no_pydantic(tmp_path: Path) -> None:
    path = tmp_path / "plain.json"
    path.write_text(dump_plain(_full(tmp_path)))
    code = (
        "import sys; from lumera_p2p.config_plain import load_plain; "
        f"c = load_plain({str(path)!r}); assert c.p2p.port == 5000; "
        "print(sorted(m for m in sys.modules if m.startswith('pydantic')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
