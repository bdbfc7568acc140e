"""Go supernode configs in the Go layouts (tests/fixtures/go_configs) load and check as they are."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lumera_p2p.cli import app
from lumera_p2p.config import load_config
from lumera_p2p.config_go import GO_ONLY_SECTIONS, go_field_names
from lumera_p2p.errors import ConfigError, KeyringError
from lumera_p2p.identity.keyring import Keyring, os_backend_advice
from lumera_p2p.service import open_node_key

FIXTURES = Path(__file__).parent / "fixtures" / "go_configs"
FIXTURE_FILES = sorted(FIXTURES.glob("*.yml"))
# The Go system tests' key (their e2e mnemonic), whose address their configs name as identity.
GO_TEST_MNEMONIC = (
    "odor kiss switch swarm spell make planet bundle skate ozone path planet exclude butter "
    "atom ahead angle royal shuffle door prevent merry alter robust"
)
GO_TEST_ADDRESS = "lumera1jcus5g9v6r080rg7dljvvpr4cm8k7psqwg7tj8"


def copy_fixture(tmp_path: Path, name: str) -> Path:
    """The fixture in a fresh folder (its relative paths then resolve under tmp_path)."""
    target = tmp_path / name
    shutil.copy(FIXTURES / name, target)
    return target


def test_every_fixture_loads() -> None:
    assert len(FIXTURE_FILES) >= 6
    for path in FIXTURE_FILES:
        config = load_config(path)
        assert config.key_name
        assert config.p2p.port == 4445
        assert config.p2p.data_dir == (FIXTURES / "data" / "p2p").resolve()
        assert config.keyring.dir == (FIXTURES / "keys").resolve()


def test_fixtures_use_every_go_section_and_only_known_keys() -> None:
    known = set(go_field_names())
    used: set[str] = set()

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                name = f"{prefix}.{key}" if prefix else str(key)
                used.add(name)
                walk(name, value)

    for path in FIXTURE_FILES:
        walk("", yaml.safe_load(path.read_text()))
    assert used - known - {"supernode", "keyring", "p2p", "lumera", "raptorq", "log"} == set()
    assert set(GO_ONLY_SECTIONS) <= used


def test_sample_maps_the_supernode_section() -> None:
    config = load_config(FIXTURES / "supernode-sample.yml")
    assert config.key_name == "mykey"
    assert config.identity == "lumera1ccmw5plzuldntum2rz6kq6uq346vtrhrvwfzsa"
    assert config.p2p.listen_address == "0.0.0.0"
    assert config.keyring.backend == "os"
    assert (config.lumera.grpc_addr, config.lumera.chain_id) == ("localhost:9090", "lumera")


def test_system_test_config_honours_keyring_password() -> None:
    config = load_config(FIXTURES / "system-test.yml")
    assert config.keyring.backend == "test"
    assert config.keyring.passphrase_plain == "keyring-password"
    assert config.identity == GO_TEST_ADDRESS


def test_older_layouts() -> None:
    july = load_config(FIXTURES / "supernode-sample-2025-07.yml")
    assert july.log.level == "warning"  # Go's "warn"
    assert july.p2p.external_ip is None
    assert july.p2p.listen_address == "0.0.0.0"
    may = load_config(FIXTURES / "supernode-sample-2025-05.yml")
    assert may.keyring.backend == "file"
    assert may.keyring.passphrase_plain == "keyring-password"
    init = load_config(FIXTURES / "supernode-init.yml")
    assert init.identity is None  # Go writes identity: ""
    assert init.key_name == "test-key"


def test_password_opens_a_file_keyring(tmp_path: Path) -> None:
    """``keyring.password`` is the file backend's passphrase, as the 2025-05 sample meant it."""
    path = copy_fixture(tmp_path, "supernode-sample-2025-05.yml")
    ring = Keyring(tmp_path / "keys", "file", passphrase="keyring-password")
    ring.import_mnemonic("mykey", GO_TEST_MNEMONIC)
    text = path.read_text().replace(
        "lumera1ccmw5plzuldntum2rz6kq6uq346vtrhrvwfzsa", GO_TEST_ADDRESS
    )
    path.write_text(text)
    key = open_node_key(load_config(path))
    assert key.address == GO_TEST_ADDRESS
    path.write_text(text.replace('password: "keyring-password"', 'password: "wrong-password"'))
    with pytest.raises(KeyringError, match="wrong passphrase"):
        open_node_key(load_config(path))


