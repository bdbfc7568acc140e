"""Pre-flight checks: each verdict against real keyrings, directories, files and a gRPC chain."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from lumera_p2p import preflight
from lumera_p2p.chain.registry import Supernode, SupernodeState
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.cli import app
from lumera_p2p.config import Config, config_from_mapping
from lumera_p2p.identity.keyring import Keyring
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.preflight import (
    Status,
    Verdict,
    check_chain,
    check_data_dir,
    check_keyring,
    check_log_file,
    check_peers_source,
    check_registry_file,
    run_preflight,
)
from tests.chain.fake_chain import CHAIN_ID, ChainData, start_server

PASSPHRASE = "correct horse battery"
OTHER = "lumera1jcus5g9v6r080rg7dljvvpr4cm8k7psqwg7tj8"


def config(tmp_path: Path, **sections: Any) -> Config:
    data: dict[str, Any] = {"key_name": "node", "p2p": {"data_dir": "data"}}
    for name, value in sections.items():
        data[name] = {**data.get(name, {}), **value} if isinstance(value, dict) else value
    return config_from_mapping(data, tmp_path)


def test_keyring_ok_test_backend(tmp_path: Path) -> None:
    info = Keyring(tmp_path / "keys", "test").add("node", PrivateKey.generate()[0])
    verdict = check_keyring(config(tmp_path, keyring={"dir": "keys"}), {})
    assert verdict.status is Status.OK, verdict
    assert info.address in verdict.detail
    with_identity = config(tmp_path, keyring={"dir": "keys"}, identity=info.address)
    assert check_keyring(with_identity, {}).status is Status.OK


def test_keyring_missing_key_or_dir(tmp_path: Path) -> None:
    verdict = check_keyring(config(tmp_path, keyring={"dir": "nowhere"}), {})
    assert verdict.failed
    assert "no key named 'node'" in verdict.detail
    assert "lumera-p2p keys add node" in verdict.fix
    Keyring(tmp_path / "keys", "test").add("other", PrivateKey.generate()[0])
    assert check_keyring(config(tmp_path, keyring={"dir": "keys"}), {}).failed


def test_keyring_identity_mismatch(tmp_path: Path) -> None:
    info = Keyring(tmp_path / "keys", "test").add("node", PrivateKey.generate()[0])
    verdict = check_keyring(config(tmp_path, keyring={"dir": "keys"}, identity=OTHER), {})
    assert verdict.failed
    assert info.address in verdict.detail
    assert f"identity: {info.address}" in verdict.fix


def test_keyring_file_backend_passphrases(tmp_path: Path) -> None:
    Keyring(tmp_path / "keys", "file", passphrase=PASSPHRASE).add("node", PrivateKey.generate()[0])
    ring = {"dir": "keys", "backend": "file"}
    (tmp_path / "pw").write_text(PASSPHRASE + "\n")
    ok = [
        check_keyring(config(tmp_path, keyring={**ring, "passphrase_plain": PASSPHRASE}), {}),
        check_keyring(
            config(tmp_path, keyring={**ring, "passphrase_env": "PW"}), {"PW": PASSPHRASE}
        ),
        check_keyring(config(tmp_path, keyring={**ring, "passphrase_file": "pw"}), {}),
        check_keyring(config(tmp_path, keyring={**ring, "password": PASSPHRASE}), {}),
    ]
    assert [v.status for v in ok] == [Status.OK] * 4, ok
    assert "unlocked" in ok[0].detail
    none = check_keyring(config(tmp_path, keyring=ring), {})
    assert none.failed and "needs a passphrase" in none.detail
    unset = check_keyring(config(tmp_path, keyring={**ring, "passphrase_env": "PW"}), {})
    assert unset.failed and "'PW' is not set" in unset.detail
    absent = check_keyring(config(tmp_path, keyring={**ring, "passphrase_file": "nope"}), {})
    assert absent.failed and "cannot read keyring passphrase file" in absent.detail
    bad = "not-the-right-one"
    wrong = check_keyring(config(tmp_path, keyring={**ring, "passphrase_plain": bad}), {})
    assert wrong.failed and "wrong passphrase" in wrong.detail
    assert PASSPHRASE not in wrong.line() and bad not in wrong.line()


def test_keyring_os_backend_is_a_warning_with_the_fix(tmp_path: Path) -> None:
    verdict = check_keyring(config(tmp_path, keyring={"backend": "os", "dir": "keys"}), {})
    assert verdict.status is Status.WARN
    assert "'run' refuses" in verdict.detail
    assert "lumerad keys export node" in verdict.detail
    assert "keyring.backend: file" in verdict.detail


def test_data_dir(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    assert check_data_dir(config(tmp_path)).status is Status.OK
    assert list((tmp_path / "data").iterdir()) == []  # the probe file is gone
    fresh = check_data_dir(config(tmp_path, p2p={"data_dir": "new/deeper"}))
    assert fresh.status is Status.OK and "will be created" in fresh.detail
    assert not (tmp_path / "new").exists()  # checking creates nothing
    (tmp_path / "file").write_text("x")
    for where in ("file", "file/under"):
        verdict = check_data_dir(config(tmp_path, p2p={"data_dir": where}))
        assert verdict.failed, verdict
        assert "not a directory" in verdict.detail
        assert "p2p.data_dir" in verdict.fix


def test_data_dir_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:
        # Root writes through any mode bits: let creating the probe file fail as it would.
        def refuse(*_args: object, **_kwargs: object) -> tuple[int, str]:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(preflight.tempfile, "mkstemp", refuse)
    try:
        verdict = check_data_dir(config(tmp_path, p2p={"data_dir": "locked"}))
        assert verdict.failed
        assert "not writable: Permission denied" in verdict.detail
    finally:
        locked.chmod(0o700)


def test_log_file(tmp_path: Path) -> None:
    assert check_log_file(config(tmp_path)).status is Status.SKIP
    assert check_log_file(config(tmp_path, log={"file": "logs/node.log"})).status is Status.OK
    (tmp_path / "adir").mkdir()
    assert check_log_file(config(tmp_path, log={"file": "adir"})).failed
    (tmp_path / "afile").write_text("")
    assert check_log_file(config(tmp_path, log={"file": "afile/x.log"})).failed


def test_registry_file(tmp_path: Path) -> None:
    assert check_registry_file(config(tmp_path)).status is Status.SKIP
    missing = check_registry_file(config(tmp_path, lumera={"registry_file": "reg.yml"}))
    assert missing.failed and "no such registry file" in missing.detail
    (tmp_path / "reg.yml").write_text("supernodes:\n  - {address: x, host: 1.2.3.4, prot: 1}\n")
    bad = check_registry_file(config(tmp_path, lumera={"registry_file": "reg.yml"}))
    assert bad.failed and "supernodes[0].prot: unknown field" in bad.detail
    (tmp_path / "reg.yml").write_text("a: &a [*a]\n")
    assert check_registry_file(config(tmp_path, lumera={"registry_file": "reg.yml"})).failed
    StaticRegistry([Supernode(OTHER, SupernodeState.ACTIVE, "127.0.0.1", 4445, 1)]).write(
        tmp_path / "reg.yml"
    )
    good = check_registry_file(config(tmp_path, lumera={"registry_file": "reg.yml"}))
    assert good.status is Status.OK and "1 supernodes" in good.detail


def test_peers_source(tmp_path: Path) -> None:
    none = check_peers_source(config(tmp_path))
    assert none.failed
    assert "p2p.bootstrap_nodes, lumera.registry_file or lumera.grpc_addr" in none.fix
    for sections in (
        {"p2p": {"bootstrap_nodes": f"{OTHER}@127.0.0.1:4445"}},
        {"lumera": {"registry_file": "r.yml"}},
        {"lumera": {"grpc_addr": "localhost:9090", "chain_id": "c"}},
    ):
        assert check_peers_source(config(tmp_path, **sections)).status is Status.OK


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_chain(tmp_path: Path) -> None:
    assert (await check_chain(config(tmp_path))).status is Status.SKIP
    server, port = await start_server(ChainData(records=[]))
    try:
        lumera = {"grpc_addr": f"127.0.0.1:{port}", "chain_id": CHAIN_ID}
        ok = await check_chain(config(tmp_path, lumera=lumera))
        assert ok.status is Status.OK, ok
        assert CHAIN_ID in ok.detail
        wrong = await check_chain(config(tmp_path, lumera={**lumera, "chain_id": "lumera-x"}))
        assert wrong.failed and "serves chain" in wrong.detail
        offline = await check_chain(config(tmp_path, lumera=lumera), offline=True)
        assert offline.status is Status.SKIP
        static = await check_chain(config(tmp_path, lumera={**lumera, "registry_file": "r.yml"}))
        assert static.status is Status.SKIP
    finally:
        await server.stop(None)
    down = {"grpc_addr": f"127.0.0.1:{_free_port()}", "chain_id": CHAIN_ID}
    unreachable = await check_chain(config(tmp_path, lumera=down), timeout=2.0)
    assert unreachable.failed
    assert "cannot reach" in unreachable.detail
    assert "lumera.grpc_addr" in unreachable.fix


async def test_run_preflight_in_order(tmp_path: Path) -> None:
    verdicts = await run_preflight(config(tmp_path), {}, offline=True)
    assert [v.check for v in verdicts] == [
        "keyring",
        "data_dir",
        "log.file",
        "registry_file",
        "peers",
        "chain",
    ]
    assert all(isinstance(v, Verdict) and "\n" not in v.line() for v in verdicts)


def test_verdict_line() -> None:
    line = Verdict("x", Status.FAIL, "broken\nbadly", "mend it").line()
    assert line == "fail  x: broken badly (fix: mend it)"


# --- the command -----------------------------------------------------------------------------


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_config_check_fails_what_run_would_refuse(tmp_path: Path) -> None:
    """Issue 13: a missing key and no peers source used to pass ``config check``."""
    path = _write(tmp_path, {"key_name": "node", "p2p": {"data_dir": "data"}})
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("fail")]
    assert [line.split()[1] for line in failed] == ["keyring:", "peers:"]
    assert "2 of 6 checks failed" in result.stderr


async def test_config_check_all_green_with_a_chain(tmp_path: Path) -> None:
    Keyring(tmp_path / "keys", "test").add("node", PrivateKey.generate()[0])
    server, port = await start_server(ChainData(records=[]))
    try:
        data = {
            "key_name": "node",
            "p2p": {"data_dir": "data"},
            "keyring": {"dir": "keys"},
            "lumera": {"grpc_addr": f"127.0.0.1:{port}", "chain_id": CHAIN_ID},
        }
        path = _write(tmp_path, data)
        # The command runs its own event loop: in a thread, while this loop serves the chain.
        result = await asyncio.to_thread(CliRunner().invoke, app, ["config", "check", str(path)])
    finally:
        await server.stop(None)
    assert result.exit_code == 0, result.output
    statuses = [line.split()[0] for line in result.stderr.splitlines()[:-1]]
    assert statuses == ["ok", "ok", "skip", "skip", "ok", "ok"]