def test_supernode_host_and_ip_address(tmp_path: Path) -> None:
    base = "key_name: n\np2p:\n  data_dir: d\n"
    cases = [
        ("supernode:\n  host: 10.0.0.1\n  ip_address: 10.0.0.2\n", "10.0.0.1"),
        ("supernode:\n  host: ''\n  ip_address: 10.0.0.2\n", "10.0.0.2"),
        ("supernode:\n  ip_address: 10.0.0.2\n", "10.0.0.2"),
    ]
    for extra, want in cases:
        (tmp_path / "c.yml").write_text(base + extra)
        assert load_config(tmp_path / "c.yml").p2p.listen_address == want
    (tmp_path / "c.yml").write_text(base.replace("d\n", "d\n  listen_address: 10.0.0.9\n") + extra)
    assert load_config(tmp_path / "c.yml").p2p.listen_address == "10.0.0.9"
    # A bad host is reported under the name the operator wrote.
    (tmp_path / "c.yml").write_text(base + "supernode:\n  host: 'not a host!'\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yml")
    assert info.value.field == "supernode.host"
    (tmp_path / "c.yml").write_text("p2p:\n  data_dir: d\nsupernode:\n  key_name: ''\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yml")
    assert info.value.field == "key_name"


def test_go_only_values_keep_go_types(tmp_path: Path) -> None:
    base = "key_name: n\np2p:\n  data_dir: d\n"
    good = (
        "lumera:\n  gas_price: 0.025\n  gas_adjustment: 1\n  fee_denom: ulume\n"
        "storage_challenge:\n  lep6:\n    recipient_read_timeout: 1m30s\n"
        "self_healing:\n  staging_dir: 12\n"
        "raptorq:\n"
        "supernode:\n  port: 4444\n"
    )
    (tmp_path / "c.yml").write_text(base + good)
    load_config(tmp_path / "c.yml")
    bad = {
        "lumera:\n  gas_adjustment_max_attempts: 2.5\n": "lumera.gas_adjustment_max_attempts",
        "supernode:\n  port: 70000\n": "supernode.port",
        "supernode:\n  gateway_port: '8002'\n": "supernode.gateway_port",
        "storage_challenge:\n  poll_interval_ms: -1\n": "storage_challenge.poll_interval_ms",
        "storage_challenge:\n  lep6: [1]\n": "storage_challenge.lep6",
        "self_healing: 5\n": "self_healing",
        "raptorq:\n  files_dir: [a]\n": "raptorq.files_dir",
    }
    for extra, field in bad.items():
        (tmp_path / "c.yml").write_text(base + extra)
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / "c.yml")
        assert info.value.field == field, extra


def test_config_check_passes_the_go_sample_with_the_os_warning(tmp_path: Path) -> None:
    path = copy_fixture(tmp_path, "supernode-sample.yml")
    result = CliRunner().invoke(app, ["config", "check", "--offline", str(path)])
    assert result.exit_code == 0, result.output
    warn = [line for line in result.stderr.splitlines() if line.startswith("warn")]
    assert len(warn) == 1
    assert os_backend_advice("mykey", str(tmp_path / "keys")) in warn[0]
    assert "lumerad keys export mykey" in warn[0]
    assert "lumera-p2p keys import mykey" in warn[0]
    assert "ok, 1 warning" in result.stderr
    strict = CliRunner().invoke(app, ["config", "check", "--offline", "--strict", str(path)])
    assert strict.exit_code == 1


def test_config_check_passes_the_go_test_config_once_its_key_exists(tmp_path: Path) -> None:
    path = copy_fixture(tmp_path, "system-test.yml")
    missing = CliRunner().invoke(app, ["config", "check", "--offline", str(path)])
    assert missing.exit_code == 1
    assert "no key named 'testkey1'" in missing.stderr
    # As the Go system tests do: the test key goes into the test keyring under keys/.
    Keyring(tmp_path / "keys", "test").import_mnemonic("testkey1", GO_TEST_MNEMONIC)
    result = CliRunner().invoke(app, ["config", "check", "--offline", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["ok", "ok", "skip", "skip", "ok", "skip"]
    assert GO_TEST_ADDRESS in lines[0]
    assert lines[-1].endswith(": ok")
    printed = yaml.safe_load(result.stdout)
    assert printed["keyring"]["passphrase_plain"] == "***"


def test_run_refuses_the_os_backend_with_the_same_advice(tmp_path: Path) -> None:
    path = copy_fixture(tmp_path, "supernode-sample.yml")
    proc = subprocess.run(
        [sys.executable, "-m", "lumera_p2p", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert errors == ["Error: " + os_backend_advice("mykey", str(tmp_path / "keys"))]
    assert not (tmp_path / "data").exists()  # refused before anything was created
